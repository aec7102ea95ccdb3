r"""The Gram-space field of the population loss near the invariant set, sector by sector.

At infinite width the latent Gram matrix ``Q`` (``2q × 2q``, ``q = r + n``; blocks signal A,
noise A, signal B, noise B) stays on the invariant set :math:`\mathcal D`: diagonal blocks plus
the cross entries :math:`p_k = Q_{A_k B_k}`, whose dynamics is the reduced ODE of
:mod:`dynsim.two_tower.reduced`. At finite width ``Q`` also has entries off :math:`\mathcal D`
of order :math:`m^{-1/2}`. Flipping a latent sign (``z_k`` in both towers, ``xi_Aj`` alone,
``xi_Bj`` alone) leaves the population loss unchanged, so the field
:math:`F(Q) = -2\gamma(D^2 G Q + Q G D^2)`, :math:`G = \partial\ell/\partial Q` symmetrized,
commutes with the flips, and its Jacobian at a point of :math:`\mathcal D` is block-diagonal
by character (shared/notes/fluctuations.md §2a). Every off-:math:`\mathcal D` entry belongs to
exactly one *sector*: the unordered pair of latent *slots* (``z_k``, ``xi_Aj`` or ``xi_Bj``) its
two indices carry. A sector has at most four entries: for slots ``(s_1, s_2)`` the candidates
``(A_1, A_2), (A_1, B_2), (B_1, A_2), (B_1, B_2)``, where ``A_i`` (``B_i``) is slot ``i``'s index
in tower A (B), absent for ``xi_B`` (``xi_A``) slots.

A perturbation ``delta`` of one sector moves the population loss only through the latent
signs of its two slots; every other coordinate enters squared (positive pairs) or through an
even ``cosh`` (negatives). So the loss is an exact sum over ``2^2`` sign patterns of the pair
and ``2^2`` of a negative (:func:`sector_loss`), and the field on the sector's local ``4 × 4``
index set, with the couplings through ``(p, alpha, beta)`` to the rest of
:math:`\mathcal D`, follows exactly (:func:`sector_field`). Everything is written for one sector
and one state; callers ``vmap`` over the sectors of :func:`sectors`.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.types import Array, Float
from .reduced import _cosh_terms, split

Z, XA, XB = 0, 1, 2  # slot kinds: z_k (both towers), xi_Aj (tower A only), xi_Bj (tower B only)
# The four candidate entries of a sector in its local index order [A_1, A_2, B_1, B_2].
ENTRIES = ((0, 1), (0, 3), (2, 1), (2, 3))
_PATTERNS = np.array(list(itertools.product([-1.0, 1.0], repeat=2)))  # (4, 2): signs of the two slots


class Sectors(NamedTuple):
    """Every off-invariant sector of a configuration (NumPy arrays, one row per sector).

    Attributes:
        kinds: (S, 2) slot kinds ``Z``, ``XA``, ``XB``.
        slots: (S, 2) the slots' coordinate index (``k`` for ``z_k``, ``j`` for ``xi_j``).
        rows: (S, 4) the local indices' rows in ``Q`` (``2q`` for an absent index).
        state: (S, 4) the state index of the local diagonal entries ``Q_ii`` in ``y`` (``3r + 2n``
            for an absent index), in local order ``[A_1, A_2, B_1, B_2]``.
        partner: (S, 2) the state index of ``p_k`` for a ``z_k`` slot, ``3r + 2n`` otherwise.
        mask: (S, 4) which of :data:`ENTRIES` exist (both indices present).
    """

    kinds: np.ndarray
    slots: np.ndarray
    rows: np.ndarray
    state: np.ndarray
    partner: np.ndarray
    mask: np.ndarray


def sectors(r: int, n: int) -> Sectors:
    """The ``C(r + 2n, 2)`` sectors: every unordered pair of distinct slots."""
    q, dim = r + n, 3 * r + 2 * n
    slot_list = [(Z, k) for k in range(r)] + [(XA, j) for j in range(n)] + [(XB, j) for j in range(n)]

    def local(kind, index):  # (row in Q, state index) of the slot's A and B index
        if kind == Z:
            return (index, index), (q + index, r + index)
        if kind == XA:
            return (r + index, 3 * r + index), (2 * q, dim)
        return (2 * q, dim), (q + r + index, 3 * r + n + index)

    kinds, slots, rows, state, partner, mask = [], [], [], [], [], []
    for (kind1, index1), (kind2, index2) in itertools.combinations(slot_list, 2):
        (a1, b1), (a2, b2) = local(kind1, index1), local(kind2, index2)
        order = (a1, a2, b1, b2)
        kinds.append((kind1, kind2))
        slots.append((index1, index2))
        rows.append([row for row, _ in order])
        state.append([index for _, index in order])
        partner.append([2 * r + index if kind == Z else dim for kind, index in ((kind1, index1), (kind2, index2))])
        mask.append([order[i][0] < 2 * q and order[j][0] < 2 * q for i, j in ENTRIES])
    return Sectors(*(np.asarray(x) for x in (kinds, slots, rows, state, partner, mask)))


class Stage(NamedTuple):
    """The loss and its stage values at one time: ``tau``, ``gamma`` and ``lam`` (traced)."""

    tau: Array
    gamma: Array
    lam: Array


def gradient_field(y: Float[Array, " 3r+2n"], g_p, g_alpha, g_beta, spectra: tuple, gamma) -> Float[Array, " 3r+2n"]:
    r"""The field :math:`F = -2\gamma(D^2 G Q + Q G D^2)` on :math:`\mathcal D`, in state coordinates,
    from the loss gradient's invariant entries: :math:`g_{p_k} = \partial\ell/\partial p_k`,
    :math:`g_\alpha = \partial\ell/\partial\alpha` (every ``Q_AA`` diagonal entry), :math:`g_\beta`.

    Per signal coordinate, with :math:`Q_k = [[a_k, p_k], [p_k, b_k]]`,
    :math:`G_k = [[g_\alpha, g_{p_k}/2], [g_{p_k}/2, g_\beta]]` and
    :math:`D_k^2 = \mathrm{diag}(\sigma_{Ak}^2, \sigma_{Bk}^2)`, the block is
    :math:`-2\gamma(D_k^2 G_k Q_k + Q_k G_k D_k^2)`; a noise coordinate has
    :math:`\dot\nu^A_j = -4\gamma\eta_{Aj}^2 g_\alpha \nu^A_j`. With the reduced loss
    :math:`\ell = L(p/\sqrt{\alpha\beta})` this is :func:`dynsim.two_tower.reduced.vector_field`.
    ``spectra = (sigma2_a, sigma2_b, eta2_a, eta2_b)``.
    """
    sigma2_a, sigma2_b, eta2_a, eta2_b = spectra
    s = split(y, sigma2_a.shape[0])
    a, b, p = s["a"], s["b"], s["p"]
    half = g_p / 2
    da = -4 * gamma * sigma2_a * (g_alpha * a + half * p)
    db = -4 * gamma * sigma2_b * (g_beta * b + half * p)
    dp = -2 * gamma * (sigma2_a * (g_alpha * p + half * b) + sigma2_b * (half * a + g_beta * p))
    dnu_a = -4 * gamma * eta2_a * g_alpha * s["nu_a"]
    dnu_b = -4 * gamma * eta2_b * g_beta * s["nu_b"]
    return jnp.concatenate([da, db, dp, dnu_a, dnu_b])


def row_variances(spectra: tuple) -> Float[Array, " 2q+1"]:
    """``D_i^2`` of every row of ``Q`` (signal A, noise A, signal B, noise B), then 0 for an absent
    index; ``spectra = (sigma2_a, sigma2_b, eta2_a, eta2_b)``."""
    sigma2_a, sigma2_b, eta2_a, eta2_b = spectra
    return jnp.concatenate([sigma2_a, eta2_a, sigma2_b, eta2_b, jnp.zeros(1)])


def traces(y, r: int):
    r""":math:`(\alpha, \beta) = (\mathrm{tr}\, Q_{AA}, \mathrm{tr}\, Q_{BB})`: ``sum a + sum nu^A`` and
    ``sum b + sum nu^B``."""
    s = split(y, r)
    return jnp.sum(s["a"]) + jnp.sum(s["nu_a"]), jnp.sum(s["b"]) + jnp.sum(s["nu_b"])


def sector_loss(p: Float[Array, " r"], alpha, beta, delta: Float[Array, " 4"], sector, stage: Stage, kind: str):
    r"""The population loss at ``Q`` on :math:`\mathcal D` (``p``, traces ``alpha``, ``beta``) plus
    ``delta`` on the cross entries of one sector, exactly.

    With :math:`c = p/\sqrt{\alpha\beta}` and the sector's ``2 × 2`` cross block
    :math:`C = [[c_{k_1}, \delta_{A_1B_2}], [\delta_{A_2B_1}, c_{k_2}]]/\ldots` (``c`` only for
    ``z`` slots), a positive pair has :math:`s_+ = S_{in} + v^T C v` over the slots' signs ``v``
    and a negative :math:`v^T C v'`; the other signal coordinates give :math:`S_{in} = \sum c_k`
    and the factor :math:`\prod \cosh\tau c_k` of the negatives (SPEC §5). Averaged over the
    ``4 × 4`` sign patterns: InfoNCE (both directions), the positive loss or the spectral loss.
    ``sector = (kinds (2,), slots (2,), mask (4,))`` of one row of :class:`Sectors`.
    """
    kinds, slots, mask = sector
    rho = jnp.sqrt(alpha * beta)
    c = p / rho
    active = jnp.zeros_like(c).at[slots].add(jnp.where(kinds == Z, 1.0, 0.0))
    inactive = 1.0 - jnp.minimum(active, 1.0)
    diagonal = jnp.where(kinds == Z, c[slots], 0.0)
    cross = jnp.stack(
        [
            jnp.stack([diagonal[0], jnp.where(mask[1], delta[1], 0.0) / rho]),
            jnp.stack([jnp.where(mask[2], delta[2], 0.0) / rho, diagonal[1]]),
        ]
    )
    v = jnp.asarray(_PATTERNS, dtype=c.dtype)
    s_in = jnp.sum(inactive * c)
    s_pos = s_in + jnp.einsum("pi,ij,pj->p", v, cross, v)
    s_neg = v @ cross @ v.T  # [pattern of the anchor's slots, pattern of the negative's]
    if kind == "positive":
        return -stage.tau * jnp.mean(s_pos)
    if kind == "spectral":
        return -2 * jnp.mean(s_pos) + stage.lam * (jnp.sum(inactive * c**2) + jnp.mean(s_neg**2))
    log_cosh_in = jnp.sum(inactive * _cosh_terms(stage.tau * c)[0])
    log_mean = lambda s: jax.nn.logsumexp(stage.tau * s, axis=1) - jnp.log(4.0)  # noqa: E731
    negatives = jnp.log(stage.lam) + log_cosh_in
    loss_a = jnp.logaddexp(stage.tau * s_pos, negatives + log_mean(s_neg)) - stage.tau * s_pos
    loss_b = jnp.logaddexp(stage.tau * s_pos, negatives + log_mean(s_neg.T)) - stage.tau * s_pos
    return jnp.mean(loss_a + loss_b) / 2


def sector_field(y: Float[Array, " 3r+2n"], delta: Float[Array, " 4"], sector, spectra, stage: Stage, kind: str):
    r"""``(F_D, F_chi)``: the field on :math:`\mathcal D` (state coordinates, (3r+2n,)) and on the
    sector's entries ((4,), zero where masked) at ``Q = Q(y) + delta``, exactly.

    The loss gradient comes from :func:`sector_loss`; the field's invariant part is
    :func:`gradient_field` of its :math:`\mathcal D` entries, and the products of the sector's
    entries of ``G`` and ``Q`` are added on the local index set ``[A_1, A_2, B_1, B_2]``, which
    every such product stays in. ``sector = (kinds, slots, rows, state, partner, mask)``, one row
    of :class:`Sectors`; ``spectra = (sigma2_a, sigma2_b, eta2_a, eta2_b)``.
    """
    kinds, slots, rows_q, state, partner, mask = sector
    r = spectra[0].shape[0]
    alpha, beta = traces(y, r)
    s = split(y, r)
    delta = jnp.where(mask, delta, 0.0)
    grads = jax.grad(sector_loss, argnums=(0, 1, 2, 3))(s["p"], alpha, beta, delta, (kinds, slots, mask), stage, kind)
    g_p, g_alpha, g_beta, g_delta = grads
    invariant = gradient_field(y, g_p, g_alpha, g_beta, spectra, stage.gamma)
    d2 = row_variances(spectra)[rows_q]

    y_ext = jnp.append(y, 0.0)
    g_p_ext = jnp.append(g_p, 0.0)
    present = state < y.shape[0]
    is_a = jnp.array([True, True, False, False])
    diag_q = y_ext[state]
    diag_g = jnp.where(present, jnp.where(is_a, g_alpha, g_beta), 0.0)
    pair = partner < y.shape[0]
    q_pair, g_pair = y_ext[partner], g_p_ext[jnp.where(pair, partner - 2 * r, r)] / 2

    first, second = np.array([0, 1]), np.array([2, 3])  # the partner entries (A_i, B_i)

    def local(with_sector):
        q_mat = jnp.diag(diag_q).at[first, second].set(q_pair).at[second, first].set(q_pair)
        g_mat = jnp.diag(diag_g).at[first, second].set(g_pair).at[second, first].set(g_pair)
        if with_sector:
            rows, cols = np.array(ENTRIES).T
            is_cross = jnp.array([False, True, True, False])  # A-B entries carry a loss gradient
            g_delta_sym = jnp.where(is_cross & mask, g_delta / 2, 0.0)
            q_mat = q_mat.at[rows, cols].set(delta).at[cols, rows].set(delta)
            g_mat = g_mat.at[rows, cols].set(g_delta_sym).at[cols, rows].set(g_delta_sym)
        product = d2[:, None] * (g_mat @ q_mat)
        return -2 * stage.gamma * (product + product.T)

    full, invariant_only = local(True), local(False)
    change = full - invariant_only
    dim = y.shape[0]
    correction = jnp.zeros(dim + 1).at[state].add(jnp.diagonal(change))
    correction = correction.at[partner].add(jnp.stack([change[0, 2], change[1, 3]]))
    rows, cols = np.array(ENTRIES).T
    return invariant + correction[:dim], jnp.where(mask, full[rows, cols], 0.0)
