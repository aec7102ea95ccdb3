r"""The spectral system's figures: its metric panels, the eigenvalues of FᵀF and the mass of F
along each eigenvector against time, and the predicted plateau exits the figures mark.

Stepwise learning (spec §5): from a small initialization each eigen-direction u_i of Ā is learned
on its own clock; with s_i the squared norm of F = D^{1/2}Φ along u_i, the flow in F-space gives
:math:`s_i(t) = \gamma_i / (1 + (\gamma_i/s_0 - 1) e^{-8\gamma_i t})`, learned near
:math:`t_i = \ln(\gamma_i / s_0) / (8\gamma_i)`. The tabular encoder trains Φ, not F: on a regular
graph (D = I/N) its flow is the F-flow slowed down N times, so in training time the exits are at
:math:`N t_i`; with iid N(0, σ²) initial entries, :math:`s_0 = \mathbb{E}\, s_i(0) = kσ^2/N`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.lines import Line2D

from ..engine.figures import (
    LIMIT_STYLE,
    MARK_STYLE,
    TIME_LABEL,
    axis_colors,
    axis_values,
    coordinate_trajectories,
    error_axes,
    legend_handles,
    plot_limit,
    plot_points,
    save,
)
from .config import SpectralConfig
from .graph import eigensystem

# name -> (panel title, y-axis label[, y scale])
METRIC_PANELS = {
    "gap": ("population loss above its minimum", r"$L(\Phi) - L^*$", "log"),
    "sine": ("distance to the top-k eigenspace", r"$\sin\theta_{\max}(\mathrm{span}\,F,\ U_k)$", "log"),
    "probe_aug": ("linear probe, augmented points", "error"),
    "probe_ens": ("linear probe, ensembled over augmentations", "error"),
    "probe_few": ("linear probe from a few labeled points, ensembled", "error"),
    "class_sine": ("distance to the class directions", r"$\|(I - P_F)\,C\|_2$"),
    "loss": ("population loss", r"$L(\Phi)$"),
}


def predicted_exits(config: SpectralConfig) -> np.ndarray:
    r"""Predicted plateau exits :math:`N \ln(\gamma/s_0)/(8\gamma)` of each distinct eigenvalue among
    the top k (module docstring), for the spectral loss of the tabular encoder on a regular graph;
    empty elsewhere, where no closed-form prediction applies."""
    graph = config.graph_object
    spectral_loss = config.loss.kind == "spectral"
    if not spectral_loss or config.encoder.kind != "tabular" or np.ptp(graph.degrees) > 1e-12 * graph.degrees.max():
        return np.array([])
    nodes = graph.num_nodes
    s0 = config.encoder.k * config.encoder.init_scale**2 / nodes
    gammas = np.unique(np.round(eigensystem(graph)[0][: config.encoder.k], 12))[::-1]
    gammas = gammas[gammas > s0]
    return nodes * np.log(gammas / s0) / (8 * gammas)


# The probe bounds of dynsim.spectral.graph.probe_bounds drawn beside each probe error (spec §3).
PROBE_BOUNDS = {
    "probe_aug": {
        "bound_aug_cut": r"$2\phi^{\hat y}/\lambda_{k+1}+\alpha$ [D]",
        "bound_aug": r"$4\alpha/\lambda_{k+1}+\alpha$ [D]",
    },
    "probe_ens": {"bound_ens": r"$8\alpha/\lambda_{k+1}+2\alpha$ [D]"},
}


def figures(ds: xr.Dataset, figures_dir: Path) -> list[Path]:
    """The spectral figures beyond ``metrics.png``: ``eigenvalues.png`` (the eigenvalues of FᵀF,
    which tend to γ_1..γ_k), ``mass.png`` (the mass of F along each leading eigenvector u_i) and
    ``probe.png`` (the probe errors beside their bounds and α*)."""
    return [
        coordinate_trajectories(ds, "eig", r"eigenvalue of $F^TF$", figures_dir / "eigenvalues.png"),
        coordinate_trajectories(ds, "mass", r"$s_i = \|F^T u_i\|^2$", figures_dir / "mass.png"),
        probe_trajectories(ds, figures_dir / "probe.png"),
    ]


def probe_trajectories(ds: xr.Dataset, path: Path) -> Path:
    """The least-squares probe's augmented and ensembled errors against time, per point of the axis
    (seed mean and min..max band) and for the flow (dashed), beside the run's provable bounds at its
    k (the dataset's attributes, horizontal lines; absent when k = N) and the Bayes error α*."""
    colors = axis_colors(axis_values(ds))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")
    for ax, (name, bounds) in zip(axes, PROBE_BOUNDS.items(), strict=True):
        plot_points(ax, ds[name], colors)
        if f"flow_{name}" in ds:
            plot_limit(ax, ds[f"flow_{name}"])
        for (bound, label), style in zip(bounds.items(), ("--", ":"), strict=False):
            if bound in ds.attrs:
                ax.axhline(ds.attrs[bound], color="tab:red", linestyle=style, label=f"bound {label}")
        if "alpha" in ds.attrs:
            ax.axhline(ds.attrs["alpha"], color="black", linewidth=1, label=r"$\alpha^*$ (Bayes error)")
        ax.set(title=METRIC_PANELS[name][0], xlabel=TIME_LABEL, ylabel="error")
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(
            handles=[*legend_handles(ds, colors, f"flow_{name}" in ds), *ax.get_legend_handles_labels()[0]], fontsize=8
        )
    fig.suptitle(f"Linear probe against its bounds — {ds.attrs.get('title', '')}")
    return save(fig, path)


def _seeds_and_flow(ax, ds: xr.Dataset, name: str, color: str = "tab:blue") -> None:
    """The finite seeds of the first point (each a thin line) and the flow's seeds (dashed)."""
    finite = ds[name].isel({ds.attrs["axis"]: 0})
    for seed in finite.seed.values:
        ax.plot(ds.time.values, finite.sel(seed=seed).values, color=color, alpha=0.5, linewidth=1)
    for seed in ds.seed.values:
        ax.plot(ds.time.values, ds[f"flow_{name}"].sel(seed=seed).values, **LIMIT_STYLE)


def stepwise_figure(ds: xr.Dataset, config: SpectralConfig, path: Path) -> Path:
    """(a) The loss from a small initialization against time: every finite seed, the exact flow of
    every seed, the plateau levels −Σ_{i≤j} γ_i², and the predicted exits (module docstring)."""
    gammas = np.unique(np.round(np.asarray(ds.attrs["gammas"]), 12))[::-1]
    counts = [int(np.sum(np.isclose(ds.attrs["gammas"], g))) for g in gammas]
    levels = -np.cumsum([count * g**2 for g, count in zip(gammas, counts, strict=True)])
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    _seeds_and_flow(ax, ds, "loss")
    for level in levels:
        ax.axhline(level, color="tab:green", linestyle=":", linewidth=1)
    for t in predicted_exits(config):
        ax.axvline(t, **MARK_STYLE)
    seeds, point = ds.sizes["seed"], ds[ds.attrs["axis"]].values[0]
    method = f"SGD, lr {config.train.lr:g}, batch {config.train.batch}" if config.train.method == "sgd" else "GD"
    handles = [
        Line2D([], [], color="tab:blue", alpha=0.5, label=f"{method}: {seeds} seeds (one line each)"),
        Line2D([], [], **LIMIT_STYLE, label="exact flow, same initializations"),
        Line2D([], [], color="tab:green", linestyle=":", label=r"plateaus $-\sum_{i\leq j}\gamma_i^2$"),
        Line2D([], [], **MARK_STYLE, label=r"predicted exits $N\ln(\gamma/s_0)/(8\gamma)$"),
    ]
    ax.legend(handles=handles)
    ax.set(xlabel=TIME_LABEL, ylabel=r"population loss $L(\Phi)$")
    ax.set_title(
        f"(a) stepwise learning from init scale {config.encoder.init_scale:g} (k = {config.encoder.k}, "
        f"{ds.attrs['axis']} = {point})"
    )
    ax.grid(alpha=0.3)
    return save(fig, path)


def subspace_figure(ds: xr.Dataset, rate: float, path: Path) -> Path:
    """(b) The largest principal-angle sine to the top-k eigenspace on a log axis: every finite seed,
    the flow, and a line of the predicted rate ``rate`` through the flow's mean at mid-run."""
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    _seeds_and_flow(ax, ds, "sine")
    times = ds.time.values
    middle = times.size // 2
    anchor = float(ds["flow_sine"].mean("seed").values[middle])
    ax.plot(times, anchor * np.exp(rate * (times - times[middle])), color="tab:red", linewidth=1.5)
    seeds = ds.sizes["seed"]
    handles = [
        Line2D([], [], color="tab:blue", alpha=0.5, label=f"gradient descent: {seeds} seeds (one line each)"),
        Line2D([], [], **LIMIT_STYLE, label="exact flow, same initializations"),
        Line2D([], [], color="tab:red", label=rf"predicted rate $-4(\gamma_k-\gamma_{{k+1}})/N = {rate:.4g}$"),
    ]
    ax.legend(handles=handles)
    ax.set(xlabel=TIME_LABEL, ylabel=r"$\sin\theta_{\max}(\mathrm{span}\,F,\ U_k)$", yscale="log")
    ax.set_title("(b) distance to the top-k eigenspace")
    ax.grid(alpha=0.3, which="both")
    return save(fig, path)


def probe_figure(rows: list[dict], path: Path) -> Path:
    """(c) The least-squares probe's errors at the exact optimum of every k, beside the provable
    bounds ([D]), the secondary-source form ([S], logged) and α."""
    ks = [row["k"] for row in rows]

    def column(name):
        return [row[name] for row in rows]

    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    ax.plot(ks, column("probe_aug"), "o-", color="tab:blue", label="probe error, augmented points")
    ax.plot(ks, column("probe_ens"), "s-", color="tab:purple", label="probe error, ensembled")
    ax.plot(
        ks, column("bound_aug_cut"), "--", color="tab:blue", label=r"bound $2\phi^{\hat y}/\lambda_{k+1}+\alpha$ [D]"
    )
    ax.plot(ks, column("bound_aug"), ":", color="tab:blue", label=r"bound $4\alpha/\lambda_{k+1}+\alpha$ [D]")
    ax.plot(ks, column("bound_ens"), ":", color="tab:purple", label=r"bound $8\alpha/\lambda_{k+1}+2\alpha$ [D]")
    ax.plot(ks, column("bound_zhang"), "-.", color="grey", label=r"$4\alpha/\lambda_{k+1}+8\alpha$ [S], logged")
    ax.axhline(rows[0]["alpha"], color="black", linewidth=1, label=r"$\alpha^*$ (Bayes error)")
    ax.set_yscale("symlog", linthresh=1e-2)  # a zero error stays on the figure
    ax.set_ylim(bottom=0)
    ax.set(xlabel="embedding dimension k", ylabel="error (linear below 0.01)")
    ax.set_title("(c) linear probe at the exact optimum against the bounds (ring)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save(fig, path)


def error_panels(comparisons: list, path: Path) -> Path:
    """(d) Error against the flow versus each comparison's axis, side by side, with fitted slopes."""
    fig, axes = plt.subplots(1, len(comparisons), figsize=(7 * len(comparisons), 5), layout="constrained")
    for ax, comparison in zip(np.atleast_1d(axes), comparisons, strict=True):
        error_axes(ax, comparison)
    fig.suptitle("(d) error against the exact flow: bands are mean ± sd over seeds")
    return save(fig, path)


LOSS_COLORS = {
    "biased": "tab:red",
    "debiased (class v)": "tab:blue",
    "debiased (datum v)": "tab:cyan",
    "unbiased": "tab:green",
    "spectral loss": "tab:gray",
}


def accuracy_figure(rows: list[dict], optimum: list[dict], training: dict, path: Path) -> Path:
    """``dynsim reproduce debiased`` (a): the few-label probe error (mean ± sd over seeds) of every
    loss against the negatives N (r = 2), against the class prior τ⁺ = 1/r (N = 16; with the
    spectral loss and its exact optimum), and along training (``training``: loss -> (times, mean))."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4), constrained_layout=True)
    panels = (("negatives", {"classes": 2}, "negatives N (r = 2, τ⁺ = 1/2)"), ("tau_plus", {"negatives": 16}, None))
    for ax, (key, fixed, label) in zip(axes[:2], panels, strict=True):
        for loss, color in LOSS_COLORS.items():
            chosen = sorted(
                (row for row in rows if row["loss"] == loss and all(row[k] == v for k, v in fixed.items())),
                key=lambda row: row[key],
            )
            if not chosen or (key == "negatives" and loss == "spectral loss"):  # it has no negatives
                continue
            x = [row[key] for row in chosen]
            mean = np.array([row["probe_few_mean"] for row in chosen])
            sd = np.array([row["probe_few_sd"] for row in chosen])
            ax.errorbar(x, mean, yerr=sd, marker="o", capsize=3, color=color, label=loss)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(label or "class prior τ⁺ = 1/r (N = 16)")
        ax.set_ylabel("few-label probe error (1 label per class)")
        ax.set_ylim(bottom=0)
    taus = [1.0 / row["classes"] for row in optimum]
    axes[1].plot(taus, [row["probe_few"] for row in optimum], "k--", marker="x", label="spectral optimum f*")
    for loss, (times, mean) in training.items():
        axes[2].plot(times, mean, color=LOSS_COLORS[loss], label=loss)
    axes[2].set_xlabel(TIME_LABEL)
    axes[2].set_ylabel("few-label probe error, mean over seeds")
    axes[2].set_ylim(bottom=0)
    axes[0].set_title("against the number of negatives")
    axes[1].set_title("against the false-negative rate τ⁺")
    axes[2].set_title("along training (r = 2, largest N)")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    return save(fig, path)


def bias_figure(curves: dict, path: Path) -> Path:
    """``dynsim reproduce debiased`` (b): the debiased loss's mean deviation and bias from its target
    against N and M with the fitted slopes, and the M = 1 loss against the unbiased one."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    for ax, name, label in (
        (axes[0], "negatives", "negatives N (M = ∞, Q = N)"),
        (axes[1], "same", "samples M (N = ∞, Q = 64)"),
    ):
        curve = curves[name]
        x = np.asarray(curve["values"], float)
        for quantity, style in (("deviation", "o-"), ("bias", "s--")):
            y = np.abs([row[quantity] for row in curve["rows"]])
            slope, (low, high) = curve["slopes"][quantity]
            text = "E|ℓ − ℓ̃|" if quantity == "deviation" else "|E ℓ − L̃|"
            ax.loglog(x, y, style, label=f"{text}: slope {slope:.2f} [{low:.2f}, {high:.2f}]")
        ax.loglog(x, y[0] * (x / x[0]) ** -1.0, ":", color="gray", label="slopes −1/2 and −1 [D]")
        deviation = np.abs([row["deviation"] for row in curve["rows"]])
        ax.loglog(x, deviation[0] * (x / x[0]) ** -0.5, ":", color="gray")
        ax.set_xlabel(label)
        ax.set_ylabel("distance to the target loss")
        ax.legend(fontsize=7)
    axes[0].set_title("debiased estimator, in N")
    axes[1].set_title("debiased estimator, in M")
    ax = axes[2]
    for positives, color in (("class", "tab:blue"), ("datum", "tab:cyan")):
        curve = curves[f"practical_{positives}"]
        gap = [row["bias"] - row["unbiased_bias"] for row in curve["rows"]]
        ax.semilogx(curve["values"], gap, "o-", color=color, label=f"M = 1, {positives} v")
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.set_xlabel("negatives N (Q = N)")
    ax.set_ylabel(r"$E[L^{N,1}_{debiased}] - E[L^N_{unbiased}]$")
    ax.set_title("the practical loss against the unbiased one")
    ax.legend(fontsize=8)
    return save(fig, path)


def embedding_figure(embeddings: dict[str, np.ndarray], graph, path: Path) -> Path:
    """``dynsim reproduce debiased`` (c): seed 0's learned embedding f(x)/‖f(x)‖ of every node for
    each loss, its first two coordinates (k = 2: the unit circle), coloured by class and marked by
    subclass (of the study's hierarchical block graphs: S = 2 subclasses of n nodes each)."""
    fig, axes = plt.subplots(1, len(embeddings), figsize=(3.6 * len(embeddings), 4.2), constrained_layout=True)
    subclass = np.arange(graph.num_nodes) // max(1, graph.num_nodes // (graph.num_classes * 2)) % 2
    angle = np.linspace(0, 2 * np.pi, 200)
    for ax, (loss, f) in zip(axes, embeddings.items(), strict=True):
        ax.plot(np.cos(angle), np.sin(angle), color="lightgray", lw=0.8)
        for c in range(graph.num_classes):
            for s, marker in ((0, "o"), (1, "^")):
                chosen = (graph.labels == c) & (subclass == s)
                ax.scatter(f[chosen, 0], f[chosen, 1], marker=marker, color=plt.get_cmap("tab10")(c), alpha=0.7)
        ax.set_aspect("equal")
        ax.set_title(loss, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, path)
