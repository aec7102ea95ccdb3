r"""How far the debiased loss is from its target, by sampling against exact expectations (spec §4).

For a fixed embedding f on an augmentation graph, every expectation over the data is a finite
sum (:func:`~dynsim.spectral.debiased.expectations`), so the target of the estimator is known per
anchor. One draw is a natural point x̄ ∼ P, its two augmentations x (anchor) and x⁺ (positive),
class c = y(x̄), and with :math:`\mathrm{pos} = e^{s(x,x^+)/t}` and weight Q:

- the *reference*
  :math:`\tilde\ell^Q = -\log\frac{\mathrm{pos}}{\mathrm{pos} + Q\,\mathbb E_{x^-\sim p^-_c}[e^{s(x,x^-)/t}]}`,
  the asymptotic loss :math:`\tilde L^Q` of Chuang et al. (the mean of :math:`\tilde\ell^Q`);
- the *debiased* :math:`\ell^{N,M} = -\log\frac{\mathrm{pos}}{\mathrm{pos} + Q g}` with g from N
  draws u ∼ p and M draws v (same class, or augmentations of x̄ itself: ``positives``), clipped;
- the *unbiased* :math:`\ell^N_{\mathrm{unb}}`, with Q times the mean of :math:`e^{s/t}` over N
  draws from :math:`p^-_c`.

``negatives=None`` or ``same=None`` puts the exact expectation in place of the sample mean
(N or M = ∞). The paper's loss has Q = N (``weight=None``).

What to expect [D]: :math:`\ell^{N,M}` is a smooth function of g (for g above the clip), and g
is a mean of N and M independent terms, so the typical deviation
:math:`\mathbb E|\ell^{N,M} - \tilde\ell^Q|` falls like :math:`N^{-1/2}` and :math:`M^{-1/2}`
(the rate of the bound in Chuang et al., Theorem 3) while the bias of the mean,
:math:`\mathbb E[\ell^{N,M}] - \tilde L^Q`, is second order (Jensen) and falls like
:math:`N^{-1}` and :math:`M^{-1}`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.compare import fit_slope
from .debiased import anchor_losses, estimate, expectations, natural_sampler
from .graph import Graph, augmenter

QUANTITIES = ("bias", "deviation", "unbiased_bias")


def _similarity(phi: np.ndarray) -> np.ndarray:
    """s(x, x') = f(x)ᵀf(x') of the unit-normalized rows of Φ, float64."""
    f = np.asarray(phi, np.float64)
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    return f @ f.T


def _tables(graph: Graph, phi: np.ndarray, t: float):
    """Shifted tables, all times e^{-1/t}: e^{s/t} (N, N); the exact E_p (N,), E_{p⁺_c} and
    E_{p⁻_c} (N, r) of e^{s(x, ·)/t} per anchor x and class c; E[e^{s(x, ·)/t} | x̄] (N, N̄)."""
    similarity = _similarity(phi)
    exact = expectations(graph, similarity, t)
    shift = np.exp(-1.0 / t)
    shifted = np.exp((similarity - 1.0) / t)
    return (
        jnp.asarray(shifted),
        jnp.asarray(exact["p"] * shift),
        jnp.asarray(exact["same"] * shift),
        jnp.asarray(exact["other"] * shift),
        jnp.asarray(shifted @ graph.aug.T),  # (N, N̄): E[e^{(s−1)/t} | x̄]
    )


@functools.partial(jax.jit, static_argnames=("graph", "weight", "negatives", "same", "positives", "chunk", "chunks"))
def _sample(key, tables, tau_plus, t, *, graph, weight, negatives, same, positives, chunk, chunks):
    values, over_p, over_same, over_other, over_datum = tables
    marginal, same_class, other_class = natural_sampler(graph)
    augment, labels = augmenter(graph), jnp.asarray(graph.labels)

    def mean_over(key, x, xbar):  # mean of e^{(s(x, x')−1)/t} over augmentations of the natural points xbar
        return jnp.mean(values[x[:, None], augment(key, xbar)], axis=1)

    def one_chunk(key):
        keys = jax.random.split(key, 9)
        xbar = marginal(keys[0], (chunk,))
        c = labels[xbar]
        x, x_plus = augment(keys[1], xbar), augment(keys[2], xbar)
        pos = values[x, x_plus]
        reference = anchor_losses(pos, weight * over_other[x, c])
        if negatives is None:
            u = over_p[x]
        else:
            u = mean_over(keys[3], x, marginal(keys[4], (chunk, negatives)))
        if same is None:
            v = over_same[x, c] if positives == "class" else over_datum[x, xbar]
        else:
            owners = (
                same_class(keys[5], jnp.repeat(c[:, None], same, axis=1))
                if positives == "class"
                else jnp.repeat(xbar[:, None], same, axis=1)
            )
            v = mean_over(keys[6], x, owners)
        debiased = anchor_losses(pos, weight * estimate(u, v, t, tau_plus))
        if negatives is None:
            unbiased = reference
        else:
            drawn = other_class(keys[7], jnp.repeat(c[:, None], negatives, axis=1))
            unbiased = anchor_losses(pos, weight * mean_over(keys[8], x, drawn))
        difference = debiased - reference
        drawn = jnp.stack([difference, jnp.abs(difference), unbiased - reference])  # one row per QUANTITIES
        return jnp.stack([jnp.mean(drawn, axis=1), jnp.mean(drawn**2, axis=1)])

    return jax.lax.map(one_chunk, jax.random.split(key, chunks))


def sample_bias(
    graph: Graph,
    phi: np.ndarray,
    *,
    t: float,
    tau_plus: float,
    negatives: int | None,
    same: int | None,
    weight: float | None = None,
    positives: str = "class",
    draws: int = 65536,
    chunk: int = 1024,
    key: jax.Array | None = None,
) -> dict[str, float]:
    r"""Monte Carlo over ``draws`` anchors (in float64) of the debiased and unbiased losses against
    the reference :math:`\tilde\ell^Q` of the same anchor and positive (module docstring).

    Args:
        graph: a family graph (natural points to draw).
        phi: (N, k) embedding of every node, normalized here to unit rows.
        t: temperature; tau_plus: the estimator's class prior τ⁺ in [0, 1).
        negatives: N, draws u ∼ p (and from p⁻ for the unbiased loss); None: the exact expectation.
        same: M, draws v; None: the exact expectation.
        weight: Q; None: Q = N (``negatives`` must then be a number).
        positives: ``"class"`` (v ∼ p⁺_c, the estimator's assumption) or ``"datum"`` (v an
            augmentation of the anchor's own x̄, what practice does).
        draws, chunk: anchors in all and per compiled chunk (``draws`` rounds up to chunks).
        key: PRNG key; default ``PRNGKey(0)``.

    Returns:
        ``bias`` :math:`\mathbb E[\ell^{N,M} - \tilde\ell^Q]`, ``deviation``
        :math:`\mathbb E|\ell^{N,M} - \tilde\ell^Q|`, ``unbiased_bias``
        :math:`\mathbb E[\ell^N_{\mathrm{unb}} - \tilde\ell^Q]`, each with its standard error
        over the draws (``<name>_se``), and ``reference`` :math:`\tilde L^Q` exact.

    Raises:
        ValueError: an argument out of its range, named.
    """
    if weight is None:
        if negatives is None:
            raise ValueError("weight Q is required when negatives is None (N = ∞)")
        weight = float(negatives)
    checks = (
        ("t", t, t >= 0.01, ">= 0.01 (e^{s/t} is evaluated unshifted in the exact expectations)"),
        ("tau_plus", tau_plus, 0 <= tau_plus < 1, "in [0, 1)"),
        ("positives", positives, positives in ("class", "datum"), "'class' or 'datum'"),
        ("weight", weight, weight > 0, "> 0"),
    )
    for name, value, holds, allowed in checks:
        if not holds:
            raise ValueError(f"{name} = {value!r} is invalid: must be {allowed}")
    chunks = max(1, -(-draws // chunk))
    key = jax.random.PRNGKey(0) if key is None else key
    with jax.enable_x64(True):
        tables = _tables(graph, phi, t)
        per_chunk = np.asarray(
            _sample(
                key,
                tables,
                tau_plus,
                t,
                graph=graph,
                weight=float(weight),
                negatives=negatives,
                same=same,
                positives=positives,
                chunk=chunk,
                chunks=chunks,
            )
        )
    out = {"reference": reference_loss(graph, phi, t, weight)}
    mean, square = per_chunk.mean(axis=0)  # (chunks, 2, quantities) -> first and second moments
    total = chunks * chunk
    for name, first, second in zip(QUANTITIES, mean, square, strict=True):
        out[name] = float(first)
        out[f"{name}_se"] = float(np.sqrt(max(second - first**2, 0.0) / (total - 1)))
    return out


def reference_loss(graph: Graph, phi: np.ndarray, t: float, weight: float) -> float:
    r""":math:`\tilde L^Q = \sum_{\bar x} P(\bar x) \sum_{x, x^+} A(x|\bar x) A(x^+|\bar x)
    \log\big(1 + Q\,\mathbb E_{p^-_{y(\bar x)}}[e^{s(x,\cdot)/t}] / e^{s(x,x^+)/t}\big)`, by
    enumerating every natural point and pair of augmentations (float64)."""
    similarity = _similarity(phi)
    other = expectations(graph, similarity, t)["other"][:, graph.labels]  # (N, N̄) at the class of x̄
    loss = np.log1p(weight * other[:, :, None] / np.exp(similarity / t)[:, None, :])  # (x, x̄, x⁺)
    return float(np.einsum("b,bx,by,xby->", graph.prior, graph.aug, graph.aug, loss))


def bias_curve(graph: Graph, phi: np.ndarray, axis: str, values, **options) -> dict:
    """:func:`sample_bias` at every value of ``axis`` (``"negatives"`` or ``"same"``), and the
    fitted log-log slope of each of ``deviation``, ``|bias|`` and ``|unbiased_bias|`` against it.

    Returns:
        ``{"values", "rows", "slopes": {name: (slope, (low, high))}}``; a slope is NaN unless the
        quantity stands at least 3 standard errors from 0 at every value (no bias to fit, or
        sampling noise as large as it) and there are 3 values or more.
    """
    rows = [sample_bias(graph, phi, **options, **{axis: int(value)}) for value in values]
    slopes = {}
    for name in QUANTITIES:
        magnitude = np.abs([row[name] for row in rows])
        resolved = magnitude > 3 * np.array([row[f"{name}_se"] for row in rows])
        if np.all(resolved) and len(values) > 2:
            slopes[name] = fit_slope(np.asarray(values, float), magnitude[:, None])
        else:
            slopes[name] = (float("nan"), (float("nan"), float("nan")))
    return {"values": list(values), "rows": rows, "slopes": slopes}
