"""``dynsim reproduce spectral``: the run directories, figures and summaries it writes, and the numbers in
them against the theory they are printed beside."""

import csv

import numpy as np
import pytest
from helpers import reproduce_quick
from matplotlib import image
from typer.testing import CliRunner

import dynsim
from dynsim.cli import app
from dynsim.spectral import reproduce as _reproduce

# The smallest runs the command accepts, in the shape of _reproduce.SIZES: this checks the plumbing
# (runs, overlays, files, the numbers in the summary); tests/spectral/test_spectral_training.py checks
# the science at sizes where it holds.
TINY = {
    "seeds": 2,
    "stepwise_lr": 1.0,
    "stepwise_record": 5.0,
    "subspace_duration": 300.0,
    "lr": [1.0, 0.5],
    "batch": [8, 32],
    "probe_ks": range(1, 5),
}
FIGURES = ("spectral_stepwise.png", "spectral_subspace.png", "spectral_probe.png", "spectral_error.png")


def _check_outputs(out, size):
    for name in FIGURES:
        pixels = image.imread(out / "figures" / name)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100, name
    with open(out / "figures" / "spectral_summary.csv") as f:
        rows = {row["quantity"]: row for row in csv.DictReader(f)}
    assert float(rows["subspace rate (flow)"]["ratio"]) == pytest.approx(1.0, abs=0.01)
    assert float(rows["error slope in lr"]["predicted"]) == 1.0
    assert float(rows["error slope in batch"]["predicted"]) == -0.5
    assert "plateau exit 1 (t)" in rows
    with open(out / "figures" / "spectral_probe.csv") as f:
        probes = list(csv.DictReader(f))
    assert [int(row["k"]) for row in probes] == list(size["probe_ks"])
    for row in probes:  # the [D] bounds hold at the exact optimum of every k
        assert float(row["probe_aug"]) <= float(row["bound_aug_cut"]) <= float(row["bound_aug"])
        assert float(row["probe_ens"]) <= float(row["bound_ens"])
    batch = dynsim.load(out / "batch")
    assert list(batch.batch.values) == size["batch"] and "floor_gap" in batch and "flow_gap" in batch


def test_reproduce_spectral_writes_figures_and_summaries_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setitem(_reproduce.SIZES, "quick", TINY)
    out = tmp_path / "spectral"
    result = CliRunner().invoke(app, ["reproduce", "spectral", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "subspace rate" in result.output and "error slope in batch" in result.output
    _check_outputs(out, TINY)
    again = CliRunner().invoke(app, ["reproduce", "spectral", "--quick", "--quiet", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert (out / "lr" / "run.log").read_text().splitlines()[-2].endswith("start: 0 of 2 parts to run")


def test_the_probe_curve_is_the_exact_optimum_of_each_k():
    rows = _reproduce.probe_rows([3, 6])
    graph = dynsim.spectral.ring(**_reproduce.PROBE_GRAPH)
    alpha = dynsim.spectral.alpha(graph)
    assert alpha == pytest.approx(4 * (1 - 0.6) / 48)  # r (1 - theta0) / N
    for row in rows:  # from k = 3 on, the top eigenvectors separate the four arcs: the Bayes errors
        assert row["probe_aug"] == pytest.approx(alpha) and row["probe_ens"] == 0.0
        assert row["alpha"] == pytest.approx(alpha) and np.isfinite(row["bound_ens"])


@pytest.mark.slow
def test_reproduce_spectral_quick_for_real(tmp_path):
    out = tmp_path / "spectral"
    reproduce_quick("spectral", out)
    _check_outputs(out, _reproduce.SIZES["quick"])
