"""Run directories: labeled datasets written incrementally, atomically, and resumed after a kill.

A run directory holds

- ``config.toml``: the resolved configuration, and ``fingerprint``: the SHA-256 of every
  field but ``run.out`` and ``run.device`` (which do not change results);
- ``parts/<name>.nc``: one netCDF file per (width, seed chunk), written to a temporary file
  and renamed into place, then marked complete by ``parts/<name>.done``;
- ``ode.nc``: the infinite-width overlay, when asked for;
- ``dataset.nc``: everything in one file, written when the run finishes;
- ``summary.csv`` (final metrics and stage times per width), ``stages.csv`` (stage times per
  seed), ``figures/*.png`` and ``run.log``.

A part with its ``.done`` marker is never recomputed, so a run killed at any moment loses
at most the part in flight, and re-running the same command finishes the rest. A directory
whose fingerprint differs from the new configuration's is refused, never mixed.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tomli_w
import xarray as xr

from ..two_tower.observables import METRICS
from ..two_tower.stages import STAGES, stage_times
from ..two_tower.trajectory import Record
from .config import Config, ConfigError, load_config

ENGINE = "h5netcdf"  # netCDF4/HDF5: 64-bit integer widths; no pickles anywhere
COORDINATE_DIMS = {"a": "signal", "b": "signal", "p": "signal", "nu_a": "noise", "nu_b": "noise"}
ODE_PREFIX, FLOOR_PREFIX = "ode_", "floor_"


class RunMismatch(ConfigError):
    """The run directory holds a run of a different configuration."""


def _result_fields(config: Config) -> dict:
    fields = config.to_dict()
    fields["run"] = {k: v for k, v in fields["run"].items() if k not in ("out", "device")}
    return fields


def fingerprint(config: Config) -> str:
    """SHA-256 of every configuration field but ``run.out`` and ``run.device``."""
    return hashlib.sha256(tomli_w.dumps(_result_fields(config)).encode()).hexdigest()


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
        for section in sorted(set(old) | set(new))
        for key in sorted(set(old.get(section, {})) | set(new.get(section, {})))
        if old.get(section, {}).get(key) != new.get(section, {}).get(key)
    ]


def open_run(run_dir: Path, config: Config) -> Path:
    """Create ``run_dir`` for ``config``, or check that it already holds a run of the same one.

    Raises:
        RunMismatch: the directory holds a run of another configuration (names the fields).
    """
    run_dir = Path(run_dir)
    marker = run_dir / "fingerprint"
    if marker.exists():
        if marker.read_text().strip() != fingerprint(config):
            old = _result_fields(load_config(run_dir / "config.toml"))
            changed = "; ".join(_differences(old, _result_fields(config))) or "unknown fields"
            raise RunMismatch(
                f"{run_dir} holds a run of a different configuration ({changed}); "
                "use another --out directory or delete this one"
            )
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


def part_name(width: int, first: int, count: int, prefix: str = "") -> str:
    """File stem of the part holding seeds ``first .. first + count - 1`` of one width."""
    return f"{prefix}width_{width}_seeds_{first}-{first + count - 1}"


def part_done(run_dir: Path, name: str) -> bool:
    """Whether the part ``name`` is complete (its ``.done`` marker exists)."""
    return (Path(run_dir) / "parts" / f"{name}.done").exists()


def write_part(run_dir: Path, name: str, dataset: xr.Dataset) -> Path:
    """Write one part atomically, then its ``.done`` marker."""
    parts = Path(run_dir) / "parts"
    path = write_atomic(parts / f"{name}.nc", lambda p: dataset.to_netcdf(p, engine=ENGINE))
    (parts / f"{name}.done").touch()
    return path


def record_dataset(record: Record, *, width: int | None = None, first_seed: int = 0, prefix: str = "") -> xr.Dataset:
    """A :class:`Record` as a labeled dataset.

    Finite width (``width`` given): variables ``a, b, p`` (width, seed, time, signal),
    ``nu_a, nu_b`` (width, seed, time, noise), one per metric (width, seed, time). Infinite
    width (``width=None``): the same without the width and seed dimensions. ``prefix`` is
    prepended to every variable name (``"ode_"``, ``"floor_"``).
    """
    lead = () if width is None else ("width", "seed")
    expand = (lambda x: x) if width is None else (lambda x: np.asarray(x)[None])
    variables = {
        prefix + name: ((*lead, "time", dim), expand(getattr(record, name))) for name, dim in COORDINATE_DIMS.items()
    }
    variables.update({prefix + name: ((*lead, "time"), expand(values)) for name, values in record.metrics.items()})
    r, n = record.a.shape[-1], record.nu_a.shape[-1]
    coords = {"time": record.times, "signal": np.arange(1, r + 1), "noise": np.arange(1, n + 1)}
    if width is not None:
        coords.update(width=[width], seed=first_seed + np.arange(record.a.shape[0]))
    return xr.Dataset(variables, coords=coords)


def _open(path: Path) -> xr.Dataset:
    with xr.open_dataset(path, engine=ENGINE) as dataset:
        return dataset.load()


def _seeds(chunks: list[xr.Dataset]) -> xr.Dataset:
    """The seed chunks of one width, in seed order, as one dataset."""
    return xr.concat(sorted(chunks, key=lambda d: int(d.seed[0])), dim="seed", join="outer")


def load(run_dir: str | Path) -> xr.Dataset:
    """The labeled dataset of a run directory: every finished part, plus the overlays.

    Returns an ``xarray.Dataset`` with dims ``width, seed, time, signal, noise``: the
    finite-width variables ``a, b, p, nu_a, nu_b`` and metrics, the infinite-width overlay
    ``ode_*`` (dims without width and seed) when the run has one, and the SGD floor run
    ``floor_*`` (dims seed, time, ...) of ``dynsim compare``. Attributes: ``config`` (the
    resolved TOML), ``loss_kind``, ``backend``, ``stage_boundaries``.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run directory or has no finished part.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "fingerprint").exists():
        raise FileNotFoundError(f"{run_dir} is not a dynsim run directory (no fingerprint file)")
    parts = sorted((run_dir / "parts").glob("*.done"))
    finite = [_open(p.with_suffix(".nc")) for p in parts if not p.stem.startswith(FLOOR_PREFIX)]
    if not finite:
        raise FileNotFoundError(f"{run_dir} has no finished part yet")
    by_width: dict[int, list[xr.Dataset]] = {}
    for part in finite:
        by_width.setdefault(int(part.width[0]), []).append(part)
    # join="outer": a width with fewer finished seeds (an interrupted run) is padded with NaN.
    dataset = xr.concat([_seeds(ps) for _, ps in sorted(by_width.items())], dim="width", join="outer")
    floor = [_open(p.with_suffix(".nc")) for p in parts if p.stem.startswith(FLOOR_PREFIX)]
    if floor:
        floor_set = _seeds(floor).isel(width=0, drop=True)
        floor_set = floor_set.rename({name: FLOOR_PREFIX + name for name in floor_set.data_vars})
        dataset = dataset.merge(floor_set, join="outer")
    if (run_dir / "ode.nc").exists():
        dataset = dataset.merge(_open(run_dir / "ode.nc"), join="outer")
    dataset.attrs.update(describe(load_config(run_dir / "config.toml")))
    return dataset


