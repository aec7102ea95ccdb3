"""Figures of a finished run, written as PNG files (Agg backend, no display).

``metrics.png`` shows the summary metrics (worst-coordinate alignment ``rho_min``, condition
number ``kappa_A``, balance, noise-to-signal ratio, loss) against training time
``t = lr·steps``: one colour per width, a line for the mean over seeds and a shaded band from
the smallest to the largest seed, the infinite-width ODE as a black dashed line where it was
solved, and the temperature-stage changes as dotted grey verticals. ``coordinates.png``
shows the signal coordinates ``a_k(t) = ‖S_A e_k‖²`` one panel each, in the same style.
``error_vs_width.png`` shows on log-log axes how the finite-width error (relative, sup over
time) shrinks with the width ``m``: mean ± sd over seeds, the fitted power law with its
confidence interval (in the legend), a reference ``m^{-1/2}`` line and the floor set by SGD noise.
``fig1_trajectories`` is the Figure-1-style panel set of ``dynsim reproduce fig1``: one row per
training condition, columns ``rho_min``, ``kappa_A``, ``nsr`` and balance, in the style of
``metrics.png``; ``phase_heatmaps`` draws a :func:`dynsim.phase_diagram` grid as heat maps.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogLocator, NullFormatter, NullLocator, ScalarFormatter

TIME_LABEL = "training time t = lr·steps"
ODE_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.5}
STAGE_STYLE = {"color": "grey", "linestyle": ":", "linewidth": 1.2}
# name -> (panel title, y-axis label); every metric is dimensionless.
METRIC_PANELS = {
    "rho_min": ("alignment: worst coordinate", r"$\rho_{\min} = \min_k\, p_k / \sqrt{a_k b_k}$"),
    "kappa_a": ("condition number of tower A", r"$\kappa_A = s_1(S_A) / s_r(S_A)$"),
    "balance": ("balance", r"stable rank of Cov $f_A$"),
    "nsr": ("noise-to-signal ratio", r"$\|N_A\|_F \,/\, \|S_A\|_F$"),
    "loss": ("training loss", "loss"),
}


FIG1_METRICS = ("rho_min", "kappa_a", "nsr", "balance")
PHASE_PANELS = {"kappa_a": r"final $\kappa_A$", "rho_min": r"final $\rho_{\min}$"}


def _minus(x: float) -> str:
    """``x`` to two decimals with a typographic minus sign."""
    return f"{x:.2f}".replace("-", "\N{MINUS SIGN}")


def _width_colors(widths: np.ndarray) -> list:
    return list(plt.get_cmap("viridis")(np.linspace(0.1, 0.85, len(widths))))


def _stage_boundaries(ds: xr.Dataset) -> np.ndarray:
    return np.atleast_1d(np.asarray(ds.attrs.get("stage_boundaries", ()), dtype=float))


def _plot_widths(ax, da: xr.DataArray, colors: list) -> None:
    """Per width: the seed mean as a line and the min..max band over seeds (``da``: width, seed, time)."""
    time = da["time"].values
    for i, color in enumerate(colors):
        per_width = da.isel(width=i)
        low, high = per_width.min("seed").values, per_width.max("seed").values
        ax.fill_between(time, low, high, color=color, alpha=0.2, linewidth=0)
        ax.plot(time, per_width.mean("seed").values, color=color, linewidth=1.5)


def _mark_stages(ax, boundaries: np.ndarray) -> None:
    for t in boundaries:
        ax.axvline(t, **STAGE_STYLE)


def _legend_handles(widths: np.ndarray, colors: list, ode: bool, stages: bool) -> list:
    handles = [
        Line2D([], [], color=c, linewidth=1.5, label=f"m = {int(w)}") for w, c in zip(widths, colors, strict=True)
    ]
    if ode:
        handles.append(Line2D([], [], **ODE_STYLE, label="m = ∞ (ODE)"))
    if len(widths):
        handles.append(Patch(color="grey", alpha=0.3, label="min–max over seeds"))
    if stages:
        handles.append(Line2D([], [], **STAGE_STYLE, label="temperature stage change"))
    return handles


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def _metrics_figure(ds: xr.Dataset) -> Figure:
    """The figure of :func:`metric_trajectories`, not yet saved."""
    widths = ds["width"].values if "width" in ds.coords else np.array([], dtype=int)  # none: ODE only
    colors = _width_colors(widths)
    boundaries = _stage_boundaries(ds)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True, layout="constrained")
    panels, legend_ax = axes.flat[: len(METRIC_PANELS)], axes.flat[len(METRIC_PANELS)]
    ode = False
    for ax, (name, (title, ylabel)) in zip(panels, METRIC_PANELS.items(), strict=True):
        if name in ds:
            _plot_widths(ax, ds[name], colors)
        if f"ode_{name}" in ds:
            ax.plot(ds["time"].values, ds[f"ode_{name}"].values, **ODE_STYLE)
            ode = True
        _mark_stages(ax, boundaries)
        ax.set(title=title, ylabel=ylabel)
        ax.grid(alpha=0.3)
    for ax in panels[-3:]:  # the panels with nothing below them
        ax.set_xlabel(TIME_LABEL)
        ax.xaxis.set_tick_params(labelbottom=True)
    legend_ax.axis("off")
    legend_ax.legend(handles=_legend_handles(widths, colors, ode, len(boundaries) > 0), loc="center", fontsize=11)
    fig.suptitle(
        f"Training metrics vs time — loss: {ds.attrs.get('loss_kind', '?')}, backend: {ds.attrs.get('backend', '?')}"
    )
    return fig


def metric_trajectories(ds: xr.Dataset, path: str | Path) -> Path:
    """Plot ``rho_min``, ``kappa_a``, ``balance``, ``nsr`` and ``loss`` against training time, one
    colour per width (seed mean and min..max band), the ODE dashed where present and the
    temperature-stage changes dotted; returns the written path."""
    return _save(_metrics_figure(ds), path)


def _coordinates_figure(ds: xr.Dataset, max_coordinates: int) -> Figure:
    """The figure of :func:`coordinate_trajectories`, not yet saved."""
    widths = ds["width"].values
    colors = _width_colors(widths)
    boundaries = _stage_boundaries(ds)
    r = ds.sizes["signal"]
    shown = min(r, max_coordinates)
    ncols = min(shown, 4)
    nrows = -(-shown // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols + 2.2, 2.6 * nrows + 0.6), sharex=True, squeeze=False, layout="constrained"
    )
    for k, ax in enumerate(axes.flat):
        if k >= shown:
            ax.axis("off")
            continue
        _plot_widths(ax, ds["a"].isel(signal=k), colors)
        if "ode_a" in ds:
            ax.plot(ds["time"].values, ds["ode_a"].isel(signal=k).values, **ODE_STYLE)
        _mark_stages(ax, boundaries)
        ax.set_title(f"$a_{{{k + 1}}}$")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$a_k = \|S_A e_k\|^2$")
    for ax in axes.flat[shown - ncols : shown]:  # the panels with nothing below them
        ax.set_xlabel(TIME_LABEL)
        ax.xaxis.set_tick_params(labelbottom=True)
    fig.legend(handles=_legend_handles(widths, colors, "ode_a" in ds, len(boundaries) > 0), loc="outside right upper")
    fig.suptitle(f"Signal coordinates $a_k(t)$ vs time (first {shown} of r = {r})")
    return fig


def coordinate_trajectories(ds: xr.Dataset, path: str | Path, max_coordinates: int = 8) -> Path:
    """Plot the signal coordinates ``a_k(t)``, ``k ≤ max_coordinates``, one panel each: per width
    the seed mean and min..max band, the ODE ``ode_a`` dashed where present; returns the path."""
    return _save(_coordinates_figure(ds, max_coordinates), path)


def _error_figure(comparison) -> Figure:
    """The figure of :func:`error_vs_width`, not yet saved."""
    widths = np.asarray(comparison.widths, dtype=float)
    errors = np.asarray(comparison.sup_error["all"], dtype=float)
    seeds = errors.shape[1]
    mean = errors.mean(axis=1)
    sd = errors.std(axis=1)  # population sd (ddof 0), as in the tables
    # A log axis cannot show mean − sd ≤ 0: the lower bar stops at the smallest seed's error.
    lower = mean - np.maximum(mean - sd, errors.min(axis=1))
    fig, ax = plt.subplots(figsize=(7, 5), layout="constrained")
    ax.scatter(np.repeat(widths, seeds), errors.ravel(), s=12, color="tab:blue", alpha=0.3, label="per seed")
    ax.errorbar(
        widths, mean, yerr=[lower, sd], fmt="o", color="tab:blue", capsize=4, label=f"mean ± sd over {seeds} seeds"
    )
    grid = np.geomspace(widths.min(), widths.max(), 50)
    # The fitted slope, with the prefactor that best matches the means on the log scale.
    prefactor = np.exp(np.mean(np.log(mean) - comparison.slope * np.log(widths)))
    low, high = comparison.slope_ci
    ax.plot(
        grid,
        prefactor * grid**comparison.slope,
        color="tab:red",
        label=f"fit: slope {_minus(comparison.slope)} [{_minus(low)}, {_minus(high)}]",
    )
    smallest = np.argmin(widths)
    reference = mean[smallest] * (grid / widths[smallest]) ** -0.5
    ax.plot(grid, reference, color="grey", linestyle="--", label=r"reference $\propto m^{-1/2}$")
    floor, floor_sd = comparison.floor, comparison.floor_sd
    # The band's lower edge is clipped to stay positive on the log axis.
    ax.axhspan(max(floor - floor_sd, floor / 10), floor + floor_sd, color="tab:green", alpha=0.15, linewidth=0)
    ax.axhline(floor, color="tab:green", linestyle="-.", label="SGD floor (batch, step size)")
    ax.set(xscale="log", yscale="log", xlabel="width m", ylabel="relative error (sup over time)")
    ax.set_xticks(widths, [f"{int(w)}" for w in widths])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title("Finite-width error vs width")
    return fig


def error_vs_width(comparison, path: str | Path) -> Path:
    """Plot on log-log axes the per-width mean ± sd over seeds of ``comparison.sup_error["all"]``,
    the fitted power law, a reference ``m^{-1/2}`` line through the smallest width's mean, and
    the SGD floor (± its sd); returns the written path."""
    return _save(_error_figure(comparison), path)


def draw(ds: xr.Dataset, comparison, figures_dir: str | Path) -> list[Path]:
    """Write ``metrics.png``, ``coordinates.png`` and, when ``comparison`` is not None,
    ``error_vs_width.png`` into ``figures_dir`` (created if needed); returns their paths."""
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        metric_trajectories(ds, figures_dir / "metrics.png"),
        coordinate_trajectories(ds, figures_dir / "coordinates.png"),
    ]
    if comparison is not None:
        paths.append(error_vs_width(comparison, figures_dir / "error_vs_width.png"))
    return paths


def _fig1_figure(panels: dict[str, xr.Dataset]) -> Figure:
    """The figure of :func:`fig1_trajectories`, not yet saved."""
    widths = next(iter(panels.values()))["width"].values
    colors = _width_colors(widths)
    fig, axes = plt.subplots(
        len(panels), len(FIG1_METRICS), figsize=(14, 2.9 * len(panels) + 0.8), squeeze=False, layout="constrained"
    )
    for row, (label, ds) in zip(axes, panels.items(), strict=True):
        for ax, name in zip(row, FIG1_METRICS, strict=True):
            _plot_widths(ax, ds[name], colors)
            ax.plot(ds["time"].values, ds[f"ode_{name}"].values, **ODE_STYLE)
            _mark_stages(ax, _stage_boundaries(ds))
            ax.set_title(f"{label}: {name}", fontsize=10)
            ax.set_ylabel(METRIC_PANELS[name][1])
            if name == "kappa_a":
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # labels within one decade too
                ax.yaxis.set_major_formatter(ScalarFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel(TIME_LABEL)
    fig.legend(handles=_legend_handles(widths, colors, True, True), loc="outside lower center", ncols=len(widths) + 3)
    return fig


def fig1_trajectories(panels: dict[str, xr.Dataset], path: str | Path) -> Path:
    """Plot ``rho_min``, ``kappa_a`` (log scale), ``nsr`` and ``balance`` against training time,
    one row per ``label -> dataset`` of ``panels`` (runs with the ODE overlay, the same widths):
    per width the seed mean and min..max band, the ODE dashed, the stage changes dotted;
    returns the written path."""
    return _save(_fig1_figure(panels), path)


def _phase_figure(grid: xr.Dataset) -> Figure:
    """The figure of :func:`phase_heatmaps`, not yet saved."""
    kinds = grid["kind"].values
    fig, axes = plt.subplots(
        len(PHASE_PANELS),
        len(kinds),
        figsize=(5 * len(kinds) + 1, 4 * len(PHASE_PANELS)),
        squeeze=False,
        layout="constrained",
    )
    kappas, taus = grid["kappa"].values, grid["tau"].values
    annotate = kappas.size * taus.size <= 64
    for row, (name, label) in zip(axes, PHASE_PANELS.items(), strict=True):
        values = grid[name].values
        scale = LogNorm if name == "kappa_a" else Normalize  # one scale per metric, shared by the losses
        norm = scale(vmin=values.min(), vmax=values.max())
        for ax, kind, panel in zip(row, kinds, values, strict=True):
            image = ax.pcolormesh(np.arange(taus.size + 1), np.arange(kappas.size + 1), panel, norm=norm, cmap="magma")
            if annotate:
                for (i, j), value in np.ndenumerate(panel):
                    dark = image.norm(value) < 0.5  # the low end of magma is dark
                    color = "white" if dark else "black"
                    ax.text(j + 0.5, i + 0.5, f"{value:.3g}", ha="center", va="center", fontsize=7, color=color)
            ax.set_xticks(np.arange(taus.size) + 0.5, [f"{t:.3g}" for t in taus], rotation=45)
            ax.set_yticks(np.arange(kappas.size) + 0.5, [f"{k:.3g}" for k in kappas])
            ax.set(title=f"{kind}: {label}", xlabel=r"stage-2 inverse temperature $\tau_2$")
            ax.set_ylabel(r"initial condition number $\kappa$")
        fig.colorbar(image, ax=row, label=label)
    fig.suptitle("Infinite-width ODE at the end of training")
    return fig


def phase_heatmaps(grid: xr.Dataset, path: str | Path) -> Path:
    """Draw a :func:`dynsim.phase_diagram` grid: final ``kappa_a`` (log colour scale) and
    ``rho_min`` over (initial kappa, stage-2 tau), one column per loss, on a shared colour scale
    per metric, with the values written in the cells of small grids; returns the written path."""
    return _save(_phase_figure(grid), path)
