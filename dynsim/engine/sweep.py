"""Sweeps on disk: each point of a configuration's axis and each seed chunk is one part of its run
directory.

Used by ``dynsim sweep`` and ``dynsim compare`` for every system. Parts already finished are
skipped, so the same command resumes an interrupted run; see :mod:`dynsim.engine.results` for
the layout. :func:`dynsim.engine.compare.compare_runs` is the in-memory twin: the same runs, no
files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import xarray as xr

from .config import ConfigError
from .results import (
    ENGINE,
    FLOOR_PREFIX,
    as_record,
    load_run,
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
from .system import System


class Part(NamedTuple):
    """One unit of work: seeds ``first .. first + count - 1`` of ``config`` at one point of the axis."""

    name: str
    config: Any
    value: Any
    first: int
    count: int


def floor_run(system: System, config):
    """``(config, value)`` of the run that measures what the axis cannot remove, or ``None``."""
    return None if system.floor is None else system.floor(config)


def parts(system: System, config, floor: bool = False) -> list[Part]:
    """Every part of a sweep: each point's seed chunks, then (``floor``) those of the floor run."""
    axis = system.axis(config)
    chunks = seed_chunks(config.run.seeds, config.run.seed_chunk)
    work = [Part(part_name(axis.name, v, f, c), config, v, f, c) for v in axis.values for f, c in chunks]
    run = floor_run(system, config) if floor else None
    if run is not None:
        floor_config, value = run
        work += [Part(part_name(axis.name, value, f, c, FLOOR_PREFIX), floor_config, value, f, c) for f, c in chunks]
    return work


def check_runs(system: System, config, floor: bool = False) -> None:
    """Refuse, before anything runs, a point of the axis (or the floor run) the system cannot simulate."""
    runs = [(config, value) for value in system.axis(config).values]
    run = floor_run(system, config) if floor else None  # building the floor's config may refuse it
    if system.check is not None:
        for point in runs + ([run] if run is not None else []):
            system.check(*point)


def limit_dataset(system: System, config) -> xr.Dataset:
    """The system's limit of ``config`` as a dataset (variables ``<limit>_*``).

    Raises:
        ConfigError: the system has no limit, or not for this configuration.
    """
    if system.limit is None:
        raise ConfigError(f"the {system.name} system declares no limit to compare against or overlay (see its docs)")
    record = as_record(system.limit(config), system)
    return record_dataset(record, system.coordinates, prefix=f"{system.limit_name}_")


def run_sweep(
    system: System,
    config,
    *,
    with_limit: bool = False,
    floor: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_part: Callable[[Part, int], None] | None = None,
) -> xr.Dataset:
    """Run every unfinished part of ``config`` into ``config.run.out`` and return the dataset.

    Everything that can be refused is checked before anything is written: every point of the
    axis, the floor run's, the limit (solved first), the run directory's configuration. The run
    directory then gets the limit, the parts, ``summary.csv`` and ``dataset.nc`` (every part and
    overlay in one file).

    Args:
        system: the system of ``config``.
        config: the resolved configuration (``run.out`` is the run directory).
        with_limit: also solve the system's limit on the same grid (``<limit>.nc``).
        floor: also run the floor parts where the system has a floor run (``dynsim compare``;
            implies the limit).
        on_start: called once as ``on_start(steps)`` with the training steps still to run.
        on_part: called as ``on_part(part, steps)`` after each part finishes, with the training
            steps it ran (seeds × steps per seed); not called for skipped parts.

    Raises:
        ConfigError: a point, the floor run or the limit the system cannot run, or a run
            directory of another configuration (``RunMismatch``).
        SimulationDiverged: a seed diverged; the parts finished before it are kept.
    """
    check_runs(system, config, floor)
    overlay = limit_dataset(system, config) if with_limit or floor else None
    run_dir = open_run(Path(config.run.out), config)
    if overlay is not None:
        write_atomic(run_dir / f"{system.limit_name}.nc", lambda p: overlay.to_netcdf(p, engine=ENGINE))
    work = parts(system, config, floor)
    todo = [part for part in work if not part_done(run_dir, part.name)]
    log(run_dir, f"start: {len(todo)} of {len(work)} parts to run")

    def steps(part: Part) -> int:
        return part.count * system.steps(part.config, part.value)

    if on_start is not None:
        on_start(sum(steps(part) for part in todo))
    axis = system.axis(config).name
    for part in todo:
        start = time.perf_counter()
        try:
            result = system.simulate(part.config, part.value, part.count, part.first)
        except SimulationDiverged as err:
            log(run_dir, f"diverged: {part.name}: {err}")
            raise
        record = as_record(result, system)
        dataset = record_dataset(record, system.coordinates, axis=axis, value=part.value, first_seed=part.first)
        write_part(run_dir, part.name, dataset)
        log(run_dir, f"done: {part.name} in {time.perf_counter() - start:.2f} s")
        if on_part is not None:
            on_part(part, steps(part))
    dataset = load_run(run_dir, system)
    write_summary(run_dir, dataset, system)
    write_atomic(run_dir / "dataset.nc", lambda p: dataset.to_netcdf(p, engine=ENGINE))
    log(run_dir, "finished")
    return dataset
