r"""``dynsim reproduce debiased``: biased, debiased and unbiased InfoNCE side by side on augmentation
graphs whose classes, false negatives and expectations are all known (spec §4, issue 15).

The graphs are hierarchical block graphs with r classes × S = 2 subclasses × n = 4 nodes and a
large cross-class overlap, θ = (0.35, 0.3, 0.15, 0.2), so that a negative drawn from the data is a
false negative with probability τ⁺ = 1/r; γ_cls = (1 − rθ2/(r−1))² ≥ 0.36 lies above
γ_sub = 0.25 at every r, so the spectral optimum at k ≥ r separates the classes. The encoder is
capacity-limited: a tabular embedding of dimension k = r, below the subclass count rS. Every run
trains the same seeds by SGD (B = 16, lr 0.5, temperature 0.5, N fresh negatives per anchor; the
debiased loss with τ⁺ = 1/r and M = 1), and reports, along training, the few-label probe
(``probe_few``: one labeled point per class), the probe fit to all Bayes labels (``probe_ens``) and
the distance to the class contrasts (``class_sine``). Four InfoNCE losses: ``infonce`` (biased),
``debiased`` with v a same-class sample (its assumption), ``debiased`` with v a fresh augmentation
of the anchor's own datum (the practice's stand-in; the official in-batch form reuses x⁺ itself),
``unbiased`` (negatives from other classes, by true
labels); and, as a reference without negatives to get wrong, the spectral loss on the same encoder
and graph, beside the probes of its exact optimum.

- ``negatives``: r = 2 (τ⁺ = 1/2), N over ``SIZES[size]["negatives"]``;
- ``classes``: N = 16, r over ``SIZES[size]["classes"]`` (τ⁺ = 1/r), the spectral loss too;
- the estimator's distance to its target (:mod:`dynsim.spectral.bias`) at the unit-norm spectral
  optimum of the r = 2 graph at k = rS = 4: against N (M exact, Q = N), against M (N exact, Q = 64), and the
  practical M = 1 loss against the unbiased one;
- the learned embeddings of seed 0 at r = 2, the largest N (k = 2: the unit circle itself), and of
  the spectral loss (directions).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.results import final_summary, write_csv
from ..engine.runner import seed_keys
from ..engine.system import System
from ..engine.tables import Report
from .bias import bias_curve, sample_bias
from .config import SpectralConfig, load_config
from .debiased import unit
from .dynamics import inputs_of, plan_of
from .figures import accuracy_figure, bias_figure, embedding_figure
from .finite import embedding, final_params
from .graph import minimizer
from .observables import graph_arrays, observe

THETA = [0.35, 0.3, 0.15, 0.2]
SUBCLASSES = 2
LOSSES = {  # label -> [loss] section
    "biased": {"kind": "infonce"},
    "debiased (class v)": {"kind": "debiased", "positives": "class"},
    "debiased (datum v)": {"kind": "debiased", "positives": "datum"},
    "unbiased": {"kind": "unbiased"},
}
SPECTRAL = "spectral loss"  # run at N = 16 only: it has no negatives
TEMPERATURE = 0.5
SIZES = {
    "quick": {
        "seeds": 4,
        "duration": 100.0,
        "negatives": [4, 16, 64],
        "classes": [2, 4, 8],
        "draws": 16384,
        "bias_negatives": [16, 64, 256, 1024],
        "bias_same": [4, 16, 64, 256],
    },
    "full": {
        "seeds": 32,
        "duration": 200.0,
        "negatives": [2, 4, 16, 64, 256],
        "classes": [2, 3, 4, 6, 8],
        "draws": 262144,
        "bias_negatives": [16, 64, 256, 1024, 4096],
        "bias_same": [4, 16, 64, 256, 1024],
    },
}
METRICS = ("probe_few", "probe_ens", "class_sine")


def study_config(classes: int, negatives: int, loss: dict, seeds: int, duration: float, out: Path) -> SpectralConfig:
    """One run of the study: r = ``classes``, k = r, N = ``negatives``, the ``[loss]`` section ``loss``
    (empty: the spectral loss)."""
    return load_config(
        {
            "system": "spectral",
            "graph": {"family": "hsbm", "classes": classes, "subclasses": SUBCLASSES, "nodes": 4, "theta": THETA},
            "encoder": {"kind": "tabular", "k": classes, "init_scale": 0.1},
            "train": {"lr": 0.5, "batch": 16, "duration": duration},
            "loss": loss | ({"negatives": negatives, "temperature": TEMPERATURE} if loss else {}),
            "run": {
                "seeds": seeds,
                "seed_chunk": seeds,
                "values": [0.5],
                "record_every": duration / 10,
                "probe_shots": 1,
                "out": str(out),
            },
        }
    )


def study_configs(out: Path, size: str) -> dict[tuple[str, int, int], SpectralConfig]:
    """Every run of ``size``, keyed by (loss label, r, N); run directories ``out/runs/<loss>-r<r>-N<N>``."""
    spec = SIZES[size]
    points = {(2, n) for n in spec["negatives"]} | {(r, 16) for r in spec["classes"]}
    runs = [(label, loss, point) for label, loss in LOSSES.items() for point in sorted(points)]
    runs += [(SPECTRAL, {}, (r, 16)) for r in spec["classes"]]
    configs = {}
    for label, loss, (classes, negatives) in runs:
        name = f"{label.replace(' ', '').replace('(', '-').replace(')', '')}-r{classes}-N{negatives}"
        configs[label, classes, negatives] = study_config(
            classes, negatives, loss, spec["seeds"], spec["duration"], Path(out) / "runs" / name
        )
    return configs


def final_embedding(config: SpectralConfig, seed: int = 0) -> np.ndarray:
    """The unit-norm embedding table f(x)/‖f(x)‖ (N × k) of seed ``seed`` at the end of training:
    the keys and steps of that seed's run in :func:`dynsim.spectral.simulate`
    (:func:`~dynsim.spectral.finite.final_params`)."""
    plan = plan_of(config)
    with jax.enable_x64(config.train.precision == "float64"):
        data_key, keys = seed_keys(config.run.seed, 0, 1, seed)
        inputs = inputs_of(config, data_key, plan.dtype)
        params = jax.jit(final_params, static_argnums=2)(keys[0], inputs, plan)
        return np.asarray(unit(embedding(params, inputs.features)))


def bias_curves(config: SpectralConfig, size: str) -> dict:
    """The estimator's distance to its target (:func:`dynsim.spectral.bias.bias_curve`) at the
    spectral optimum of ``config``'s graph at k = rS, which tells the subclasses apart (at k = r
    it is constant on each class, and a datum's own augmentations would be a same-class sample):
    ``"negatives"`` (M exact, Q = N), ``"same"`` (N exact, Q = 64), and ``"practical_class"``,
    ``"practical_datum"``: the M = 1 loss against N, v a same-class sample or the datum's own."""
    graph = config.graph_object
    spec, phi = SIZES[size], minimizer(graph, graph.num_classes * SUBCLASSES)
    options = {"t": TEMPERATURE, "tau_plus": 1.0 / graph.num_classes, "draws": spec["draws"]}
    curves = {
        "negatives": bias_curve(graph, phi, "negatives", spec["bias_negatives"], same=None, **options),
        "same": bias_curve(graph, phi, "same", spec["bias_same"], negatives=None, weight=64.0, **options),
    }
    for positives in ("class", "datum"):
        rows = [
            sample_bias(graph, phi, negatives=n, same=1, positives=positives, **options) for n in spec["bias_negatives"]
        ]
        curves[f"practical_{positives}"] = {"values": spec["bias_negatives"], "rows": rows}
    return curves


