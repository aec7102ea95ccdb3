"""The figures of ``dynsim reproduce practical`` (:mod:`dynsim.practical.study`); the only module
of the system that imports matplotlib. Curves over seeds: the median with a min–max band."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from ..engine.figures import save, seed_band, seeds_label  # noqa: E402

COLORS = {"infonce": "C0", "positive": "C3"}
NAMES = {"infonce": "contrastive (InfoNCE)", "positive": "non-contrastive (positive pairs)"}
PANELS = (
    ("zsc_acc", "zero-shot accuracy (M = {m})", "linear"),
    ("condition_a", "condition number κ_k of head A (k = {k})", "log"),
    ("stable_rank_a", "stable rank of head A's covariance", "linear"),
    ("probe_acc", "linear probe accuracy (head A)", "linear"),
)


def _largest_prompt(run: xr.Dataset) -> int:
    """The largest prompt size M a run recorded (its ``zsc_acc_M``)."""
    return max(int(name.rsplit("_", 1)[1]) for name in run.data_vars if name.startswith("zsc_acc_"))


def _curves_figure(curves, panels, title: str, rank: int, boundaries, path: Path) -> Path:
    """One panel per ``(metric, title, y scale)`` of ``panels``: each of ``curves`` ((dataset with
    dims seed, time), colour, legend) as a seed band against training steps, dotted lines at the
    temperature stages' ``boundaries`` (steps)."""
    run = curves[0][0]
    steps = run.time.values
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    for ax, (name, label, scale) in zip(axes, panels, strict=True):
        for dataset, color, legend in curves:
            seed_band(ax, steps, dataset[name].values, color, legend, log=False)
        for boundary in boundaries:
            ax.axvline(boundary, color="gray", linestyle=":", linewidth=1)
        ax.set_yscale(scale)
        ax.set_xlabel("training step")
        ax.set_title(label.format(m=_largest_prompt(run), k=rank), fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title} ({seeds_label(run)})", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def training_figure(run: xr.Dataset, title: str, rank: int, boundaries, path: Path) -> Path:
    """Seed 001's Figure 2 analogue: zero-shot accuracy, condition number, stable rank and the
    linear probe against training steps, contrastive beside non-contrastive; dotted lines at the
    temperature stages' ``boundaries`` (steps)."""
    curves = [(run.sel(loss=loss), COLORS[loss], NAMES[loss]) for loss in run.loss.values]
    return _curves_figure(curves, PANELS, title, rank, boundaries, path)


def prompts_figure(run: xr.Dataset, prompts, path: Path) -> Path:
    """Final zero-shot accuracy against the prompt size M, both losses (mean ± sd over seeds)."""
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for loss in run.loss.values:
        final = np.array([run[f"zsc_acc_{m}"].sel(loss=loss).isel(time=-1).values for m in prompts])
        ax.errorbar(
            prompts,
            final.mean(axis=1),
            yerr=final.std(axis=1),
            marker="o",
            capsize=3,
            color=COLORS[loss],
            label=NAMES[loss],
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("prompt examples per class M")
    ax.set_ylabel("final zero-shot accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def temperature_figure(run: xr.Dataset, held: dict, rank: int, boundaries, path: Path) -> Path:
    """Zero-shot accuracy and condition number along training: InfoNCE on the schedule, InfoNCE
    with each temperature held throughout (``held``: tau -> dataset), the positive-pair loss."""
    curves = [(run.sel(loss="infonce"), "C0", NAMES["infonce"] + ", schedule")]
    curves += [
        (d.sel(loss="infonce"), f"C{i + 1}", f"InfoNCE, τ = {tau:g} held") for i, (tau, d) in enumerate(held.items())
    ]
    curves.append((run.sel(loss="positive"), COLORS["positive"], NAMES["positive"] + " (any τ)"))
    return _curves_figure(curves, PANELS[:2], "temperature held against the schedule", rank, boundaries, path)
