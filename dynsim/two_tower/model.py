"""The normalized two-tower linear model of SPEC §2 (seed 001 §3, eq. 2).

``f_A(x) = W_A x / Z_A`` with ``W_A`` in ``R^{m×d}``, entries iid ``N(0, 1/m)``, and the
normalization ``Z_A`` either the population one, ``Z_A^2 = E||W_A x_A||^2 = ||W_A P_A||_F^2``
(``P_A = [M_A H_A]``), or the batch one, ``Z_A^2 = mean_i ||W_A x_A^i||^2``. Same for B.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..engine.types import Array, Float, Key


def init_weights(key: Key, width: int, d: int, dtype) -> tuple[Array, Array]:
    """``(W_A, W_B)``, each ``m × d`` with iid ``N(0, 1/m)`` entries."""
    key_a, key_b = jax.random.split(key)
    scale = 1.0 / jnp.sqrt(jnp.asarray(width, dtype))
    return (
        jax.random.normal(key_a, (width, d), dtype) * scale,
        jax.random.normal(key_b, (width, d), dtype) * scale,
    )


def bartlett_gram(key: Key, width, dim: int, dtype) -> Float[Array, "dim dim"]:
    r"""A draw of :math:`K_0 = \Omega^T \Omega \sim \mathrm{Wishart}_{dim}(m, I/m)`, for
    :math:`\Omega` (m × dim) with iid :math:`N(0, 1/m)` entries, in :math:`O(dim^3)` without
    forming :math:`\Omega` (Bartlett decomposition).

    :math:`K_0 = A A^T / m` with ``A`` lower triangular, :math:`A_{ii}^2 \sim \chi^2_{m-i}`
    (``i = 0 .. dim-1``) and :math:`A_{ij} \sim N(0, 1)` below the diagonal, all independent.
    Needs ``m >= dim`` (below, the Wishart is singular and this decomposition does not apply).
    ``width`` may be a traced value: no shape depends on it.
    """
    key_chi, key_normal = jax.random.split(key)
    dof = (width - jnp.arange(dim)).astype(dtype)
    diagonal = jnp.sqrt(2 * jax.random.gamma(key_chi, dof / 2, dtype=dtype))
    lower = jnp.tril(jax.random.normal(key_normal, (dim, dim), dtype), -1) + jnp.diag(diagonal)
    return lower @ lower.T / width


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


def gram_similarity(
    gram: Float[Array, "2q 2q"], u_a: Float[Array, "batch q"], u_b: Float[Array, "batch q"], normalization: str
) -> Float[Array, "batch batch"]:
    r"""``s_ij = <f_A(x_A^i), f_B(x_B^j)>`` from the latent Gram matrix ``Q`` alone (SPEC §6).

    With ``x = P u`` the raw embedding is ``W_A x_A^i = L_A u_A^i`` (``L_A = W_A P_A``), so
    :math:`s_{ij} = u_A^{i\,T} Q_{AB}\, u_B^j / (Z_A Z_B)` with :math:`Z_A^2 = \mathrm{tr}\, Q_{AA}`
    (population) or :math:`\mathrm{mean}_i\, u_A^{i\,T} Q_{AA} u_A^i` (batch); likewise for B.
    """
    q = gram.shape[0] // 2
    cross = (u_a @ gram[:q, q:]) @ u_b.T
    if normalization == "population":
        z_sq_a, z_sq_b = jnp.trace(gram[:q, :q]), jnp.trace(gram[q:, q:])
    else:
        z_sq_a = jnp.mean(jnp.sum((u_a @ gram[:q, :q]) * u_a, axis=1))
        z_sq_b = jnp.mean(jnp.sum((u_b @ gram[q:, q:]) * u_b, axis=1))
    return cross * jax.lax.rsqrt(z_sq_a * z_sq_b)


def latent_gram(
    w_a: Float[Array, "m d"], w_b: Float[Array, "m d"], p_a: Float[Array, "d q"], p_b: Float[Array, "d q"]
) -> Float[Array, "2q 2q"]:
    """Gram matrix ``Q = L^T L`` of the latent maps ``L = [W_A P_A, W_B P_B] = [S_A N_A S_B N_B]``.

    Its blocks hold every inner product of the signal maps ``S = W M`` and noise maps
    ``N = W H`` (SPEC §2), which is all the metrics of SPEC §4 need.
    """
    maps = jnp.concatenate([w_a @ p_a, w_b @ p_b], axis=1)
    return maps.T @ maps
