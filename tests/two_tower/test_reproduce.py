"""``dynsim reproduce fig1``: the run directories, figures and summaries it writes."""

import csv

import numpy as np
import pytest
from helpers import reproduce_quick
from matplotlib import image
from typer.testing import CliRunner

import dynsim
from dynsim.cli import app
from dynsim.two_tower import reproduce as _reproduce

# The smallest problem the command accepts, in the shape of _reproduce.SIZES: the test checks
# the plumbing (panels, overlays, files, numbers), not the science (tests/test_theorem.py does).
TINY = {
    "config": {
        "data": {"r": 2, "n": 2},
        "loss": {"stages": [[0.5, 2.0], [2.0, 2.0]]},
        "train": {"batch": 8},
        "run": {"widths": [16, 32], "seeds": 2, "record_every": 1.0, "alignment_samples": 16},
    },
    "kappas": np.array([2.0, 4.0]),
    "taus": np.array([1.0, 3.0]),
}
FIGURES = ("fig1_trajectories.png", "fig1_phase.png")


def _check_outputs(out, size):
    widths = size["config"]["run"]["widths"]
    for name in FIGURES:
        pixels = image.imread(out / "figures" / name)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100, name
    with open(out / "figures" / "fig1_summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(row["panel"], row["width"]) for row in rows] == [
        (panel, str(width)) for panel in _reproduce.PANELS for width in (*widths, "inf")
    ]
    for row in rows:
        config = dynsim.load_config(out / row["panel"] / "config.toml")
        assert config.run.backend == "gram"
        if row["width"] == "inf":  # the ODE row is the ODE of the panel's saved configuration
            final = dynsim.ode.solve(config).metrics
            for name in ("rho_min", "kappa_a", "nsr", "balance"):
                assert float(row[f"{name}_mean"]) == pytest.approx(final[name][-1], rel=1e-9), name
    assert {row["panel"] for row in rows if row["panel"].startswith("spike")} == {"spike_contrastive", "spike_positive"}
    assert dynsim.load_config(out / "spike_positive" / "config.toml").data.spectrum == "spike"
    with open(out / "figures" / "fig1_phase.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 * len(size["kappas"]) * len(size["taus"])


def test_reproduce_fig1_writes_figures_and_summaries_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setitem(_reproduce.SIZES, "quick", TINY)
    out = tmp_path / "fig1"
    result = CliRunner().invoke(app, ["reproduce", "fig1", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "t_balance" in result.output and "spike_positive" in result.output
    _check_outputs(out, TINY)
    for panel in _reproduce.PANELS:  # each panel is an ordinary sweep run directory
        assert dynsim.load(out / panel).sizes["width"] == 2
        assert (out / panel / "stages.csv").is_file()
    again = CliRunner().invoke(app, ["reproduce", "fig1", "--quick", "--quiet", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert (out / "contrastive" / "run.log").read_text().splitlines()[-2].endswith("start: 0 of 2 parts to run")


@pytest.mark.slow
def test_reproduce_fig1_quick_for_real(tmp_path):
    out = tmp_path / "fig1"
    reproduce_quick("fig1", out)
    _check_outputs(out, _reproduce.SIZES["quick"])
