"""The command line, end to end in a subprocess."""

import subprocess
import sys

import numpy as np
import pytest

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


def test_sweep_writes_config_and_trajectories(tmp_path):
    out = tmp_path / "run"
    result = dynsim_cli("sweep", "--width", "8,16", "--seeds", "2", "--out", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    assert "rho_min" in result.stdout and "kappa_a" in result.stdout
    config = dynsim.load_config(out / "config.toml")
    assert config.run.widths == (8, 16) and config.data.r == 2
    trajectory = dynsim.Trajectory.load(out / "width_16.npz")
    assert trajectory.width == 16 and trajectory.a.shape == (2, 3, 2)
    again = dynsim.simulate(config, width=16)
    np.testing.assert_allclose(trajectory.metrics["kappa_a"], again.metrics["kappa_a"], rtol=1e-6)


def test_sweep_gram_backend_at_a_million_width(tmp_path):
    out = tmp_path / "run"
    result = dynsim_cli("sweep", "--backend", "gram", "--width", "1000000", "--seeds", "2", "--out", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    config = dynsim.load_config(out / "config.toml")
    assert config.run.backend == "gram"
    trajectory = dynsim.Trajectory.load(out / "width_1000000.npz")
    np.testing.assert_allclose(trajectory.a, dynsim.simulate(config, width=10**6).a, rtol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "data.kapa=2"], "did you mean data.kappa"),
        (["--set", "loss.lam=-1"], "loss.lam"),
        (["--set", "lam"], "section.key=value"),
        (["--config", "no/such.toml"], "does not exist"),
        (["--width", "abc"], "--width"),
        (["--backend", "gram", "--set", "train.optimizer=adam"], "linear in the gradient"),
        (["--backend", "literal"], "run.backend"),
        (["--backend", "gram", "--set", "run.init=bartlett", "--width", "1000,7"], "width 7"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, args, message):
    out = tmp_path / "run"
    result = dynsim_cli("sweep", "--out", str(out), *args)
    assert not out.exists()  # refused before anything is written
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_gpu_request_without_gpu_exits_2(tmp_path):
    import jax

    has_gpu = any(d.platform == "gpu" for d in jax.devices()) or jax.default_backend() == "gpu"
    result = dynsim_cli("sweep", "--out", str(tmp_path), "--device", "gpu", "--width", "8", "--seeds", "1", *TINY)
    if has_gpu:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2
        assert "device 'gpu' requested but JAX sees none" in result.stderr and "jax[cuda" in result.stderr
