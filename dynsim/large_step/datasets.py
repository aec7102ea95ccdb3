"""The data sets of the large-step system (spec §3) and their max-margin through the origin.

(D1) ``||x_i|| <= 1`` and ``y_i ∈ {±1}``; (D2), for the phase-1 and acceleration results only, a unit ``w*`` with
``y_i <x_i, w*> >= gamma > 0``. :func:`load_data` returns a :class:`Data` (inputs, labels, name and a one-line note on
where the set comes from); :func:`max_margin` computes ``gamma`` and ``w*`` (hard-margin SVM through the origin).

>>> data = load_data("colt_toy")
>>> gamma, direction = max_margin(data.x, data.y)
>>> round(gamma, 12), (direction.round(12) + 0.0).tolist()
(0.2, [0.0, 1.0])
"""

from __future__ import annotations

import functools
import math
import zipfile
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.optimize import nnls

from ..engine.config import ConfigError

DATASETS = ("colt_toy", "colt_toy_rescaled", "fig4_toy", "separable", "xor", "digits", "file")
SPLITS = ("all", "train", "test")
TEST_EVERY = 4  # digits: row k of a pair (in the data set's order) is a test row iff k % 4 == 3

_COLT_X = np.array([[1.0, 0.2], [-2.0, 0.2], [-1.0, -0.2], [2.0, -0.2]])
_COLT_Y = np.array([1.0, 1.0, -1.0, -1.0])
_FIG4_X = np.array([[0.05, 1.0, 2.0], [0.05, -2.0, 1.0], [-1.0, 0.0, 2.0], [0.05, -2.0, -2.0], [0.05, 1.0, -2.0]])
_FIG4_Y = np.array([1.0, 1.0, -1.0, 1.0, 1.0])
_FILE_FORMAT = "a readable .npz file with a numeric 2-D array x (n, d) and labels y (n,) of both classes in {-1, +1}"


class Data(NamedTuple):
    """A labelled data set.

    Attributes:
        x: inputs ``x_i``, shape (n, d), float64.
        y: labels ``y_i ∈ {−1, +1}``, shape (n,), float64.
        name: the data set's name, one of :data:`DATASETS`.
        note: one line on the set's provenance (and, for digits, the common scale it was divided by).
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    note: str


def _invalid(field: str, value, must: str) -> ConfigError:
    """The one-line error ``data.<field> = <value> is invalid: must be ...``."""
    return ConfigError(f"data.{field} = {value!r} is invalid: must be {must}")


def _is_int(value) -> bool:
    """Whether ``value`` is an integer (Python or NumPy), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_number(value) -> bool:
    """Whether ``value`` is a finite real number, not a bool."""
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool | np.bool_)
        and (math.isfinite(value))
    )


def _check_arguments(name, pair, n, d, margin, noise, seed, path, split) -> None:
    """Raise :class:`ConfigError` for the first invalid argument of :func:`load_data`."""
    if name not in DATASETS:
        raise _invalid("set", name, f"one of {', '.join(DATASETS)}")
    if not (
        isinstance(pair, tuple | list)
        and len(pair) == 2
        and all(_is_int(k) and 0 <= k <= 9 for k in pair)
        and pair[0] != pair[1]
    ):
        raise _invalid("pair", pair, "two different digits in 0..9")
    low = 4 if name == "xor" else 2
    if not (_is_int(n) and n >= low):
        raise _invalid("n", n, f"an integer >= {low}")
    if not (_is_int(d) and d >= 2):
        raise _invalid("d", d, "an integer >= 2")
    if not (_is_number(margin) and 0 < margin < 1):
        raise _invalid("margin", margin, "in (0, 1)")
    if not (_is_number(noise) and noise >= 0):
        raise _invalid("noise", noise, "a finite number >= 0")
    if not (_is_int(seed) and seed >= 0):
        raise _invalid("seed", seed, "an integer >= 0")
    if not (isinstance(path, str | PathLike) or (path is None and name != "file")):
        raise _invalid("path", path, "the path of an .npz file with arrays x (n, d) and y (n,) (for data.set = 'file')")
    if split not in SPLITS:
        raise _invalid("split", split, f"one of {', '.join(SPLITS)}")
    if split != "all" and name != "digits":
        raise _invalid("split", split, f"'all' for data.set = {name!r} (only digits has a train/test split)")


