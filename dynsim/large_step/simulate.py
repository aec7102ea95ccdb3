r"""The large-step system's runs as the engine sweeps them: gradient descent at one stepsize
(:func:`simulate`) and gradient flow (:func:`solve`), on the gradient-flow time grid
τ = η × step every ``run.record_every``, so that the stepsizes of a sweep and the flow share
their records and the comparison measures the Euler error, linear in η at fixed τ.

Seed ``i`` starts from the w_0 of ``fold_in(fold_in(key(run.seed), 0), i)`` at every stepsize,
as in :func:`dynsim.large_step.gd`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import check_count
from ..engine.infinite import check_solved
from ..engine.runner import check_finite, map_seeds, record_steps, select_devices
from ..engine.schedule import steps_per_record
from .config import LargeStepConfig, training_set
from .dynamics import STATE_METRICS, Problem, flow, run, state_metrics
from .model import radius_of, seed_starts, smoothness

COORDINATE_DIMS = {"weights": "parameter"}
METRICS = STATE_METRICS


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Records of every seed: ``times`` τ = η × step (T,), ``weights`` w flattened (seeds, T, P),
    ``metrics`` (:data:`METRICS`, each (seeds, T); :func:`~dynsim.large_step.dynamics.state_metrics`)."""

    times: np.ndarray
    weights: np.ndarray
    metrics: dict[str, np.ndarray]


def _starts(config: LargeStepConfig, seeds: int, first_seed: int):
    d = training_set(config.data).x.shape[1]
    return seed_starts(config.model.predictor, d, config.model.init_scale, config.run.seed, seeds, first_seed)


def _checked(seeds, first_seed) -> tuple[int, int]:
    return check_count("seeds", seeds, 1), check_count("first_seed", first_seed, 0)


def record_times(config: LargeStepConfig) -> np.ndarray:
    """τ of the records: every ``run.record_every`` up to ``train.duration``."""
    every = steps_per_record(config.run.record_every, config.train.eta)
    return record_steps(config.steps, every) * config.train.eta


def _problem(config: LargeStepConfig, steps) -> Problem:
    model, x = config.model.predictor, training_set(config.data).x
    record = tuple(int(s) for s in steps)
    return Problem(model, record, smoothness(model, radius_of(x)), config.train.power_iterations, trace=True)


def simulate(config: LargeStepConfig, seeds: int | None = None, first_seed: int = 0) -> Trajectory:
    """Gradient descent at ``train.eta`` for ``seeds`` seeds, recorded every ``run.record_every`` of τ.

    Raises:
        SimulationDiverged: a seed's risk became NaN/Inf (names the seed, step and τ).
    """
    seeds, first_seed = _checked(config.run.seeds if seeds is None else seeds, first_seed)
    data, eta = training_set(config.data), config.train.eta
    steps = record_steps(config.steps, steps_per_record(config.run.record_every, eta))
    shared = {"x": data.x, "y": data.y}
    with jax.enable_x64(True):
        items = (_starts(config, seeds, first_seed), jnp.full((seeds,), eta))
        devices = select_devices(config.run.device)
        out = map_seeds(run, items, jax.tree.map(jnp.asarray, shared), _problem(config, steps), devices)
    where = f"stepsize {eta:g}"
    check_finite(np.full(seeds, -1), out["risk"], steps, lr=eta, first_seed=first_seed, where=where, hint="lower it")
    return Trajectory(steps * eta, out["weights"], {name: out[name] for name in METRICS})


def solve(config: LargeStepConfig, seeds: int | None = None, first_seed: int = 0) -> Trajectory:
    r"""Gradient flow :math:`dw/d\tau = -\nabla L(w)` of every seed from the w_0 its gradient-descent
    runs start from, on their record times (diffrax, float64).

    Raises:
        SolverError: the solve failed for some seed.
    """
    seeds, first_seed = _checked(config.run.seeds if seeds is None else seeds, first_seed)
    data, model = training_set(config.data), config.model.predictor
    times = record_times(config)
    iterations = config.train.power_iterations
    with jax.enable_x64(True):
        x, y = jnp.asarray(data.x), jnp.asarray(data.y)
        states = jax.vmap(lambda w0: flow(model, x, y, w0, jnp.asarray(times)))(_starts(config, seeds, first_seed))
        records = jax.vmap(jax.vmap(lambda w: state_metrics(model, w, x, y, iterations)))(states)
        records = jax.tree.map(np.asarray, records)
    check_solved(records["risk"], times, first_seed, "the gradient flow")
    weights = np.asarray(states).reshape(seeds, times.size, -1)
    return Trajectory(times, weights, {name: records[name] for name in METRICS})
