r"""Biased, debiased and unbiased InfoNCE on an augmentation graph (spec §4, Chuang et al. 2020).

Every loss reads unit-norm embeddings (:func:`unit`) and a temperature ``t``; similarities
:math:`s = f(x)^T f(x')` lie in ``[-1, 1]``, so every exponential is evaluated shifted by
:math:`e^{-1/t}` (its largest value is 1) and nothing overflows at small ``t``.

- :func:`infonce`: :math:`\mathrm{mean}_i -\log \frac{e^{s_i^+/t}}{e^{s_i^+/t} + \sum_{j\le N}
  e^{s_{ij}/t}}`. Negatives drawn from the marginal p give the *biased* loss (Eq. 1 with a
  temperature); drawn from :math:`p^-_x` (other classes only, with true labels) the *unbiased*
  oracle.
- :func:`debiased_g`, :func:`debiased`: the estimator
  :math:`g = \max\{\frac{1}{\tau^-}[\frac1N\sum_i e^{s(u_i)/t} - \tau^+\frac1M\sum_j e^{s(v_j)/t}],
  e^{-1/t}\}` with :math:`u_i \sim p`, :math:`v_j \sim p^+_x`, and
  :math:`-\log \frac{e^{s^+/t}}{e^{s^+/t} + N g}`.
- :func:`in_batch`: the official code's form (DCL ``main.py``): two views of B data, all 2B
  views anchors, the 2B − 2 views of the other data negatives (N = 2B − 2), the positive reused
  as the single v (M = 1).

:func:`expectations` gives the exact :math:`\mathbb E_p, \mathbb E_{p^+}, \mathbb E_{p^-}` of
:math:`e^{s/t}` for one anchor by summing over the graph's natural points and augmentations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import ConfigError
from ..engine.types import Array, Float
from .graph import Graph


def unit(z: Float[Array, "*batch k"]) -> Float[Array, "*batch k"]:
    """Rows of ``z`` scaled to unit norm, f(x) / ‖f(x)‖."""
    return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


def _shifted_exp(s, t):
    r""":math:`e^{(s - 1)/t} = e^{s/t} e^{-1/t}`, at most 1 for :math:`s \le 1`."""
    return jnp.exp((s - 1.0) / t)


def infonce(
    anchor: Float[Array, "B k"], positive: Float[Array, "B k"], negatives: Float[Array, "B N k"], t
) -> Float[Array, ""]:
    r"""InfoNCE with explicit negatives, :math:`\mathrm{mean}_i \big[\log(e^{s^+_i/t} + \sum_j
    e^{s_{ij}/t}) - s^+_i/t\big]` (biased with negatives from p, the unbiased oracle with negatives
    from :math:`p^-_x`)."""
    pos = jnp.sum(anchor * positive, axis=-1) / t
    neg = jax.nn.logsumexp(jnp.einsum("bk,bnk->bn", anchor, negatives) / t, axis=1)
    return jnp.mean(jnp.logaddexp(pos, neg) - pos)


def debiased_g(
    anchor: Float[Array, "B k"],
    negatives: Float[Array, "B N k"],
    same_class: Float[Array, "B M k"],
    t,
    tau_plus,
    clip: bool = True,
) -> Float[Array, " B"]:
    r"""The estimator :math:`g e^{-1/t}` of every anchor, shifted by :math:`e^{-1/t}`:
    :math:`\frac{1}{\tau^-}[\frac1N\sum_i e^{(s(u_i)-1)/t} - \tau^+\frac1M\sum_j e^{(s(v_j)-1)/t}]`,
    clipped below at :math:`e^{-2/t}` (``clip``: the clip :math:`g \ge e^{-1/t}`).

    Without the clip and with ``same_class`` truly drawn from :math:`p^+_x`, its mean is
    :math:`\mathbb E_{x^-\sim p^-_x}[e^{s/t}]\,e^{-1/t}` when :math:`\tau^+` is the anchor's
    class probability (tests/spectral/test_debiased.py holds it against :func:`expectations`).
    """
    negative = jnp.mean(_shifted_exp(jnp.einsum("bk,bnk->bn", anchor, negatives), t), axis=1)
    positive = jnp.mean(_shifted_exp(jnp.einsum("bk,bmk->bm", anchor, same_class), t), axis=1)
    return estimate(negative, positive, t, tau_plus, clip)


def estimate(negative, positive, t, tau_plus, clip: bool = True):
    r"""g shifted by :math:`e^{-1/t}` from the shifted means over the u's (``negative``) and the v's
    (``positive``): :math:`(\text{negative} - \tau^+\,\text{positive}) / \tau^-`, clipped below
    at :math:`e^{-2/t}` (``clip``)."""
    g = (negative - tau_plus * positive) / (1.0 - tau_plus)
    return jnp.maximum(g, jnp.exp(-2.0 / t)) if clip else g


def anchor_losses(pos, total):
    r""":math:`-\log \frac{\mathrm{pos}}{\mathrm{pos} + \mathrm{total}}` of every anchor, from its
    positive term and its weighted negative term (both shifted alike)."""
    return jnp.log(pos + total) - jnp.log(pos)


def debiased(anchor: Float[Array, "B k"], positive: Float[Array, "B k"], g: Float[Array, " B"], count: int, t):
    r""":math:`L^{N,M}_{\mathrm{Debiased}} = \mathrm{mean}_i -\log \frac{e^{s^+_i/t}}{e^{s^+_i/t} + N g_i}`
    from the shifted estimates ``g`` of :func:`debiased_g` and the number of negatives N = ``count``."""
    pos = _shifted_exp(jnp.sum(anchor * positive, axis=-1), t)
    return jnp.mean(anchor_losses(pos, count * g))


def in_batch(
    view_1: Float[Array, "B k"], view_2: Float[Array, "B k"], t, tau_plus=None, clip: bool = True
) -> Float[Array, ""]:
    r"""The official code's loss on two views of B data (DCL ``main.py``); ``tau_plus=None`` the
    biased InfoNCE.

    All 2B views are anchors; an anchor's negatives are the 2B − 2 views of the other data
    (N = 2B − 2), its positive the other view of its datum, reused as the one v (M = 1):
    ``Ng = max((−τ⁺ N pos + Σ neg) / (1 − τ⁺), N e^{−1/t})`` (``Σ neg`` when biased), loss the
    mean of :math:`-\log(\mathrm{pos} / (\mathrm{pos} + N_g))`.
    """
    batch = view_1.shape[0]
    count = 2 * batch - 2
    views = jnp.concatenate([view_1, view_2])
    partner = jnp.concatenate([jnp.arange(batch, 2 * batch), jnp.arange(batch)])
    others = ~jnp.eye(2 * batch, dtype=bool) & (jnp.arange(2 * batch)[None, :] != partner[:, None])
    neg = jnp.sum(jnp.where(others, _shifted_exp(views @ views.T, t), 0.0), axis=1)
    pos = _shifted_exp(jnp.tile(jnp.sum(view_1 * view_2, axis=-1), 2), t)
    if tau_plus is None:
        total = neg
    else:
        total = (neg - tau_plus * count * pos) / (1.0 - tau_plus)
        if clip:
            total = jnp.maximum(total, count * jnp.exp(-2.0 / t))
    return jnp.mean(anchor_losses(pos, total))


def class_prior(graph: Graph) -> np.ndarray:
    """(r,) P(y = c) = Σ_{x̄: y(x̄) = c} P(x̄), the class probabilities τ_c."""
    return np.bincount(graph.labels, weights=graph.prior, minlength=graph.num_classes)


def expectations(graph: Graph, similarity: np.ndarray, t: float) -> dict[str, np.ndarray]:
    r"""Exact :math:`\mathbb E[e^{s(x, x')/t}]` over the three distributions of x' for anchors x,
    ``similarity[..., x']`` = s(x, x') for every augmented point x':

    - ``"p"`` (...,): :math:`x' \sim p`, a natural point drawn from P and augmented by A;
    - ``"same"`` (..., r): :math:`x' \sim p^+_c` for each class c, the natural point drawn from P
      given y = c;
    - ``"other"`` (..., r): :math:`x' \sim p^-_c`, drawn from P given y ≠ c.

    Sums over the natural points and the augmentation kernel (``graph.aug``), float64.
    """
    values = np.exp(np.asarray(similarity, np.float64) / t)
    members = np.eye(graph.num_classes)[graph.labels] * graph.prior[:, None]  # (N̄, r) P(x̄) 1[y(x̄) = c]
    augmented = values @ graph.aug.T  # E[e^{s/t} | x̄], per natural point
    mass = members.sum(axis=0)
    total = augmented @ graph.prior
    same = augmented @ members
    with np.errstate(divide="ignore", invalid="ignore"):  # one class: no other class, NaN
        other = (total[..., None] - same) / (1.0 - mass)
    return {"p": total, "same": same / mass, "other": other}


def natural_sampler(graph: Graph):
    """Samplers of natural points by class, for a family graph (P uniform over its N̄ points).

    Returns ``(marginal, same, other)``: ``marginal(key, shape)`` draws x̄ ∼ P;
    ``same(key, classes)`` and ``other(key, classes)`` draw, for each entry c of ``classes``, x̄ ∼ P
    given y = c, and given y ≠ c (exact integer arithmetic: a draw never lands in the wrong class).

    Raises:
        ConfigError: a user graph (``file``), which has no natural data to augment.
    """
    if graph.family == "file":
        raise ConfigError(
            "the InfoNCE losses draw natural points and augment them; graph.family = 'file' has no natural data: "
            "use 'hsbm' or 'ring'"
        )
    order = np.argsort(graph.labels, kind="stable")
    counts = np.bincount(graph.labels, minlength=graph.num_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    order, counts, starts = jnp.asarray(order), jnp.asarray(counts), jnp.asarray(starts)
    size = graph.num_nodes

    def index(u, count):  # ⌊u·count⌋ for u ∈ [0, 1), clipped against rounding up to count
        return jnp.minimum((u * count).astype(jnp.int32), count - 1)

    def marginal(key, shape):
        return index(jax.random.uniform(key, shape), size)

    def same(key, classes):
        u = jax.random.uniform(key, classes.shape)
        return order[starts[classes] + index(u, counts[classes])]

    def other(key, classes):
        j = index(jax.random.uniform(key, classes.shape), size - counts[classes])
        return order[jnp.where(j < starts[classes], j, j + counts[classes])]

    return marginal, same, other
