"""Sweeps on disk: each (width, seed chunk) of a configuration is one part of its run directory.

Used by ``dynsim sweep`` and ``dynsim compare``. Parts already finished are skipped, so the
same command resumes an interrupted run; see :mod:`dynsim._results` for the layout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import xarray as xr

from . import ode
from ._compare import FLOOR_WIDTH
from ._config import Config
from ._results import (
    ENGINE,
    FLOOR_PREFIX,
    ODE_PREFIX,
    load,
    log,
    open_run,
    part_done,
    part_name,
    record_dataset,
    seed_chunks,
    write_atomic,
    write_part,
    write_summary,
)
from ._schedule import stage_steps
from ._simulate import backend_and_init, simulate


class Part(NamedTuple):
    """One unit of work: seeds ``first .. first + count - 1`` at one width."""

    name: str
    width: int
    first: int
    count: int
    backend: str | None  # None: the configuration's
    init: str | None


def parts(config: Config, floor: bool = False) -> list[Part]:
    """Every part of a sweep: each width's seed chunks, then (``floor``) those of the floor run
    at ``FLOOR_WIDTH`` on the Gram backend."""
    chunks = seed_chunks(config.run.seeds, config.run.seed_chunk)
    work = [Part(part_name(m, f, c), m, f, c, None, None) for m in config.run.widths for f, c in chunks]
    if floor:
        work += [
            Part(part_name(FLOOR_WIDTH, f, c, FLOOR_PREFIX), FLOOR_WIDTH, f, c, "gram", "bartlett") for f, c in chunks
        ]
    return work


def prepare(config: Config) -> Path:
    """Check every width's backend and initialization, then open the run directory (idempotent).

    Raises:
        ConfigError: a width the backend cannot run (nothing is written), or ``RunMismatch``.
    """
    for width in config.run.widths:
        backend_and_init(config, width)
    return open_run(Path(config.run.out), config)


def steps_per_seed(config: Config) -> int:
    """SGD steps of one seed's run."""
    return sum(stage_steps([duration for _, duration in config.loss.stages], config.train.lr))


def run_sweep(
    config: Config,
    *,
    with_ode: bool = False,
    floor: bool = False,
    on_part: Callable[[Part, int], None] | None = None,
) -> xr.Dataset:
    """Run every unfinished part of ``config`` into ``config.run.out`` and return the dataset.

    Args:
        config: the resolved configuration (``run.out`` is the run directory).
        with_ode: also solve the infinite-width ODE on the same grid (``ode.nc``).
        floor: also run the SGD-floor parts (``dynsim compare``).
        on_part: called as ``on_part(part, steps)`` after each part finishes, with the SGD
            steps it ran (seeds × steps per seed); not called for skipped parts.

    Raises:
        ConfigError: an invalid combination at some width (checked before anything is
            written), or a run directory of another configuration (``RunMismatch``).
        SimulationDiverged: a seed diverged; the parts finished before it are kept.
    """
    run_dir = prepare(config)
    work = parts(config, floor)
    todo = [part for part in work if not part_done(run_dir, part.name)]
    log(run_dir, f"start: {len(todo)} of {len(work)} parts to run")
    for part in todo:
        start = time.perf_counter()
        trajectory = simulate(
            config, width=part.width, seeds=part.count, backend=part.backend, init=part.init, first_seed=part.first
        )
        write_part(run_dir, part.name, record_dataset(trajectory, width=part.width, first_seed=part.first))
        log(run_dir, f"done: {part.name} in {time.perf_counter() - start:.2f} s")
        if on_part is not None:
            on_part(part, part.count * steps_per_seed(config))
    overlay = run_dir / "ode.nc"
    if (with_ode or floor) and not overlay.exists():
        solution = record_dataset(ode.solve(config), prefix=ODE_PREFIX)
        write_atomic(overlay, lambda p: solution.to_netcdf(p, engine=ENGINE))
        log(run_dir, "done: ode")
    dataset = load(run_dir)
    write_summary(run_dir, dataset)
    log(run_dir, "finished")
    return dataset
