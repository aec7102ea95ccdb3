r"""``dynsim.large_step.gd``: gradient descent on the logistic risk for a whole grid of stepsizes and
seeds in one compiled program, as a labeled xarray Dataset (shared/specs/large_step.md §8).

Every (stepsize, seed) pair is one item of a ``vmap`` sharded over the devices of ``device``;
the program is compiled once per model, data shape and record grid, so a second call with other
stepsizes, data values or seeds reuses it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..engine.config import ConfigError, check_count
from ..engine.infinite import check_solved
from ..engine.runner import check_finite, map_seeds, select_devices
from .dynamics import STATE_METRICS, WINDOW, Problem, flow, record_grid, run
from .model import make_model, radius_of, risk, seed_starts, smoothness, stable_threshold

PER_STEP = (*STATE_METRICS, "increment", "mean_risk")


def check_data(x, y, names=("x", "y"), both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` as float64 arrays, checked: x (n, d) finite, y (n,) of labels ±1 (both classes
    where ``both_classes``); ``names`` are theirs in messages.

    Raises:
        ConfigError: one line naming the first thing wrong.
    """
    x, y = np.asarray(x), np.asarray(y)
    where, label = names
    if x.ndim != 2 or x.shape[0] < 1 or not np.issubdtype(x.dtype, np.number):
        raise ConfigError(f"{where} is invalid: must be a numeric (n, d) matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ConfigError(
            f"{where} is invalid: row {int(np.argwhere(~np.isfinite(x))[0, 0])} is not finite (NaN or Inf)"
        )
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.number):
        raise ConfigError(f"{label} is invalid: must hold one numeric label per row of {where}, shape ({x.shape[0]},)")
    bad = np.flatnonzero((y != 1) & (y != -1))
    if bad.size:
        raise ConfigError(f"{label} is invalid: labels must be +1 or -1, got {float(y[bad[0]])!r} at row {int(bad[0])}")
    if both_classes and np.unique(y).size < 2:
        raise ConfigError(f"{label} is invalid: every label is {y[0]:+g}; both classes are needed")
    return x.astype(np.float64), y.astype(np.float64)


def _check_etas(etas) -> np.ndarray:
    etas = np.atleast_1d(np.asarray(etas, dtype=np.float64))
    if etas.ndim != 1 or etas.size == 0 or not np.all(np.isfinite(etas)) or np.any(etas <= 0):
        raise ConfigError(f"etas = {etas.tolist()!r} is invalid: must be one or more finite stepsizes > 0")
    return etas


def gd(
    x,
    y,
    *,
    etas,
    steps: int,
    model: str = "linear",
    width: int | None = None,
    activation: str = "leaky_softplus",
    c: float = 0.5,
    h: float = 1.0,
    init_scale: float = 0.0,
    seeds: int = 1,
    seed: int = 0,
    at=(),
    flow: bool = False,
    test=None,
    power_iterations: int = 32,
    device: str = "auto",
) -> xr.Dataset:
    r"""Full-batch gradient descent :math:`w_{t+1} = w_t - \eta\nabla L(w_t)` on the logistic risk
    of ``(x, y)``, at every stepsize of ``etas`` and for ``seeds`` initializations, in float64.

    Args:
        x: (n, d) inputs; y: (n,) labels ±1 (both classes).
        etas: the stepsizes η, applied to the trained weights themselves (not η/m).
        steps: the budget T (steps of every run).
        model: ``"linear"`` (f = ⟨w, x⟩) or ``"two_layer"``
            (:math:`f = \frac1m\sum_j a_j\phi(\langle x, w_j\rangle)`).
        width: m of the two-layer net. activation, c, h: φ and its parameters
            (:func:`~dynsim.large_step.activations.activation`).
        init_scale: σ0 of w_0's iid N(0, σ0²) entries (0: w_0 = 0). Seed i draws from
            ``fold_in(fold_in(key(seed), 0), i)``; every stepsize starts from the same w_0.
        at: extra steps to record. The grid (:func:`~dynsim.large_step.dynamics.record_grid`) has
            every step up to 100, then 50 a decade, and ``steps``.
        flow: also solve gradient flow from each w_0 (``flow_risk`` = L_GF(ηt), ``ratio`` =
            L_GD(t) / L_GF(ηt)).
        test: ``(x_test, y_test)`` held out: records hold ``test_accuracy``.
        power_iterations: Hessian-vector products per sharpness estimate (0: not estimated).
        device: ``auto``, ``cpu`` or ``gpu``; the runs are sharded over every device of the kind.

    Returns:
        A Dataset with dims ``(eta, seed, step)``: ``risk`` L, ``gradient_scale`` G, ``margin``
        :math:`\bar\gamma = \min_i y_i f(x_i)/\|w\|`, ``smoothed_margin``
        :math:`\gamma_s = (-\log(nL) - \kappa)/\|w\|`, ``norm`` ‖w‖, ``sharpness``
        :math:`\|\nabla^2L\|` (power iteration), ``increment`` 1/L(w_t) − 1/L(w_{t−1}),
        ``mean_risk`` :math:`\frac1t\sum_{k<t}L(w_k)`, ``neuron_margin`` (…, neuron) of the
        two-layer net, and per run ``threshold`` 1/(4ηH), ``stable_at`` (first step with L at or
        below it), ``last_rise`` (last step with L(w_t) > L(w_{t−1}); −1: none), ``peak_risk``,
        ``weights`` (at the last step) and ``window`` (eta, seed, offset): L at every step
        ``last_rise + offset``, offset −49 … 50. Steps count from 0; ``step`` holds the record
        steps. NaN margins where w = 0.

    Raises:
        ConfigError: invalid data or arguments (one line naming them).
        SimulationDiverged: a run's risk became NaN/Inf (names the stepsize and seed).
        SolverError: with ``flow=True``, the diffrax solve of a seed's flow failed.

    Example:
        >>> import numpy as np
        >>> from dynsim import large_step
        >>> x = np.array([[1.0, 0.2], [-2.0, 0.2], [-1.0, -0.2], [2.0, -0.2]]) / np.sqrt(4.04)
        >>> runs = large_step.gd(x, np.array([1.0, 1.0, -1.0, -1.0]), etas=[1.0, 100.0], steps=1000)
        >>> runs.risk.dims, runs.last_rise.sel(seed=0).values.tolist()
        (('eta', 'seed', 'step'), [-1, 12])
    """
    x, y = check_data(x, y)
    etas = _check_etas(etas)
    steps = check_count("steps", steps, 1)
    seeds = check_count("seeds", seeds, 1)
    seed = check_count("seed", seed, 0)
    if not np.isfinite(init_scale) or init_scale < 0:
        raise ConfigError(f"init_scale = {init_scale!r} is invalid: must be a number >= 0")
    net = make_model(model, width, activation, c, h)
    grid = record_grid(steps, at)
    shared = {"x": x, "y": y}
    if test is not None:
        shared["x_test"], shared["y_test"] = check_data(*test, names=("x_test", "y_test"), both_classes=False)
    radius = radius_of(x)
    problem = Problem(net, tuple(int(s) for s in grid), smoothness(net, radius), power_iterations, test is not None)
    devices = select_devices(device)
    with jax.enable_x64(True):
        starts = seed_starts(net, x.shape[1], init_scale, seed, seeds)
        items = (jnp.tile(starts, (etas.size,) + (1,) * (starts.ndim - 1)), jnp.repeat(jnp.asarray(etas), seeds))
        out = map_seeds(run, items, jax.tree.map(jnp.asarray, shared), problem, devices)
        _check_finite(out["risk"], etas, seeds, grid)
        dataset = _dataset(out, etas, seeds, grid, net, problem, radius, x)
        if flow:
            dataset = dataset.assign(flow_risk=(("eta", "seed", "step"), _flow_risk(net, x, y, starts, etas, grid)))
            dataset["ratio"] = dataset.risk / dataset.flow_risk
    return dataset


