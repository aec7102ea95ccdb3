"""The jghm system's runs as the engine sweeps them: CLIP training at one flip probability p for
a chunk of seeds, every record held against the exact references of the same evaluation set
(:mod:`dynsim.jghm.training`).

Seed ``i`` has the key ``fold_in(fold_in(run_key, 0), i)`` at every p (its towers' initial
weights are the same at every point of a sweep); its training draws and evaluation set come from
that key too.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from ..engine.config import check_count
from ..engine.runner import check_finite, map_seeds, record_steps, seed_keys, select_devices
from .config import JGHMConfig
from .training import Problem, metric_names, run

COORDINATE_DIMS = {"score": "pair"}


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Records of every seed: ``times`` the step counts (T,), ``score`` (seeds, T, P²) the centered
    score on the probe grid, ``metrics`` name -> (seeds, T)."""

    times: np.ndarray
    score: np.ndarray
    metrics: dict[str, np.ndarray]


def problem(config: JGHMConfig) -> Problem:
    """The compiled program's static description of ``config``."""
    model, train, evaluation = config.model, config.train, config.eval
    return Problem(
        architecture=model.architecture,
        width=model.width,
        layers=model.layers,
        heads=model.heads,
        out=model.out,
        batch=train.batch,
        lr=train.lr,
        lr_final=train.lr_final,
        weight_decay=train.weight_decay,
        clip=train.clip,
        guidance=train.guidance,
        records=tuple(int(s) for s in record_steps(train.steps, config.run.record_every)),
        pairs=evaluation.pairs,
        marginal=evaluation.marginal,
        prompts=evaluation.prompts,
        probe=evaluation.probe,
    )


def simulate(
    config: JGHMConfig, flip: float | None = None, seeds: int | None = None, first_seed: int = 0
) -> Trajectory:
    """Train ``seeds`` seeds at flip probability ``flip`` (default ``tree.flip``).

    Raises:
        SimulationDiverged: a seed's records became NaN/Inf (names the seed and step).
    """
    seeds = check_count("seeds", config.run.seeds if seeds is None else seeds, 1)
    first_seed = check_count("first_seed", first_seed, 0)
    spec = problem(config)
    with jax.enable_x64(config.train.precision == "float64"):
        model = config.tree.model(flip)
        _, keys = seed_keys(config.run.seed, 0, seeds, first_seed)
        out = map_seeds(run, {"key": keys}, {"model": model}, spec, select_devices(config.run.device))
    steps = np.asarray(spec.records)
    where = f"flip {config.tree.flip if flip is None else flip:g}"
    check_finite(np.full(seeds, -1), out, steps, lr=1.0, first_seed=first_seed, where=where, hint="lower train.lr")
    metrics = {name: np.asarray(out[name]) for name in metric_names(spec.prompts)}
    return Trajectory(steps.astype(float), np.asarray(out["score"]), metrics)
