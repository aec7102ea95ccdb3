"""The practical system's runs as the engine sweeps them: both heads trained with one loss for a
chunk of seeds (:mod:`dynsim.practical.training`).

Seed ``i`` has the key ``fold_in(fold_in(run_key, 0), i)`` with every loss: the same split, the
same initial heads and the same batches, so the losses differ in nothing else.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import ConfigError, check_count, fail
from ..engine.runner import check_finite, map_seeds, record_steps, seed_keys, select_devices
from .config import LOSS_KINDS, DataConfig, PracticalConfig
from .data import Pairs, feature_files, multifeature
from .training import Problem, metric_names, run

COORDINATE_DIMS = {"spectrum_a": "component", "spectrum_b": "component"}


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Records of every seed: ``times`` the step counts (T,), ``spectrum_a``, ``spectrum_b``
    (seeds, T, q) the covariance eigenvalues, ``metrics`` name -> (seeds, T)."""

    times: np.ndarray
    spectrum_a: np.ndarray
    spectrum_b: np.ndarray
    metrics: dict[str, np.ndarray]


@functools.lru_cache(maxsize=4)
def pairs(data: DataConfig) -> Pairs:
    """The pairs of a ``data`` section: read, checked, and the ``rows`` subset drawn (key ``seed``)."""
    if data.source == "files":
        full = feature_files(data.features_a, data.features_b, data.labels)
    else:
        full = multifeature(data.view_a, data.view_b)
    count = full.a.shape[0]
    if data.rows is None:
        return full
    if data.rows > count:
        fail("data.rows", data.rows, f"must be <= the {count} pairs of the data")
    chosen = np.sort(np.random.default_rng(data.seed).choice(count, data.rows, replace=False))
    return Pairs(full.a[chosen], full.b[chosen], full.labels[chosen])


def problem(config: PracticalConfig, loss: str) -> Problem:
    """The compiled program's static description of ``config`` trained with ``loss``.

    Raises:
        ConfigError: too few pairs for the split or the batch.
    """
    data = pairs(config.data)
    count, classes = data.a.shape[0], data.labels.shape[1]
    test, pool = max(1, round(config.data.test * count)), max(1, round(config.data.prompts * count))
    train = count - test - pool
    if config.train.batch > train:
        fail("train.batch", config.train.batch, f"must be <= the {train} training pairs of the split")
    rank = min(config.eval.rank or classes, config.model.out)
    if rank > test - 1:  # the centered covariance of n test embeddings has rank at most n - 1
        fail(
            "eval.rank", config.eval.rank, f"gives k = {rank}, which must be < the {test} test pairs (raise data.test)"
        )
    return Problem(
        loss=loss,
        width=config.model.width,
        out=config.model.out,
        layers=config.model.layers,
        batch=config.train.batch,
        lr=config.train.lr,
        optimizer=config.train.optimizer,
        momentum=config.train.momentum,
        steps_per_stage=config.loss.steps_per_stage,
        records=tuple(int(s) for s in record_steps(config.steps, config.run.record_every)),
        train=train,
        pool=pool,
        test=test,
        prompts=config.eval.prompts,
        draws=config.eval.draws,
        rank=rank,
        ridge=config.eval.ridge,
        probe_rows=min(config.eval.probe_rows, train),
    )


def check(config: PracticalConfig, loss: str) -> None:
    """Refuse, before anything runs, data that cannot be read or split (one-line ``ConfigError``)."""
    problem(config, loss)


def simulate(
    config: PracticalConfig, loss: str = "infonce", seeds: int | None = None, first_seed: int = 0
) -> Trajectory:
    """Train ``seeds`` seeds of both heads with ``loss`` (``infonce`` or ``positive``).

    Raises:
        ConfigError: an unknown loss, or data that cannot be read or split.
        SimulationDiverged: a seed's records became NaN/Inf (names the seed and step).
    """
    if loss not in LOSS_KINDS:
        raise ConfigError(f"loss = {loss!r} is invalid: must be one of {', '.join(map(repr, LOSS_KINDS))}")
    seeds = check_count("seeds", config.run.seeds if seeds is None else seeds, 1)
    first_seed = check_count("first_seed", first_seed, 0)
    spec = problem(config, loss)
    data = pairs(config.data)
    dtype = config.train.precision
    with jax.enable_x64(config.train.precision == "float64"):
        taus = jnp.asarray([tau for tau, _ in config.loss.stages], dtype)
        shared = {
            "a": jnp.asarray(data.a, dtype),
            "b": jnp.asarray(data.b, dtype),
            "labels": jnp.asarray(data.labels, dtype),
            "taus": taus,
            "gammas": 1 / taus if config.loss.rescale else jnp.ones_like(taus),
            "lam": jnp.asarray(config.loss.lam, dtype),
        }
        _, keys = seed_keys(config.run.seed, 0, seeds, first_seed)
        out = map_seeds(run, {"key": keys}, shared, spec, select_devices(config.run.device))
    steps = np.asarray(spec.records)
    # κ is infinite, not diverged, when a head's covariance has fewer than k positive eigenvalues
    # (a collapsed head): every other record must be finite
    checked = {name: values for name, values in out.items() if not name.startswith("condition_")}
    hint = "lower train.lr"
    check_finite(np.full(seeds, -1), checked, steps, lr=1.0, first_seed=first_seed, where=f"loss {loss}", hint=hint)
    metrics = {name: np.asarray(out[name]) for name in metric_names(spec.prompts)}
    return Trajectory(steps.astype(float), np.asarray(out["spectrum_a"]), np.asarray(out["spectrum_b"]), metrics)
