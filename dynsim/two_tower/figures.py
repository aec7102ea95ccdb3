"""The two-tower system's figures: its metric panels, the signal coordinates, and the Figure 1
and phase-diagram figures of ``dynsim reproduce fig1``.

``metrics.png`` (drawn by the engine from :data:`METRIC_PANELS`) shows the worst-coordinate
alignment ``rho_min``, the condition number ``kappa_A``, the balance, the noise-to-signal ratio
and the loss against training time; ``coordinates.png`` shows the signal coordinates
``a_k(t) = ‖S_A e_k‖²`` one panel each; ``variance.png`` (comparison runs) holds the seed variance
against the predicted finite-width covariance. ``fig1_trajectories`` is the Figure-1-style panel set:
one row per training condition, columns ``rho_min``, ``kappa_A``, ``nsr`` and balance, in the
style of ``metrics.png``; ``phase_heatmaps`` draws a :func:`dynsim.phase_diagram` grid as heat maps.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from ..engine.config import build_config
from ..engine.figures import (
    TIME_LABEL,
    axis_colors,
    coordinate_trajectories,
    legend_handles,
    mark_times,
    marks,
    plot_limit,
    plot_points,
    save,
)
from .config import Config
from .predict import step_map_fluctuations

# name -> (panel title, y-axis label); every metric is dimensionless.
METRIC_PANELS = {
    "rho_min": ("alignment: worst coordinate", r"$\rho_{\min} = \min_k\, p_k / \sqrt{a_k b_k}$"),
    "kappa_a": ("condition number of tower A", r"$\kappa_A = s_1(S_A) / s_r(S_A)$"),
    "balance": ("balance", r"stable rank of Cov $f_A$"),
    "nsr": ("noise-to-signal ratio", r"$\|N_A\|_F \,/\, \|S_A\|_F$"),
    "loss": ("training loss", "loss"),
}
FIG1_METRICS = ("rho_min", "kappa_a", "nsr", "balance")
VARIANCE_COORDINATES = ("a", "b", "p", "nu_a", "nu_b")
VARIANCE_MIN_SEEDS = 8
PHASE_PANELS = {"kappa_a": r"final $\kappa_A$", "rho_min": r"final $\rho_{\min}$"}


def figures(ds: xr.Dataset, figures_dir: Path) -> list[Path]:
    """The two-tower figures beyond ``metrics.png``: ``coordinates.png``, the signal coordinates
    ``a_k(t)`` (the first 8), and for a comparison run (the floor run present) of at least
    :data:`VARIANCE_MIN_SEEDS` seeds ``variance.png`` (:func:`seed_variance`)."""
    paths = [coordinate_trajectories(ds, "a", r"$a_k = \|S_A e_k\|^2$", figures_dir / "coordinates.png")]
    if "floor_a" in ds and ds.sizes["seed"] >= VARIANCE_MIN_SEEDS:
        paths.append(seed_variance(ds, figures_dir / "variance.png"))
    return paths


def _variance_figure(times, states: dict, prediction, coordinates, stage_marks, resamples: int = 200) -> Figure:
    """The figure of :func:`variance_vs_prediction`, not yet saved."""
    widths = list(states)
    colors = axis_colors(np.asarray(widths))
    labels = _state_labels(prediction.r, prediction.n)
    fig, axes = plt.subplots(
        1, len(coordinates), figsize=(3.4 * len(coordinates) + 1, 3.6), squeeze=False, layout="constrained"
    )
    rng = np.random.default_rng(0)
    for ax, index in zip(axes[0], coordinates, strict=True):
        for width, color in zip(widths, colors, strict=True):
            values = states[width][..., index]  # (seeds, T)
            values = values[~np.isnan(values).any(axis=1)]
            picks = rng.integers(0, len(values), (resamples, len(values)))
            low, high = np.percentile(width * np.var(values[picks], axis=1, ddof=1), [2.5, 97.5], axis=0)
            ax.fill_between(times, low, high, color=color, alpha=0.2, linewidth=0)
            scaled = width * np.var(values, axis=0, ddof=1)
            ax.plot(times, scaled, color=color, label=f"m = {width}: m Var over {len(values)} seeds")
            predicted = width * prediction.covariance(width)[:, index, index]
            ax.plot(prediction.times, predicted, color=color, linestyle="--", label=f"m = {width}: predicted")
        mark_times(ax, stage_marks)
        ax.set(title=labels[index], xlabel=TIME_LABEL, yscale="log")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(r"$m\,\mathrm{Var}_{\mathrm{seeds}}$ (band: bootstrap 95%)")
    axes[0, -1].legend(fontsize="x-small")
    fig.suptitle(r"Seed variance times width against the prediction $\Sigma(t) + m P_s(t)$ (dynsim.ode.fluctuations)")
    return fig


def _state_labels(r: int, n: int) -> list[str]:
    """``a_1 .. a_r, b_1, .., p_1, .., nu^A_1, .., nu^B_n``: the name of every state entry."""
    counts = {"a": r, "b": r, "p": r, r"\nu^A": n, r"\nu^B": n}
    return [rf"${name}_{{{k + 1}}}$" for name, count in counts.items() for k in range(count)]


def variance_vs_prediction(times, states: dict, prediction, coordinates, path, stage_marks=()) -> Path:
    """Plot ``m × Var_seeds`` of the state entries ``coordinates`` against training time, per width
    (``states``: width -> (seeds, T, 3r + 2n)), with a bootstrap 95% band over seeds, against the
    prediction ``Sigma(t) + m P_s(t)`` of a :class:`~dynsim.two_tower.fluctuations.Fluctuations`
    (dashed); returns the written path."""
    return save(_variance_figure(times, states, prediction, coordinates, stage_marks), path)


def seed_variance(ds: xr.Dataset, path: str | Path) -> Path:
    """:func:`variance_vs_prediction` of a comparison run: the first entry of each coordinate
    (``a, b, p, nu_a, nu_b``) at every width, against :func:`dynsim.ode.fluctuations` of the run's
    configuration with ``discrete=True`` (the step map's tangent and the batch noise)."""
    config = build_config(Config, tomllib.loads(ds.attrs["config"]))
    prediction = step_map_fluctuations(config)
    names = [name for name in VARIANCE_COORDINATES if ds[name].size]
    states = {
        int(width): np.concatenate([ds[name].sel(width=width).values for name in VARIANCE_COORDINATES], axis=-1)
        for width in ds["width"].values
    }
    starts = np.cumsum([0, prediction.r, prediction.r, prediction.r, prediction.n])
    coordinates = [int(starts[VARIANCE_COORDINATES.index(name)]) for name in names]
    return variance_vs_prediction(ds["time"].values, states, prediction, coordinates, path, marks(ds))


def _fig1_figure(panels: dict[str, xr.Dataset]) -> Figure:
    """The figure of :func:`fig1_trajectories`, not yet saved."""
    first = next(iter(panels.values()))
    widths = first["width"].values
    colors = axis_colors(widths)
    fig, axes = plt.subplots(
        len(panels), len(FIG1_METRICS), figsize=(14, 2.9 * len(panels) + 0.8), squeeze=False, layout="constrained"
    )
    for row, (label, ds) in zip(axes, panels.items(), strict=True):
        for ax, name in zip(row, FIG1_METRICS, strict=True):
            plot_points(ax, ds[name], colors)
            plot_limit(ax, ds[f"ode_{name}"])
            mark_times(ax, marks(ds))
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
    fig.legend(handles=legend_handles(first, colors, True), loc="outside lower center", ncols=len(widths) + 3)
    return fig


def fig1_trajectories(panels: dict[str, xr.Dataset], path: str | Path) -> Path:
    """Plot ``rho_min``, ``kappa_a`` (log scale), ``nsr`` and ``balance`` against training time,
    one row per ``label -> dataset`` of ``panels`` (runs with the ODE overlay, the same widths):
    per width the seed mean and min..max band, the ODE dashed, the stage changes dotted;
    returns the written path."""
    return save(_fig1_figure(panels), path)


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
    return save(_phase_figure(grid), path)
