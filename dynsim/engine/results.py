"""Run directories: labeled datasets written incrementally, atomically, and resumed after a kill.

A run directory holds

- ``config.toml``: the resolved configuration (its ``system`` first), and ``fingerprint``: the
  SHA-256 of every field but ``run.out``, ``run.device`` and ``[run.executor]`` (which do not
  change results);
- ``parts/<name>.nc``: one netCDF file per point of the sweep's axis and seed chunk, written to
  a temporary file and renamed into place, then marked complete by ``parts/<name>.done``;
  ``parts/<name>.job`` records the job that runs it (executors other than ``inline``) and
  ``parts/<name>.failed`` the error of a part that raised in a job (JSON, both);
- ``<limit>.nc``: the system's limit or exact reference on the same times, when asked for
  (``ode.nc`` for the two-tower system);
- ``dataset.nc``: everything in one file, written when the run finishes;
- ``summary.csv`` (final metrics and event times per point of the axis), ``<events>.csv``
  (event times per seed), ``figures/*.png`` and ``run.log``.

A part with its ``.done`` marker is never recomputed, so a run killed at any moment loses
at most the part in flight, and re-running the same command finishes the rest. A directory
whose configuration differs from the new one is refused, never mixed.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import tomli_w
import xarray as xr

from .config import ConfigError, build_config, read_toml
from .system import System

ENGINE = "h5netcdf"  # netCDF4/HDF5: 64-bit integer axis values; no pickles anywhere
FLOOR_PREFIX = "floor_"


class RunMismatch(ConfigError):
    """The run directory holds a run of a different configuration."""


@dataclasses.dataclass(frozen=True)
class Record:
    """What a run directory stores of one run: times (T,), coordinates by name ((..., T, k) each)
    and metrics by name ((..., T) each); the leading axes are seeds, or none for a limit that does
    not depend on the seed."""

    times: np.ndarray
    coordinates: dict[str, np.ndarray]
    metrics: dict[str, np.ndarray]


def as_record(result, system: System) -> Record:
    """The :class:`Record` of a system's result (its ``times``, ``metrics`` and coordinate attributes)."""
    coordinates = {name: np.asarray(getattr(result, name)) for name in system.coordinates}
    return Record(np.asarray(result.times), coordinates, {k: np.asarray(v) for k, v in result.metrics.items()})


def _result_fields(config) -> dict:
    fields = config.to_dict()
    fields["run"] = {k: v for k, v in fields["run"].items() if k not in ("out", "device", "executor")}
    return fields


def fingerprint(config) -> str:
    """SHA-256 of every configuration field but ``run.out``, ``run.device`` and ``run.executor``, in a
    canonical order."""
    return hashlib.sha256(json.dumps(_result_fields(config), sort_keys=True).encode()).hexdigest()


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it onto ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _differences(old: dict, new: dict) -> list[str]:
    return [
        f"{section}.{key}: {old.get(section, {}).get(key)!r} -> {new.get(section, {}).get(key)!r}"
        for section in sorted(set(old) - {"system"} | set(new) - {"system"})
        for key in sorted(set(old.get(section, {})) | set(new.get(section, {})))
        if old.get(section, {}).get(key) != new.get(section, {}).get(key)
    ]


def stored_config(run_dir: Path, cls: type):
    """The configuration saved in ``run_dir/config.toml``, read as class ``cls`` (a directory written
    before configurations named their system holds that class's system)."""
    return build_config(cls, read_toml(Path(run_dir) / "config.toml"))


def _check_same_run(run_dir: Path, config) -> None:
    """Refuse ``run_dir`` unless its stored configuration gives the same results as ``config``."""
    stored = read_toml(run_dir / "config.toml")
    if stored.get("system", config.system) != config.system:
        raise RunMismatch(
            f"{run_dir} holds a run of the {stored['system']!r} system, not {config.system!r}; "
            "use another --out directory or delete this one"
        )
    try:
        old = _result_fields(build_config(type(config), stored))
    except ConfigError as err:
        old = {"": {"config": str(err)}}
    changed = _differences(old, _result_fields(config))
    if changed:
        raise RunMismatch(
            f"{run_dir} holds a run of a different configuration ({'; '.join(changed)}); "
            "use another --out directory or delete this one"
        )


