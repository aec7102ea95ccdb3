"""The infinite-width reduced system of the two-tower linear model (SPEC §5, seed 001 eq. 8).

At infinite width the latent Gram matrix stays diagonal in each of its blocks, and the
dynamics close on the per-coordinate state ``y = (a, b, p, nu^A, nu^B)``. This module holds
what is specific to that system: the reduced population loss, its sensitivities, the
vector field and the metrics as closed-form functions of ``y``. The state is one flat
vector ``[a, b, p, nu^A, nu^B]`` of length ``3r + 2n``; :func:`split` names its parts.
Everything is written for one configuration and one time; callers ``vmap``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.schedule import stage_value
from ..engine.types import Array, Float

_LOG2 = float(np.log(2.0))
# Sign patterns of the alignment score: all 2^r of them up to this r, else a fixed sample.
_EXACT_PATTERNS_UP_TO = 12
_SAMPLED_PATTERNS = 4096


class ReducedArgs(NamedTuple):
    """Everything the vector field needs besides ``(t, y)``; all arrays, so it can be batched.

    ``sigma2_*`` are ``sigma_k^2`` (r,), ``eta2_*`` are ``eta_j^2`` (n,); ``taus`` and
    ``gammas`` hold one value per stage, and stage ``k`` runs from ``boundaries[k-1]`` to
    ``boundaries[k]`` (``boundaries`` lists the stage end times except the last).
    """

    sigma2_a: Array
    sigma2_b: Array
    eta2_a: Array
    eta2_b: Array
    taus: Array
    gammas: Array
    boundaries: Array
    lam: Array


def split(y: Float[Array, "*batch 3r+2n"], r: int) -> dict[str, Array]:
    """Name the parts of the flat state (last axis; NumPy or JAX): ``a, b, p`` (r) and ``nu_a, nu_b`` (n)."""
    n = (y.shape[-1] - 3 * r) // 2
    ends = np.cumsum([0, r, r, r, n, n])
    names = ("a", "b", "p", "nu_a", "nu_b")
    return {name: y[..., ends[i] : ends[i + 1]] for i, name in enumerate(names)}


def initial_state(args: ReducedArgs) -> Float[Array, " 3r+2n"]:
    r"""``y(0)``: :math:`a_k = \sigma_{Ak}^2`, :math:`b_k = \sigma_{Bk}^2`, :math:`p_k = 0`,
    :math:`\nu^A_j = \eta_{Aj}^2`, :math:`\nu^B_j = \eta_{Bj}^2` (``K = I`` at infinite width)."""
    return jnp.concatenate([args.sigma2_a, args.sigma2_b, jnp.zeros_like(args.sigma2_a), args.eta2_a, args.eta2_b])


def cosines(y: Float[Array, " 3r+2n"], r: int) -> tuple[Array, Array, Array]:
    r"""``(c, alpha, beta)``: :math:`\alpha = \sum a + \sum \nu^A`, :math:`\beta = \sum b + \sum \nu^B`,
    :math:`c_k = p_k / \sqrt{\alpha\beta}`."""
    s = split(y, r)
    alpha = jnp.sum(s["a"]) + jnp.sum(s["nu_a"])
    beta = jnp.sum(s["b"]) + jnp.sum(s["nu_b"])
    return s["p"] / jnp.sqrt(alpha * beta), alpha, beta


def _cosh_terms(x):
    # With e = exp(-2|x|) (never overflows): log cosh x = |x| + log1p(e) - log 2 and
    # 1 - tanh x = 2e / (1 + e) for x >= 0, 2 / (1 + e) for x < 0.
    e = jnp.exp(-2.0 * jnp.abs(x))
    log_cosh = jnp.abs(x) + jnp.log1p(e) - _LOG2
    one_minus_tanh = 2.0 * jnp.where(x >= 0, e, 1.0) / (1.0 + e)
    return log_cosh, one_minus_tanh


def _negative_log_odds(c, tau, lam, log_cosh):
    # log(lam prod_k cosh(tau c_k)) - tau S: the log-ratio of negative to positive mass.
    return jnp.log(lam) + jnp.sum(log_cosh) - tau * jnp.sum(c)


def reduced_loss(c: Float[Array, " r"], tau, lam, kind: str) -> Float[Array, ""]:
    r"""Reduced population loss :math:`L(c)` of SPEC §5, :math:`S = \sum_k c_k`.

    - ``infonce``: :math:`-\tau S + \log(e^{\tau S} + \lambda \prod_k \cosh \tau c_k)`,
      evaluated as ``softplus(log lam + sum log cosh(tau c) - tau S)``;
    - ``positive``: :math:`-\tau S`;
    - ``spectral``: :math:`-2S + \lambda \sum_k c_k^2`.
    """
    if kind == "infonce":
        return jax.nn.softplus(_negative_log_odds(c, tau, lam, _cosh_terms(tau * c)[0]))
    if kind == "positive":
        return -tau * jnp.sum(c)
    if kind == "spectral":
        return -2.0 * jnp.sum(c) + lam * jnp.sum(c**2)
    raise ValueError(f"no reduced loss for {kind!r}")


def sensitivities(c: Float[Array, " r"], tau, lam, kind: str) -> Float[Array, " r"]:
    r"""Closed-form :math:`u_k = \partial L / \partial c_k` (SPEC §5).

    ``infonce``: :math:`u_k = -\tau (1 - \pi)(1 - \tanh \tau c_k)` with
    :math:`1 - \pi = \mathrm{sigmoid}(\log\lambda + \sum \log\cosh \tau c - \tau S)` and
    :math:`1 - \tanh x` both from :math:`e^{-2|\tau c_k|}`, free of overflow at any ``tau``;
    ``positive``: :math:`-\tau`; ``spectral``: :math:`-2 + 2\lambda c_k`.
    """
    if kind == "infonce":
        log_cosh, one_minus_tanh = _cosh_terms(tau * c)
        return -tau * jax.nn.sigmoid(_negative_log_odds(c, tau, lam, log_cosh)) * one_minus_tanh
    if kind == "positive":
        return jnp.full_like(c, -tau)
    if kind == "spectral":
        return -2.0 + 2.0 * lam * c
    raise ValueError(f"no reduced loss for {kind!r}")


def vector_field(t, y: Float[Array, " 3r+2n"], args: ReducedArgs, kind: str) -> Float[Array, " 3r+2n"]:
    r"""The reduced gradient flow :math:`dy/dt` of SPEC §5 at time ``t``.

    With :math:`G = \sum_k c_k u_k`, :math:`\rho = \sqrt{\alpha\beta}` and :math:`\gamma` the
    stage's gradient scale (``1/tau`` with rescaling, else 1):

    .. math::
        \dot a_k = 2\gamma\sigma_{Ak}^2 (G a_k/\alpha - u_k p_k/\rho), \quad
        \dot b_k = 2\gamma\sigma_{Bk}^2 (G b_k/\beta - u_k p_k/\rho),

        \dot p_k = \gamma\big(G p_k (\sigma_{Ak}^2/\alpha + \sigma_{Bk}^2/\beta)
        - u_k (\sigma_{Bk}^2 a_k + \sigma_{Ak}^2 b_k)/\rho\big), \quad
        \dot\nu^A_j = 2\gamma\eta_{Aj}^2 G \nu^A_j/\alpha, \quad
        \dot\nu^B_j = 2\gamma\eta_{Bj}^2 G \nu^B_j/\beta.

    ``kind`` (the loss) is static; ``args`` is a :class:`ReducedArgs`.
    """
    r = args.sigma2_a.shape[0]
    s = split(y, r)
    c, alpha, beta = cosines(y, r)
    root = jnp.sqrt(alpha * beta)
    tau, gamma = stage_value(jnp.stack([args.taus, args.gammas], axis=1), args.boundaries, t)
    u = sensitivities(c, tau, args.lam, kind)
    g = jnp.sum(c * u)
    a, b, p = s["a"], s["b"], s["p"]
    da = 2 * gamma * args.sigma2_a * (g * a / alpha - u * p / root)
    db = 2 * gamma * args.sigma2_b * (g * b / beta - u * p / root)
    dp = gamma * (
        g * p * (args.sigma2_a / alpha + args.sigma2_b / beta) - u * (args.sigma2_b * a + args.sigma2_a * b) / root
    )
    dnu = 2 * gamma * g * jnp.concatenate([args.eta2_a * s["nu_a"] / alpha, args.eta2_b * s["nu_b"] / beta])
    return jnp.concatenate([da, db, dp, dnu])


def sign_patterns(r: int) -> np.ndarray:
    """Rows ``w`` in ``{0, 1}^r`` (1 where ``z_k z'_k = -1``) over which the alignment score averages.

    All ``2^r`` patterns for ``r <= 12``; beyond, a fixed sample of 4096 (seeded, so the
    metric is deterministic).
    """
    if r <= _EXACT_PATTERNS_UP_TO:
        return ((np.arange(2**r)[:, None] >> np.arange(r)) & 1).astype(np.int8)
    return np.random.default_rng(0).integers(0, 2, size=(_SAMPLED_PATTERNS, r)).astype(np.int8)


def alignment_score(p: Float[Array, "*batch r"]) -> Float[Array, "*batch"]:
    r"""Infinite-width alignment score (Def. 4.1) in closed form, for every state in ``p``.

    Every embedding has unit norm, so ``f_A(x_A)`` is closer to ``f_B(x_B)`` than to
    ``f_B(x_B')`` iff :math:`\sum_k c_k z_k (z_k - z'_k) > 0`, i.e. iff the coordinates where
    ``z`` and ``z'`` differ have :math:`\sum_{k \in T} p_k > 0`. With ``T`` uniform over subsets:

    .. math:: \mathrm{score} = 2^{-r}\, \#\{T \subseteq [r] : \textstyle\sum_{k\in T} p_k > 0\},

    which is :math:`1 - 2^{-r}` when every :math:`p_k > 0` and 0 when none is. Only states
    with mixed signs need counting: over all ``2^r`` subsets for ``r <= 12``, else over 4096
    fixed ones. Give all states at once (not under ``vmap``): the count then runs only if
    some state has mixed signs.
    """
    r = p.shape[-1]
    all_positive = jnp.all(p > 0, axis=-1)
    mixed = jnp.any(p > 0, axis=-1) & ~all_positive
    closed = jnp.where(all_positive, 1.0 - 2.0**-r, 0.0).astype(p.dtype)

    def counted():
        # A constant of the program: int8 (an eighth of float64's size), widened inside it.
        patterns = jnp.asarray(sign_patterns(r)).astype(p.dtype)
        return jnp.where(mixed, jnp.mean(p @ patterns.T > 0, axis=-1), closed)

    return jax.lax.cond(jnp.any(mixed), counted, lambda: closed)


def metrics(y: Float[Array, " 3r+2n"], tau, lam, r: int, kind: str) -> dict[str, Array]:
    """The metrics of SPEC §4 at a state with a block-diagonal Gram matrix (infinite width).

    Same names and meanings as the finite-width :class:`dynsim.Trajectory` metrics:
    ``loss`` is the reduced population loss at ``tau``, ``kappa_* = sqrt(max a / min a)``
    (``S^T S`` is diagonal), ``balance`` the stable rank of ``diag(a, nu^A)``, ``nsr`` and
    ``rho_*`` from ``a, b, p, nu^A``, and ``offdiag = 0`` by construction. The alignment
    score is :func:`alignment_score` of ``p``, computed for a whole trajectory at once.
    """
    s = split(y, r)
    c, _, _ = cosines(y, r)
    rho = s["p"] / jnp.sqrt(s["a"] * s["b"])
    spectrum_a = jnp.concatenate([s["a"], s["nu_a"]])
    return {
        "loss": reduced_loss(c, tau, lam, kind),
        "rho_min": jnp.min(rho),
        "rho_mean": jnp.mean(rho),
        "kappa_a": jnp.sqrt(jnp.max(s["a"]) / jnp.min(s["a"])),
        "kappa_b": jnp.sqrt(jnp.max(s["b"]) / jnp.min(s["b"])),
        "balance": jnp.sum(spectrum_a**2) / jnp.max(spectrum_a) ** 2,
        "nsr": jnp.sqrt(jnp.sum(s["nu_a"]) / jnp.sum(s["a"])),
        "offdiag": jnp.zeros_like(rho[0]),
    }
