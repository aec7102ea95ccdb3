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
    clear_failure,
    failure,
    failure_line,
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


class PartsUnfinished(RuntimeError):
    """Parts of a sweep failed (``parts/<name>.failed`` says why) or were lost with their job; the
    message names them and says what a rerun does."""

    def __init__(self, run_dir: Path, unfinished: list):
        names = [part.name for part in unfinished]
        failed = {name: record for name in names if (record := failure(run_dir, name)) is not None}
        lost = [name for name in names if name not in failed]
        lines = [f"{name}: {failure_line(record)}" for name, record in failed.items()]
        text = []
        if failed:
            text.append(
                f"{len(failed)} part(s) failed ({'; '.join(lines)}); the run skips them until "
                f"--retry-failed (dynsim status {run_dir} shows each error)"
            )
        if lost:
            text.append(
                f"{len(lost)} part(s) did not finish ({', '.join(lost)}): their jobs ended without them "
                "(killed, cancelled, out of memory, node failure; run.log has their log's tail); "
                "run the same command again to resubmit them"
            )
        self.failed, self.lost = list(failed), lost
        super().__init__(f"{run_dir}: " + "; ".join(text))


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


def run_part(system: System, run_dir: Path, part: Part, axis: str, job: str = "") -> None:
    """Simulate one part and write it into ``run_dir`` (atomically, then its ``.done`` marker);
    ``axis`` names the sweep's axis (the floor run's configuration may sweep another).

    Raises:
        SimulationDiverged: a seed of the part diverged (logged; nothing is written).
    """
    start = time.perf_counter()
    try:
        result = system.simulate(part.config, part.value, part.count, part.first)
    except SimulationDiverged as err:
        log(run_dir, f"diverged: {part.name}{job}: {err}")
        raise
    record = as_record(result, system)
    dataset = record_dataset(record, system.coordinates, axis=axis, value=part.value, first_seed=part.first)
    write_part(run_dir, part.name, dataset)
    log(run_dir, f"done: {part.name}{job} in {time.perf_counter() - start:.2f} s")


def run_sweep(
    system: System,
    config,
    *,
    with_limit: bool = False,
    floor: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_part: Callable[[Part, int], None] | None = None,
    retry_failed: bool = False,
    detach: bool = False,
) -> xr.Dataset | None:
    """Run every unfinished part of ``config`` into ``config.run.out`` and return the dataset.

    Where the parts run is ``config.run.executor`` (:mod:`dynsim.engine.executors`): ``inline``
    runs them here, one after another, and stops at the first error; the others run them as
    jobs, which record a part that raised as ``parts/<name>.failed`` and go on.

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
        retry_failed: run again the parts an earlier run recorded as failed (skipped otherwise).
        detach: submit the jobs and return ``None`` without waiting (``slurm`` only); running
            the same sweep again re-attaches to the jobs still queued or running.

    Raises:
        ConfigError: a point, the floor run or the limit the system cannot run, or a run
            directory of another configuration (``RunMismatch``), or executor options the
            executor refuses.
        SimulationDiverged: (``inline``) a seed diverged; the parts finished before it are kept.
        PartsUnfinished: parts failed or were lost; the others are written.
    """
    check_runs(system, config, floor)
    if detach or config.run.executor.kind != "inline":
        from .executors import check_executor  # imports submitit

        check_executor(config, detach)
    overlay = limit_dataset(system, config) if with_limit or floor else None
    run_dir = open_run(Path(config.run.out), config)
    if overlay is not None:
        write_atomic(run_dir / f"{system.limit_name}.nc", lambda p: overlay.to_netcdf(p, engine=ENGINE))
    work = parts(system, config, floor)
    if retry_failed:
        for part in work:
            clear_failure(run_dir, part.name)
    todo = [part for part in work if not part_done(run_dir, part.name) and failure(run_dir, part.name) is None]
    kind = config.run.executor.kind
    log(run_dir, f"start: {len(todo)} of {len(work)} parts to run" + ("" if kind == "inline" else f" as {kind} jobs"))

    def steps(part: Part) -> int:
        return part.count * system.steps(part.config, part.value)

    if on_start is not None:
        on_start(sum(steps(part) for part in todo))
    finished = (lambda part: on_part(part, steps(part))) if on_part is not None else (lambda part: None)
    if kind == "inline":
        axis = system.axis(config).name
        for part in todo:
            run_part(system, run_dir, part, axis)
            finished(part)
    else:
        from .executors import run_elsewhere  # imports submitit

        if run_elsewhere(system, config, todo, floor=floor, detach=detach, on_part=finished):
            return None
    unfinished = [part for part in work if not part_done(run_dir, part.name)]
    if unfinished:
        raise PartsUnfinished(run_dir, unfinished)
    dataset = load_run(run_dir, system)
    write_summary(run_dir, dataset, system)
    write_atomic(run_dir / "dataset.nc", lambda p: dataset.to_netcdf(p, engine=ENGINE))
    log(run_dir, "finished")
    return dataset