def describe(config: Config) -> dict:
    """Dataset attributes of a run of ``config``: ``config`` (TOML), ``loss_kind``, ``backend``,
    ``stage_boundaries`` (training times of the temperature changes)."""
    return {
        "config": tomli_w.dumps(config.to_dict()),
        "loss_kind": config.loss.kind,
        "backend": config.run.backend,
        "stage_boundaries": np.cumsum(config.steps_per_stage)[:-1] * config.train.lr,
    }


def record_from(dataset: xr.Dataset, prefix: str = "", width: int | None = None) -> Record:
    """The :class:`Record` of one width (or of the ``prefix`` overlay) of a loaded dataset."""
    select = dataset if width is None else dataset.sel(width=width)
    return Record(
        times=dataset.time.values,
        **{name: select[prefix + name].values for name in COORDINATE_DIMS},
        metrics={name: select[prefix + name].values for name in METRICS if prefix + name in dataset},
    )


def _stage_times(dataset: xr.Dataset, select: xr.Dataset, prefix: str = "") -> dict[str, np.ndarray]:
    """``t_align`` and ``t_balance`` of every trajectory in ``select`` (leading axes kept)."""
    values = stage_times(dataset.time.values, select[prefix + "rho_min"].values, select[prefix + "kappa_a"].values)
    return dict(zip(STAGES, values, strict=True))


