"""Sweeps on disk: each (width, seed chunk) of a configuration is one part of its run directory.

Used by ``dynsim sweep`` and ``dynsim compare``. Parts already finished are skipped, so the
same command resumes an interrupted run; see :mod:`dynsim._results` for the layout.
:func:`dynsim.compare` is the in-memory twin: the same runs, no files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import xarray as xr

from ..two_tower import ode
from ..two_tower.simulate import backend_and_init, simulate
from .compare import FLOOR_RUN, check_floor
from .config import Config
from .results import (
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
from .runner import SimulationDiverged


class Part(NamedTuple):
    """One unit of work: seeds ``first .. first + count - 1`` at one width."""

    name: str
    width: int
    first: int
    count: int
    backend: str | None  # None: the configuration's
    init: str | None


def parts(config: Config, floor: bool = False) -> list[Part]:
    """Every part of a sweep: each width's seed chunks, then (``floor``) those of the floor run."""
    chunks = seed_chunks(config.run.seeds, config.run.seed_chunk)
    work = [Part(part_name(m, f, c), m, f, c, None, None) for m in config.run.widths for f, c in chunks]
    if floor:
        work += [
            Part(part_name(FLOOR_RUN["width"], f, c, FLOOR_PREFIX), first=f, count=c, **FLOOR_RUN) for f, c in chunks
        ]
    return work


def steps_per_seed(config: Config) -> int:
    """SGD steps of one seed's run."""
    return sum(config.steps_per_stage)


def run_sweep(
    config: Config,
    *,
    with_ode: bool = False,
    floor: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_part: Callable[[Part, int], None] | None = None,
) -> xr.Dataset:
    """Run every unfinished part of ``config`` into ``config.run.out`` and return the dataset.

    Everything that can be refused is checked before anything is written: every width's
    backend and initialization, the floor run's, the ODE (solved first), the run directory's
    fingerprint. The run directory then gets ``ode.nc``, the parts, ``summary.csv`` and
    ``dataset.nc`` (every part and overlay in one file).

    Args:
        config: the resolved configuration (``run.out`` is the run directory).
        with_ode: also solve the infinite-width ODE on the same grid (``ode.nc``).
        floor: also run the SGD-floor parts (``dynsim compare``; implies the ODE).
        on_start: called once as ``on_start(steps)`` with the SGD steps still to run.
        on_part: called as ``on_part(part, steps)`` after each part finishes, with the SGD
            steps it ran (seeds × steps per seed); not called for skipped parts.

    Raises:
        ConfigError: a combination some width, the floor run or the ODE cannot run, or a
            run directory of another configuration (``RunMismatch``).
        SolverError: the ODE solver failed.
        SimulationDiverged: a seed diverged; the parts finished before it are kept.
    """
    for width in config.run.widths:
        backend_and_init(config, width)
    if floor:
        check_floor(config)
    solution = ode.solve(config) if with_ode or floor else None
    run_dir = open_run(Path(config.run.out), config)
    if solution is not None:
        overlay = record_dataset(solution, prefix=ODE_PREFIX)
        write_atomic(run_dir / "ode.nc", lambda p: overlay.to_netcdf(p, engine=ENGINE))
    work = parts(config, floor)
    todo = [part for part in work if not part_done(run_dir, part.name)]
    log(run_dir, f"start: {len(todo)} of {len(work)} parts to run")
    if on_start is not None:
        on_start(sum(part.count for part in todo) * steps_per_seed(config))
    for part in todo:
        start = time.perf_counter()
        try:
            trajectory = simulate(
                config, width=part.width, seeds=part.count, backend=part.backend, init=part.init, first_seed=part.first
            )
        except SimulationDiverged as err:
            log(run_dir, f"diverged: {part.name}: {err}")
            raise
        write_part(run_dir, part.name, record_dataset(trajectory, width=part.width, first_seed=part.first))
        log(run_dir, f"done: {part.name} in {time.perf_counter() - start:.2f} s")
        if on_part is not None:
            on_part(part, part.count * steps_per_seed(config))
    dataset = load(run_dir)
    write_summary(run_dir, dataset)
    write_atomic(run_dir / "dataset.nc", lambda p: dataset.to_netcdf(p, engine=ENGINE))
    log(run_dir, "finished")
    return dataset
