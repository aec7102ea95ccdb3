"""Per-coordinate quantities and metrics of SPEC §4, from the latent Gram matrix alone.

Everything here is a function of ``Q = L^T L``, the Gram matrix of the latent maps
``L = [S_A N_A S_B N_B]`` (``2q × 2q``, ``q = r + n``; index blocks ``0:r`` = signal A,
``r:q`` = noise A, ``q:q+r`` = signal B, ``q+r:2q`` = noise B). Any backend that can
produce ``Q`` (the literal parameter-space model, or an exact Gram-space recursion)
gets the same metrics from the same code.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..engine import lapack
from ..engine.types import Array, Float, Key
from .data import sample_latents
from .model import embed, similarity

# The per-coordinate state (SPEC §4) and the dimension each one runs over.
COORDINATE_DIMS = {"a": "signal", "b": "signal", "p": "signal", "nu_a": "noise", "nu_b": "noise"}
COORDINATES = tuple(COORDINATE_DIMS)
METRICS = ("loss", "rho_min", "rho_mean", "kappa_a", "kappa_b", "balance", "alignment", "nsr", "offdiag")


def coordinates(gram: Float[Array, "2q 2q"], r: int) -> dict[str, Array]:
    r"""The reduced state :math:`y = (a, b, p, \nu^A, \nu^B)`.

    :math:`a_k = \|S_A e_k\|^2`, :math:`b_k = \|S_B e_k\|^2`,
    :math:`p_k = \langle S_A e_k, S_B e_k\rangle`, :math:`\nu^A_j = \|N_A e_j\|^2`,
    :math:`\nu^B_j = \|N_B e_j\|^2`.
    """
    q = gram.shape[0] // 2
    diag = jnp.diagonal(gram)
    return {
        "a": diag[:r],
        "b": diag[q : q + r],
        "p": jnp.diagonal(gram[:r, q : q + r]),
        "nu_a": diag[r:q],
        "nu_b": diag[q + r :],
    }


def condition_number(gram: Float[Array, "r r"]) -> Float[Array, ""]:
    r""":math:`\kappa(S) = s_1(S) / s_r(S)` from the Gram matrix :math:`S^T S` (r × r)."""
    eigenvalues = lapack.eigvalsh(gram)
    return jnp.sqrt(eigenvalues[-1] / eigenvalues[0])


def stable_rank(gram: Float[Array, "q q"]) -> Float[Array, ""]:
    r"""Stable rank :math:`\|\Sigma\|_F^2 / \|\Sigma\|_2^2` of a PSD matrix with the same
    nonzero spectrum as ``gram`` (Def. 4.2: :math:`\Sigma_A = L_A L_A^T / Z_A^2` shares its
    nonzero eigenvalues with :math:`L_A^T L_A`, and the scale cancels)."""
    eigenvalues = lapack.eigvalsh(gram)
    return jnp.sum(eigenvalues**2) / eigenvalues[-1] ** 2


def max_offdiagonal_cosine(gram: Float[Array, "r r"]) -> Float[Array, ""]:
    r""":math:`\max_{k \ne l} |\langle S e_k, S e_l\rangle| / \sqrt{a_k a_l}`; 0 when r = 1."""
    scale = jnp.sqrt(jnp.diagonal(gram))
    cosines = jnp.abs(gram / jnp.outer(scale, scale))
    return jnp.max(jnp.where(jnp.eye(gram.shape[0], dtype=bool), 0.0, cosines))


def alignment_score(f_a: Float[Array, "N m"], f_b: Float[Array, "N m"]) -> Float[Array, ""]:
    r"""Alignment score (Def. 4.1): :math:`\Pr[\|f_A(x_A) - f_B(x_B)\| < \|f_A(x_A) - f_B(x_B')\|]`.

    Row ``i`` of ``f_a``, ``f_b`` is a positive pair; every other row ``j`` of ``f_b`` serves
    as an independent ``x_B'``, so the estimate averages over all ``N(N-1)`` ordered pairs
    ``i != j``. The inequality is strict: ties (e.g. a constant map) count as failures.
    """
    sq_norm_b = jnp.sum(f_b**2, axis=1)
    s = similarity(f_a, f_b)
    # ||f_A^i - f_B^j||^2 - ||f_A^i - f_B^i||^2, without the common ||f_A^i||^2.
    margin = (sq_norm_b[None, :] - 2 * s) - (sq_norm_b - 2 * jnp.diagonal(s))[:, None]
    wins = jnp.where(jnp.eye(s.shape[0], dtype=bool), False, margin > 0)
    return jnp.sum(wins) / (s.shape[0] * (s.shape[0] - 1))


def gram_factor(gram: Float[Array, "k k"]) -> Float[Array, "k k"]:
    """A square ``R`` with ``R^T R = gram`` (symmetric PSD; tiny negative eigenvalues clipped)."""
    eigenvalues, vectors = lapack.eigh(gram)
    return jnp.sqrt(jnp.maximum(eigenvalues, 0.0))[:, None] * vectors.T


def metrics(
    gram: Float[Array, "2q 2q"],
    r: int,
    key: Key,
    *,
    loss_fn,
    tau,
    lam,
    normalization: str,
    samples: int,
) -> dict[str, Array]:
    """Every metric of SPEC §4 (plus the loss) at one state.

    ``loss`` and ``alignment`` are Monte-Carlo estimates on ``samples`` fresh pairs drawn
    with ``key``: the model is evaluated through a square factor ``R`` of ``Q``, whose
    inner products are those of the width-m embeddings, so the estimate is exact for the
    sample at any width. ``loss`` is the batch loss of that sample at the current ``tau``
    (for ``infonce`` it carries the ``O(1/samples)`` bias of the in-batch log-mean).
    ``kappa_*`` and ``offdiag`` use the signal blocks, ``balance`` and ``nsr`` tower A.
    """
    q = gram.shape[0] // 2
    y = coordinates(gram, r)
    rho = y["p"] / jnp.sqrt(y["a"] * y["b"])
    factor = gram_factor(gram)
    u_a, u_b = sample_latents(key, samples, r, q - r, gram.dtype)
    identity = jnp.eye(q, dtype=gram.dtype)
    f_a = embed(factor[:, :q], identity, u_a, normalization)
    f_b = embed(factor[:, q:], identity, u_b, normalization)
    return {
        "loss": loss_fn(similarity(f_a, f_b), tau, lam),
        "rho_min": jnp.min(rho),
        "rho_mean": jnp.mean(rho),
        "kappa_a": condition_number(gram[:r, :r]),
        "kappa_b": condition_number(gram[q : q + r, q : q + r]),
        "balance": stable_rank(gram[:q, :q]),
        "alignment": alignment_score(f_a, f_b),
        "nsr": jnp.sqrt(jnp.sum(y["nu_a"]) / jnp.sum(y["a"])),
        "offdiag": max_offdiagonal_cosine(gram[:r, :r]),
    }