def _stage_summary(times: dict[str, np.ndarray]) -> dict:
    """``<stage>_mean``, ``<stage>_sd`` over the seeds that reached the stage (NaN if none did)
    and ``<stage>_reached``, their number."""
    row = {}
    for name, values in times.items():
        hit = np.atleast_1d(values)[np.isfinite(np.atleast_1d(values))]
        mean, sd = (float(np.mean(hit)), float(np.std(hit))) if hit.size else (float("nan"), float("nan"))
        row.update({f"{name}_mean": mean, f"{name}_sd": sd, f"{name}_reached": int(hit.size)})
    return row


def _finished(final: xr.Dataset) -> np.ndarray:
    return final.a.notnull().all("signal").values  # an interrupted run may lack some seeds


def final_summary(dataset: xr.Dataset) -> list[dict]:
    """Final-time metrics: per width ``{"width", "seeds", "<metric>_mean", "<metric>_sd"}``
    over seeds, and a last row ``width = "inf"`` (sd 0) for the ODE overlay if present.

    Every row also has the stage times of :func:`dynsim.stage_times` (``t_align``,
    ``t_balance``): ``<stage>_mean`` and ``<stage>_sd`` over the seeds that reached the stage
    (NaN if none did) and ``<stage>_reached``, their number.
    """
    rows = []
    for width in dataset.width.values:
        per_width = dataset.sel(width=width)
        final = per_width.isel(time=-1)
        finished = _finished(final)
        row = {"width": int(width), "seeds": int(finished.sum())}
        for name in METRICS:
            values = final[name].values[finished]
            row.update({f"{name}_mean": float(np.mean(values)), f"{name}_sd": float(np.std(values))})
        times = _stage_times(dataset, per_width)
        rows.append(row | _stage_summary({name: values[finished] for name, values in times.items()}))
    if ODE_PREFIX + "a" in dataset:
        final = dataset.isel(time=-1)
        row = {"width": "inf", "seeds": 0}
        for name in METRICS:
            if ODE_PREFIX + name in dataset:
                row.update({f"{name}_mean": float(final[ODE_PREFIX + name]), f"{name}_sd": 0.0})
        rows.append(row | _stage_summary(_stage_times(dataset, dataset, ODE_PREFIX)))
    return rows


def stage_rows(dataset: xr.Dataset) -> list[dict]:
    """Stage times per trajectory: ``{"width", "seed", "t_align", "t_balance"}`` for every
    finished seed of every width, then ``width = "inf"`` (seed empty) for the ODE overlay."""
    rows = []
    for width in dataset.width.values:
        per_width = dataset.sel(width=width)
        finished = _finished(per_width.isel(time=-1))
        times = _stage_times(dataset, per_width)
        for i in np.flatnonzero(finished):
            row = {"width": int(width), "seed": int(per_width.seed.values[i])}
            rows.append(row | {name: float(values[i]) for name, values in times.items()})
    if ODE_PREFIX + "a" in dataset:
        times = _stage_times(dataset, dataset, ODE_PREFIX)
        rows.append({"width": "inf", "seed": ""} | {name: float(values) for name, values in times.items()})
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


def write_summary(run_dir: Path, dataset: xr.Dataset) -> Path:
    """``summary.csv``: :func:`final_summary` of the run; ``stages.csv``: its :func:`stage_rows`."""
    write_csv(Path(run_dir) / "stages.csv", stage_rows(dataset))
    return write_csv(Path(run_dir) / "summary.csv", final_summary(dataset))