def accuracy_rows(datasets: dict, system: System) -> list[dict]:
    """Per run (``datasets`` keyed by (loss, r, N)): loss, r, τ⁺, N, seeds and the final mean ± sd of
    every metric of :data:`METRICS`."""
    rows = []
    for (label, classes, negatives), dataset in datasets.items():
        final = final_summary(dataset, system)[0]
        row = {"loss": label, "classes": classes, "tau_plus": 1.0 / classes, "negatives": negatives}
        row["seeds"] = final["seeds"]
        for name in METRICS:
            row[f"{name}_mean"], row[f"{name}_sd"] = final[f"{name}_mean"], final[f"{name}_sd"]
        rows.append(row)
    return rows


def optimum_rows(classes: list[int]) -> list[dict]:
    """Per r: the probes of the spectral loss's exact optimum f* on the study's graph and encoder
    (the few-label probe on the same labeled points as the runs)."""
    rows = []
    with jax.enable_x64(True):
        for r in classes:
            config = study_config(r, 16, {}, 1, 10.0, Path("."))  # only its graph and encoder are read
            arrays = graph_arrays(config.graph_object, r, 1, config.run.probe_shots)
            values = observe(jnp.asarray(minimizer(config.graph_object, config.encoder.k)), arrays)
            rows.append({"classes": r} | {name: float(values[name]) for name in METRICS})
    return rows


def _bias_rows(curves: dict) -> list[dict]:
    rows = []
    for name, curve in curves.items():
        for value, row in zip(curve["values"], curve["rows"], strict=True):
            rows.append({"curve": name, "value": value} | row)
    return rows