def colt_toy(rescaled: bool = False) -> Data:
    """Wu et al.'s toy set [S6]: ``x = (1, 0.2), (−2, 0.2)`` with ``y = +1``, ``(−1, −0.2), (2, −0.2)`` with ``y = −1``.

    ``gamma = 0.2`` along ``(0, 1)``, ``w_hat = (0, 5)``; ``max ||x|| = sqrt(4.04)``, so D1 fails unless ``rescaled``
    (every point divided by ``sqrt(4.04)``, ``gamma = 0.2/sqrt(4.04) = 0.09950``).
    """
    if rescaled:
        note = "Wu et al. (COLT 2024) toy set as restated by Bao et al. (S6), divided by sqrt(4.04) so max ||x|| = 1"
        return Data(_COLT_X / math.sqrt(4.04), _COLT_Y.copy(), "colt_toy_rescaled", note)
    note = "Wu et al. (COLT 2024) toy set as restated by Bao et al. (S6); max ||x|| = sqrt(4.04) = 2.00998, D1 fails"
    return Data(_COLT_X.copy(), _COLT_Y.copy(), "colt_toy", note)


def fig4_toy() -> Data:
    """Cai et al.'s Fig. 4 set (d = 3, n = 5, from the caption): max-margin direction ``(1, 0, 0)``, margin 0.05.

    Unscaled as in the figure: ``||x_i|| > 1``.
    """
    note = "Cai et al. (NeurIPS 2024) Fig. 4 caption's five points, unscaled (||x|| > 1); margin 0.05 along e_1"
    return Data(_FIG4_X.copy(), _FIG4_Y.copy(), "fig4_toy", note)


def separable(n: int, d: int, margin: float, seed: int) -> Data:
    """n unit inputs in ``R^d`` separable through the origin by ``e_1`` with margin exactly ``margin``.

    ``x_i = (y_i u_i, sqrt(1 − u_i²) v_i)``: ``y`` a random order of ``ceil(n/2)`` labels +1 and ``floor(n/2)`` labels
    −1, ``u_i`` uniform on ``[margin, 1]`` except ``u_1 = margin``, ``v_i`` uniform on the unit sphere of ``R^{d−1}``;
    drawn in that order from ``numpy.random.Generator(PCG64(seed))``. So ``||x_i|| = 1`` and
    ``y_i <x_i, e_1> >= margin`` with equality for the first point; the max-margin ``gamma`` is at least ``margin``.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    y = rng.permutation(np.where(np.arange(n) < (n + 1) // 2, 1.0, -1.0))
    u = rng.uniform(margin, 1.0, n)
    u[0] = margin
    v = rng.standard_normal((n, d - 1))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    x = np.column_stack([y * u, np.sqrt(1.0 - u * u)[:, None] * v])
    note = f"dynsim's random separable set: n = {n}, d = {d}, ||x|| = 1, margin {margin} along e_1, seed {seed}"
    return Data(x, y, "separable", note)


def xor(n: int, noise: float, seed: int) -> Data:
    """dynsim's own XOR set (the paper's Fig. 2 construction is not known, spec §3): 2-D, not separable.

    Point i sits at the corner ``c = (±1, ±1)/sqrt(2)`` number ``i mod 4`` (``(1, 1), (1, −1), (−1, 1), (−1, −1)``, so
    the corners are used equally, up to one point), plus Gaussian noise of standard deviation ``noise`` from
    ``numpy.random.Generator(PCG64(seed))``; ``y_i = sign(c_1 c_2)``; then every point is divided by the largest norm,
    so ``max ||x_i|| = 1``. The vectors ``y_i x_i`` point into all four quadrants whenever each corner keeps one of its
    points in its own open quadrant (for ``noise <= 0.2`` a point leaves it with probability below 5e-4), and then no
    line through the origin separates the classes: only the stable-phase and margin claims apply.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    corners = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) / math.sqrt(2.0)
    which = np.arange(n) % 4
    x = corners[which] + noise * rng.standard_normal((n, 2))
    y = np.prod(np.sign(corners[which]), axis=1)
    x /= np.linalg.norm(x, axis=1).max()
    note = (
        f"dynsim's own XOR construction, not the paper's (unknown): n = {n}, noise {noise}, seed {seed}, max ||x|| = 1"
    )
    return Data(x, y, "xor", note)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits ``(images (1797, 64), targets)``, read once."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)


