"""Finite-width fluctuations: predicting the seed covariance (``dynsim.ode.fluctuations``) against
measuring it with 512 Gram-backend seeds, and how well the prediction holds.

Part A, the benchmark (the default r = 8, n = 24 with a shorter second stage, 2000 SGD steps,
float32 as a user runs it): the wall time of ``dynsim.simulate`` with 512 seeds at width 4096 on
the Gram backend, against the prediction through the step map (``discrete=True``, what the
comparison uses) and the continuous one with every off-invariant sector (the mean shift). First
calls include compilation, as a user meets them; the prediction's second call is warm. A further
width costs the prediction nothing: ``covariance(m)`` is ``cov / m + noise_cov``. The same seeds
give the agreement: ``m Var_seeds / (Sigma + m P_s)`` per coordinate at the end and mid-way, and
``docs/figures/fluctuations_variance.png`` (bootstrap 95% bands).

Part B, where the prediction holds (r = n = 2, one stage, float64): ``dynsim.compare`` over widths
16 .. 16384 with 32 seeds, measured against predicted error (mean and sd over seeds) and floor,
drawn as ``docs/figures/fluctuations_error.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from _common import markdown_table, ratio_text, write_record

import dynsim
from dynsim.engine.figures import error_vs_axis
from dynsim.two_tower.figures import variance_vs_prediction

FIGURES = Path(__file__).parent.parent / "docs" / "figures"
WIDTH, SEEDS = 4096, 512
BENCH = {
    "loss": {"stages": [[0.05, 60.0], [3.0, 340.0]]},
    "run": {"record_every": 20.0, "alignment_samples": 16, "backend": "gram"},
}
SMALL = {
    "data": {"r": 2, "n": 2},
    "loss": {"stages": [[1.0, 1.0]]},
    "train": {"lr": 0.05, "batch": 128, "precision": "float64"},
    "run": {"record_every": 0.25, "alignment_samples": 16},
}
SMALL_WIDTHS, SMALL_SEEDS = [16, 64, 256, 1024, 4096, 16384], 32


def clocked(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def state(trajectory) -> np.ndarray:
    return np.concatenate([trajectory.a, trajectory.b, trajectory.p, trajectory.nu_a, trajectory.nu_b], axis=-1)


def part_a(lines: list[str]) -> dict:
    config = dynsim.load_config(BENCH)
    trajectory, simulate_s = clocked(lambda: dynsim.simulate(config, width=WIDTH, seeds=SEEDS))
    discrete, discrete_first_s = clocked(lambda: dynsim.ode.fluctuations(config, discrete=True, mean_shift=False))
    _, discrete_warm_s = clocked(lambda: dynsim.ode.fluctuations(config, discrete=True, mean_shift=False))
    full, full_first_s = clocked(lambda: dynsim.ode.fluctuations(config))
    _, per_width_s = clocked(lambda: [discrete.covariance(m) for m in (1000, 2000, 4000, 8000)])
    values = state(trajectory)
    measured = WIDTH * values.var(axis=0, ddof=1)
    predicted = np.diagonal(discrete.covariance(WIDTH), axis1=1, axis2=2) * WIDTH
    ratio = measured / predicted
    bound = 4 * np.sqrt(2 / (SEEDS - 1))
    rows = [
        [f"dynsim.simulate, {SEEDS} Gram seeds, width {WIDTH} (compile included)", f"{simulate_s:.1f}", "1"],
        [
            "fluctuations(discrete=True), first call (compile included)",
            f"{discrete_first_s:.1f}",
            ratio_text(simulate_s / discrete_first_s),
        ],
        ["fluctuations(discrete=True), warm", f"{discrete_warm_s:.2f}", ratio_text(simulate_s / discrete_warm_s)],
        [
            f"fluctuations() with the {len(full.sector_rows)} sectors (mean shift), first call",
            f"{full_first_s:.1f}",
            ratio_text(simulate_s / full_first_s),
        ],
        ["four further widths: covariance(m)", f"{per_width_s:.4f}", "-"],
    ]
    lines += ["## A. Predicting against measuring (r = 8, n = 24, 2000 steps, float32)", ""]
    lines += [markdown_table(["what", "wall s", "simulate / this"], rows), ""]
    half = values.shape[1] // 2
    agreement = []
    for name, part in discrete.split(np.arange(ratio.shape[-1])).items():
        for label, t in (("mid-way", half), ("end", -1)):
            r = ratio[t, part]
            agreement.append([f"{name} ({label})", f"{np.median(r):.3f}", f"{r.min():.3f}..{r.max():.3f}",
                              f"{np.mean(np.abs(r - 1) < bound):.0%}"])  # fmt: skip
    lines += [
        f"m Var_seeds / (Sigma + m P_s) per coordinate (sampling sd of a variance {np.sqrt(2 / (SEEDS - 1)):.1%}; "
        f"within: share inside 4 sd = {bound:.0%}):",
        "",
        markdown_table(["coordinate", "median", "range", "within"], agreement),
        "",
        f"off-invariant growth: largest sector eigenvalue {full.sector_growth.max():.3f} at t = "
        f"{full.times[np.argmax(full.sector_growth)]:g}; off-invariant cosine sd per unit width, max over "
        f"time {full.off_invariant.max():.3f}; validity horizon (cosine sd > 0.1) at m = 100: "
        f"{full.validity_horizon(100):g}, m = 16: {full.validity_horizon(16):g}",
        f"mean shift mu_2 at the end (per unit width): largest |mu_2| {np.abs(full.mean_shift[-1]).max():.3g} "
        f"against the state's scale {np.abs(full.mean[-1]).max():.3g}",
        "",
    ]
    marks = np.cumsum(config.steps_per_stage)[:-1] * config.train.lr
    path = FIGURES / "fluctuations_variance.png"
    variance_vs_prediction(trajectory.times, {WIDTH: values}, discrete, [0, 7, 16, 23, 24, 48], path, marks)
    return {
        "simulate_s": simulate_s,
        "discrete_first_s": discrete_first_s,
        "discrete_warm_s": discrete_warm_s,
        "full_first_s": full_first_s,
        "per_width_s": per_width_s,
        "ratio_end_median": float(np.median(ratio[-1])),
        "ratio_end_min": float(ratio[-1].min()),
        "ratio_end_max": float(ratio[-1].max()),
        "within_4sd_end": float(np.mean(np.abs(ratio[-1] - 1) < bound)),
        "sector_growth_max": float(full.sector_growth.max()),
    }


def part_b(lines: list[str]) -> dict:
    comparison, seconds = clocked(lambda: dynsim.compare(SMALL, widths=SMALL_WIDTHS, seeds=SMALL_SEEDS))
    rows = []
    for row in comparison.rows():
        measured, predicted = row["sup_all_mean"], row["predicted_sup_all_mean"]
        spread = f"{predicted:.4g} ± {row['predicted_sup_all_sd']:.2g}"
        rows.append([row["width"], f"{measured:.4g} ± {row['sup_all_sd']:.2g}", spread, f"{predicted / measured:.3f}"])
    floor, predicted_floor = comparison.floor, comparison.prediction.floor
    rows.append(["floor (10^12)", f"{floor:.4g} ± {comparison.floor_sd:.2g}", f"{predicted_floor:.4g}",
                 f"{predicted_floor / floor:.3f}"])  # fmt: skip
    lines += [
        f"## B. Predicted against measured error (r = n = 2, {SMALL_SEEDS} seeds, float64; {seconds:.0f} s)",
        "",
        markdown_table(["width", "measured sup error", "predicted", "predicted / measured"], rows),
        "",
        f"slope {comparison.slope:.3f}; {comparison.prediction.label}",
    ]
    error_vs_axis(comparison, FIGURES / "fluctuations_error.png")
    return {"rows": comparison.rows(), "floor": comparison.floor, "predicted_floor": comparison.prediction.floor}


def main() -> int:
    lines = ["# Finite-width fluctuations: prediction against seeds", ""]
    record = {"a": part_a(lines), "b": part_b(lines)}
    markdown = "\n".join(lines)
    print(markdown)
    print(f"written {write_record('fluctuations', record, markdown)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
