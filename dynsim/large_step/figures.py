"""The figures of ``dynsim reproduce large-step`` (:mod:`dynsim.large_step.study`); the only
module of the system that imports matplotlib.

Curves over several seeds are drawn as the median with a band from the smallest to the largest
seed; every panel's title or legend says how many seeds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from ..engine.figures import axis_colors, error_axes, save, seed_band, seeds_label  # noqa: E402


def _mark(ax, run: xr.Dataset, color) -> None:
    """The first step at or below the stable-phase threshold (circle) and the last rise (cross)."""
    for name, marker in (("stable_at", "o"), ("last_rise", "x")):
        step = int(run[name])
        if step > 0:
            value = float(run.risk.interp(step=step)) if name == "stable_at" else float(run.window.sel(offset=0))
            ax.plot([step], [value], marker=marker, color=color, markersize=7, fillstyle="none")


def phases_figure(linear: xr.Dataset, net: xr.Dataset, path: Path) -> Path:
    """(a) risk, (b) η × sharpness, (c) normalized margin against the step of the linear runs;
    (d) risk of the two-layer runs with seed bands."""
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    steps = linear.step.values
    colors = axis_colors(linear.eta.values)
    for color, eta in zip(colors, linear.eta.values, strict=True):
        run = linear.sel(eta=eta).isel(seed=0)
        axes[0].plot(steps[1:], run.risk.values[1:], color=color, label=f"η = {eta:g}")
        _mark(axes[0], run, color)
        axes[1].plot(steps[1:], eta * run.sharpness.values[1:], color=color)
        axes[2].plot(steps[1:], run.margin.values[1:], color=color)
    axes[1].axhline(2.0, color="grey", linestyle=":", label="η‖∇²L‖ = 2")
    axes[1].set_ylim(1e-4, 1e4)  # in phase 1 the margins are large and the Hessian vanishes
    titles = ("(a) risk: o threshold 1/(4η) met, x last rise", "(b) η × sharpness", "(c) normalized margin")
    for ax, title in zip(axes[:3], titles, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("step t")
        ax.set_title(f"linear, {linear.attrs['data']}: {title}" if ax is axes[0] else title, fontsize=9)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    width = net.attrs["width"]
    for color, eta in zip(axis_colors(net.eta.values), net.eta.values, strict=True):
        seed_band(axes[3], net.step.values, net.risk.sel(eta=eta).values, color, f"η/m = {eta / width:g}")
    axes[3].set(xscale="log", yscale="log", xlabel="step t")
    axes[3].set_title(f"(d) two-layer m = {width}, {net.attrs['data']}: risk ({seeds_label(net)})", fontsize=9)
    axes[3].legend(fontsize=8)
    return save(fig, path)


def acceleration_figure(linear: dict, net: dict, width: int, path: Path) -> Path:
    """L(w_T) against the budget T: η = T/4 beside every fixed stepsize and the best never-rising one."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, result, title in ((axes[0], linear, "linear"), (axes[1], net, f"two-layer m = {width}")):
        ts = result["budgets"]
        fixed = result["fixed"]
        for eta in fixed.eta.values:
            ax.plot(ts, fixed.risk.sel(eta=eta, step=ts).median("seed"), color="lightgrey", linewidth=0.8)
        slope = result["slope_accelerated"][0]
        ax.plot(ts, np.median(result["accelerated"], 1), "o-", color="C3", label=f"η/m = T/4: slope {slope:.2f}")
        slope = result["slope_best"][0]
        ax.plot(ts, np.median(result["best"], 1), "s-", color="C0", label=f"best monotone fixed η/m: slope {slope:.2f}")
        low, high = fixed.eta.values.min() / width_of(fixed), fixed.eta.values.max() / width_of(fixed)
        ax.plot([], [], color="lightgrey", label=f"fixed η/m = {low:g} … {high:g}")
        ax.set(xscale="log", yscale="log", xlabel="budget T (steps)", ylabel="L(w_T)")
        ax.set_title(f"acceleration, {title}, digits 3 vs 8 ({fixed.sizes['seed']} seed(s), median)", fontsize=9)
        ax.legend(fontsize=8)
    return save(fig, path)


def width_of(runs: xr.Dataset) -> int:
    """m of a two-layer run, 1 for the linear model."""
    return int(runs.attrs["width"])


