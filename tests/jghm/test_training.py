"""CLIP training on the JGHM held against its exact references (spec §9, checks 3 and 4), and the
system's configuration: the same key gives the same bits, bad settings get one-line errors."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dynsim
from dynsim.engine.config import ConfigError
from dynsim.jghm.simulate import simulate
from dynsim.jghm.tree import tree

SMALL = {
    "system": "jghm",
    "tree": {"depth": 3, "branching": 2, "states": 4, "flip": 0.2},
    "model": {"width": 64},
    "train": {"steps": 400, "batch": 128, "lr": 3e-3, "lr_final": 3e-5},
    "eval": {"pairs": 1024, "marginal": 2048, "prompts": [1, 16, 128], "probe": 8},
    "run": {"record_every": 100, "seeds": 2},
}


@pytest.fixture(scope="module")
def trained():
    return simulate(dynsim.load_config(SMALL))


def test_no_trained_score_beats_the_bayes_risk(trained):
    """Check 3: R_B(S) − R*_B ≥ −3 SE at every record, on the same evaluation pairs."""
    m = trained.metrics
    assert np.all(m["excess_clip"] >= -3 * m["excess_clip_se"])
    np.testing.assert_allclose(m["clip_risk"] - m["bayes_clip"], m["excess_clip"], atol=1e-4)


def test_training_approaches_bayes_and_sufficiency_tracks_the_excess(trained):
    """The excess falls severalfold; at K = B = 128 the sufficiency estimate follows it (the
    large-K link of spec §2: R_K(S) − R*_K → Suff(S))."""
    m = trained.metrics
    excess, suff = m["excess_clip"], m["suff"]
    assert np.all(excess[:, -1] < excess[:, 0] / 5)
    tolerance = 0.25 * excess + 3 * (m["excess_clip_se"] + m["suff_se"])
    assert np.all(np.abs(suff - excess) <= tolerance)
    assert np.all(m["suff_image"] + m["suff_text"] - suff < 1e-5)
    # the towers move toward the PMI on the probe grid
    assert np.all(m["score_error"][:, -1] < m["score_error"][:, 0] / 2)


def test_zero_shot_and_control_against_their_bayes_values(trained):
    """At the end the first-leaf zero-shot gap shrinks with M; the root-label control keeps a gap."""
    m = trained.metrics
    assert np.all(m["zsc_gap_128"][:, -1] < m["zsc_gap_1"][:, -1])
    assert np.all(m["zsc_gap_128"][:, -1] > -0.01)
    assert np.all(m["control_gap_128"][:, -1] > 0.05)
    assert np.all(np.abs(m["zsc_acc_128"][:, -1] - m["bayes_zsc_acc"][:, -1]) < 0.05)
    np.testing.assert_allclose(m["zsc_ce_16"] - m["bayes_zsc_ce"], m["zsc_gap_16"], atol=1e-5)


def test_the_same_key_gives_the_same_bits():
    config = dynsim.load_config(
        SMALL | {"train": SMALL["train"] | {"steps": 20}, "run": {"record_every": 10, "seeds": 1}}
    )
    first, second = simulate(config), simulate(config)
    for name in first.metrics:
        np.testing.assert_array_equal(first.metrics[name], second.metrics[name])
    np.testing.assert_array_equal(first.score, second.score)
    shifted = simulate(config, seeds=1, first_seed=1)
    assert not np.array_equal(shifted.metrics["clip_risk"], first.metrics["clip_risk"])


def test_guided_transformer_towers_train():
    """Transformer towers (two heads) with the guided penalty run through the engine, finite."""
    config = {
        "system": "jghm",
        "tree": {"depth": 2, "branching": 2, "states": 3},
        "model": {"architecture": "transformer", "width": 12, "layers": 2, "heads": 2, "out": 4},
        "train": {"steps": 10, "batch": 16, "guidance": 1.0},
        "eval": {"pairs": 32, "marginal": 32, "prompts": [1, 4], "probe": 4},
        "run": {"record_every": 5, "seeds": 1},
    }
    guided = simulate(dynsim.load_config(config))
    assert all(np.isfinite(v).all() for v in guided.metrics.values())
    assert np.all(guided.metrics["excess_clip"] >= -3 * guided.metrics["excess_clip_se"])


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"tree": {"flip": 1.5}}, "tree.flip = 1.5 is invalid: must be < 1"),
        ({"tree": {"states": 1}}, "tree.states = 1 is invalid: must be >= 2"),
        ({"eval": {"pairs": 1000}}, "eval.pairs = 1000 is invalid: must be a multiple of train.batch = 256"),
        ({"eval": {"prompts": [4, 1]}}, "eval.prompts = [4, 1] is invalid: must be strictly increasing"),
        ({"train": {"guidance": 1.0}}, 'train.guidance = 1.0 is invalid: needs model.architecture = "transformer"'),
        (
            {"model": {"architecture": "transformer", "width": 10, "heads": 3}},
            "model.heads = 3 is invalid: must divide",
        ),
        ({"train": {"lr_final": 0.1}}, "train.lr_final = 0.1 is invalid: must be <= train.lr"),
        ({"tree": {"depth": 13}}, "tree.depth = 13 is invalid: gives 8192 leaves"),
    ],
)
def test_bad_settings_name_the_field(tables, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        dynsim.load_config({"system": "jghm", **tables})


def test_tree_refuses_bad_arguments():
    with pytest.raises(ValueError, match="flip = 2 is invalid"):
        tree(2, 2, 3, 2)
    with pytest.raises(ValueError, match="depth = 0 is invalid"):
        tree(0, 2, 3, 0.1)
    with pytest.raises(ValueError, match="states = 1 is invalid"):
        tree(2, 2, 1, 0.1)
    model = tree(depth=(2, 3), branching=(2, 3), states=3, flip=(0.1, 0.2))
    assert model.transitions["image"].shape == (2, 2, 3, 3) and model.transitions["text"].shape == (3, 3, 3, 3)
    assert model.flip == (0.1, 0.2)


def test_seeds_sharded_over_two_devices_equal_one_device(tmp_path):
    """Three seeds split over 2 host devices (padded to 4) give the runs of one device (float64)."""
    tables = dynsim.SYSTEMS["jghm"].tiny | {"train": {"steps": 20, "batch": 32, "precision": "float64"}}
    config = dynsim.load_config({"system": "jghm", **tables})
    single = simulate(config, seeds=3)
    script = textwrap.dedent(
        f"""
        import jax, numpy as np, dynsim
        from dynsim.jghm.simulate import simulate
        assert jax.device_count() == 2, jax.devices()
        out = simulate(dynsim.load_config({config.to_dict()!r}), seeds=3)
        np.savez({str(tmp_path / "multi.npz")!r}, score=out.score, excess=out.metrics["excess_clip"])
        """
    )
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "XLA_FLAGS": flags}, timeout=300)
    multi = np.load(tmp_path / "multi.npz")
    np.testing.assert_allclose(multi["score"], single.score, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(multi["excess"], single.metrics["excess_clip"], rtol=1e-9, atol=1e-12)
