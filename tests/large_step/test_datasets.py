"""The data sets of spec §3 and their max-margins: closed forms, the spec's measured values, the user's file format."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.datasets import load_digits

from dynsim.engine.config import ConfigError
from dynsim.large_step.datasets import DATASETS, Data, load_data, max_margin


def raw_pair(pair):
    """The rows of a digit pair straight from scikit-learn: images (unscaled) and labels (first digit +1)."""
    bunch = load_digits()
    rows = np.isin(bunch.target, pair)
    return bunch.data[rows].astype(float), np.where(bunch.target[rows] == pair[0], 1.0, -1.0)


def test_every_data_set_loads_as_float64_with_labels_pm1(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.eye(2), y=np.array([1, -1]))
    for name in DATASETS:
        data = load_data(name, path=path)
        assert isinstance(data, Data) and data.name == name and "\n" not in data.note and data.note
        assert data.x.dtype == data.y.dtype == np.float64 and data.x.ndim == 2 and data.y.shape == data.x.shape[:1]
        assert set(np.unique(data.y)) == {-1.0, 1.0}


def test_colt_toy_is_the_spec_set_with_its_closed_form_margin():
    data = load_data("colt_toy")
    np.testing.assert_array_equal(data.x, [[1, 0.2], [-2, 0.2], [-1, -0.2], [2, -0.2]])
    np.testing.assert_array_equal(data.y, [1, 1, -1, -1])
    gamma, direction = max_margin(data.x, data.y)
    assert gamma == pytest.approx(0.2, abs=1e-12)
    np.testing.assert_allclose(direction, [0, 1], atol=1e-12)
    np.testing.assert_allclose(direction / gamma, [0, 5], atol=1e-10)  # w_hat = argmin{||w|| : <w, z_i> >= 1}
    assert np.linalg.norm(data.x, axis=1).max() == pytest.approx(2.00998, abs=1e-5)  # D1 fails


def test_colt_toy_rescaled():
    data = load_data("colt_toy_rescaled")
    np.testing.assert_allclose(data.x * math.sqrt(4.04), load_data("colt_toy").x, rtol=1e-15)
    assert np.linalg.norm(data.x, axis=1).max() == pytest.approx(1.0, abs=1e-15)
    gamma, direction = max_margin(data.x, data.y)
    assert gamma == pytest.approx(0.2 / math.sqrt(4.04), abs=1e-12)
    assert round(gamma, 5) == 0.0995
    np.testing.assert_allclose(direction, [0, 1], atol=1e-12)


def test_fig4_toy_margin_is_along_e1():
    data = load_data("fig4_toy")
    assert data.x.shape == (5, 3)
    np.testing.assert_array_equal(data.y, [1, 1, -1, 1, 1])
    gamma, direction = max_margin(data.x, data.y)
    assert gamma == pytest.approx(0.05, abs=1e-10)
    np.testing.assert_allclose(direction, [1, 0, 0], atol=1e-10)
    assert (np.linalg.norm(data.x, axis=1) > 1).all()


def test_digits_3_vs_8_is_the_spec_set():
    data = load_data("digits")
    raw, labels = raw_pair((3, 8))
    scale = np.linalg.norm(raw, axis=1).max()
    assert data.x.shape == (357, 64) and round(scale, 2) == 73.62 and repr(float(scale)) in data.note
    np.testing.assert_allclose(data.x, raw / scale, rtol=1e-15)  # one common constant, rows in the set's order
    np.testing.assert_array_equal(data.y, labels)
    assert np.linalg.norm(data.x, axis=1).max() == pytest.approx(1.0, abs=1e-15)
    gamma, direction = max_margin(data.x, data.y)
    assert round(gamma, 5) == 0.04508 and np.linalg.norm(direction) == pytest.approx(1.0, abs=1e-14)
    assert (data.y * (data.x @ direction)).min() == pytest.approx(gamma, abs=1e-15)


def test_digits_0_vs_1_margin_agrees_with_an_independent_solver():
    data = load_data("digits", pair=(0, 1))
    assert data.x.shape == (360, 64) and data.y[0] == 1.0  # the first row is a 0
    gamma, direction = max_margin(data.x, data.y)
    assert round(gamma, 4) == 0.1217
    # The primal min ||w||²/2 s.t. <w, z_i> >= 1 by SLSQP: its direction's margin is a lower bound on gamma.
    z = data.y[:, None] * data.x
    constraint = {"type": "ineq", "fun": lambda w: z @ w - 1, "jac": lambda w: z}
    result = minimize(lambda w: w @ w / 2, np.zeros(64), jac=lambda w: w, constraints=[constraint], method="SLSQP")
    other = (z @ result.x).min() / np.linalg.norm(result.x)
    assert gamma >= other - 1e-12 and gamma == pytest.approx(other, rel=1e-7)


def test_digits_train_and_test_split_the_pair_with_one_scale():
    every = load_data("digits", pair=(3, 8))
    train = load_data("digits", pair=(3, 8), split="train")
    test = load_data("digits", pair=(3, 8), split="test")
    assert len(train.y) + len(test.y) == len(every.y) == 357 and len(test.y) == 357 // 4
    is_test = np.arange(357) % 4 == 3
    np.testing.assert_array_equal(test.x, every.x[is_test])
    np.testing.assert_array_equal(train.x, every.x[~is_test])
    np.testing.assert_array_equal(
        np.concatenate([train.y, test.y]), np.concatenate([every.y[~is_test], every.y[is_test]])
    )
    # Disjoint: no test image is also a training image (the digits have no duplicate images across the split).
    assert not (test.x[:, None, :] == train.x[None, :, :]).all(axis=2).any()


@pytest.mark.parametrize("n, d, margin, seed", [(50, 10, 0.1, 0), (31, 2, 0.3, 5), (200, 64, 0.02, 7)])
def test_separable_has_the_margin_asked_for(n, d, margin, seed):
    data = load_data("separable", n=n, d=d, margin=margin, seed=seed)
    assert data.x.shape == (n, d)
    np.testing.assert_allclose(np.linalg.norm(data.x, axis=1), 1.0, rtol=1e-14)
    along_e1 = data.y * data.x[:, 0]
    assert along_e1[0] == margin and (along_e1 >= margin).all()
    assert abs(data.y.sum()) == n % 2  # balanced labels
    gamma, _ = max_margin(data.x, data.y)
    assert gamma >= margin - 1e-12
    again = load_data("separable", n=n, d=d, margin=margin, seed=seed)
    np.testing.assert_array_equal(again.x, data.x)
    assert not np.array_equal(load_data("separable", n=n, d=d, margin=margin, seed=seed + 1).x, data.x)


@pytest.mark.parametrize("n, noise, seed", [(50, 0.1, 0), (4, 0.0, 0), (101, 0.2, 3)])
def test_xor_is_not_separable(n, noise, seed):
    data = load_data("xor", n=n, noise=noise, seed=seed)
    assert data.x.shape == (n, 2) and "dynsim's own" in data.note
    assert np.linalg.norm(data.x, axis=1).max() == pytest.approx(1.0, abs=1e-15)
    assert (np.sign(data.x[:, 0] * data.x[:, 1]) == data.y).mean() > 0.9  # y = sign(x1 x2) of the corner
    gamma, direction = max_margin(data.x, data.y)
    assert gamma <= 0 and np.linalg.norm(direction) == pytest.approx(1.0)
    assert (data.y * (data.x @ direction)).min() == pytest.approx(gamma, abs=1e-15)


def test_max_margin_of_a_set_with_zero_in_the_hull():
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    gamma, direction = max_margin(x, np.ones(3))
    assert gamma <= 0 and (x @ direction).min() == pytest.approx(gamma)


def test_a_good_file_round_trips(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 3))
    y = np.array([1, -1, 1, 1, -1, -1], dtype=np.int8)
    np.savez(tmp_path / "good.npz", x=x, y=y, extra=np.zeros(2))
    data = load_data("file", path=str(tmp_path / "good.npz"))
    np.testing.assert_array_equal(data.x, x)  # used as given, not rescaled
    np.testing.assert_array_equal(data.y, y.astype(float))
    assert "good.npz" in data.note and "max ||x||" in data.note


def bad_files(tmp_path):
    """(file, what the message must also say) for every kind of bad file."""
    x = np.ones((4, 2))
    y = np.array([1.0, -1.0, 1.0, -1.0])
    cases = {
        "missing.npz": (None, "no such file"),
        "directory.npz": ("dir", "not a file"),
        "text.npz": ("text", "cannot be read"),
        "array.npy": ("npy", "not an .npz"),
        "no_x.npz": ({"y": y}, "no array 'x'"),
        "no_y.npz": ({"x": x}, "no array 'y'"),
        "x_1d.npz": ({"x": np.ones(4), "y": y}, "x has shape (4,)"),
        "x_text.npz": ({"x": np.full((4, 2), "a"), "y": y}, "x has shape (4, 2) and dtype <U1"),
        "x_object.npz": ({"x": np.array([[1, None]] * 4, dtype=object), "y": y}, "cannot be read"),
        "y_2d.npz": ({"x": x, "y": y[:, None]}, "y has shape (4, 1)"),
        "y_short.npz": ({"x": x, "y": y[:3]}, "length n = 4"),
        "x_nan.npz": ({"x": np.where(np.arange(8).reshape(4, 2) == 5, np.nan, 1.0), "y": y}, "x[2] has a NaN or Inf"),
        "x_inf.npz": ({"x": np.where(np.arange(8).reshape(4, 2) == 1, np.inf, 1.0), "y": y}, "x[0] has a NaN or Inf"),
        "y_01.npz": ({"x": x, "y": np.array([1, 0, 1, 0])}, "y[1] = 0 is not -1 or +1"),
        "y_nan.npz": ({"x": x, "y": np.array([1.0, -1.0, 1.0, np.nan])}, "y[3] = nan is not -1 or +1"),
        "one_class.npz": ({"x": x, "y": np.ones(4)}, "both classes"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        if content == "dir":
            path.mkdir()
        elif content == "text":
            path.write_text("x, y\n1, 2\n")
        elif content == "npy":
            np.save(path, x)
        elif isinstance(content, dict):
            np.savez(path, **content)
        yield path, expected


def test_each_bad_file_gives_a_one_line_error_naming_data_path(tmp_path):
    for path, expected in bad_files(tmp_path):
        with pytest.raises(ConfigError) as err:
            load_data("file", path=path)
        message = str(err.value)
        assert message.startswith(f"data.path = {str(path)!r} is invalid: must be "), message
        assert expected in message and "\n" not in message, message


@pytest.mark.parametrize(
    "name, kwargs, field",
    [
        ("mnist", {}, "set"),
        ("digits", {"pair": (3, 3)}, "pair"),
        ("digits", {"pair": (3, 10)}, "pair"),
        ("digits", {"pair": (3,)}, "pair"),
        ("separable", {"n": 1}, "n"),
        ("separable", {"n": True}, "n"),
        ("xor", {"n": 3}, "n"),
        ("separable", {"d": 1}, "d"),
        ("separable", {"margin": 0.0}, "margin"),
        ("separable", {"margin": 1.0}, "margin"),
        ("xor", {"noise": -0.1}, "noise"),
        ("xor", {"noise": float("nan")}, "noise"),
        ("xor", {"seed": -1}, "seed"),
        ("digits", {"split": "validation"}, "split"),
        ("xor", {"split": "train"}, "split"),
        ("file", {}, "path"),
    ],
)
def test_bad_arguments_raise_a_config_error(name, kwargs, field):
    with pytest.raises(ConfigError, match=rf"^data\.{field} = .* is invalid: must be ") as err:
        load_data(name, **kwargs)
    assert "\n" not in str(err.value)
