"""The command line, end to end: files, round trips, resume after SIGKILL, errors.

The first sweep and the killed run go through a real ``python -m dynsim`` process; the other
commands run the same entry point in this process (``helpers.run_main``), which reuses what is compiled."""

import csv
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from helpers import kill_when_parts_are_done, run_main
from matplotlib import image

import dynsim

SETTINGS = {
    "data.r": "2",
    "data.n": "2",
    "train.batch": "8",
    "loss.stages": "[[0.5, 1.0], [2.0, 1.0]]",
    "run.record_every": "1.0",
    "run.alignment_samples": "16",
}
TINY = [arg for key, value in SETTINGS.items() for arg in ("--set", f"{key}={value}")]


def dynsim_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "dynsim", *args], capture_output=True, text=True, timeout=timeout)


def _assert_pngs(directory, names):
    for name in names:
        pixels = image.imread(directory / name)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100, name


def test_sweep_writes_a_resumable_run_directory_that_loads_back(tmp_path):
    out = tmp_path / "run"
    args = ("sweep", "--width", "8,16", "--seeds", "3", "--set", "run.seed_chunk=2", "--ode", "--out", str(out), *TINY)
    result = dynsim_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "rho_min" in result.stdout and "∞ (ODE)" in result.stdout
    for name in ("config.toml", "fingerprint", "ode.nc", "summary.csv", "run.log"):
        assert (out / name).is_file(), name
    # Two widths x two seed chunks (seeds 0-1 and 2), each a netCDF file with its done marker.
    assert sorted(p.name for p in (out / "parts").glob("*.done")) == [
        "width_16_seeds_0-1.done",
        "width_16_seeds_2-2.done",
        "width_8_seeds_0-1.done",
        "width_8_seeds_2-2.done",
    ]
    _assert_pngs(out / "figures", ["metrics.png", "coordinates.png"])

    # dynsim.load returns the data the simulator computes for the saved configuration.
    config = dynsim.load_config(out / "config.toml")
    dataset = dynsim.load(out)
    assert dict(dataset.sizes) == {"width": 2, "seed": 3, "time": 3, "signal": 2, "noise": 2}
    again = dynsim.simulate(config, width=16)
    np.testing.assert_allclose(dataset.a.sel(width=16).values, again.a, rtol=1e-5)
    np.testing.assert_allclose(dataset.kappa_a.sel(width=16).values, again.metrics["kappa_a"], rtol=1e-5)
    solution = dynsim.ode.solve(config)
    np.testing.assert_allclose(dataset.ode_p.values, solution.p, rtol=1e-12)

    # summary.csv holds the dataset's final-time means and sds.
    with open(out / "summary.csv") as f:
        rows = {row["width"]: row for row in csv.DictReader(f)}
    final = dataset.rho_min.isel(time=-1)
    for width in (8, 16):
        assert float(rows[str(width)]["rho_min_mean"]) == pytest.approx(float(final.sel(width=width).mean()), rel=1e-6)
        assert float(rows[str(width)]["rho_min_sd"]) == pytest.approx(float(final.sel(width=width).std()), rel=1e-6)
    assert float(rows["inf"]["kappa_a_mean"]) == pytest.approx(float(dataset.ode_kappa_a[-1]), rel=1e-6)

    # The same command again skips every finished part.
    assert run_main(*args, "--quiet").returncode == 0
    assert (out / "run.log").read_text().splitlines()[-2].endswith("start: 0 of 4 parts to run")

    # show and plot work from the directory alone.
    shown = run_main("show", str(out))
    assert shown.returncode == 0 and "rho_min" in shown.stdout
    for png in (out / "figures").glob("*.png"):
        png.unlink()
    assert run_main("plot", str(out)).returncode == 0
    _assert_pngs(out / "figures", ["metrics.png", "coordinates.png"])