def _check_finite(risks: np.ndarray, etas, seeds: int, grid) -> None:
    """The engine's :func:`~dynsim.engine.runner.check_finite` on the seeds of each stepsize in turn."""
    for eta, block in zip(etas, risks.reshape(etas.size, seeds, -1), strict=True):
        never = np.full(seeds, -1)
        hint = "the risk overflowed; lower the stepsize"
        check_finite(never, block, grid, lr=eta, first_seed=0, where=f"stepsize {eta:g}", hint=hint)


def _dataset(out, etas, seeds, grid, net, problem, radius, x) -> xr.Dataset:
    def shaped(a):
        return np.asarray(a).reshape(etas.size, seeds, *np.shape(a)[1:])

    run_dims = ("eta", "seed")
    data = {name: (run_dims + ("step",), shaped(out[name])) for name in PER_STEP}
    if problem.test:
        data["test_accuracy"] = (run_dims + ("step",), shaped(out["test_accuracy"]))
    if net.kind == "two_layer":
        data["neuron_margin"] = (run_dims + ("step", "neuron"), shaped(out["neuron_margin"]))
    weight_dims = ("feature",) if net.kind == "linear" else ("neuron", "feature")
    data["weights"] = (run_dims + weight_dims, shaped(out["final_weights"]))
    for name in ("stable_at", "last_rise", "peak_risk"):
        data[name] = (run_dims, shaped(out[name]))
    data["window"] = (run_dims + ("offset",), shaped(out["window"]))
    data["threshold"] = (("eta",), stable_threshold(etas, problem.smoothness))
    act = net.act
    attrs = {
        "model": net.kind,
        "width": net.width,
        "n": x.shape[0],
        "d": x.shape[1],
        "radius": radius,
        "smoothness": problem.smoothness,
        "activation": "" if act is None else act.name,
        "kappa": 0.0 if act is None else act.kappa,
        "beta": 0.0 if act is None else act.beta,
        "alpha": 1.0 if act is None else act.alpha,
    }
    coords = {"eta": etas, "seed": np.arange(seeds), "step": grid, "offset": np.arange(-WINDOW + 1, WINDOW + 1)}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _flow_solve(net, x, y, w0, taus):
    return jax.vmap(lambda w: risk(net, w, x, y))(flow(net, x, y, w0, taus))


_flow_solves = jax.jit(jax.vmap(_flow_solve, in_axes=(None, None, None, 0, None)), static_argnums=0)


def _flow_risk(net, x, y, starts, etas, grid) -> np.ndarray:
    """L_GF(η t) of every seed's flow at every record of every stepsize: one solve per seed."""
    taus = (etas[:, None] * grid[None, :].astype(np.float64)).ravel()
    order = np.argsort(taus, kind="stable")
    risks = np.asarray(_flow_solves(net, jnp.asarray(x), jnp.asarray(y), starts, jnp.asarray(taus[order])))
    check_solved(risks, taus[order], 0, "the gradient flow")
    unsorted = np.empty_like(risks)
    unsorted[:, order] = risks
    return unsorted.reshape(starts.shape[0], etas.size, grid.size).transpose(1, 0, 2)
