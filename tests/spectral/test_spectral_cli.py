"""The spectral system through the command line, end to end (a real process for the first sweep and the
killed run, the same entry point in this process for the rest): sweep with the exact flow,
resume after SIGKILL, compare with the gradient-descent floor, show, plot, and one-line errors."""

import csv
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from helpers import kill_when_parts_are_done, run_main

import dynsim
from dynsim import spectral
from dynsim.engine.config import with_overrides

SETTINGS = {"train.duration": "10.0", "run.record_every": "5.0", "run.values": "[1.0, 0.5]", "run.seeds": "2"}
TINY = ["--system", "spectral"] + [arg for key, value in SETTINGS.items() for arg in ("--set", f"{key}={value}")]


def dynsim_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "dynsim", *args], capture_output=True, text=True, timeout=timeout)


def test_sweep_with_the_flow_writes_a_run_that_loads_back_shows_and_plots(tmp_path):
    out = tmp_path / "run"
    result = dynsim_cli("sweep", "--limit", "--out", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    assert "probe_ens" in result.stdout and "0 (exact flow)" in result.stdout and "t_exit_1" in result.stdout
    for name in ("config.toml", "flow.nc", "summary.csv", "exits.csv", "dataset.nc"):
        assert (out / name).is_file(), name
    for name in ("metrics.png", "eigenvalues.png", "mass.png", "probe.png"):
        assert (out / "figures" / name).is_file(), name
    config = dynsim.load_config(out / "config.toml")
    assert config.system == "spectral" and config.run.values == (1.0, 0.5)
    dataset = dynsim.load(out)
    bounds = dynsim.spectral.probe_bounds(config.graph_object, 3)
    assert dataset.attrs["bound_ens"] == bounds["bound_ens"] and dataset.attrs["alpha"] == pytest.approx(0.05)
    assert dict(dataset.sizes) == {"lr": 2, "seed": 2, "time": 3, "component": 3, "mode": 8}
    again = spectral.simulate(with_overrides(config, {"train": {"lr": 0.5}}))
    np.testing.assert_allclose(dataset.eig.sel(lr=0.5).values, again.eig, rtol=1e-12)
    np.testing.assert_allclose(dataset.flow_gap.values, spectral.solve(config).metrics["gap"], rtol=1e-10, atol=1e-14)
    with open(out / "summary.csv") as f:
        rows = {row["lr"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"1.0", "0.5", "flow"}
    assert float(rows["0.5"]["sine_mean"]) == pytest.approx(float(dataset.sine.sel(lr=0.5)[:, -1].mean()), rel=1e-9)
    shown = run_main("show", str(out))
    assert shown.returncode == 0 and "probe_aug" in shown.stdout
    for png in (out / "figures").glob("*.png"):
        png.unlink()
    assert run_main("plot", str(out)).returncode == 0 and (out / "figures" / "mass.png").is_file()


def test_sweep_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    args = [
        "sweep",
        "--quiet",
        *TINY,
        "--set",
        "run.seeds=16",
        "--set",
        "run.seed_chunk=2",
        "--set",
        "run.values=[0.5]",
    ]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    finished = kill_when_parts_are_done(args, killed, 2)
    assert 2 <= finished < 8, finished
    assert dynsim_cli(*args, "--out", str(killed)).returncode == 0
    assert f"start: {8 - finished} of 8 parts" in (killed / "run.log").read_text()
    assert dynsim_cli(*args, "--out", str(whole)).returncode == 0
    resumed, reference = dynsim.load(killed), dynsim.load(whole)
    assert list(resumed.seed.values) == list(range(16))
    for name in reference.data_vars:
        np.testing.assert_array_equal(resumed[name].values, reference[name].values, err_msg=name)


def test_compare_over_the_batch_size_runs_the_gradient_descent_floor(tmp_path):
    out = tmp_path / "run"
    batch = ["--set", "run.axis=batch", "--set", "run.values=[4, 16]", "--set", "train.lr=0.5"]
    result = run_main("compare", "--out", str(out), *TINY, *batch)
    assert result.returncode == 0, result.stderr
    assert "slope of log error vs log batch" in result.stdout and "gradient-descent floor" in result.stdout
    assert (out / "figures" / "error_vs_batch.png").is_file()
    fit = tomllib.loads((out / "comparison.toml").read_text())
    assert fit["expected_slope"] == -0.5 and fit["floor_batch"] == float("inf") and fit["floor"] > 0
    with open(out / "comparison.csv") as f:
        assert [row["batch"] for row in csv.DictReader(f)] == ["4", "16"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "graph.theta=[0.5, 0.5, 0.5, 0.5]"], "graph.theta"),
        (["--set", "encoder.k=100"], "encoder.k = 100 is invalid: must be <= N = 24"),
        (["--width", "8"], "unknown key run.widths"),
        (["--set", "graph.family=file"], "graph.path"),
        (["--set", "graph.family=file", "--set", "graph.path=no/such.npz"], "no/such.npz"),
        (["--set", "run.values=[0.3]"], "whole number of steps at learning rate 0.3"),
        (["--set", "run.axis=batch", "--set", "run.values=[2.5]"], "run.values[0]"),
        (
            ["--set", "train.method=gd", "--set", "run.axis=batch", "--set", "run.values=[8]"],
            "needs train.method = 'sgd'",
        ),
        (["--set", "encoder.features=file", "--set", "encoder.kind=linear"], "encoder.path"),
        (["--set", "train.batch=1"], "train.batch"),
        (["--set", "train.optimizer=adam", "--limit"], "has no gradient-flow limit"),
        (["--set", "loss.kind=debiased", "--limit"], "loss.kind = 'debiased' has no exact flow here"),
        (["--set", "loss.kind=infonce", "--set", "train.method=gd"], "trains by sgd only"),
        (["--set", "loss.kind=unbiased", "--set", "loss.form=in_batch"], "loss.form"),
        (["--set", "loss.kind=debiased", "--set", "loss.tau_plus=1.0"], "loss.tau_plus = 1.0 is invalid: must be < 1"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, args, message):
    out = tmp_path / "run"
    result = run_main("sweep", "--out", str(out), "--system", "spectral", *args)
    assert not out.exists()  # refused before anything is written
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_system_and_a_conflicting_one_are_refused(tmp_path):
    unknown = run_main("sweep", "--system", "nope", "--out", str(tmp_path / "a"))
    assert (
        unknown.returncode == 2
        and "system = 'nope' is invalid: must be one of 'two_tower', 'spectral'" in unknown.stderr
    )
    path = tmp_path / "two_tower.toml"
    path.write_text('system = "two_tower"\n')
    conflict = run_main("sweep", "--system", "spectral", "--config", str(path), "--out", str(tmp_path / "b"))
    assert conflict.returncode == 2 and "--system spectral conflicts with system = 'two_tower'" in conflict.stderr
    listed = run_main("systems")
    assert listed.returncode == 0 and listed.stdout.startswith("two_tower: ") and "\nspectral: " in listed.stdout


def test_a_run_directory_of_the_other_system_is_refused(tmp_path):
    out = tmp_path / "run"
    assert run_main("sweep", "--quiet", "--out", str(out), *TINY).returncode == 0
    result = run_main("sweep", "--width", "8", "--seeds", "1", "--out", str(out))
    assert result.returncode == 2 and "holds a run of the 'spectral' system, not 'two_tower'" in result.stderr


def test_the_flow_alone(tmp_path):
    result = run_main("ode", "--out", str(tmp_path), *TINY)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "flow.nc").is_file() and (tmp_path / "figures" / "flow.png").is_file()
