"""Contrastive batch losses as functions of the similarity matrix ``s`` (B × B), shared by systems.

``s_ij`` compares the first view of pair ``i`` with the second view of pair ``j``, so the
diagonal holds the positive pairs. Every loss has the signature ``loss(s, tau, lam) -> scalar``
so that a simulator can switch between them without knowing which one it runs. The two-tower
system (SPEC §3) uses all three; the spectral system (shared/specs/spectral.md §2) uses
:func:`spectral` with ``lam = 1`` as its minibatch estimator.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .engine.types import Array, Float


def infonce(s: Float[Array, "B B"], tau, lam) -> Float[Array, ""]:
    r"""Symmetric in-batch InfoNCE with negative weight :math:`\lambda`.

    .. math::
        \ell^A_i = -\log \frac{e^{\tau s_{ii}}}{e^{\tau s_{ii}} + \lambda \,
        \mathrm{mean}_{j \ne i} e^{\tau s_{ij}}}, \qquad
        L = \mathrm{mean}_i (\ell^A_i + \ell^B_i) / 2,

    with :math:`\ell^B_i` the same over the column :math:`s_{ji}`. Evaluated in the log
    domain (``logsumexp`` with weights), so it does not overflow at large ``tau``.
    """
    batch = s.shape[0]
    logits = tau * s
    positive = jnp.diagonal(logits)
    weights = lam * (1.0 - jnp.eye(batch, dtype=s.dtype)) / (batch - 1)
    negative_a = jax.nn.logsumexp(logits, axis=1, b=weights)
    negative_b = jax.nn.logsumexp(logits, axis=0, b=weights)
    loss_a = jnp.logaddexp(positive, negative_a) - positive
    loss_b = jnp.logaddexp(positive, negative_b) - positive
    return jnp.mean(loss_a + loss_b) / 2


def positive(s: Float[Array, "B B"], tau, lam) -> Float[Array, ""]:
    r"""Non-contrastive loss :math:`L = -\tau\, \mathrm{mean}_i s_{ii}` (``lam`` unused)."""
    del lam
    return -tau * jnp.mean(jnp.diagonal(s))


def spectral(s: Float[Array, "B B"], tau, lam) -> Float[Array, ""]:
    r"""Spectral contrastive loss (seed 003): :math:`L = -2\,\mathrm{mean}_i s_{ii}
    + \lambda\, \mathrm{mean}_{i \ne j} s_{ij}^2` (``tau`` unused)."""
    del tau
    batch = s.shape[0]
    off_diagonal = jnp.sum(s**2) - jnp.sum(jnp.diagonal(s) ** 2)
    return -2 * jnp.mean(jnp.diagonal(s)) + lam * off_diagonal / (batch * (batch - 1))


LOSSES = {"infonce": infonce, "positive": positive, "spectral": spectral}
