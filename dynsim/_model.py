"""The normalized two-tower linear model of SPEC §2 (seed 001 §3, eq. 2).

``f_A(x) = W_A x / Z_A`` with ``W_A`` in ``R^{m×d}``, entries iid ``N(0, 1/m)``, and the
normalization ``Z_A`` either the population one, ``Z_A^2 = E||W_A x_A||^2 = ||W_A P_A||_F^2``
(``P_A = [M_A H_A]``), or the batch one, ``Z_A^2 = mean_i ||W_A x_A^i||^2``. Same for B.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._custom_types import Array, Float, Key


def init_weights(key: Key, width: int, d: int, dtype) -> tuple[Array, Array]:
    """``(W_A, W_B)``, each ``m × d`` with iid ``N(0, 1/m)`` entries."""
    key_a, key_b = jax.random.split(key)
    scale = 1.0 / jnp.sqrt(jnp.asarray(width, dtype))
    return (
        jax.random.normal(key_a, (width, d), dtype) * scale,
        jax.random.normal(key_b, (width, d), dtype) * scale,
    )


def embed(
    weights: Float[Array, "m d"],
    latent_map: Float[Array, "d q"],
    x: Float[Array, "batch d"],
    normalization: str,
) -> Float[Array, "batch m"]:
    r"""Normalized embeddings :math:`f(x_i) = W x_i / Z` of a batch of inputs.

    Args:
        weights: ``W`` (m × d).
        latent_map: ``P = [M H]`` (d × q); only the population normalization uses it.
        x: inputs, one per row (batch × d).
        normalization: ``"population"``, :math:`Z^2 = \|W P\|_F^2`, or ``"batch"``,
            :math:`Z^2 = \frac1B \sum_i \|W x_i\|^2`.

    Returns:
        The embeddings, one per row (batch × m).
    """
    raw = x @ weights.T
    if normalization == "population":
        z_sq = jnp.sum((weights @ latent_map) ** 2)
    else:
        z_sq = jnp.mean(jnp.sum(raw**2, axis=1))
    return raw * jax.lax.rsqrt(z_sq)


def similarity(f_a: Float[Array, "batch m"], f_b: Float[Array, "batch m"]) -> Float[Array, "batch batch"]:
    """``s_ij = <f_A(x_A^i), f_B(x_B^j)>``."""
    return f_a @ f_b.T


def latent_gram(
    w_a: Float[Array, "m d"], w_b: Float[Array, "m d"], p_a: Float[Array, "d q"], p_b: Float[Array, "d q"]
) -> Float[Array, "2q 2q"]:
    """Gram matrix ``Q = L^T L`` of the latent maps ``L = [W_A P_A, W_B P_B] = [S_A N_A S_B N_B]``.

    Its blocks hold every inner product of the signal maps ``S = W M`` and noise maps
    ``N = W H`` (SPEC §2), which is all the metrics of SPEC §4 need.
    """
    maps = jnp.concatenate([w_a @ p_a, w_b @ p_b], axis=1)
    return maps.T @ maps
