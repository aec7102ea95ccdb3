r"""``dynsim reproduce fig1``: the seed paper's Figure 1 and Theorem 4.3, as sweeps on disk.

Four training conditions (:data:`PANELS`), each a resumable sweep run directory under ``out``
(finite widths on the exact ``gram`` backend, with the infinite-width ODE overlay):

- ``contrastive``: InfoNCE with the two-stage schedule, small :math:`\tau_1` (align), then
  :math:`\tau_2 = 3` (balance) — the seed's Algorithm 3.1;
- ``positive``: the same schedule without negatives (``loss.kind = "positive"``; :math:`\tau`
  only rescales time there and :math:`\gamma = 1/\tau` undoes it, so the schedule is inert);
- ``spike_contrastive``, ``spike_positive``: the spike spectrum :math:`\sigma = (\kappa, 1, \dots, 1)`
  of Lemma B.17, where without negatives the condition number stays large.

Plus a phase diagram (:func:`dynsim.phase_diagram`) over (initial :math:`\kappa`, :math:`\tau_2`).
The ``gram`` backend is exact at every width for SGD (docs/gram.md), and its cost does not
depend on the width, so several widths cost little more than one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import xarray as xr

from ..engine.config import with_overrides
from ..engine.results import ENGINE, final_summary, write_atomic, write_csv
from ..engine.system import System
from ..engine.tables import Report, event_cell, metric_cell, point_label
from .config import Config, load_config
from .figures import FIG1_METRICS, fig1_trajectories, phase_heatmaps
from .phase import phase_diagram
from .stages import ALIGNED_RHO, BALANCED_KAPPA, STAGES

# The base of each size. "quick" (under a minute on a 2-core CPU, mostly compilation):
# r = 4, n = 12 and 460 time units are enough for the contrastive run to end aligned and
# balanced (kappa_A about 1.1) while the positive one ends at kappa_A about 13.
# "full": SPEC's example (r = 8, n = 24, stages [(0.05, 60), (3.0, 1600)]). Metrics are computed
# for all records of a seed chunk at once, in memory ~ records x alignment_samples^2: keep it small.
SIZES = {
    "quick": {
        "config": {
            "data": {"r": 4, "n": 12, "kappa": 4.0, "noise": 0.3},
            "loss": {"stages": [[0.05, 60.0], [3.0, 400.0]]},
            "train": {"batch": 32, "lr": 0.2},
            "run": {
                "widths": [256, 1024, 4096],
                "seeds": 8,
                "seed_chunk": 8,
                "record_every": 5.0,
                "alignment_samples": 256,
            },
        },
        "kappas": np.geomspace(1.5, 16.0, 6),
        "taus": np.geomspace(0.3, 10.0, 6),
    },
    "full": {
        "config": {
            "data": {"r": 8, "n": 24, "kappa": 4.0, "noise": 0.3},
            "loss": {"stages": [[0.05, 60.0], [3.0, 1600.0]]},
            "train": {"batch": 64, "lr": 0.2},
            "run": {
                "widths": [256, 1024, 4096],
                "seeds": 8,
                "seed_chunk": 4,
                "record_every": 20.0,
                "alignment_samples": 256,
            },
        },
        "kappas": np.geomspace(1.5, 16.0, 10),
        "taus": np.geomspace(0.3, 10.0, 10),
    },
}
PANELS = {
    "contrastive": {"loss": {"kind": "infonce"}},
    "positive": {"loss": {"kind": "positive"}},
    "spike_contrastive": {"data": {"spectrum": "spike"}, "loss": {"kind": "infonce"}},
    "spike_positive": {"data": {"spectrum": "spike"}, "loss": {"kind": "positive"}},
}


class Fig1(NamedTuple):
    """What :func:`reproduce_fig1` made: the datasets per panel, the phase grid, the summary
    rows (also in ``figures/fig1_summary.csv``) and the written files."""

    panels: dict[str, xr.Dataset]
    grid: xr.Dataset
    rows: list[dict]
    files: list[Path]


def fig1_configs(out: Path, size: str) -> dict[str, Config]:
    """The configuration of each panel of ``size`` (``"quick"`` or ``"full"``), its run
    directory ``out/<panel>``, on the ``gram`` backend."""
    base = with_overrides(load_config(SIZES[size]["config"]), {"run": {"backend": "gram"}})
    configs = {}
    for panel, overrides in PANELS.items():
        configs[panel] = with_overrides(base, overrides | {"run": {"out": str(Path(out) / panel)}})
    return configs


def summary_rows(panels: dict[str, xr.Dataset], system: System) -> list[dict]:
    """Per panel and width (the ODE as ``width = "inf"``): final ``rho_min, kappa_a, nsr,
    balance`` (mean and sd over seeds) and the stage times of :func:`dynsim.stage_times`."""
    keep = [f"{name}_{stat}" for name in FIG1_METRICS for stat in ("mean", "sd")]
    keep += [f"{name}_{stat}" for name in STAGES for stat in ("mean", "sd", "reached")]
    return [
        {"panel": panel, "width": row["width"], "seeds": row["seeds"]} | {key: row[key] for key in keep}
        for panel, dataset in panels.items()
        for row in final_summary(dataset, system)
    ]


def _grid_rows(grid: xr.Dataset) -> list[dict]:
    frame = grid.to_dataframe().reset_index()
    return frame.to_dict("records")


def reproduce_fig1(out: str | Path, size: str, sweep: Callable[[Config], xr.Dataset], system: System) -> Fig1:
    """Run (or resume) every panel with ``sweep(config)`` (which must add the ODE overlay), solve
    the phase diagram, and write under ``out``: ``phase.nc``, and in ``figures/``
    ``fig1_trajectories.png``, ``fig1_phase.png``, ``fig1_summary.csv`` (:func:`summary_rows`)
    and ``fig1_phase.csv`` (the grid, one row per point). ``system`` is the two-tower system."""
    out = Path(out)
    configs = fig1_configs(out, size)
    panels = {panel: sweep(config) for panel, config in configs.items()}
    grid = phase_diagram(configs["contrastive"], SIZES[size]["kappas"], SIZES[size]["taus"])
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(panels, system)
    files = [
        write_atomic(out / "phase.nc", lambda p: grid.to_netcdf(p, engine=ENGINE)),
        fig1_trajectories(panels, figures / "fig1_trajectories.png"),
        phase_heatmaps(grid, figures / "fig1_phase.png"),
        write_csv(figures / "fig1_summary.csv", rows),
        write_csv(figures / "fig1_phase.csv", _grid_rows(grid)),
    ]
    return Fig1(panels, grid, rows, files)


def fig1_report(result: Fig1) -> Report:
    """The rows of ``fig1_summary.csv`` as a table: final metrics ``mean ± sd`` and stage times
    per panel and width, and where the files went."""
    attrs = next(iter(result.panels.values())).attrs
    cells = [
        (row["panel"], point_label(row, attrs), *(metric_cell(row, n) for n in FIG1_METRICS))
        + tuple(event_cell(row, n) for n in STAGES)
        for row in result.rows
    ]
    title = f"final metrics and stage times (rho_min >= {ALIGNED_RHO}, then kappa_a <= {BALANCED_KAPPA})"
    out = result.files[0].parent
    message = f"figures and summaries in {out / 'figures'}/; run directories {', '.join(result.panels)} in {out}/"
    return Report(title, ("panel", "width", *FIG1_METRICS, *STAGES), cells, message)
