"""A finite process against its limit: errors per point of the sweep axis, the fitted error law,
and the floor the axis cannot remove.

The error of a coordinate ``c`` (a system's per-coordinate quantity) of one seed is
``|c_finite(t) - c_limit(t)| / max_{t,k} |c_limit|``, maximized over the coordinate's entries ``k``
and then either over the record times (``sup``) or taken at the last one (``final``); ``all`` is
the largest over the coordinates. The system's axis says how the error should fall along it (its
``slope``: ``-1/2`` in the width of the two-tower model, ``1`` in the step size of gradient
descent); :func:`fit_slope` measures it, with a confidence interval. Where the system has a
floor run (a point at which the axis's own error is negligible, such as the two-tower model at
width ``10^12``), its error is the floor: what remains when the axis has done all it can. Where
the system can predict the errors (its ``predict``: the two-tower model's fluctuation theory),
the comparison carries the :class:`Prediction` beside what was measured.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

from .config import ConfigError
from .results import FLOOR_PREFIX, Record, as_record, config_of, has_limit, record_from
from .sweep import check_runs, floor_run
from .system import Axis, System

CONFIDENCE = 0.95


def relative_errors(finite: Record, limit: Record) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(sup, final)``: per coordinate (and ``all``), the per-seed relative error, shape (seeds,).

    ``finite`` holds (seeds, T, k) coordinates; ``limit`` (T, k), or (seeds, T, k) where it
    depends on the seed, on the same times. Coordinates with no entry (``k = 0``) or identically
    zero in the limit (no scale to measure against) are skipped.
    """
    if not np.allclose(finite.times, limit.times, rtol=1e-12, atol=1e-12):
        raise ValueError("finite and limit records are not on the same time grid")
    sup, final = {}, {}
    for name, reference in limit.coordinates.items():
        if reference.size == 0 or not np.any(reference):
            continue
        error = np.abs(finite.coordinates[name] - reference).max(axis=-1) / np.abs(reference).max()
        sup[name], final[name] = error.max(axis=1), error[:, -1]
    for errors in (sup, final):
        errors["all"] = np.max([errors[name] for name in list(errors)], axis=0)
    return sup, final


def fit_slope(values: np.ndarray, errors: np.ndarray) -> tuple[float, tuple[float, float]]:
    """Least-squares slope of ``log error`` on ``log value`` over every (value, seed) point,
    with its two-sided ``CONFIDENCE`` interval from the t distribution.

    Args:
        values: (W,) points of the axis, at least two distinct.
        errors: (W, S) positive errors.
    """
    x = np.repeat(np.log(np.asarray(values, dtype=float)), errors.shape[1])
    y = np.log(errors).ravel()
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, x.size - 2) * fit.stderr
    return float(fit.slope), (float(fit.slope - half), float(fit.slope + half))


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A system's prediction of the comparison's errors (``sup_error["all"]``), from its theory.

    Attributes:
        sup_mean, sup_sd: (W,) the predicted mean and sd over seeds at each point of the axis.
        floor: the predicted floor (NaN where there is none).
        curve: ``(values, errors)``: the predicted mean error on a dense grid of the axis, for figures.
        label: what the curve is, for legends and tables (its formula and constants).
    """

    sup_mean: np.ndarray
    sup_sd: np.ndarray
    floor: float
    curve: tuple[np.ndarray, np.ndarray]
    label: str


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A finite process along its axis against its limit.

    Attributes:
        axis: the swept quantity (:class:`~dynsim.engine.system.Axis`): its name, its points
            ``axis.values`` and the slope the theory expects, ``axis.slope``.
        sup_error, final_error: per coordinate (and ``all``), the per-seed relative error,
            (W, S): sup over time, and at the final time.
        slope, slope_ci: fitted slope of ``log sup_error["all"]`` on ``log value`` and its 95%
            confidence interval.
        floor_value: the point of the axis the floor run stands at (``None`` without a floor).
        floor_sup_error: the same at the floor run, per coordinate, (S,); empty without a floor.
        floor, floor_sd: mean and sd over seeds of ``floor_sup_error["all"]`` (NaN without a floor).
        prediction: the system's :class:`Prediction` of ``sup_error["all"]``, or ``None``.
    """

    axis: Axis
    sup_error: dict[str, np.ndarray]
    final_error: dict[str, np.ndarray]
    slope: float
    slope_ci: tuple[float, float]
    floor_value: object
    floor_sup_error: dict[str, np.ndarray]
    floor: float
    floor_sd: float
    prediction: Prediction | None = None

    @property
    def values(self) -> np.ndarray:
        """(W,) the points of the axis."""
        return np.asarray(self.axis.values)

    @property
    def widths(self) -> np.ndarray:
        """``values``, under the name the two-tower system's width sweeps have always used."""
        return self.values

    def rows(self) -> list[dict[str, float]]:
        """One row per point: mean and sd over seeds of each error (``sup_all_mean``, ...), and the
        predicted ones (``predicted_sup_all_mean``, ``..._sd``) where there is a prediction."""
        rows = []
        for i, value in enumerate(self.axis.values):
            row: dict[str, float] = {self.axis.name: value}
            for kind, errors in (("sup", self.sup_error), ("final", self.final_error)):
                for name, per_seed in errors.items():
                    row[f"{kind}_{name}_mean"] = float(np.mean(per_seed[i]))
                    row[f"{kind}_{name}_sd"] = float(np.std(per_seed[i]))
            if self.prediction is not None:
                row["predicted_sup_all_mean"] = float(self.prediction.sup_mean[i])
                row["predicted_sup_all_sd"] = float(self.prediction.sup_sd[i])
            rows.append(row)
        return rows


