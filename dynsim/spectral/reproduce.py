r"""``dynsim reproduce spectral``: what the spectral contrastive loss does on an augmentation graph, measured
against what the theory (shared/specs/spectral.md §3, §5) predicts.

Four run directories under ``out`` (each resumes like ``dynsim sweep``), all on the hierarchical
block graph of the spec's illustration (r = 3 classes × S = 2 subclasses × n = 4 nodes,
θ = (0.5, 0.3, 0.15, 0.05), so γ = 1, 0.856 (×2), 0.4225 (×3), 0.25 (×18)), beside the exact flow
of every seed:

- ``stepwise``: SGD from a small initialization, k = rS = 6: the loss descends through plateaus at
  :math:`-\sum_{i\le j}\gamma_i^2` and leaves each near the predicted exit
  :math:`N\ln(\gamma/s_0)/(8\gamma)` (figure (a));
- ``subspace``: gradient descent, k = r = 3: the largest principal-angle sine to the top-k
  eigenspace decays at the rate :math:`4(\gamma_k - \gamma_{k+1})/N` (figure (b));
- ``lr``: gradient descent at several step sizes against the flow: error ∝ η (figure (d), left);
- ``batch``: SGD at several batch sizes against the flow, with the gradient-descent floor:
  error ∝ B^{-1/2} above the floor (figure (d), right).

And, from the exact optimum f* of every k on a ring (r = 4 classes, N = 48, θ0 = 0.6; nontrivial
α* = r(1 − θ0)/N), the least-squares probe's errors beside the provable bounds and α (figure (c)).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import xarray as xr

from ..engine.compare import Comparison, comparison_of_dataset
from ..engine.config import with_overrides
from ..engine.results import final_summary, write_csv
from ..engine.system import System
from ..engine.tables import Report
from .config import SpectralConfig, load_config
from .figures import error_panels, predicted_exits, probe_figure, stepwise_figure, subspace_figure
from .graph import eigensystem, minimizer, probe_bounds, ring
from .observables import graph_arrays, observe

GRAPH = {"family": "hsbm", "classes": 3, "subclasses": 2, "nodes": 4, "theta": [0.5, 0.3, 0.15, 0.05]}
PROBE_GRAPH = {"nodes": 48, "theta0": 0.6, "classes": 4}
# "quick" takes a few minutes on 2 CPU cores, most of it compiling one program per step size and
# batch size; "full" has more seeds, finer records, and wider sweeps.
SIZES = {
    "quick": {
        "seeds": 4,
        "stepwise_lr": 0.5,
        "stepwise_record": 2.0,
        "subspace_duration": 300.0,
        "lr": [1.0, 0.5, 0.25],
        "batch": [8, 32, 128],
        "probe_ks": range(1, 17),
    },
    "full": {
        "seeds": 8,
        "stepwise_lr": 0.25,
        "stepwise_record": 1.0,
        "subspace_duration": 400.0,
        "lr": [2.0, 1.0, 0.5, 0.25, 0.125],
        "batch": [8, 32, 128, 512],  # B = 4 diverges at lr 0.25 on this graph
        "probe_ks": range(1, 33),
    },
}


def spectral_configs(out: Path, size: str) -> dict[str, SpectralConfig]:
    """The configuration of each run of ``size`` (``"quick"`` or ``"full"``), its run directory ``out/<run>``."""
    spec = SIZES[size]
    base = load_config({"system": "spectral", "graph": GRAPH, "run": {"seeds": spec["seeds"], "seed_chunk": 8}})
    lr = spec["stepwise_lr"]
    runs = {
        "stepwise": {
            "encoder": {"k": 6, "init_scale": 1e-3},
            "train": {"lr": lr, "duration": 200.0},
            "run": {"values": [lr], "record_every": spec["stepwise_record"]},
        },
        "subspace": {"train": {"method": "gd", "duration": spec["subspace_duration"]}, "run": {"values": [1.0]}},
        "lr": {"train": {"method": "gd", "duration": 100.0}, "run": {"values": spec["lr"], "record_every": 2.0}},
        "batch": {"train": {"lr": 0.25, "duration": 100.0}, "run": {"axis": "batch", "values": spec["batch"]}},
    }
    return {
        name: with_overrides(base, overrides | {"run": overrides["run"] | {"out": str(Path(out) / name)}})
        for name, overrides in runs.items()
    }


def probe_rows(ks) -> list[dict]:
    """Per k on the probe ring: the least-squares probe's errors at the exact optimum f* (span U_k)
    and the bounds of :func:`dynsim.spectral.graph.probe_bounds`."""
    graph = ring(**PROBE_GRAPH)
    rows = []
    with jax.enable_x64(True):
        for k in ks:
            values = observe(minimizer(graph, k), graph_arrays(graph, k, 1))
            errors = {"probe_aug": float(values["probe_aug"]), "probe_ens": float(values["probe_ens"])}
            rows.append({"k": k} | errors | probe_bounds(graph, k))
    return rows


def _exit_rows(stepwise: xr.Dataset, config: SpectralConfig, system: System) -> list[dict]:
    rows = final_summary(stepwise, system)
    finite, flow = rows[0], rows[-1]
    predicted = predicted_exits(config)
    out = []
    for g, prediction in enumerate(predicted, start=1):
        name = f"t_exit_{g}"
        out.append(
            {
                "quantity": f"plateau exit {g} (t)",
                "measured": f"{finite[f'{name}_mean']:.4g} ± {finite[f'{name}_sd']:.2g} (SGD), "
                f"{flow[f'{name}_mean']:.4g} (flow)",
                "predicted": f"{prediction:.4g}",
                "ratio": f"{finite[f'{name}_mean'] / prediction:.3f}",
            }
        )
    return out


def subspace_rate(dataset: xr.Dataset, low: float = 1e-9, high: float = 1e-3) -> float:
    """The fitted late log-slope of the flow's mean subspace sine, over the records where it lies in [low, high]."""
    sine = dataset["flow_sine"].mean("seed").values
    times = dataset.time.values
    window = (sine > low) & (sine < high)
    return float(np.polyfit(times[window], np.log(sine[window]), 1)[0])