def test_sweep_gram_backend_at_a_million_width(tmp_path):
    out = tmp_path / "run"
    result = run_main("sweep", "--backend", "gram", "--width", "1000000", "--seeds", "2", "--out", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    config = dynsim.load_config(out / "config.toml")
    assert config.run.backend == "gram"
    np.testing.assert_allclose(dynsim.load(out).a.sel(width=10**6), dynsim.simulate(config, width=10**6).a, rtol=1e-6)


def test_sweep_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    # 12 parts of two seeds (seeds 10-11 sort before 2-3 as text); kill once two are done,
    # then rerun the same command.
    args = ["sweep", "--width", "16,8", "--seeds", "12", "--set", "run.seed_chunk=2", "--quiet", *TINY]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    finished = kill_when_parts_are_done(args, killed, 2)
    assert 2 <= finished < 12, finished
    assert not (killed / "summary.csv").exists()

    assert dynsim_cli(*args, "--out", str(killed)).returncode == 0
    log = (killed / "run.log").read_text()
    assert f"start: {12 - finished} of 12 parts" in log  # the rerun computes exactly what the kill left
    assert dynsim_cli(*args, "--out", str(whole)).returncode == 0
    resumed, reference = dynsim.load(killed), dynsim.load(whole)
    assert list(resumed.width.values) == [8, 16] and list(resumed.seed.values) == list(range(12))
    assert set(resumed.data_vars) == set(reference.data_vars)
    for name in reference.data_vars:
        np.testing.assert_array_equal(resumed[name].values, reference[name].values, err_msg=name)


def test_compare_writes_the_table_slope_and_figures(tmp_path):
    out = tmp_path / "run"
    result = run_main("compare", "--width", "16,64", "--seeds", "8", "--out", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    assert "slope of log error vs log width" in result.stdout and "SGD floor" in result.stdout
    assert "predicted (sup)" in result.stdout and "predicted: " in result.stdout
    _assert_pngs(out / "figures", ["metrics.png", "coordinates.png", "error_vs_width.png", "variance.png"])
    shown = run_main("show", str(out)).stdout
    assert "slope of log error" in shown and "predicted (sup)" in shown
    # The on-disk comparison equals the in-memory dynsim.compare of the saved configuration.
    config = dynsim.load_config(out / "config.toml")
    expected = dynsim.compare(config)
    with open(out / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["width"]) for row in rows] == [16, 64]
    for row, want in zip(rows, expected.rows(), strict=True):
        for key, value in want.items():
            assert float(row[key]) == pytest.approx(value, rel=1e-4, abs=1e-7), key
    fit = tomllib.loads((out / "comparison.toml").read_text())
    assert fit["slope"] == pytest.approx(expected.slope, rel=1e-4) and fit["floor_width"] == 10**12
    assert fit["slope_ci"] == pytest.approx(list(expected.slope_ci), rel=1e-4)
    assert fit["predicted_floor"] == pytest.approx(expected.prediction.floor, rel=1e-6)
    assert "predicted_sup_all_mean" in rows[0]


def test_ode_command_writes_the_overlay_and_a_figure(tmp_path):
    out = tmp_path / "ode"
    result = run_main("ode", "--out", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    _assert_pngs(out / "figures", ["ode.png"])
    assert "rho_min" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "--set", "data.kapa=2"], "did you mean data.kappa"),
        (["sweep", "--set", "loss.lam=-1"], "loss.lam"),
        (["sweep", "--set", "lam"], "section.key=value"),
        (["sweep", "--config", "no/such.toml"], "does not exist"),
        (["sweep", "--width", "abc"], "--width"),
        (["sweep", "--bogus"], "No such option: --bogus"),
        (["sweep", "--backend", "gram", "--set", "train.optimizer=adam"], "linear in the gradient"),
        (["sweep", "--backend", "literal"], "run.backend"),
        (["sweep", "--backend", "gram", "--set", "run.init=bartlett", "--width", "1000,7"], "width 7"),
        (["compare", "--width", "64"], "two distinct width values"),
        (["compare", "--width", "16,64", "--seeds", "1"], "at least 2"),
        (["ode", "--set", "train.optimizer=momentum"], "has no reduced ODE"),
        # Refused before any part runs, although only the ODE or the floor run cannot do it:
        (["sweep", "--ode", "--set", "train.optimizer=momentum"], "has no reduced ODE"),
        (["compare", "--backend", "param", "--set", "train.optimizer=adam"], "linear in the gradient"),
        (["frobnicate"], "No such command"),
        (["reproduce", "fig2"], "knows fig1"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, args, message):
    out = tmp_path / "run"
    result = run_main(*args, "--out", str(out))
    assert not out.exists()  # refused before anything is written
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["show", "plot"])
def test_show_and_plot_refuse_what_is_not_a_run_directory(tmp_path, command):
    result = run_main(command, str(tmp_path / "nothing"))
    assert result.returncode == 2 and "not a dynsim run directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_directory_of_another_config_is_refused(tmp_path):
    out = tmp_path / "run"
    assert run_main("sweep", "--width", "8", "--seeds", "1", "--out", str(out), "--quiet", *TINY).returncode == 0
    result = run_main("sweep", "--width", "8", "--seeds", "2", "--out", str(out), *TINY)
    assert result.returncode == 2
    assert "holds a run of a different configuration (run.seeds: 1 -> 2)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_gpu_request_without_gpu_exits_2(tmp_path):
    import jax

    has_gpu = any(d.platform == "gpu" for d in jax.devices()) or jax.default_backend() == "gpu"
    result = run_main("sweep", "--out", str(tmp_path), "--device", "gpu", "--width", "8", "--seeds", "1", *TINY)
    if has_gpu:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2
        assert "device 'gpu' requested but JAX sees none" in result.stderr and "jax[cuda" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["sweep", "compare", "ode", "plot", "show", "reproduce"])
def test_every_command_has_help_with_examples(command):
    result = run_main(command, "--help")
    assert result.returncode == 0 and "Example" in result.stdout and "dynsim " + command in result.stdout