def digits(pair: tuple[int, int], split: str) -> Data:
    """Two classes of scikit-learn's bundled digits (8×8 images, d = 64, pixels 0–16); stands in for CIFAR-10 (spec §3).

    ``pair[0]`` gets ``y = +1`` and ``pair[1]`` ``y = −1``; rows keep the data set's order. Every input is divided by
    one common constant ``s = max_i ||x_i||`` over all rows of the pair (no centering), so ``max ||x_i|| = 1`` on the
    pair; pair (3, 8): n = 357, s = 73.62. ``split``: ``all``, or the fixed split in which row k of the pair is a test
    row iff ``k % 4 == 3`` (``test``) and a training row otherwise (``train``), both divided by the same ``s``.
    The note gives ``s``.
    """
    images, targets = _digits()
    rows = np.flatnonzero(np.isin(targets, pair))
    x = images[rows]
    y = np.where(targets[rows] == pair[0], 1.0, -1.0)
    scale = float(np.linalg.norm(x, axis=1).max())
    keep = np.arange(len(rows)) % TEST_EVERY == TEST_EVERY - 1
    keep = {"all": np.ones(len(rows), bool), "test": keep, "train": ~keep}[split]
    note = (
        f"scikit-learn's bundled digits, {pair[0]} (+1) vs {pair[1]} (-1), {split} rows ({keep.sum()} of {len(rows)}), "
        f"divided by {scale!r} = max ||x|| over the pair; replaces the paper's CIFAR-10 subset"
    )
    return Data(x[keep] / scale, y[keep], "digits", note)


