"""Finite width against its infinite-width limit: errors per width, the error-vs-width law, the
SGD floor.

The error of a per-coordinate quantity ``c`` (``a, b, p, nu_a, nu_b``) of one seed is
``|c_finite(t) - c_ODE(t)| / max_{t,k} |c_ODE|``, maximized over the coordinates ``k`` and
then either over the record times (``sup``) or taken at the last one (``final``); ``all`` is
the largest over the five quantities. Theory: the finite-width state fluctuates around the
ODE by ``O(m^-1/2)`` (the Wishart fluctuations of ``W^T W``), so ``log error`` falls with
slope ``-1/2`` in ``log m`` until SGD's own error, the *floor*, takes over.

The floor is estimated directly: the same batch, learning rate and seeds run at width
``FLOOR_WIDTH = 10^12`` with the exact Gram-space backend, whose width error
(``~ sqrt(2/m) = 1.4e-6``) is negligible, so what remains is the error of finite-batch,
finite-step SGD against the gradient flow.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

from ..two_tower import ode
from ..two_tower.simulate import backend_and_init, simulate
from ..two_tower.trajectory import Record
from .config import Config, ConfigError, load_config
from .results import FLOOR_PREFIX, ODE_PREFIX, record_from

QUANTITIES = ("a", "b", "p", "nu_a", "nu_b")
FLOOR_WIDTH = 10**12
FLOOR_RUN = {"width": FLOOR_WIDTH, "backend": "gram", "init": "bartlett"}  # the floor run's simulate arguments
CONFIDENCE = 0.95


def relative_errors(finite: Record, ode: Record) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(sup, final)``: per quantity (and ``all``), the per-seed relative error, shape (seeds,).

    ``finite`` holds (seeds, T, k) arrays, ``ode`` (T, k) on the same times. Quantities with
    no coordinate (``n = 0``) or identically zero in the ODE (``noise = 0``) are skipped.
    """
    if not np.allclose(finite.times, ode.times, rtol=1e-12, atol=1e-12):
        raise ValueError("finite-width and ODE records are not on the same time grid")
    sup, final = {}, {}
    for name in QUANTITIES:
        reference = getattr(ode, name)
        if reference.size == 0 or not np.any(reference):  # no coordinate, or no scale (noise 0)
            continue
        error = np.abs(getattr(finite, name) - reference).max(axis=-1) / np.abs(reference).max()
        sup[name], final[name] = error.max(axis=1), error[:, -1]
    for errors in (sup, final):
        errors["all"] = np.max([errors[name] for name in list(errors)], axis=0)
    return sup, final


