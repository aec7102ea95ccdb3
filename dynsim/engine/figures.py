"""Figures of a finished run, written as PNG files (Agg backend, no display); the pieces every
system's figures are drawn with.

``metrics.png`` shows a system's metrics (its ``panels``) against training time
``t = lr·steps``: one colour per point of the sweep axis, a line for the mean over seeds and a
shaded band from the smallest to the largest seed, the limit as a black dashed line where it was
solved, and the run's marked times (temperature-stage changes, predicted plateau exits) as
dotted grey verticals. :func:`coordinate_trajectories` draws one coordinate's entries one panel
each, in the same style. ``error_vs_<axis>.png`` shows on log-log axes how the error against the
limit (relative, sup over time) moves along the axis: mean ± sd over seeds, the fitted power
law with its confidence interval (in the legend), a reference line of the slope the theory
expects and the floor the axis cannot remove, where the system has one.

What the figures read of a dataset: the sweep axis and the limit's prefix from its attributes
(``axis``, ``axis_symbol``, ``limit``, ``limit_label``; :func:`dynsim.engine.results.describe`),
and the optional ``marks``, ``marks_label`` and ``title``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

TIME_LABEL = "training time t = lr·steps"
LIMIT_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.5}
MARK_STYLE = {"color": "grey", "linestyle": ":", "linewidth": 1.2}


def minus(x: float) -> str:
    """``x`` to two decimals with a typographic minus sign."""
    return f"{x:.2f}".replace("-", "\N{MINUS SIGN}")


def axis_values(ds: xr.Dataset) -> np.ndarray:
    """The points of the sweep axis a dataset holds (none for a limit alone)."""
    axis = ds.attrs["axis"]
    return ds[axis].values if axis in ds.coords else np.array([])


def axis_colors(values: np.ndarray) -> list:
    """One colour per point of the axis."""
    return list(plt.get_cmap("viridis")(np.linspace(0.1, 0.85, len(values))))


def marks(ds: xr.Dataset) -> np.ndarray:
    """The marked times of a run (``marks`` attribute), possibly none."""
    return np.atleast_1d(np.asarray(ds.attrs.get("marks", ()), dtype=float))


def plot_points(ax, da: xr.DataArray, colors: list) -> None:
    """Per point of the axis: the seed mean as a line and the min..max band over seeds
    (``da``: axis, seed, time)."""
    time = da["time"].values
    for i, color in enumerate(colors):
        per_point = da.isel({da.dims[0]: i})
        low, high = per_point.min("seed").values, per_point.max("seed").values
        ax.fill_between(time, low, high, color=color, alpha=0.2, linewidth=0)
        ax.plot(time, per_point.mean("seed").values, color=color, linewidth=1.5)


def plot_limit(ax, da: xr.DataArray) -> None:
    """The limit as a dashed line: itself, or its mean over seeds where it depends on the seed."""
    ax.plot(da["time"].values, (da.mean("seed") if "seed" in da.dims else da).values, **LIMIT_STYLE)


def mark_times(ax, times: np.ndarray) -> None:
    """Dotted verticals at ``times``."""
    for t in times:
        ax.axvline(t, **MARK_STYLE)


def legend_handles(ds: xr.Dataset, colors: list, limit: bool) -> list:
    """Legend entries: one per point of the axis, the limit if drawn, the seed band, the marks."""
    symbol = ds.attrs["axis_symbol"]
    values = axis_values(ds)
    handles = [
        Line2D([], [], color=c, linewidth=1.5, label=f"{symbol} = {v}") for v, c in zip(values, colors, strict=True)
    ]
    if limit:
        handles.append(Line2D([], [], **LIMIT_STYLE, label=f"{symbol} = {ds.attrs['limit_label']}"))
    if len(values):
        handles.append(Patch(color="grey", alpha=0.3, label="min–max over seeds"))
    if len(marks(ds)):
        handles.append(Line2D([], [], **MARK_STYLE, label=ds.attrs.get("marks_label", "marked time")))
    return handles


def seed_band(ax, steps, values: np.ndarray, color, label: str, log: bool = True) -> None:
    """Median over seeds (axis 0) with a min–max band; ``log``: ``steps`` > 0 only (log axes)."""
    keep = steps > 0 if log else np.ones(len(steps), bool)
    ax.plot(steps[keep], np.nanmedian(values, axis=0)[keep], color=color, label=label)
    if values.shape[0] > 1:
        ax.fill_between(steps[keep], np.nanmin(values, 0)[keep], np.nanmax(values, 0)[keep], color=color, alpha=0.2)


def seeds_label(ds: xr.Dataset) -> str:
    """What a band over ``ds``'s seeds shows (``median of 4 seeds, band min–max``)."""
    count = ds.sizes["seed"]
    return "1 seed" if count == 1 else f"median of {count} seeds, band min–max"


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG and close it; returns the path."""
    path = Path(path)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def _metrics_figure(ds: xr.Dataset, panels: Mapping[str, tuple[str, str]]) -> Figure:
    """The figure of :func:`metric_trajectories`, not yet saved."""
    colors = axis_colors(axis_values(ds))
    prefix = f"{ds.attrs['limit']}_"
    ncols = 3
    nrows = -(-(len(panels) + 1) // ncols)  # one cell more for the legend
    fig, axes = plt.subplots(nrows, ncols, figsize=(13, 3.5 * nrows), sharex=True, layout="constrained")
    cells, legend_ax = axes.flat[: len(panels)], axes.flat[len(panels)]
    limit = False
    for ax, (name, (title, ylabel, *scale)) in zip(cells, panels.items(), strict=True):
        ax.set_yscale(*scale or ["linear"])
        if name in ds:
            plot_points(ax, ds[name], colors)
        if prefix + name in ds:
            plot_limit(ax, ds[prefix + name])
            limit = True
        mark_times(ax, marks(ds))
        ax.set(title=title, ylabel=ylabel)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels) + 1 :]:
        ax.axis("off")
    for ax in cells[-ncols:]:  # the panels with nothing below them
        ax.set_xlabel(TIME_LABEL)
        ax.xaxis.set_tick_params(labelbottom=True)
    legend_ax.axis("off")
    legend_ax.legend(handles=legend_handles(ds, colors, limit), loc="center", fontsize=11)
    fig.suptitle(f"Training metrics vs time — {ds.attrs.get('title', ds.attrs.get('system', ''))}")
    return fig


def metric_trajectories(ds: xr.Dataset, panels: Mapping[str, tuple[str, str]], path: str | Path) -> Path:
    """Plot each metric of ``panels`` (name -> (title, y label[, y scale])) against training time, one
    colour per point of the axis (seed mean and min..max band), the limit dashed where present
    and the marked times dotted; returns the written path."""
    return save(_metrics_figure(ds, panels), path)


def _coordinates_figure(ds: xr.Dataset, name: str, label: str, max_coordinates: int) -> Figure:
    """The figure of :func:`coordinate_trajectories`, not yet saved."""
    colors = axis_colors(axis_values(ds))
    limit = f"{ds.attrs['limit']}_{name}"
    dim = ds[name].dims[-1]
    size = ds.sizes[dim]
    shown = min(size, max_coordinates)
    ncols = min(shown, 4)
    nrows = -(-shown // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols + 2.2, 2.6 * nrows + 0.6), sharex=True, squeeze=False, layout="constrained"
    )
    for k, ax in enumerate(axes.flat):
        if k >= shown:
            ax.axis("off")
            continue
        plot_points(ax, ds[name].isel({dim: k}), colors)
        if limit in ds:
            plot_limit(ax, ds[limit].isel({dim: k}))
        mark_times(ax, marks(ds))
        ax.set_title(f"{name}, {dim} {k + 1}")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(label)
    for ax in axes.flat[shown - ncols : shown]:  # the panels with nothing below them
        ax.set_xlabel(TIME_LABEL)
        ax.xaxis.set_tick_params(labelbottom=True)
    fig.legend(handles=legend_handles(ds, colors, limit in ds), loc="outside right upper")
    fig.suptitle(f"{label} vs time (first {shown} of {size})")
    return fig


def coordinate_trajectories(ds: xr.Dataset, name: str, label: str, path: str | Path, max_coordinates: int = 8) -> Path:
    """Plot the entries ``k ≤ max_coordinates`` of the coordinate ``name`` (y label ``label``), one
    panel each: per point of the axis the seed mean and min..max band, the limit dashed where
    present; returns the written path."""
    return save(_coordinates_figure(ds, name, label, max_coordinates), path)


def error_axes(ax, comparison) -> None:
    """Draw a comparison into ``ax`` (see :func:`error_vs_axis`)."""
    axis = comparison.axis
    values = np.asarray(axis.values, dtype=float)
    errors = np.asarray(comparison.sup_error["all"], dtype=float)
    seeds = errors.shape[1]
    mean = errors.mean(axis=1)
    sd = errors.std(axis=1)  # population sd (ddof 0), as in the tables
    # A log axis cannot show mean − sd ≤ 0: the lower bar stops at the smallest seed's error.
    lower = mean - np.maximum(mean - sd, errors.min(axis=1))
    ax.scatter(np.repeat(values, seeds), errors.ravel(), s=12, color="tab:blue", alpha=0.3, label="per seed")
    ax.errorbar(
        values, mean, yerr=[lower, sd], fmt="o", color="tab:blue", capsize=4, label=f"mean ± sd over {seeds} seeds"
    )
    grid = np.geomspace(values.min(), values.max(), 50)
    # The fitted slope, with the prefactor that best matches the means on the log scale.
    prefactor = np.exp(np.mean(np.log(mean) - comparison.slope * np.log(values)))
    low, high = comparison.slope_ci
    ax.plot(
        grid,
        prefactor * grid**comparison.slope,
        color="tab:red",
        label=f"fit: slope {minus(comparison.slope)} [{minus(low)}, {minus(high)}]",
    )
    first = np.argmin(values)
    reference = mean[first] * (grid / values[first]) ** axis.slope
    label = rf"reference $\propto {axis.symbol}^{{{axis.slope:g}}}$"
    ax.plot(grid, reference, color="grey", linestyle="--", label=label)
    if comparison.prediction is not None:
        curve_values, curve_errors = comparison.prediction.curve
        ax.plot(curve_values, curve_errors, color="tab:purple", label=comparison.prediction.label)
        ax.errorbar(
            values * 1.04,
            comparison.prediction.sup_mean,
            yerr=comparison.prediction.sup_sd,
            fmt="D",
            color="tab:purple",
            capsize=3,
            markersize=4,
            label="predicted mean ± sd",
        )
    if np.isfinite(comparison.floor):
        floor, floor_sd = comparison.floor, comparison.floor_sd
        # The band's lower edge is clipped to stay positive on the log axis.
        ax.axhspan(max(floor - floor_sd, floor / 10), floor + floor_sd, color="tab:green", alpha=0.15, linewidth=0)
        ax.axhline(floor, color="tab:green", linestyle="-.", label=axis.floor_label)
    ax.set(xscale="log", yscale="log", xlabel=axis.label, ylabel="relative error (sup over time)")
    ax.set_xticks(values, [str(v) for v in axis.values])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    ax.set_title(f"Error against the limit vs {axis.name}")


def _error_figure(comparison) -> Figure:
    """The figure of :func:`error_vs_axis`, not yet saved."""
    fig, ax = plt.subplots(figsize=(7, 5), layout="constrained")
    error_axes(ax, comparison)
    return fig


def error_vs_axis(comparison, path: str | Path) -> Path:
    """Plot on log-log axes the per-point mean ± sd over seeds of ``comparison.sup_error["all"]``,
    the fitted power law, a reference line of the expected slope through the first point's mean,
    and the floor (± its sd) where there is one; returns the written path."""
    return save(_error_figure(comparison), path)


def draw(ds: xr.Dataset, comparison, figures_dir: str | Path, system) -> list[Path]:
    """Write ``metrics.png`` (the system's panels), the system's own figures and, when
    ``comparison`` is not None, ``error_vs_<axis>.png`` into ``figures_dir`` (created if
    needed); returns their paths."""
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    paths = [metric_trajectories(ds, system.panels, figures_dir / "metrics.png")]
    if system.figures is not None:
        paths += system.figures(ds, figures_dir)
    if comparison is not None:
        paths.append(error_vs_axis(comparison, figures_dir / f"error_vs_{comparison.axis.name}.png"))
    return paths