def comparison_of(
    axis: Axis, finite: list[Record], limit: Record, floor: tuple | None = None, prediction: Prediction | None = None
) -> Comparison:
    """A :class:`Comparison` from the records of each point of ``axis``, the limit, the floor run
    ``(value, record)`` (``None``: no floor) and the system's prediction, if any."""
    per_point = [relative_errors(record, limit) for record in finite]
    sup = {name: np.stack([s[name] for s, _ in per_point]) for name in per_point[0][0]}
    final = {name: np.stack([f[name] for _, f in per_point]) for name in per_point[0][1]}
    floor_sup = {} if floor is None else relative_errors(floor[1], limit)[0]
    slope, slope_ci = fit_slope(np.asarray(axis.values), sup["all"])
    return Comparison(
        axis=axis,
        sup_error=sup,
        final_error=final,
        slope=slope,
        slope_ci=slope_ci,
        floor_value=None if floor is None else floor[0],
        floor_sup_error=floor_sup,
        floor=float(np.mean(floor_sup["all"])) if floor_sup else float("nan"),
        floor_sd=float(np.std(floor_sup["all"])) if floor_sup else float("nan"),
        prediction=prediction,
    )


def check_comparable(axis: Axis, seeds: int) -> None:
    """A slope needs two distinct points, an sd two seeds."""
    if len(set(axis.values)) < 2:
        raise ConfigError(
            f"{axis.name} = {list(axis.values)!r} is invalid: a slope needs at least two distinct {axis.name} values"
        )
    if seeds < 2:
        raise ConfigError(f"seeds = {seeds!r} is invalid: an error's sd over seeds needs at least 2")


def compare_runs(system: System, config) -> Comparison:
    """Run every point of ``config``'s axis, the floor run and the limit, in memory, and compare.

    Raises:
        ConfigError: fewer than two distinct points or seeds, or a point, floor run or limit the
            system cannot run (refused before any simulation).
    """
    axis = system.axis(config)
    check_comparable(axis, config.run.seeds)
    check_runs(system, config, floor=True)
    limit = as_record(system.limit(config), system)
    finite = [as_record(system.simulate(config, value, config.run.seeds, 0), system) for value in axis.values]
    run = floor_run(system, config)
    floor = None if run is None else (run[1], as_record(system.simulate(*run, config.run.seeds, 0), system))
    return comparison_of(axis, finite, limit, floor, _predict(system, config, axis, limit))


def _predict(system: System, config, axis: Axis, limit: Record) -> Prediction | None:
    return None if system.predict is None else system.predict(config, axis.values, limit)


def comparison_of_dataset(dataset, system: System) -> Comparison:
    """The :class:`Comparison` of a loaded ``dynsim compare`` run (the limit present)."""
    axis_name = dataset.attrs["axis"]
    values = tuple(v.item() for v in dataset[axis_name].values)
    axis = dataclasses.replace(system.axis(config_of(dataset, system)), values=values)
    finite = [record_from(dataset, system.coordinates, value=value) for value in values]
    limit = record_from(dataset, system.coordinates, prefix=f"{system.limit_name}_")
    run = floor_run(system, config_of(dataset, system))
    has_floor = run is not None and FLOOR_PREFIX + next(iter(system.coordinates)) in dataset
    floor = (run[1], record_from(dataset, system.coordinates, prefix=FLOOR_PREFIX)) if has_floor else None
    return comparison_of(axis, finite, limit, floor, _predict(system, config_of(dataset, system), axis, limit))


def has_comparison(dataset, system: System) -> bool:
    """Whether a loaded run holds a comparison: the limit, and the floor where the system has one."""
    run = floor_run(system, config_of(dataset, system))
    enough = dataset.sizes[dataset.attrs["axis"]] >= 2 and dataset.sizes["seed"] >= 2
    floor_present = run is None or FLOOR_PREFIX + next(iter(system.coordinates)) in dataset
    return enough and has_limit(dataset, system) and floor_present