def _bad_file(path, problem: str) -> ConfigError:
    """The one-line error for a user's data file: names ``data.path``, the expected format and the problem."""
    return _invalid("path", str(path), f"{_FILE_FORMAT}; {' '.join(problem.split())}")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The arrays ``x`` and ``y`` of an .npz file, read without pickles; :class:`ConfigError` if that fails."""
    if not path.is_file():
        raise _bad_file(path, "no such file" if not path.exists() else "not a file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise _bad_file(path, f"cannot be read as an .npz archive: {type(err).__name__}: {err}") from err
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise _bad_file(path, "not an .npz archive (a single .npy array?)")
    with loaded as archive:
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            raise _bad_file(path, f"no array {missing[0]!r} (arrays in the file: {', '.join(archive.files)})")
        try:
            return np.asarray(archive["x"]), np.asarray(archive["y"])
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise _bad_file(path, f"cannot be read: {type(err).__name__}: {err}") from err


def from_file(path: str | PathLike) -> Data:
    """A user's data set: an .npz file with arrays ``x`` (n, d) and ``y`` (n,), labels ±1, both classes present.

    The inputs are used as given, not rescaled: the theorems' (D1) needs ``||x_i|| <= 1`` (the note reports the
    largest norm). Errors name ``data.path``: a missing or unreadable file, a missing array, ``x`` not a 2-D numeric
    array, ``y`` not 1-D of length n, a NaN or Inf in ``x`` (its first row), a label other than ±1 (the first, and its
    row), a single class.
    """
    path = Path(path)
    x, y = _read_npz(path)
    if x.ndim != 2 or x.dtype.kind not in "iuf" or x.shape[0] == 0 or x.shape[1] == 0:
        raise _bad_file(path, f"x has shape {x.shape} and dtype {x.dtype}, not a non-empty 2-D numeric array")
    n = x.shape[0]
    if y.ndim != 1 or y.shape[0] != n or y.dtype.kind not in "iuf":
        raise _bad_file(path, f"y has shape {y.shape} and dtype {y.dtype}, not a 1-D numeric array of length n = {n}")
    x = x.astype(np.float64)
    bad_rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad_rows.size:
        raise _bad_file(path, f"x[{bad_rows[0]}] has a NaN or Inf")
    bad_labels = np.flatnonzero(~np.isin(y, (-1, 1)))
    if bad_labels.size:
        row = bad_labels[0]
        raise _bad_file(path, f"y[{row}] = {y[row].item()!r} is not -1 or +1")
    y = y.astype(np.float64)
    if np.unique(y).size < 2:
        raise _bad_file(path, f"every label is {y[0]:+.0f}: both classes are needed")
    largest = float(np.linalg.norm(x, axis=1).max())
    note = f"user file {path}: n = {n}, d = {x.shape[1]}, used as given, max ||x|| = {largest:.6g} (D1 needs <= 1)"
    return Data(x, y, "file", note)


def load_data(
    name: str,
    *,
    pair: tuple[int, int] = (3, 8),
    n: int = 50,
    d: int = 10,
    margin: float = 0.1,
    noise: float = 0.1,
    seed: int = 0,
    path: str | PathLike | None = None,
    split: str = "all",
) -> Data:
    """The data set ``name`` (spec §3): inputs ``x_i ∈ R^d`` (rows of x) and labels ``y_i ∈ {±1}``.

    - ``colt_toy``, ``colt_toy_rescaled``: :func:`colt_toy`; ``fig4_toy``: :func:`fig4_toy`;
    - ``separable`` (``n``, ``d``, ``margin``, ``seed``): :func:`separable`;
    - ``xor`` (``n >= 4``, ``noise``, ``seed``): :func:`xor`, dynsim's own construction;
    - ``digits`` (``pair``, ``split``): :func:`digits`, scikit-learn's bundled digits, ``max ||x|| = 1``;
    - ``file`` (``path``): :func:`from_file`, a user's .npz with ``x`` and ``y``, used as given (D1 needs
      ``||x|| <= 1``).

    Every argument is validated whichever set is asked for; ``split`` other than ``all`` only for ``digits``.

    Raises:
        ConfigError: ``data.<field> = <value> is invalid: must be ...`` for the first invalid argument or a bad file.
    """
    _check_arguments(name, pair, n, d, margin, noise, seed, path, split)
    if name in ("colt_toy", "colt_toy_rescaled"):
        return colt_toy(rescaled=name == "colt_toy_rescaled")
    if name == "fig4_toy":
        return fig4_toy()
    if name == "separable":
        return separable(int(n), int(d), float(margin), int(seed))
    if name == "xor":
        return xor(int(n), float(noise), int(seed))
    if name == "digits":
        return digits((int(pair[0]), int(pair[1])), split)
    return from_file(path)


def max_margin(x, y) -> tuple[float, np.ndarray]:
    """The max-margin through the origin ``gamma = max_{||w||=1} min_i y_i <w, x_i>`` and its unit direction.

    With ``z_i = y_i x_i``: ``w_hat = argmin{||w||² : <w, z_i> >= 1 for all i}`` (hard-margin SVM without bias), then
    ``gamma = 1/||w_hat||`` along ``w_hat/||w_hat||``. This least-distance programme is solved exactly by one
    non-negative least-squares problem (Lawson & Hanson, *Solving Least Squares Problems*, ch. 23):
    ``u = argmin_{u >= 0} ||E u − f||``, ``E = [z_1 … z_n; 1 … 1]`` ((d+1) × n), ``f = e_{d+1}``; then
    ``r = E u − f``, ``w_hat = −r_{1:d}/r_{d+1}``, and ``alpha = u/(1 − sum u) >= 0`` are the dual variables
    (``w_hat = sum_i alpha_i z_i``). ``r = 0`` means the constraints are infeasible: ``0`` lies in the convex hull of
    the ``z_i``, the data are not separable through the origin.

    Returns ``(gamma, direction)``, with ``gamma = min_i <direction, z_i>`` recomputed from the direction. When the data
    are not separable, the direction is that of ``sum_i z_i`` (``e_1`` if it vanishes) and ``gamma <= 0`` is its
    margin: a lower bound, not the maximum of the (then non-convex) problem.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(f"max_margin needs x (n, d) and y (n,) with n >= 1, got shapes {x.shape} and {y.shape}")
    z = y[:, None] * x
    n, d = z.shape
    e = np.vstack([z.T, np.ones((1, n))])
    f = np.zeros(d + 1)
    f[-1] = 1.0
    u, _ = nnls(e, f, maxiter=50 * (n + d + 1))
    r = e @ u - f
    w_hat = -r[:d] / r[-1] if r[-1] < 0 else np.zeros(d)
    direction = w_hat / np.linalg.norm(w_hat) if np.linalg.norm(w_hat) > 0 else np.zeros(d)
    gamma = float((z @ direction).min()) if direction.any() else 0.0
    if gamma <= 0 or not np.isfinite(gamma):
        mean = z.sum(axis=0)
        direction = mean / np.linalg.norm(mean) if np.linalg.norm(mean) > 0 else np.eye(d)[0]
        gamma = float((z @ direction).min())
    return gamma, direction