def fit_slope(widths: np.ndarray, errors: np.ndarray) -> tuple[float, tuple[float, float]]:
    """Least-squares slope of ``log error`` on ``log width`` over every (width, seed) point,
    with its two-sided ``CONFIDENCE`` interval from the t distribution.

    Args:
        widths: (W,) widths, at least two distinct.
        errors: (W, S) positive errors.
    """
    x = np.repeat(np.log(np.asarray(widths, dtype=float)), errors.shape[1])
    y = np.log(errors).ravel()
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, x.size - 2) * fit.stderr
    return float(fit.slope), (float(fit.slope - half), float(fit.slope + half))


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Finite widths against the infinite-width ODE.

    Attributes:
        widths: (W,) the finite widths.
        sup_error, final_error: per quantity (``a, b, p, nu_a, nu_b`` and ``all``), the
            per-seed relative error, (W, S): sup over time, and at the final time.
        floor_sup_error: the same at ``FLOOR_WIDTH`` (the SGD floor), per quantity, (S,).
        slope, slope_ci: fitted slope of ``log sup_error["all"]`` on ``log width`` and its
            95% confidence interval (theory: -1/2 above the floor).
        floor, floor_sd: mean and sd over seeds of ``floor_sup_error["all"]``.
    """

    widths: np.ndarray
    sup_error: dict[str, np.ndarray]
    final_error: dict[str, np.ndarray]
    floor_sup_error: dict[str, np.ndarray]
    slope: float
    slope_ci: tuple[float, float]
    floor: float
    floor_sd: float

    def rows(self) -> list[dict[str, float]]:
        """One row per width: mean and sd over seeds of each error (``sup_all_mean``, ...)."""
        rows = []
        for i, width in enumerate(self.widths):
            row: dict[str, float] = {"width": int(width)}
            for kind, errors in (("sup", self.sup_error), ("final", self.final_error)):
                for name, values in errors.items():
                    row[f"{kind}_{name}_mean"] = float(np.mean(values[i]))
                    row[f"{kind}_{name}_sd"] = float(np.std(values[i]))
            rows.append(row)
        return rows


def comparison_of(widths, finite: list[Record], ode: Record, floor: Record) -> Comparison:
    """A :class:`Comparison` from the records of each width, the ODE and the floor run."""
    per_width = [relative_errors(record, ode) for record in finite]
    sup = {name: np.stack([s[name] for s, _ in per_width]) for name in per_width[0][0]}
    final = {name: np.stack([f[name] for _, f in per_width]) for name in per_width[0][1]}
    floor_sup, _ = relative_errors(floor, ode)
    widths = np.asarray(widths)
    slope, slope_ci = fit_slope(widths, sup["all"])
    return Comparison(
        widths=widths,
        sup_error=sup,
        final_error=final,
        floor_sup_error=floor_sup,
        slope=slope,
        slope_ci=slope_ci,
        floor=float(np.mean(floor_sup["all"])),
        floor_sd=float(np.std(floor_sup["all"])),
    )


def compare(
    config: Config | dict | str | None = None,
    widths=None,
    seeds: int | None = None,
    backend: str = "gram",
) -> Comparison:
    """Run the finite widths and the infinite-width ODE on the same grid and compare them.

    Args:
        config: a :class:`Config`, nested dict, TOML path or ``None`` (the default).
        widths: widths to run; default ``config.run.widths`` (at least two distinct).
        seeds: seeds per width; default ``config.run.seeds`` (at least two for an sd).
        backend: ``"gram"`` (default: exact, cost independent of width) or ``"param"``.
            The floor run always uses ``"gram"``, the only backend that reaches 10^12.

    Returns:
        The :class:`Comparison`.

    Example:
        >>> import dynsim
        >>> config = {"data": {"r": 2, "n": 2}, "loss": {"stages": [[1.0, 1.0]]},
        ...     "train": {"lr": 0.05, "batch": 128, "precision": "float64"},
        ...     "run": {"record_every": 0.25, "alignment_samples": 16}}
        >>> comparison = dynsim.compare(config, widths=[100, 1000, 10000], seeds=4)
        >>> -0.7 < comparison.slope < -0.3
        True
    """
    config = load_config(config)
    widths = list(config.run.widths if widths is None else widths)
    seeds = config.run.seeds if seeds is None else seeds
    check_comparable(widths, seeds)
    check_floor(config)
    solution = ode.solve(config)  # refuses what has no ODE before any simulation runs
    finite = [simulate(config, width=m, seeds=seeds, backend=backend) for m in widths]
    return comparison_of(widths, finite, solution, simulate(config, seeds=seeds, **FLOOR_RUN))


def check_comparable(widths, seeds: int) -> None:
    """A slope needs two distinct widths, an sd two seeds."""
    if len(set(widths)) < 2:
        raise ConfigError(f"widths = {list(widths)!r} is invalid: a slope needs at least two distinct widths")
    if seeds < 2:
        raise ConfigError(f"seeds = {seeds!r} is invalid: an error's sd over seeds needs at least 2")


def check_floor(config: Config) -> None:
    """Refuse a configuration the floor run (Gram backend, Bartlett, width 10^12) cannot run."""
    backend_and_init(config, FLOOR_WIDTH, FLOOR_RUN["backend"], FLOOR_RUN["init"])


def comparison_of_dataset(dataset) -> Comparison:
    """The :class:`Comparison` of a loaded ``dynsim compare`` run (``ode_*`` and ``floor_*`` present)."""
    widths = dataset.width.values
    finite = [record_from(dataset, width=int(m)) for m in widths]
    return comparison_of(widths, finite, record_from(dataset, ODE_PREFIX), record_from(dataset, FLOOR_PREFIX))
