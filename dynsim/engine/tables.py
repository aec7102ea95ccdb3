"""Summary tables as strings: final metrics, event times and the comparison, for any system.

The command line prints a :class:`Report` as it is; the cells follow one convention: ``mean ±
sd`` over seeds, the limit's row without an sd where it does not depend on the seed, event
times with ``(reached/seeds)`` when not every seed reached them and ``never`` when none did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from .compare import CONFIDENCE, Comparison


@dataclasses.dataclass(frozen=True)
class Report:
    """A titled table of strings, and a line to print after it (empty: none)."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    message: str = ""


def point_label(row: Mapping, attrs: Mapping) -> str:
    """The axis cell of a summary row: its value, or the limit's label (``∞ (ODE)``)."""
    value = row[attrs["axis"]]
    return attrs["limit_label"] if value == attrs["limit_row"] else str(value)


def metric_cell(row: Mapping, name: str) -> str:
    """``mean ± sd`` of one metric of a summary row (a limit without seeds: the mean alone; empty if absent)."""
    if f"{name}_mean" not in row:
        return ""
    mean = f"{row[f'{name}_mean']:.4g}"
    return mean if row["seeds"] == 0 else f"{mean} ± {row[f'{name}_sd']:.2g}"


def event_cell(row: Mapping, name: str, sd: bool = False) -> str:
    """``mean [± sd] (reached/seeds)`` of one event time; ``never`` if no seed reached it."""
    reached, seeds = row[f"{name}_reached"], row["seeds"]
    if not reached:
        return "never"
    mean = f"{row[f'{name}_mean']:.4g}"
    if seeds == 0:
        return mean
    return mean + (f" ± {row[f'{name}_sd']:.2g}" if sd else "") + ("" if reached == seeds else f" ({reached}/{seeds})")


def metrics_report(title: str, rows: Sequence[Mapping], attrs: Mapping, names: Sequence[str]) -> Report:
    """The final metrics ``names`` of :func:`dynsim.engine.results.final_summary` rows, one row per point."""
    cells = [(point_label(row, attrs), *(metric_cell(row, name) for name in names)) for row in rows]
    return Report(title, (attrs["axis"], *names), cells)


def events_report(rows: Sequence[Mapping], attrs: Mapping, title: str) -> Report:
    """The event times of summary rows (every ``<event>_reached`` column names one), under ``title``."""
    names = [key.removesuffix("_reached") for key in rows[0] if key.endswith("_reached")]
    cells = [(point_label(row, attrs), *(event_cell(row, name, sd=True) for name in names)) for row in rows]
    return Report(title, (attrs["axis"], *names), cells)


def comparison_report(comparison: Comparison) -> Report:
    """Relative errors against the limit per point, mean ± sd over seeds, with the fitted slope below."""
    names = [name for name in comparison.sup_error if name != "all"]
    columns = {"sup over time": "sup_all"}
    if comparison.prediction is not None:
        columns["predicted (sup)"] = "predicted_sup_all"
    columns |= {"final time": "final_all"} | {f"{n} (sup)": f"sup_{n}" for n in names}
    cells = [
        (str(row[comparison.axis.name]), *(f"{row[f'{k}_mean']:.3g} ± {row[f'{k}_sd']:.2g}" for k in columns.values()))
        for row in comparison.rows()
    ]
    title = "relative error to the limit, mean ± sd over seeds"
    return Report(title, (comparison.axis.name, *columns), cells, slope_line(comparison))


def slope_line(comparison: Comparison) -> str:
    """The fitted slope, its interval and the theory's, and the floor where there is one."""
    axis = comparison.axis
    low, high = comparison.slope_ci
    line = (
        f"slope of log error vs log {axis.name}: {comparison.slope:.3f} ({CONFIDENCE:.0%} CI {low:.3f} .. {high:.3f}; "
        f"theory {axis.slope:g})"
    )
    if comparison.floor_value is not None:
        line += (
            f"; {axis.floor_label} at {axis.name} = {comparison.floor_value:g}: "
            f"{comparison.floor:.3g} ± {comparison.floor_sd:.2g}"
        )
        if comparison.prediction is not None:
            line += f" (predicted {comparison.prediction.floor:.3g})"
    if comparison.prediction is not None:
        line += f"\npredicted: {comparison.prediction.label}"
    return line