def _slope_row(comparison: Comparison) -> dict:
    low, high = comparison.slope_ci
    return {
        "quantity": f"error slope in {comparison.axis.name}",
        "measured": f"{comparison.slope:.3f} [{low:.3f}, {high:.3f}]",
        "predicted": f"{comparison.axis.slope:g}",
        "ratio": f"{comparison.slope / comparison.axis.slope:.3f}",
    }


def reproduce_spectral(out: str | Path, size: str, sweep: Callable, system: System) -> Report:
    """Run (or resume) the four runs with ``sweep(config, floor)``, compute the probe curve, and write
    under ``out/figures``: ``spectral_stepwise.png`` (a), ``spectral_subspace.png`` (b),
    ``spectral_probe.png`` (c), ``spectral_error.png`` (d), ``spectral_probe.csv`` and
    ``spectral_summary.csv`` (each measured quantity beside its prediction)."""
    out = Path(out)
    configs = spectral_configs(out, size)
    stepwise = sweep(configs["stepwise"])
    subspace = sweep(configs["subspace"])
    comparisons = [comparison_of_dataset(sweep(configs[name], floor=True), system) for name in ("lr", "batch")]
    probes = probe_rows(SIZES[size]["probe_ks"])
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    gammas = eigensystem(configs["subspace"].graph_object)[0]
    k = configs["subspace"].encoder.k
    predicted_rate = -4 * (gammas[k - 1] - gammas[k]) / gammas.size
    rate = subspace_rate(subspace)
    rows = _exit_rows(stepwise, configs["stepwise"], system)
    rows.append(
        {
            "quantity": "subspace rate (flow)",
            "measured": f"{rate:.5g}",
            "predicted": f"{predicted_rate:.5g}",
            "ratio": f"{rate / predicted_rate:.4f}",
        }
    )
    rows += [_slope_row(comparison) for comparison in comparisons]
    worst = max(probes, key=lambda row: row["probe_aug"] - row["bound_aug_cut"])
    rows.append(
        {
            "quantity": "probe: augmented error − its bound, closest k",
            "measured": f"{worst['probe_aug'] - worst['bound_aug_cut']:.3g} at k = {worst['k']}",
            "predicted": "≤ 0",
            "ratio": "",
        }
    )
    stepwise_figure(stepwise, configs["stepwise"], figures / "spectral_stepwise.png")
    subspace_figure(subspace, predicted_rate, figures / "spectral_subspace.png")
    probe_figure(probes, figures / "spectral_probe.png")
    error_panels(comparisons, figures / "spectral_error.png")
    write_csv(figures / "spectral_probe.csv", probes)
    write_csv(figures / "spectral_summary.csv", rows)
    cells = [(row["quantity"], row["measured"], row["predicted"], row["ratio"]) for row in rows]
    message = f"figures and summaries in {figures}/; run directories {', '.join(configs)} in {out}/"
    columns = ("quantity", "measured", "predicted", "measured / predicted")
    return Report("spectral contrastive learning: measured against predicted", columns, cells, message)
