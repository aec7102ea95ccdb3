"""The figures of ``dynsim reproduce jghm`` (:mod:`dynsim.jghm.study`); the only module of the
system that imports matplotlib. Curves over seeds: the median with a min–max band."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from ..engine.figures import save, seed_band, seeds_label  # noqa: E402


def _final(runs: xr.Dataset, name: str) -> np.ndarray:
    """(flips, seeds) final values of a metric."""
    return runs[name].isel(time=-1).transpose("flip", "seed").values


def _points(ax, flips, values: np.ndarray, label: str, **style) -> None:
    ax.errorbar(flips, values.mean(axis=1), yerr=values.std(axis=1), marker="o", capsize=3, label=label, **style)


def flips_figure(runs: xr.Dataset, curve: dict, prompts: int, path: Path) -> Path:
    """(a) the final CLIP risk against p beside R*_B, (b) the zero-shot cross-entropy at M =
    ``prompts`` beside the Bayes one, (c) the final excess risk beside the sufficiency estimate."""
    flips = runs.flip.values
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    axes[0].plot(curve["flip"], curve["risk"], color="black", label="Bayes R*_B (BP)")
    _points(axes[0], flips, _final(runs, "clip_risk"), "trained (evaluation pairs)")
    axes[0].set_ylabel("in-batch CLIP risk, directions summed")
    axes[1].plot(curve["flip"], curve["zsc"], color="black", label="Bayes (BP)")
    _points(axes[1], flips, _final(runs, f"zsc_ce_{prompts}"), f"trained, M = {prompts}")
    axes[1].set_ylabel("zero-shot cross-entropy (label: first text leaf)")
    _points(axes[2], flips, _final(runs, "excess_clip"), "excess CLIP risk R_B(S) − R*_B")
    _points(axes[2], flips, _final(runs, "suff"), "Suff_im + Suff_tx", linestyle="--")
    axes[2].set_ylabel("nats")
    seeds = runs.sizes["seed"]
    for ax, title in zip(axes, ("(a) CLIP risk", "(b) zero-shot", "(c) excess and sufficiency"), strict=True):
        ax.set_xlabel("flip probability p")
        ax.set_title(f"{title} (mean ± sd of {seeds} seeds)", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def training_figure(run: xr.Dataset, path: Path) -> Path:
    """The excess CLIP risk and the sufficiency estimate along training at one p, and the
    training loss beside the evaluation risk and R*_B."""
    steps = run.time.values
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    seed_band(axes[0], steps, run.excess_clip.values, "C0", "excess CLIP risk")
    seed_band(axes[0], steps, run.suff.values, "C1", "Suff_im + Suff_tx")
    axes[0].set_yscale("log")
    seed_band(axes[1], steps, run.loss.values, "C2", "training loss (mean since last record)")
    seed_band(axes[1], steps, run.clip_risk.values, "C0", "evaluation risk")
    axes[1].plot(steps[1:], np.median(run.bayes_clip.values, axis=0)[1:], color="black", label="Bayes R*_B")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    axes[0].set_title(f"p = {run.flip.item():g}: excess risk and sufficiency ({seeds_label(run)})", fontsize=9)
    axes[1].set_title("CLIP risk", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def prompts_figure(run: xr.Dataset, star: dict, control: dict, prompts, path: Path) -> Path:
    """The zero-shot excess cross-entropy against M: trained (final), the Bayes score S*, and the
    root-label control for both."""
    m = np.asarray(prompts, dtype=float)
    final = run.isel(time=-1)
    trained = np.stack([final[f"zsc_gap_{k}"].values for k in prompts])  # (M, seeds)
    trained_control = np.stack([final[f"control_gap_{k}"].values for k in prompts])
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.errorbar(m, trained.mean(1), yerr=trained.std(1), marker="o", capsize=3, label="trained towers, first text leaf")
    ax.errorbar(m, star["gap"], yerr=star["gap_se"], marker="s", capsize=3, label="S*, first text leaf")
    ax.plot(m, star["gap"][0] / m, color="grey", linestyle=":", label="∝ 1/M")
    ax.errorbar(
        m,
        trained_control.mean(1),
        yerr=trained_control.std(1),
        marker="^",
        capsize=3,
        label="trained, root label (control)",
    )
    ax.errorbar(m, control["gap"], yerr=control["gap_se"], marker="v", capsize=3, label="S*, root label (control)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("prompts per class M")
    ax.set_ylabel("zero-shot cross-entropy − Bayes")
    ax.set_title(f"p = {run.flip.item():g}: zero-shot against M (mean ± sd over seeds; S*: ± SE)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)
