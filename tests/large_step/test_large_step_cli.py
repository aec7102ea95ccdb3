"""The large-step system through the engine and the command line: ``sweep``, one-line errors, and
``dynsim reproduce large-step`` (whose flow experiment is the engine's comparison of gradient descent
with gradient flow: slope 1 in η)."""

import csv

import numpy as np
import pytest
from helpers import reproduce_quick, run_main
from matplotlib import image

import dynsim
from dynsim.large_step import study

# The smallest runs of the study, in the shape of study.SIZES: this checks the plumbing (files, the
# summary, resuming); tests/large_step/test_gd.py checks the science at sizes where it holds.
TINY = {
    "phase_steps": 300,
    "toy_steps": 300,
    "seeds": 2,
    "budgets": (2.0, 2.5),
    "net_budgets": (2.0, 2.5),
    "net_width": 4,
    "fig4_steps": 2000,
    "widths": (2, 4),
    "width_steps": 200,
    "digits_width": 4,
    "digits_steps": 200,
    "flow_etas": [0.4, 0.2],
}
FIGURES = ("phases", "acceleration", "toy", "digits", "flow", "widths")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("data.set=mnist", "data.set = 'mnist' is invalid: must be one of"),
        ("data.pair=[3, 3]", "data.pair = [3, 3] is invalid: must be two different digits"),
        ("model.c=1.0", "model.c = 1.0 is invalid: must be < 1"),
        ("run.values=[0.3]", "train.duration = 100.0 is invalid: must be a whole number of steps at stepsize 0.3"),
        ("data.set=file", "data.path = None is invalid"),
    ],
)
def test_bad_settings_get_one_line_errors(setting, message, tmp_path):
    result = run_main("sweep", "--system", "large_step", "--out", str(tmp_path / "x"), "--set", setting)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_a_users_npz_trains_and_a_bad_one_is_refused(tmp_path):
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    x = np.array([[0.5, 0.1], [-0.4, 0.3], [0.2, -0.6], [-0.1, -0.5]])
    np.savez(good, x=x, y=np.array([1.0, 1.0, -1.0, -1.0]))
    np.savez(bad, x=x, y=np.array([1.0, 1.0, 1.0, 1.0]))
    ok = run_main(
        "sweep",
        "--system",
        "large_step",
        "--quiet",
        "--out",
        str(tmp_path / "ok"),
        "--set",
        "data.set=file",
        "--set",
        f"data.path='{good}'",
        "--set",
        "train.duration=4.0",
        "--set",
        "run.values=[0.4]",
    )
    assert ok.returncode == 0, ok.stderr
    refused = run_main(
        "sweep",
        "--system",
        "large_step",
        "--out",
        str(tmp_path / "no"),
        "--set",
        "data.set=file",
        "--set",
        f"data.path='{bad}'",
    )
    assert refused.returncode == 2 and "data.path" in refused.stderr and len(refused.stderr.splitlines()) == 1


def _check_outputs(out):
    for name in FIGURES:
        pixels = image.imread(out / "figures" / f"large_step_{name}.png")
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100, name
    with open(out / "figures" / "large_step_summary.csv") as f:
        rows = {row["quantity"]: row for row in csv.DictReader(f)}
    fig4 = rows["Fig. 4 toy at the last step: network margin / neuron margins"]
    assert "C15" in fig4["expected"]
    assert any(q.startswith("acceleration, linear digits") for q in rows)
    assert rows["GD against gradient flow at fixed tau: error slope in eta"]["measured"].startswith("1.0")


def test_reproduce_writes_figures_and_summary_and_reads_runs_back(tmp_path, monkeypatch):
    monkeypatch.setitem(study.SIZES, "quick", TINY)
    out = tmp_path / "large-step"
    result = run_main("reproduce", "large-step", "--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "acceleration, linear digits" in result.stdout
    _check_outputs(out)
    flow = dynsim.load(out / "flow")  # the engine's sweep against gradient flow, as `dynsim compare` runs it
    assert flow.attrs["system"] == "large_step" and "flow_risk" in flow
    assert sorted(flow.eta.values) == sorted(TINY["flow_etas"])
    comparison = dynsim.engine.compare.comparison_of_dataset(flow, dynsim.SYSTEMS["large_step"])
    assert comparison.slope == pytest.approx(1.0, abs=0.05)  # GD is the Euler scheme of the flow

    def refuse(*args, **kwargs):
        raise AssertionError("a saved run was computed again")

    monkeypatch.setattr(study, "gd", refuse)  # a second run reads every saved run back
    again = run_main("reproduce", "large-step", "--quick", "--quiet", "--out", str(out))
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_reproduce_large_step_quick_for_real(tmp_path):
    out = tmp_path / "large-step"
    reproduce_quick("large-step", out)
    _check_outputs(out)