def open_run(run_dir: Path, config) -> Path:
    """Create ``run_dir`` for ``config``, or check that it already holds a run of the same one.

    A directory whose fingerprint differs is compared field by field: the same results in an
    older layout (say, from before configurations named their system) are accepted and the
    fingerprint renewed; anything else is refused.

    Raises:
        RunMismatch: the directory holds a run of another configuration (names the fields).
    """
    run_dir = Path(run_dir)
    marker = run_dir / "fingerprint"
    if marker.exists():
        if marker.read_text().strip() != fingerprint(config):
            _check_same_run(run_dir, config)
            write_atomic(marker, lambda p: p.write_text(fingerprint(config) + "\n"))
        for stale in (run_dir / "parts").glob(".*.tmp"):  # left by a run killed mid-write
            stale.unlink()
        return run_dir
    (run_dir / "parts").mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / "config.toml", lambda p: p.write_text(tomli_w.dumps(config.to_dict())))
    write_atomic(marker, lambda p: p.write_text(fingerprint(config) + "\n"))
    return run_dir


def log(run_dir: Path, message: str) -> None:
    """Append a time-stamped line to ``run.log``."""
    with open(Path(run_dir) / "run.log", "a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")


def seed_chunks(seeds: int, chunk: int) -> list[tuple[int, int]]:
    """``(first, count)`` of each chunk of ``chunk`` seeds (the last may be smaller)."""
    return [(first, min(chunk, seeds - first)) for first in range(0, seeds, chunk)]


def part_name(axis: str, value, first: int, count: int, prefix: str = "") -> str:
    """File stem of the part holding seeds ``first .. first + count - 1`` at ``axis = value``."""
    return f"{prefix}{axis}_{value}_seeds_{first}-{first + count - 1}"


def part_done(run_dir: Path, name: str) -> bool:
    """Whether the part ``name`` is complete (its ``.done`` marker exists)."""
    return (Path(run_dir) / "parts" / f"{name}.done").exists()


def write_part(run_dir: Path, name: str, dataset: xr.Dataset) -> Path:
    """Write one part atomically, then its ``.done`` marker (and drop a failure record of it)."""
    parts = Path(run_dir) / "parts"
    path = write_atomic(parts / f"{name}.nc", lambda p: dataset.to_netcdf(p, engine=ENGINE))
    (parts / f"{name}.done").touch()
    clear_failure(run_dir, name)
    return path


def _json_record(run_dir: Path, name: str, suffix: str) -> dict | None:
    path = Path(run_dir) / "parts" / f"{name}.{suffix}"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # (a record is written atomically; never half)
        return None


