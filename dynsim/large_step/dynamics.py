r"""Gradient descent at any stepsize on the logistic risk, and gradient flow as its limit
(shared/specs/large_step.md §4, §8), in float64.

One run is :math:`w_{t+1} = w_t - \eta \nabla L(w_t)` from :math:`w_0`, observed at given record
steps; between two records the steps run in a ``fori_loop`` inside one ``lax.scan`` over the
records, so any record grid (dense early, logarithmic later) costs the same program. Every
step also feeds reductions no record grid can give: the first step meeting the stable-phase
threshold (:func:`~dynsim.large_step.model.stable_threshold`), the last step at which the risk
rose, the peak risk, the running average of the risk (E1's left side) and the risk at every
step within ``WINDOW`` steps of the last rise. A grid of stepsizes and seeds is a ``vmap`` of
one run, sharded over devices (:func:`dynsim.engine.runner.map_seeds`).

Gradient flow :math:`dw/d\tau = -\nabla L(w)`, the limit of gradient descent at
:math:`\tau = \eta t`, is one adaptive diffrax solve per start (:func:`flow`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.integrate import integrate, resolve_solver
from ..engine.types import Array, Float
from .model import Model, defect, gradient_scale, margins, neuron_margins, norm, risk, stable_threshold

WINDOW = 50  # risks kept on each side of the last increase
RISE_TOLERANCE = 1e-13  # a relative rise below this is rounding, not a rise
FLOW_RTOL, FLOW_ATOL, FLOW_MAX_STEPS = 1e-10, 1e-12, 2**18
STATE_METRICS = ("risk", "gradient_scale", "margin", "smoothed_margin", "norm", "sharpness")  # of state_metrics


class Problem(NamedTuple):
    """What one compiled program of gradient descent is for (static, hashable).

    Attributes:
        model: the predictor. record: the record steps, increasing from 0.
        smoothness: H of :func:`~dynsim.large_step.model.smoothness`, for the threshold 1/(4ηH).
        power_iterations: Hessian-vector products per sharpness estimate (0: none).
        test: whether the shared arrays hold a test set (records then hold ``test_accuracy``).
        trace: whether records hold the weights (``weights``, flattened).
    """

    model: Model
    record: tuple[int, ...]
    smoothness: float
    power_iterations: int = 32
    test: bool = False
    trace: bool = False


class Carry(NamedTuple):
    """The state between two steps: w_t, the reductions over L(w_0), ..., L(w_{t−1})."""

    w: Array
    step: Array
    previous: Array  # L(w_{t-1})
    risk_sum: Array  # sum of L(w_k), k < t
    peak: Array  # max of L(w_k), k < t
    stable_at: Array  # first k with L(w_k) <= 1/(4 eta H), -1 if none yet
    last_rise: Array  # last k with L(w_k) > L(w_{k-1}), -1 if none
    ring: Array  # L(w_k) of the last WINDOW steps, at k % WINDOW
    before: Array  # L(w_k), k = last_rise - WINDOW + 1 .. last_rise
    after: Array  # L(w_k), k = last_rise + 1 .. last_rise + WINDOW


def record_grid(steps: int, at=(), dense: int = 100, per_decade: int = 50) -> np.ndarray:
    r"""Record steps: every step up to ``dense``, then :math:`\lfloor 10^{2 + j/\text{per\_decade}}\rceil`
    (``per_decade`` a decade) up to ``steps``, the last step, and the steps of ``at``."""
    grid = np.arange(min(dense, steps) + 1)
    decades = np.log10(max(steps, 1)) - np.log10(dense)
    if decades > 0:
        exponents = np.log10(dense) + np.arange(1, int(np.ceil(decades * per_decade)) + 1) / per_decade
        grid = np.concatenate([grid, np.rint(10.0**exponents).astype(np.int64)])
    extra = np.asarray(list(at), dtype=np.int64)
    grid = np.concatenate([grid, extra, [steps]])
    return np.unique(grid[(grid >= 0) & (grid <= steps)])


def sharpness(model: Model, w: Array, x, y, iterations: int) -> Float[Array, ""]:
    r""":math:`\|\nabla^2 L(w)\|` by power iteration on Hessian-vector products (``jvp`` of the
    gradient) from a fixed start; converges from below. NaN when ``iterations = 0``."""
    if iterations == 0:
        return jnp.full((), jnp.nan, w.dtype)
    gradient = jax.grad(lambda v: risk(model, v, x, y))

    def product(v):
        return jax.jvp(gradient, (w,), (v,))[1]

    def iterate(_, v):
        hv = product(v)
        return hv / (norm(hv) + jnp.finfo(w.dtype).tiny)

    start = jax.random.normal(jax.random.PRNGKey(0), w.shape, w.dtype)
    v = jax.lax.fori_loop(0, iterations, iterate, start / norm(start))
    return norm(product(v))


def state_metrics(model: Model, w: Array, x, y, iterations: int) -> dict:
    r"""What a state w shows, for gradient descent and gradient flow alike: ``risk`` L, ``gradient_scale``
    G, ``margin`` :math:`\bar\gamma = \min_i y_i f(x_i)/\|w\|`, ``smoothed_margin``
    :math:`\gamma_s = (-\log(nL) - \kappa)/\|w\|` (both NaN at w = 0), ``norm`` ‖w‖, ``sharpness``
    (:func:`sharpness`) and ``neuron_margin`` (:func:`~dynsim.large_step.model.neuron_margins`)."""
    q = margins(model, w, x, y)
    size = norm(w)
    safe = jnp.where(size > 0, size, jnp.nan)
    current = jnp.mean(jnp.logaddexp(0.0, -q))
    return {
        "risk": current,
        "gradient_scale": gradient_scale(q),
        "margin": q.min() / safe,
        "smoothed_margin": (-jnp.log(x.shape[0] * current) - defect(model)) / safe,
        "norm": size,
        "sharpness": sharpness(model, w, x, y, iterations),
        "neuron_margin": neuron_margins(model, w, x, y),
    }


def observe(problem: Problem, carry: Carry, shared) -> dict:
    """The observables of :func:`~dynsim.large_step.gd` at one record: :func:`state_metrics`, the
    increment 1/L(w_t) − 1/L(w_{t−1}), the average risk of the steps so far, the test accuracy."""
    x, y, t = shared["x"], shared["y"], carry.step
    out = state_metrics(problem.model, carry.w, x, y, problem.power_iterations)
    current = out["risk"]
    out["increment"] = jnp.where(t > 0, 1.0 / current - 1.0 / carry.previous, jnp.nan)
    out["mean_risk"] = jnp.where(t > 0, carry.risk_sum / jnp.maximum(t, 1), jnp.nan)
    if problem.test:
        out["test_accuracy"] = jnp.mean(margins(problem.model, carry.w, shared["x_test"], shared["y_test"]) > 0)
    if problem.trace:
        out["weights"] = carry.w.ravel()
    return out


def absorb(carry: Carry, current, threshold) -> Carry:
    """``carry`` with L(w_t) = ``current`` added to its reductions (step t = ``carry.step``)."""
    t = carry.step
    rose = (t > 0) & (current > carry.previous * (1 + RISE_TOLERANCE))
    ring = carry.ring.at[t % WINDOW].set(current)
    since = t - carry.last_rise
    index = jnp.clip(since - 1, 0, WINDOW - 1)
    keep = (carry.last_rise >= 0) & (since >= 1) & (since <= WINDOW)
    after = carry.after.at[index].set(jnp.where(keep, current, carry.after[index]))
    return carry._replace(
        previous=current,
        risk_sum=carry.risk_sum + current,
        peak=jnp.maximum(carry.peak, current),
        stable_at=jnp.where((carry.stable_at < 0) & (current <= threshold), t, carry.stable_at),
        last_rise=jnp.where(rose, t, carry.last_rise),
        ring=ring,
        before=jnp.where(rose, jnp.roll(ring, -((t + 1) % WINDOW)), carry.before),
        after=jnp.where(rose, jnp.nan, after),
    )


def run(item, shared, problem: Problem) -> dict:
    """One gradient-descent run: ``item = (w0, eta)``; records at ``problem.record`` and the reductions."""
    w0, eta = item
    model, x, y = problem.model, shared["x"], shared["y"]
    threshold = stable_threshold(eta, problem.smoothness)
    value_and_grad = jax.value_and_grad(lambda w: risk(model, w, x, y))

    def step(_, carry):
        current, gradient = value_and_grad(carry.w)
        carry = absorb(carry, current, threshold)
        return carry._replace(w=carry.w - eta * gradient, step=carry.step + 1)

    def chunk(carry, length):
        carry = jax.lax.fori_loop(0, length, step, carry)
        return carry, observe(problem, carry, shared)

    nan = jnp.full((WINDOW,), jnp.nan, w0.dtype)
    zero, minus = jnp.zeros((), w0.dtype), jnp.full((), -1, jnp.int32)
    carry = Carry(
        w0, jnp.zeros((), jnp.int32), zero, zero, jnp.full((), -jnp.inf, w0.dtype), minus, minus, nan, nan, nan
    )
    first = observe(problem, carry, shared)
    gaps = jnp.asarray(np.diff(problem.record), jnp.int32)
    carry, records = jax.lax.scan(chunk, carry, gaps)
    records = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, records)
    carry = absorb(carry, records["risk"][-1], threshold)  # the last step's risk joins the reductions
    return records | {
        "final_weights": carry.w,
        "stable_at": carry.stable_at,
        "last_rise": carry.last_rise,
        "peak_risk": carry.peak,
        "window": jnp.concatenate([carry.before, carry.after]),
    }


def flow(model: Model, x, y, w0: Array, taus: Float[Array, " T"]) -> Array:
    r"""Gradient flow :math:`dw/d\tau = -\nabla L(w)` from ``w0``, the weights at the increasing
    times ``taus`` (diffrax Tsit5, rtol 1e-10, atol 1e-12), (T, *w.shape); NaN where the
    solve failed (the caller reports it)."""
    gradient = jax.grad(lambda w: risk(model, w, x, y))
    out = integrate(
        lambda t, w, args: -gradient(w),
        w0,
        None,
        taus,
        taus[-1],
        None,
        solver=resolve_solver(None),
        rtol=FLOW_RTOL,
        atol=FLOW_ATOL,
        max_steps=FLOW_MAX_STEPS,
    )
    return jnp.where(out.succeeded, out.ys, jnp.nan)