def _ranking(rows: list[dict], key: str, fixed: dict) -> str:
    """The losses ordered by mean few-label error (best first) at every point of ``key``."""
    rows = [row for row in rows if all(row[k] == v for k, v in fixed.items())]
    if key == "negatives":  # the spectral loss has no negatives
        rows = [row for row in rows if row["loss"] != SPECTRAL]
    parts = []
    for point in sorted({row[key] for row in rows}):
        chosen = [row for row in rows if row[key] == point]
        chosen.sort(key=lambda row: row["probe_few_mean"])
        parts.append(f"{key} {point}: " + " ≤ ".join(f"{row['loss']} {row['probe_few_mean']:.3f}" for row in chosen))
    return "; ".join(parts)


def _training_curves(datasets: dict, negatives: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per InfoNCE loss at r = 2 and N = ``negatives``: (times, mean few-label error over seeds)."""
    curves = {}
    for label in LOSSES:
        dataset = datasets[label, 2, negatives]
        curves[label] = (dataset.time.values, dataset["probe_few"].isel(lr=0).mean("seed").values)
    return curves


def _slope_rows(curves: dict) -> list[dict]:
    return [
        {
            "quantity": f"slope of {name} in {'N' if curve == 'negatives' else 'M'}",
            "measured": f"{slope:.3f} [{low:.3f}, {high:.3f}]",
            "expected": f"{expected:g} [D]",
        }
        for curve in ("negatives", "same")
        for name, expected in (("deviation", -0.5), ("bias", -1.0))
        for slope, (low, high) in [curves[curve]["slopes"][name]]
    ]


def _spectral_rows(rows: list[dict], optimum: list[dict]) -> list[dict]:
    out = []
    for best in optimum:
        run = next(row for row in rows if row["loss"] == SPECTRAL and row["classes"] == best["classes"])
        for name in ("probe_few", "probe_ens"):
            out.append(
                {
                    "quantity": f"spectral loss, r = {best['classes']}: {name} (seeds) vs the exact optimum",
                    "measured": f"{run[f'{name}_mean']:.3f} ± {run[f'{name}_sd']:.3f}",
                    "expected": f"{best[name]:.3f}",
                }
            )
    return out


def reproduce_debiased(out: str | Path, size: str, sweep: Callable, system: System) -> Report:
    """Run (or resume) every run of the study with ``sweep(config, limit=False)``, measure the
    estimator's bias, and write under ``out/figures``: ``debiased_accuracy.png`` (few-label probe
    error against N, against τ⁺, and along training), ``debiased_bias.png`` (deviation and bias
    against N and M with fitted slopes, and the M = 1 loss against the unbiased one),
    ``debiased_embeddings.png`` (seed 0's embeddings at r = 2), ``debiased_runs.csv`` (every
    run's final metrics), ``debiased_optimum.csv``, ``debiased_bias.csv`` and
    ``debiased_summary.csv``."""
    out, spec = Path(out), SIZES[size]
    configs = study_configs(out, size)
    datasets = {key: sweep(config, limit=False) for key, config in configs.items()}
    rows = accuracy_rows(datasets, system)
    optimum = optimum_rows(spec["classes"])
    curves = bias_curves(configs["unbiased", 2, 16], size)
    most = max(spec["negatives"])
    embeddings = {label: final_embedding(configs[label, 2, most]) for label in LOSSES}
    embeddings[SPECTRAL] = final_embedding(configs[SPECTRAL, 2, 16])
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    accuracy_figure(rows, optimum, _training_curves(datasets, most), figures / "debiased_accuracy.png")
    bias_figure(curves, figures / "debiased_bias.png")
    embedding_figure(embeddings, configs[SPECTRAL, 2, 16].graph_object, figures / "debiased_embeddings.png")
    write_csv(figures / "debiased_runs.csv", rows)
    write_csv(figures / "debiased_optimum.csv", optimum)
    write_csv(figures / "debiased_bias.csv", _bias_rows(curves))
    summary = _slope_rows(curves) + _spectral_rows(rows, optimum)
    summary.append(
        {"quantity": "few-label error by N (r = 2)", "measured": _ranking(rows, "negatives", {"classes": 2})}
    )
    summary.append(
        {"quantity": "few-label error by r (N = 16)", "measured": _ranking(rows, "classes", {"negatives": 16})}
    )
    write_csv(figures / "debiased_summary.csv", summary)
    cells = [(row["quantity"], row["measured"], row.get("expected", "")) for row in summary]
    message = f"figures and tables in {figures}/; run directories in {out / 'runs'}/"
    return Report("debiased contrastive learning: measured", ("quantity", "measured", "expected"), cells, message)
