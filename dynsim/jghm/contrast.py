r"""The symmetric CLIP loss of a score (spec §1), the two directions summed.

For anchors i with partners i and a score matrix :math:`S_{ij} = S(x_{im,i}, x_{tx,j})`:
:math:`\ell_i = [\log \sum_j e^{S_{ij}} - S_{ii}] + [\log \sum_j e^{S_{ji}} - S_{ii}]`.
In a batch of B fresh pairs (:func:`in_batch`) an anchor's B − 1 non-partners are iid draws
from the other marginal, so the batch mean is unbiased for :math:`R_B`; with explicit negatives
(:func:`k_way`) each anchor has its own K − 1 of each modality.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def in_batch(scores) -> jax.Array:
    """(B,) per-pair summed loss of a (B, B) score matrix (rows: images, columns: texts)."""
    diagonal = jnp.diagonal(scores)
    rows = jax.nn.logsumexp(scores, axis=1) - diagonal
    columns = jax.nn.logsumexp(scores, axis=0) - diagonal
    return rows + columns


def k_way(positive, text_negatives, image_negatives) -> jax.Array:
    """(n,) per-anchor summed K-way loss: ``positive`` (n,) = S(x_im,1, x_tx,1),
    ``text_negatives`` (n, K-1) = S(x_im,1, x_tx,j), ``image_negatives`` (n, K-1) = S(x_im,j, x_tx,1)."""
    first = jax.nn.logsumexp(jnp.concatenate([positive[:, None], text_negatives], axis=1), axis=1)
    second = jax.nn.logsumexp(jnp.concatenate([positive[:, None], image_negatives], axis=1), axis=1)
    return first + second - 2 * positive
