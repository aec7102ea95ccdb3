r"""``dynsim reproduce large-step``: the two phases, the margins, the acceleration and gradient descent
against gradient flow, measured (shared/specs/large_step.md §5–§7).

Seven experiments under ``out``:

- ``phases``: the linear model on digits 3 vs 8 (w_0 = 0) at η = 1 … 10⁴: risk, η·sharpness and
  normalized margin against the step, the stable-phase threshold crossing and the last rise
  marked, and L_GD(t)/L_GF(ηt) (C2, C3, C6, C16); the two-layer net (m = 32, leaky softplus
  c = 1/2, σ0 = 0.1) on the rescaled COLT toy at η/m = 0.3 … 300, with seed bands (C10, C13).
- ``acceleration``: for budgets T on a log grid, L(w_T) with η/m = T/4 against the best run at a
  fixed η/m whose risk never rose (m = 1 for the linear model), with fitted log-log slopes (C7,
  T5): the linear model and the two-layer net on digits 3 vs 8.
- ``toy``: Fig. 4 of Cai et al. (five points, m = 2, a = (+1, −1), φ = (z + softplus z)/2, η = 3,
  w_0 = 0): the network's margin and each neuron's (C15).
- ``digits``: the two-layer net on digits 3 vs 8 (train and test split) at a small and a large
  stepsize: risk, margin and test accuracy, with seed bands.
- ``widths``: the two-layer net on the COLT toy at η/m = 3 for m = 2 … 512: L and √m γ̄ against
  the step, beside √m γ̄ = (1 + c)γ/2 of the antisymmetric weights w_j = a_j u (C12, C14).
- ``flow``: a stepsize sweep through the engine (``sweep``, a run directory that resumes) of
  the two-layer net on the rescaled toy at fixed τ = η t against gradient flow: error ∝ η (C16).

Each direct experiment is one call of :func:`~dynsim.large_step.gd`, saved as
``out/runs/<name>.nc`` and read back by a later run with the same settings (a changed setting
recomputes it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

from ..engine.compare import comparison_of_dataset, fit_slope
from ..engine.results import write_atomic, write_csv
from ..engine.tables import Report
from .config import LargeStepConfig
from .datasets import load_data, max_margin
from .figures import (
    acceleration_figure,
    digits_figure,
    flow_figure,
    phases_figure,
    toy_figure,
    width_figure,
)
from .gd import gd

SIZES = {
    "quick": {
        "phase_steps": 10_000,
        "toy_steps": 10_000,
        "seeds": 4,
        "budgets": (2.5, 4.5),
        "net_budgets": (2.5, 4.0),
        "net_width": 8,
        "fig4_steps": 200_000,
        "widths": (2, 8, 32, 128, 512),
        "width_steps": 10_000,
        "digits_width": 32,
        "digits_steps": 10_000,
        "flow_etas": [0.4, 0.2, 0.1, 0.05],
    },
    "full": {
        "phase_steps": 100_000,
        "toy_steps": 100_000,
        "seeds": 8,
        "budgets": (2.5, 5.5),
        "net_budgets": (2.5, 5.0),
        "net_width": 32,
        "fig4_steps": 1_000_000,
        "widths": (2, 8, 32, 128, 512),
        "width_steps": 100_000,
        "digits_width": 256,
        "digits_steps": 100_000,
        "flow_etas": [0.4, 0.2, 0.1, 0.05, 0.025],
    },
}
PHASE_ETAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)
TOY_EFFECTIVE = (0.3, 3.0, 30.0, 300.0)  # eta / m of the two-layer net on the rescaled toy
FIXED_ETAS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
ACCELERATION = 0.25  # eta / m = ACCELERATION * T
DIGITS_EFFECTIVE = (1.0, 100.0)
NET = {"model": "two_layer", "activation": "leaky_softplus", "c": 0.5}
WIDTH_EFFECTIVE = 3.0  # eta / m of the width sweep
WIDTH_REFERENCE = (1 + 0.5) * 0.2 / 2  # sqrt(m) gamma_bar of w_j = a_j u on the COLT toy (spec C12, C14)


def _saved(path: Path, settings: dict, compute: Callable[[], xr.Dataset]) -> xr.Dataset:
    """``compute()``, saved at ``path`` with its settings; read back when they match."""
    key = json.dumps(settings, sort_keys=True, default=lambda value: np.asarray(value).tolist())
    if path.exists():
        with xr.open_dataset(path) as saved:
            if saved.attrs.get("settings") == key:
                return saved.load()
    dataset = compute()
    dataset.attrs["settings"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: dataset.to_netcdf(tmp, engine="h5netcdf"))
    return dataset


def _run(out: Path, name: str, data: dict, **settings) -> xr.Dataset:
    """One :func:`gd` call on ``load_data(**data)`` (its ``test`` split too where ``split`` is given)."""
    train = load_data(**data)
    test = None
    if data.get("split") == "train":
        held = load_data(**(data | {"split": "test"}))
        test = (held.x, held.y)

    def compute():
        return gd(train.x, train.y, test=test, **settings).assign_attrs(data=train.name)

    return _saved(out / "runs" / f"{name}.nc", {"data": data} | settings, compute)


def budgets(decades: tuple[float, float]) -> np.ndarray:
    """Budgets T, four a decade from 10^a to 10^b."""
    return np.unique(np.rint(10.0 ** np.arange(decades[0], decades[1] + 1e-9, 0.25)).astype(int))


def acceleration(out: Path, name: str, data: dict, span, width: int = 1, **settings) -> dict:
    """L(w_T) at η/m = T/4 and the best never-rising run at a fixed η/m of :data:`FIXED_ETAS`, per
    budget T, with fitted log-log slopes (m = ``width``, 1 for the linear model)."""
    ts = budgets(span)
    etas = width * np.concatenate([ACCELERATION * ts, FIXED_ETAS])
    if width > 1:
        settings = settings | {"width": width}
    runs = _run(out, name, data, etas=etas, steps=int(ts[-1]), at=ts, power_iterations=0, **settings)
    final = np.array([runs.risk.isel(eta=i).sel(step=t).values for i, t in enumerate(ts)])  # (T, seeds)
    fixed = runs.isel(eta=slice(ts.size, None))
    monotone = (fixed.last_rise < 0).all("seed").values
    best = fixed.risk.isel(eta=np.flatnonzero(monotone)).sel(step=ts).min("eta").transpose("step", "seed").values
    return {
        "budgets": ts,
        "accelerated": final,
        "best": best,
        "fixed": fixed,
        "monotone": np.asarray(FIXED_ETAS)[monotone],
        "slope_accelerated": fit_slope(ts, final),
        "slope_best": fit_slope(ts, best),
        "settled": float((runs.last_rise.isel(eta=slice(0, ts.size)).values < ts[:, None] / 2).mean()),
    }


def _fmt_slope(fit) -> str:
    slope, (low, high) = fit
    return f"{slope:.2f} [{low:.2f}, {high:.2f}]"


def reproduce_large_step(out: str | Path, size: str, sweep: Callable) -> Report:
    """Run (or read back) every experiment and write ``out/figures/large_step_*.png`` and
    ``large_step_summary.csv``; the report lists what was measured beside what the sources say."""
    out, spec = Path(out), SIZES[size]
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    digits = {"name": "digits", "pair": (3, 8)}
    toy = {"name": "colt_toy_rescaled"}
    phases = _run(out, "phases_linear", digits, etas=PHASE_ETAS, steps=spec["phase_steps"], flow=True)
    width = 32
    net = _run(
        out,
        "phases_two_layer",
        toy,
        etas=[width * e for e in TOY_EFFECTIVE],
        steps=spec["toy_steps"],
        width=width,
        init_scale=0.1,
        seeds=spec["seeds"],
        **NET,
    )
    linear_acc = acceleration(out, "acceleration_linear", digits, spec["budgets"])
    net_width = spec["net_width"]
    net_acc = acceleration(
        out, "acceleration_two_layer", digits, spec["net_budgets"], net_width, init_scale=0.1, seeds=2, **NET
    )
    fig4 = _run(out, "toy_fig4", {"name": "fig4_toy"}, etas=[3.0], steps=spec["fig4_steps"], width=2, **NET)
    widths = width_runs(out, spec)
    m = spec["digits_width"]
    digits_runs = _run(
        out,
        "digits_two_layer",
        digits | {"split": "train"},
        etas=[m * e for e in DIGITS_EFFECTIVE],
        steps=spec["digits_steps"],
        width=m,
        init_scale=0.1,
        seeds=max(spec["seeds"] // 2, 2),
        power_iterations=4,
        **NET,
    )
    comparison = comparison_of_dataset(sweep(flow_sweep(out, spec)), _system())
    phases_figure(phases, net, figures / "large_step_phases.png")
    acceleration_figure(linear_acc, net_acc, net_width, figures / "large_step_acceleration.png")
    toy_figure(fig4, figures / "large_step_toy.png")
    width_figure(widths, WIDTH_REFERENCE, figures / "large_step_widths.png")
    digits_figure(digits_runs, figures / "large_step_digits.png")
    flow_figure(comparison, phases, figures / "large_step_flow.png")
    rows = summary_rows(phases, net, linear_acc, net_acc, fig4, digits_runs, comparison)
    rows += width_rows(widths)
    write_csv(figures / "large_step_summary.csv", rows)
    cells = [(row["quantity"], row["measured"], row["expected"]) for row in rows]
    message = f"figures and tables in {figures}/; runs in {out / 'runs'}/ and {out / 'flow'}/"
    return Report("large-stepsize gradient descent: measured", ("quantity", "measured", "expected"), cells, message)


def _system():
    from .system import SYSTEM

    return SYSTEM


def flow_sweep(out: Path, spec: dict) -> LargeStepConfig:
    """The engine sweep of the ``flow`` experiment: two-layer net (m = 8) on the rescaled toy,
    σ0 = 0.1, τ = 40, against gradient flow."""
    from ..registry import load_config

    return load_config(
        {
            "system": "large_step",
            "model": {"kind": "two_layer", "width": 8, "init_scale": 0.1},
            "train": {"eta": spec["flow_etas"][0], "duration": 40.0, "power_iterations": 0},
            "run": {"values": spec["flow_etas"], "record_every": 2.0, "seeds": 2, "out": str(out / "flow")},
        }
    )


def width_runs(out: Path, spec: dict) -> dict:
    """C14: the two-layer net on the COLT toy at η/m = 3, σ0 = 0.1 per entry, at every width of
    ``spec["widths"]``: one run per width (the shapes differ)."""
    return {
        m: _run(
            out,
            f"width_{m}",
            {"name": "colt_toy"},
            etas=[WIDTH_EFFECTIVE * m],
            steps=spec["width_steps"],
            width=m,
            init_scale=0.1,
            seeds=spec["seeds"],
            power_iterations=0,
            **NET,
        )
        for m in spec["widths"]
    }


def width_rows(widths: dict) -> list[dict]:
    """Per width: L and √m γ̄ at the last step (median over seeds), beside the antisymmetric reference."""
    rows = []
    for m, runs in widths.items():
        last = runs.isel(eta=0, step=-1)
        rows.append(
            {
                "quantity": f"width m = {m}, eta/m = {WIDTH_EFFECTIVE:g}, t = {int(last.step)}: L / sqrt(m) margin",
                "measured": f"{float(last.risk.median()):.4g} / {float(np.sqrt(m) * last.margin.median()):.4g}",
                "expected": f"converge as m grows (C14, mean field); antisymmetric w: {WIDTH_REFERENCE:.4f} (C12)",
            }
        )
    return rows


def summary_rows(phases, net, linear_acc, net_acc, fig4, digits_runs, comparison) -> list[dict]:
    """The measured quantities beside what the spec expects."""
    data = load_data("digits", pair=(3, 8))
    gamma = max_margin(data.x, data.y)[0]
    rows = []

    def row(quantity, measured, expected):
        rows.append({"quantity": quantity, "measured": measured, "expected": expected})

    for eta in phases.eta.values:
        run = phases.sel(eta=eta).isel(seed=0)
        rise, stable = int(run.last_rise), int(run.stable_at)
        rate = float(gamma**2 * eta * run.step[-1] * run.risk[-1])
        row(
            f"linear digits, eta = {eta:g}: last rise / threshold step / peak L",
            f"{rise} / {stable} / {float(run.peak_risk):.3g}",
            "last rise <= threshold step (C3, E2); spec's C6 at 1e2, 1e3, 1e4: last rise 6, 4, 86, "
            "peak 6.2, 64.6, 745; W2's s 1740, 221, 88",
        )
        row(
            f"linear digits, eta = {eta:g}: gamma^2 eta t L and L_GD/L_GF at t = {int(run.step[-1])}",
            f"{rate:.4g} / {float(run.ratio[-1]):.3g}",
            "both -> 1 (C4, C16)",
        )
    for eta in net.eta.values:
        runs = net.sel(eta=eta)
        rises = runs.last_rise.values
        row(
            f"two-layer toy, eta/m = {eta / net.attrs['width']:g}: last rise, threshold step (seeds)",
            f"{rises.tolist()} / {runs.stable_at.values.tolist()}",
            "last rise <= threshold step (C10, E2'); spec's C10: last rise 3 at eta/m = 30, 12 at 300",
        )
    for label, result, expected in (
        ("linear", linear_acc, "-2 up to logs (eta prop. T) / -1 (C7, W4, W5)"),
        ("two-layer", net_acc, "-2 up to logs / -1 (T5)"),
    ):
        row(
            f"acceleration, {label} digits: slope eta/m = T/4 / best monotone (last rise before T/2)",
            f"{_fmt_slope(result['slope_accelerated'])} / {_fmt_slope(result['slope_best'])} "
            f"({result['settled']:.0%} of runs)",
            expected,
        )
        ts = result["budgets"]
        scaled = ts**2 * np.median(result["accelerated"], 1)
        floor = ts * np.median(result["best"], 1)
        row(
            f"acceleration, {label} digits: T^2 L(w_T) at eta/m = T/4 / T L(w_T) of the best monotone run, "
            f"T = {ts[0]} ... {ts[-1]}",
            f"{scaled[0]:.3g} ... {scaled[-1]:.3g} (max {scaled.max():.3g}) / {floor[0]:.3g} ... {floor[-1]:.3g} "
            f"(min {floor.min():.3g})",
            "bounded (O~(1/T^2), W4) / bounded below (W5)",
        )
    run = fig4.isel(eta=0, seed=0)
    row(
        "Fig. 4 toy at the last step: network margin / neuron margins",
        f"{float(run.margin[-1]):.4g} / {np.round(run.neuron_margin[-1].values, 4).tolist()}",
        "> 0 / both < 0 (C15: 0.0215 / -0.126, -0.210 at t = 2e5)",
    )
    for eta in digits_runs.eta.values:
        runs = digits_runs.sel(eta=eta).isel(step=-1)
        row(
            f"two-layer digits, eta/m = {eta / digits_runs.attrs['width']:g}: final L / margin / test accuracy",
            f"{float(runs.risk.median()):.3g} / {float(runs.margin.median()):.3g} / "
            f"{float(runs.test_accuracy.mean()):.3f}",
            "larger eta: lower risk (report)",
        )
    row(
        "GD against gradient flow at fixed tau: error slope in eta",
        _fmt_slope((comparison.slope, comparison.slope_ci)),
        "1 (C16)",
    )
    return rows