def toy_figure(run: xr.Dataset, path: Path) -> Path:
    """Fig. 4's toy: the risk, the network's normalized margin and each neuron's margin."""
    one = run.isel(eta=0, seed=0)
    steps = one.step.values[1:]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    axes[0].plot(steps, one.risk.values[1:], color="black")
    axes[0].set(xscale="log", yscale="log", xlabel="step t", ylabel="L")
    axes[0].set_title(f"Fig. 4 toy, m = 2, η = {float(one.eta):g}, w_0 = 0: risk (1 run)", fontsize=9)
    axes[1].plot(steps, one.margin.values[1:], color="black", label="network margin")
    for j in range(one.sizes["neuron"]):
        axes[1].plot(steps, one.neuron_margin.values[1:, j], linestyle="--", label=f"neuron {j + 1} margin")
    axes[1].axhline(0.0, color="grey", linewidth=0.8)
    axes[1].set(xscale="log", xlabel="step t", ylabel="normalized margin")
    axes[1].set_title("network margin turns positive; neuron margins stay negative", fontsize=9)
    axes[1].legend(fontsize=8)
    return save(fig, path)


def width_figure(widths: dict, reference: float, path: Path) -> Path:
    """C14: the risk and √m × the normalized margin of each width at a fixed η/m, with the
    antisymmetric configuration's √m γ̄ as a reference."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = axis_colors(list(widths))
    for color, (m, runs) in zip(colors, widths.items(), strict=True):
        steps = runs.step.values
        seed_band(axes[0], steps, runs.risk.isel(eta=0).values, color, f"m = {m}")
        seed_band(axes[1], steps, np.sqrt(m) * runs.margin.isel(eta=0).values, color, f"m = {m}")
    axes[1].axhline(reference, color="grey", linestyle=":", label=f"w_j = a_j u: {reference:.3f}")
    axes[0].set(xscale="log", yscale="log", xlabel="step t", ylabel="L")
    axes[1].set(xscale="log", xlabel="step t", ylabel="√m × normalized margin")
    runs = next(iter(widths.values()))
    eta = float(runs.eta[0]) / int(runs.attrs["width"])
    axes[0].set_title(f"two-layer on {runs.attrs['data']}, η/m = {eta:g}, σ0 = 0.1 ({seeds_label(runs)})", fontsize=9)
    axes[1].set_title("mean-field scaling: √m γ̄ across widths", fontsize=9)
    axes[1].set_ylim(-0.5, 0.3)
    for ax in axes:
        ax.legend(fontsize=8)
    return save(fig, path)


def digits_figure(runs: xr.Dataset, path: Path) -> Path:
    """The two-layer net on digits: risk, margin and test accuracy at a small and a large stepsize."""
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.5))
    width = runs.attrs["width"]
    for color, eta in zip(("C0", "C3"), runs.eta.values, strict=False):
        label = f"η/m = {eta / width:g}"
        one = runs.sel(eta=eta)
        for ax, name in zip(axes, ("risk", "margin", "test_accuracy"), strict=True):
            seed_band(ax, runs.step.values, one[name].values, color, label)
    labels = (("risk L", "log"), ("normalized margin", "linear"), ("test accuracy", "linear"))
    for ax, (name, scale) in zip(axes, labels, strict=True):
        ax.set(xscale="log", yscale=scale, xlabel="step t", ylabel=name)
        ax.legend(fontsize=8)
    axes[0].set_title(f"two-layer m = {width} on digits 3 vs 8 (train), {seeds_label(runs)}", fontsize=9)
    return save(fig, path)


def flow_figure(comparison, linear: xr.Dataset, path: Path) -> Path:
    """(a) gradient descent against gradient flow at fixed τ: error against η (slope 1 expected);
    (b) L_GD(t) / L_GF(ηt) of the linear runs."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    error_axes(axes[0], comparison)
    axes[0].set_title("GD vs gradient flow at fixed τ = ηt (two-layer, rescaled toy)", fontsize=9)
    steps = linear.step.values[1:]
    for color, eta in zip(axis_colors(linear.eta.values), linear.eta.values, strict=True):
        axes[1].plot(steps, linear.ratio.sel(eta=eta).isel(seed=0).values[1:], color=color, label=f"η = {eta:g}")
    axes[1].axhline(1.0, color="grey", linestyle=":")
    axes[1].set(xscale="log", yscale="log", xlabel="step t", ylabel="L_GD(t) / L_GF(ηt)")
    axes[1].set_title(f"linear, {linear.attrs['data']}: GD against the flow at the same τ", fontsize=9)
    axes[1].legend(fontsize=8)
    return save(fig, path)
