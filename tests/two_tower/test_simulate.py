"""The simulator: shapes, reproducibility, compile-once, divergence, devices, and physics."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dynsim
from dynsim.two_tower import param as _param

TINY = {
    "data": {"r": 3, "n": 2},
    "loss": {"stages": [[0.5, 0.7], [2.0, 0.5]]},
    "train": {"batch": 8, "lr": 0.1, "precision": "float64"},
    "run": {"record_every": 0.5, "alignment_samples": 32},
}


def _tiny(**sections):
    return dynsim.load_config({name: {**TINY.get(name, {}), **sections.get(name, {})} for name in TINY})


def test_shapes_and_record_grid():
    trajectory = dynsim.simulate(_tiny(), width=16, seeds=2)
    # 7 + 5 = 12 steps, a record every 5 steps and always at the end.
    np.testing.assert_allclose(trajectory.times, [0.0, 0.5, 1.0, 1.2])
    assert trajectory.a.shape == trajectory.b.shape == trajectory.p.shape == (2, 4, 3)
    assert trajectory.nu_a.shape == trajectory.nu_b.shape == (2, 4, 2)
    assert set(trajectory.metrics) == {
        "loss",
        "rho_min",
        "rho_mean",
        "kappa_a",
        "kappa_b",
        "balance",
        "alignment",
        "nsr",
        "offdiag",
    }
    assert all(v.shape == (2, 4) for v in trajectory.metrics.values())
    assert trajectory.a.dtype == np.float64 and trajectory.width == 16


def test_float32_precision_is_float32():
    trajectory = dynsim.simulate(_tiny(train={"precision": "float32"}), width=16, seeds=1)
    assert trajectory.a.dtype == np.float32


def test_same_config_and_seed_give_identical_arrays_and_seeds_do_not_depend_on_count():
    first = dynsim.simulate(_tiny(), width=16, seeds=3)
    again = dynsim.simulate(_tiny(), width=16, seeds=3)
    fewer = dynsim.simulate(_tiny(), width=16, seeds=2)
    np.testing.assert_array_equal(first.a, again.a)
    np.testing.assert_array_equal(first.metrics["loss"], again.metrics["loss"])
    np.testing.assert_allclose(first.p[:2], fewer.p, rtol=1e-13)
    assert not np.allclose(first.a[0], first.a[1])
    other = dynsim.simulate(_tiny(run={"seed": 1}), width=16, seeds=1)
    assert not np.allclose(other.a[0], first.a[0])


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("normalization", ["population", "batch"])
def test_optimizers_and_normalizations_run(optimizer, normalization):
    config = _tiny(train={"optimizer": optimizer, "normalization": normalization})
    trajectory = dynsim.simulate(config, width=16, seeds=1)
    assert np.all(np.isfinite(trajectory.a))


def test_values_do_not_recompile_but_shapes_do(count_traces):
    traces = count_traces(_param)
    dynsim.simulate(_tiny(), width=16, seeds=2)
    changed = _tiny(
        data={"kappa": 2.5, "noise": 0.7},
        loss={"lam": 3.0, "stages": [[0.1, 0.7], [5.0, 0.5]], "rescale": False},
    )
    dynsim.simulate(changed, width=16, seeds=2)
    assert len(traces) == 1
    dynsim.simulate(changed, width=32, seeds=2)
    assert len(traces) == 2


def test_initial_record_matches_the_wishart_law():
    # At t = 0, a_k = sigma_k^2 ||W e_k||^2 with ||W e_k||^2 ~ chi^2_m / m: mean sigma^2, sd sigma^2 sqrt(2/m).
    width, seeds = 2048, 8
    config = _tiny(data={"r": 3, "n": 2, "kappa": 4.0})
    trajectory = dynsim.simulate(config, width=width, seeds=seeds)
    sigma_sq = np.array([16.0, 4.0, 1.0])
    z = (trajectory.a[:, 0, :] / sigma_sq - 1) / np.sqrt(2 / width)
    assert np.all(np.abs(z.mean(axis=0)) * np.sqrt(seeds) < 4)
    # p_k(0) = sigma_k^2 <W_A e_k, W_B e_k> has mean 0 and sd sigma_k^2 / sqrt(m).
    assert np.all(np.abs(trajectory.p[:, 0, :] / sigma_sq * np.sqrt(width)) < 5)


def test_divergence_names_seed_step_and_time():
    config = _tiny(loss={"kind": "positive", "stages": [[1e25, 1.0]], "rescale": False}, train={"precision": "float32"})
    with pytest.raises(dynsim.SimulationDiverged) as err:
        dynsim.simulate(config, width=16, seeds=2)
    assert err.value.seed == 0 and 1 <= err.value.step <= 10
    assert err.value.time == pytest.approx(err.value.step * 0.1)
    assert f"step {err.value.step}" in str(err.value) and "seed 0" in str(err.value)


def test_bad_arguments_raise_config_error():
    with pytest.raises(dynsim.ConfigError, match="width"):
        dynsim.simulate(_tiny(), width=0)
    with pytest.raises(dynsim.ConfigError, match="seeds"):
        dynsim.simulate(_tiny(), width=8, seeds=0)
    with pytest.raises(dynsim.ConfigError, match="backend"):
        dynsim.simulate(_tiny(), width=8, backend="literal")


def test_multi_device_run_equals_single_device(tmp_path):
    single = dynsim.simulate(_tiny(), width=16, seeds=3)
    script = textwrap.dedent(
        f"""
        import json, jax, numpy as np, dynsim
        assert jax.device_count() == 4, jax.devices()
        config = dynsim.load_config(json.loads({json.dumps(json.dumps(TINY))}))
        t = dynsim.simulate(config, width=16, seeds=3)
        np.savez({str(tmp_path / "multi.npz")!r}, a=t.a, p=t.p, nu_b=t.nu_b, loss=t.metrics["loss"])
        """
    )
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    env = {**os.environ, "XLA_FLAGS": flags}  # the suite's own flags too (tests/conftest.py)
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    multi = np.load(tmp_path / "multi.npz")
    for name, ours in [("a", single.a), ("p", single.p), ("nu_b", single.nu_b), ("loss", single.metrics["loss"])]:
        np.testing.assert_allclose(multi[name], ours, rtol=1e-12, atol=1e-14)


PHYSICS = {
    "data": {"r": 8, "n": 24, "kappa": 4.0, "noise": 0.3},
    "train": {"lr": 0.5, "batch": 64, "precision": "float64"},
    "run": {"record_every": 10.0, "alignment_samples": 256},
}


def test_positive_loss_aligns_while_condition_number_grows():
    config = dynsim.load_config({**PHYSICS, "loss": {"kind": "positive", "stages": [[1.0, 60.0]]}})
    trajectory = dynsim.simulate(config, width=1024, seeds=2)
    kappa, rho = trajectory.metrics["kappa_a"], trajectory.metrics["rho_min"]
    assert np.all(kappa[:, -1] > 1.8 * kappa[:, 0])  # SPEC example: 4 -> about 9.5 by t = 60
    assert np.all(rho[:, 0] < 0.2) and np.all(rho[:, -1] > 0.6)
    assert np.all(np.diff(trajectory.metrics["rho_mean"], axis=1) > 0)


def test_two_stage_infonce_shrinks_condition_number_in_stage_two():
    config = dynsim.load_config({**PHYSICS, "loss": {"kind": "infonce", "stages": [[0.05, 60.0], [3.0, 200.0]]}})
    trajectory = dynsim.simulate(config, width=1024, seeds=2)
    kappa = trajectory.metrics["kappa_a"]
    stage_two = trajectory.times >= 60.0
    assert np.all(kappa[:, -1] < 0.8 * kappa[:, stage_two][:, 0])
    slope = np.polyfit(trajectory.times[stage_two], kappa[:, stage_two].mean(axis=0), 1)[0]
    assert slope < 0
    assert np.all(trajectory.metrics["rho_min"][:, -1] > 0.9)
    assert np.all(trajectory.metrics["balance"][:, -1] > trajectory.metrics["balance"][:, stage_two][:, 0])
