r"""``dynsim reproduce practical``: seed 001's practical experiment (§6, Figure 2) on the packaged
multiple-features digits.

For each pair of views (the two "frozen encoders"), an engine sweep over the two losses (a run
directory that resumes): the same seeds, splits, initial heads and batches for InfoNCE and for
the positive-pair loss. Written: ``figures/practical_<a>_<b>.png`` (zero-shot accuracy, condition
number, stable rank and linear probe against training steps, seed bands),
``practical_<a>_<b>_prompts.png`` (final zero-shot accuracy against M) and
``practical_summary.csv``: per view pair and quantity, each loss's final mean ± sd over seeds and
the paired difference (InfoNCE − positive, seed by seed) with the number of seeds where it is > 0.

On the first view pair, InfoNCE is also run with each stage's temperature held throughout
(``temperatures``; the same seeds): ``practical_<a>_<b>_temperatures.png`` sets the zero-shot
accuracy and condition number of the schedule beside one temperature. With gradient rescaling the
positive-pair loss does not depend on τ (its rescaled gradient is −∇ mean s_ii), so the
schedule's positive run stands for every τ.

The seed's claim, measured and not assumed: negatives keep the representation balanced (lower
condition number, higher stable rank), and this shows in zero-shot accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..engine.config import with_overrides
from ..engine.results import write_csv
from ..engine.tables import Report
from .figures import prompts_figure, temperature_figure, training_figure

PROMPTS = (1, 2, 4, 8, 16, 32)
SIZES = {
    "quick": {
        "views": (("pix", "fou"),),
        "seeds": 3,
        "stages": [[2.0, 100], [10.0, 300]],
        "record_every": 25,
    },
    "full": {
        "views": (("pix", "fou"), ("kar", "zer")),
        "seeds": 8,
        "stages": [[2.0, 200], [10.0, 800]],
        "record_every": 50,
    },
}
# the best record chosen on the test pairs themselves: an oracle early stop, optimistic
PEAK = "peak zero-shot accuracy over training, chosen on the test pairs (M = {m})"
QUANTITIES = (
    ("zsc_acc", "zero-shot accuracy (M = {m})"),
    ("zsc_acc_1", "zero-shot accuracy (M = 1)"),
    ("probe_acc", "linear probe accuracy"),
    ("condition_a", "condition number κ_k, head A"),
    ("condition_b", "condition number κ_k, head B"),
    ("stable_rank_a", "stable rank, head A"),
    ("effective_rank_a", "effective rank, head A"),
    ("alignment", "mean cosine of positive pairs"),
)


def sweep_config(out: Path, spec: dict, views: tuple[str, str]):
    """The engine sweep of one view pair: both losses."""
    from ..registry import load_config

    return load_config(
        {
            "system": "practical",
            "data": {"view_a": views[0], "view_b": views[1]},
            "loss": {"stages": spec["stages"]},
            "eval": {"prompts": list(PROMPTS)},
            "run": {
                "seeds": spec["seeds"],
                "seed_chunk": spec["seeds"],
                "record_every": spec["record_every"],
                "out": str(out / f"{views[0]}_{views[1]}"),
            },
        }
    )


def reproduce_practical(out: str | Path, size: str, sweep: Callable) -> Report:
    """Run (or resume) the sweeps, write the figures and ``practical_summary.csv``; the report
    lists each loss's final values and their paired difference."""
    from .simulate import problem

    out, spec = Path(out), SIZES[size]
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, views in enumerate(spec["views"]):
        config = sweep_config(out, spec, views)
        run = sweep(config, limit=False)
        name = f"practical_{views[0]}_{views[1]}"
        rank = problem(config, "infonce").rank
        taus = " → ".join(f"{tau:g}" for tau, _ in config.loss.stages)
        title = f"digits: {views[0]} (A) / {views[1]} (B), {config.steps} steps, τ = {taus} (dotted)"
        boundaries = np.cumsum(config.loss.steps_per_stage)[:-1]
        training_figure(run, title, rank, boundaries, figures / f"{name}.png")
        prompts_figure(run, PROMPTS, figures / f"{name}_prompts.png")
        rows += summary_rows(run, f"{views[0]}/{views[1]}")
        if index == 0:
            held = {tau: sweep(held_config(config, tau), limit=False) for tau, _ in config.loss.stages}
            temperature_figure(run, held, rank, boundaries, figures / f"{name}_temperatures.png")
            rows += temperature_rows(run, held, f"{views[0]}/{views[1]}")
    write_csv(figures / "practical_summary.csv", rows)
    cells = [(r["views"], r["quantity"], r["infonce"], r["positive"], r["difference"]) for r in rows]
    columns = ("views", "quantity", "infonce", "positive", "infonce − positive (seeds > 0)")
    message = f"figures and tables in {figures}/; run directories under {out}/"
    return Report("Practical experiment: contrastive against non-contrastive heads", columns, cells, message)


def held_config(config, tau: float):
    """``config``'s InfoNCE run with inverse temperature ``tau`` for all its steps (its own run directory)."""
    out = f"{config.run.out}_tau{tau:g}"
    return with_overrides(
        config, {"loss": {"stages": [[tau, config.steps]]}, "run": {"values": ["infonce"], "out": out}}
    )


def temperature_rows(run, held: dict, views: str) -> list[dict]:
    """Per held temperature: InfoNCE's final zero-shot accuracy (and peak), probe and κ beside the
    positive-pair run's (the same for every τ), paired over seeds."""
    rows = []
    positive = run.sel(loss="positive")
    for tau, dataset in held.items():
        infonce = dataset.sel(loss="infonce")
        for name, label, reduce in (
            ("zsc_acc", "zero-shot accuracy (M = {m})", lambda d: d.isel(time=-1)),
            ("zsc_acc", PEAK, lambda d: d.max("time")),
            ("probe_acc", "linear probe accuracy", lambda d: d.isel(time=-1)),
            ("condition_a", "condition number κ_k, head A", lambda d: d.isel(time=-1)),
        ):
            a, b = reduce(infonce[name]).values, reduce(positive[name]).values
            rows.append(_row(views, f"τ = {tau:g} held: " + label.format(m=PROMPTS[-1]), a, b))
    return rows


def _row(views: str, quantity: str, infonce, positive) -> dict:
    difference = infonce - positive
    return {
        "views": views,
        "quantity": quantity,
        "infonce": _mean_sd(infonce),
        "positive": _mean_sd(positive),
        "difference": f"{_mean_sd(difference)} ({int(np.sum(difference > 0))}/{difference.size})",
    }


def summary_rows(run, views: str) -> list[dict]:
    """Per quantity: final mean ± sd of each loss, and the paired difference over seeds."""
    largest = PROMPTS[-1]
    rows = []
    for name, label in QUANTITIES:
        final = {loss: run[name].sel(loss=loss).isel(time=-1).values for loss in ("infonce", "positive")}
        rows.append(_row(views, label.format(m=largest), final["infonce"], final["positive"]))
    peak = {loss: run.zsc_acc.sel(loss=loss).max("time").values for loss in ("infonce", "positive")}
    label = PEAK.format(m=largest)
    rows.append(_row(views, label, peak["infonce"], peak["positive"]))
    return rows


def _mean_sd(values) -> str:
    return f"{np.mean(values):.4g} ± {np.std(values):.2g}"