def _write_json_record(run_dir: Path, name: str, suffix: str, record: dict, stamp: str) -> None:
    """``parts/<name>.<suffix>``: ``record`` as JSON with the time now under ``stamp``, atomically."""
    text = json.dumps({**record, stamp: time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1)
    write_atomic(Path(run_dir) / "parts" / f"{name}.{suffix}", lambda p: p.write_text(text))


def write_failure(run_dir: Path, name: str, **record) -> None:
    """Record that part ``name`` raised: ``parts/<name>.failed`` (JSON: job, host, error, time)."""
    _write_json_record(run_dir, name, "failed", record, "time")


def failure(run_dir: Path, name: str) -> dict | None:
    """The failure record of part ``name`` (job, host, error: its last lines, time), or ``None``
    when it has not failed."""
    return _json_record(run_dir, name, "failed")


def failure_line(record: dict) -> str:
    """The last line of a failure record's error (the exception and its message)."""
    lines = str(record.get("error") or "").strip().splitlines()
    return lines[-1] if lines else "failed"


def clear_failure(run_dir: Path, name: str) -> None:
    """Forget that part ``name`` failed (``--retry-failed``, or it has just finished)."""
    (Path(run_dir) / "parts" / f"{name}.failed").unlink(missing_ok=True)


def write_job(run_dir: Path, name: str, **record) -> None:
    """Record the job that runs part ``name``: ``parts/<name>.job`` (JSON: executor, job id, host,
    submission time), written when the job is submitted."""
    _write_json_record(run_dir, name, "job", record, "submitted")


def job_of(run_dir: Path, name: str) -> dict | None:
    """The record of the last job submitted for part ``name``, or ``None``."""
    return _json_record(run_dir, name, "job")


def record_dataset(
    record: Record,
    dims: Mapping[str, str],
    *,
    axis: str | None = None,
    value=None,
    first_seed: int = 0,
    prefix: str = "",
) -> xr.Dataset:
    """A :class:`Record` as a labeled dataset.

    Args:
        record: the record; its coordinates and metrics share their leading axes.
        dims: coordinate name -> the name of its last dimension (labeled ``1 .. k``).
        axis, value: a finite run's point on the sweep axis: every variable gets the leading
            dimensions ``(axis, seed)``. Without them (a limit), the variables keep a ``seed``
            dimension only if the record has one.
        first_seed: the label of the first seed.
        prefix: prepended to every variable name (the limit's ``"ode_"``, the floor's ``"floor_"``).
    """
    seeded = axis is not None or next(iter(record.metrics.values())).ndim == 2
    lead = ("seed",) if seeded else ()
    expand = (lambda x: np.asarray(x)[None]) if axis is not None else np.asarray
    if axis is not None:
        lead = (axis, "seed")
    variables = {
        prefix + name: ((*lead, "time", dims[name]), expand(values)) for name, values in record.coordinates.items()
    }
    variables.update({prefix + name: ((*lead, "time"), expand(values)) for name, values in record.metrics.items()})
    coords = {"time": record.times}
    coords.update({dims[name]: np.arange(1, values.shape[-1] + 1) for name, values in record.coordinates.items()})
    if seeded:
        some = next(iter(record.metrics.values()))
        coords["seed"] = first_seed + np.arange(some.shape[0])
    if axis is not None:
        coords[axis] = [value]
    return xr.Dataset(variables, coords=coords)


def _open(path: Path) -> xr.Dataset:
    with xr.open_dataset(path, engine=ENGINE) as dataset:
        return dataset.load()


def _seeds(chunks: list[xr.Dataset]) -> xr.Dataset:
    """The seed chunks of one point, in seed order, as one dataset."""
    return xr.concat(sorted(chunks, key=lambda d: int(d.seed[0])), dim="seed", join="outer")


def load_run(run_dir: str | Path, system: System) -> xr.Dataset:
    """The labeled dataset of a run directory of ``system``: every finished part, plus the overlays.

    Returns an ``xarray.Dataset`` with dims ``<axis>, seed, time`` and the coordinates' own
    dimensions: the system's coordinates and metrics, its limit ``<limit>_*`` when the run has
    one (without the axis dimension), and the floor run ``floor_*`` (dims seed, time, ...) of
    ``dynsim compare``. Attributes: ``config`` (the resolved TOML), ``system``, ``axis`` and the
    system's own (:func:`describe`).

    Raises:
        FileNotFoundError: ``run_dir`` is not a run directory or has no finished part.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "fingerprint").exists():
        raise FileNotFoundError(f"{run_dir} is not a dynsim run directory (no fingerprint file)")
    config = stored_config(run_dir, system.config)
    axis = system.axis(config).name
    parts = sorted((run_dir / "parts").glob("*.done"))
    finite = [_open(p.with_suffix(".nc")) for p in parts if not p.stem.startswith(FLOOR_PREFIX)]
    if not finite:
        raise FileNotFoundError(f"{run_dir} has no finished part yet")
    by_value: dict = {}
    for part in finite:
        by_value.setdefault(part[axis].values[0].item(), []).append(part)
    # join="outer": a point with fewer finished seeds (an interrupted run) is padded with NaN.
    dataset = xr.concat([_seeds(ps) for _, ps in sorted(by_value.items())], dim=axis, join="outer")
    floor = [_open(p.with_suffix(".nc")) for p in parts if p.stem.startswith(FLOOR_PREFIX)]
    if floor:
        floor_set = _seeds(floor).isel({axis: 0}, drop=True)
        floor_set = floor_set.rename({name: FLOOR_PREFIX + name for name in floor_set.data_vars})
        dataset = dataset.merge(floor_set, join="outer")
    limit = run_dir / f"{system.limit_name}.nc"
    if limit.exists():
        dataset = dataset.merge(_open(limit), join="outer")
    dataset.attrs.update(describe(config, system))
    return dataset


def describe(config, system: System) -> dict:
    """Dataset attributes of a run of ``config``: ``config`` (TOML), ``system``, ``limit`` (the
    limit's variable prefix), the sweep's :class:`~dynsim.engine.system.Axis` (``axis`` its
    dimension, ``axis_label``, ``axis_symbol``, ``limit_row``, ``limit_label``, ``floor_label``)
    and the system's own ``attrs``."""
    axis = system.axis(config)
    attrs = {
        "config": tomli_w.dumps(config.to_dict()),
        "system": system.name,
        "limit": system.limit_name,
        "axis": axis.name,
        "axis_label": axis.label,
        "axis_symbol": axis.symbol,
        "limit_row": axis.limit_row,
        "limit_label": axis.limit_label,
        "floor_label": axis.floor_label,
    }
    return attrs | (system.attrs(config) if system.attrs is not None else {})


def config_of(dataset: xr.Dataset, system: System):
    """The configuration a loaded dataset was run with (its ``config`` attribute)."""
    return build_config(system.config, tomllib.loads(dataset.attrs["config"]))


def metric_names(dataset: xr.Dataset) -> list[str]:
    """The finite-run metrics of a loaded dataset: its variables of dims ``(axis, seed, time)``."""
    dims = (dataset.attrs["axis"], "seed", "time")
    return [name for name, variable in dataset.data_vars.items() if variable.dims == dims]


def record_from(dataset: xr.Dataset, dims: Mapping[str, str], prefix: str = "", value=None) -> Record:
    """The :class:`Record` of one point of the axis (``value``), or of the ``prefix`` overlay."""
    select = dataset if value is None else dataset.sel({dataset.attrs["axis"]: value})
    metrics = {name: select[prefix + name].values for name in metric_names(dataset) if prefix + name in dataset}
    return Record(dataset.time.values, {name: select[prefix + name].values for name in dims}, metrics)


def _event_times(dataset: xr.Dataset, select: xr.Dataset, system: System, prefix: str = "") -> dict[str, np.ndarray]:
    """The system's event times of every trajectory in ``select`` (leading axes kept)."""
    if system.events is None:
        return {}
    names = [*metric_names(dataset), *system.coordinates]
    values = {name: select[prefix + name].values for name in names if prefix + name in select}
    return system.events.detect(config_of(dataset, system), dataset.time.values, values)


def _event_summary(times: dict[str, np.ndarray]) -> dict:
    """``<event>_mean``, ``<event>_sd`` over the seeds where it happened (NaN if none) and
    ``<event>_reached``, their number."""
    row = {}
    for name, values in times.items():
        hit = np.atleast_1d(values)[np.isfinite(np.atleast_1d(values))]
        mean, sd = (float(np.mean(hit)), float(np.std(hit))) if hit.size else (float("nan"), float("nan"))
        row.update({f"{name}_mean": mean, f"{name}_sd": sd, f"{name}_reached": int(hit.size)})
    return row


def has_limit(dataset: xr.Dataset, system: System) -> bool:
    """Whether a loaded run holds the system's limit."""
    return f"{system.limit_name}_{next(iter(system.coordinates))}" in dataset


def _finished(final: xr.Dataset, system: System, prefix: str = "") -> np.ndarray:
    """Which seeds of a final-time selection hold a record (an interrupted run may lack some)."""
    first = next(iter(system.coordinates))
    return final[prefix + first].notnull().all(system.coordinates[first]).values


def _metric_stats(final: xr.Dataset, names, finished, prefix: str = "") -> dict:
    row = {}
    for name in names:
        values = np.atleast_1d(final[prefix + name].values)[finished]
        row.update({f"{name}_mean": float(np.mean(values)), f"{name}_sd": float(np.std(values))})
    return row


def final_summary(dataset: xr.Dataset, system: System) -> list[dict]:
    """Final-time metrics: per point of the axis ``{"<axis>", "seeds", "<metric>_mean", "<metric>_sd"}``
    over seeds, and a last row for the limit when the run has one (labelled with the axis's ``limit_row``:
    its mean and sd over seeds where it depends on the seed, sd 0 and ``seeds`` 0 where it does not).

    Every row also has the system's event times: ``<event>_mean`` and ``<event>_sd`` over the
    seeds that reached it (NaN if none did) and ``<event>_reached``, their number.
    """
    axis, names = dataset.attrs["axis"], metric_names(dataset)
    rows = []
    for value in dataset[axis].values:
        per_point = dataset.sel({axis: value})
        final = per_point.isel(time=-1)
        finished = _finished(final, system)
        row = {axis: value.item(), "seeds": int(finished.sum())} | _metric_stats(final, names, finished)
        times = _event_times(dataset, per_point, system)
        rows.append(row | _event_summary({name: values[finished] for name, values in times.items()}))
    prefix = f"{system.limit_name}_"
    if has_limit(dataset, system):
        final = dataset.isel(time=-1)
        seeded = "seed" in final[prefix + next(iter(system.coordinates))].dims
        finished = _finished(final, system, prefix) if seeded else np.array([True])
        present = [name for name in names if prefix + name in dataset]
        row = {axis: dataset.attrs["limit_row"], "seeds": int(finished.sum()) if seeded else 0}
        row |= _metric_stats(final, present, finished, prefix)
        times = _event_times(dataset, dataset, system, prefix)
        rows.append(row | _event_summary({name: np.atleast_1d(v)[finished] for name, v in times.items()}))
    return rows


def event_rows(dataset: xr.Dataset, system: System) -> list[dict]:
    """Event times per trajectory: ``{"<axis>", "seed", <events>...}`` for every finished seed of
    every point of the axis, then the limit's (``seed`` empty where it does not depend on the seed)."""
    axis, rows = dataset.attrs["axis"], []
    for value in dataset[axis].values:
        per_point = dataset.sel({axis: value})
        finished = _finished(per_point.isel(time=-1), system)
        times = _event_times(dataset, per_point, system)
        for i in np.flatnonzero(finished):
            row = {axis: value.item(), "seed": int(per_point.seed.values[i])}
            rows.append(row | {name: float(values[i]) for name, values in times.items()})
    prefix = f"{system.limit_name}_"
    if has_limit(dataset, system):
        times = _event_times(dataset, dataset, system, prefix)
        seeds = dataset.seed.values if np.ndim(next(iter(times.values()), 0)) else [""]
        for i, seed in enumerate(seeds):
            rows.append(
                {axis: dataset.attrs["limit_row"], "seed": seed if seed == "" else int(seed)}
                | {name: float(np.atleast_1d(values)[i]) for name, values in times.items()}
            )
    return rows


def write_csv(path: Path, rows: list[dict], footer: str = "") -> Path:
    """Write ``rows`` (dicts; the first one's keys are the header) atomically, then ``# footer``."""

    def write(tmp: Path):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), restval="")
            writer.writeheader()
            writer.writerows(rows)
            if footer:
                f.write(f"# {footer}\n")

    return write_atomic(Path(path), write)


def write_summary(run_dir: Path, dataset: xr.Dataset, system: System) -> Path:
    """``summary.csv``: :func:`final_summary` of the run; ``<events>.csv``: its :func:`event_rows`."""
    if system.events is not None:
        write_csv(Path(run_dir) / f"{system.events.name}.csv", event_rows(dataset, system))
    return write_csv(Path(run_dir) / "summary.csv", final_summary(dataset, system))
