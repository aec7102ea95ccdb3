"""Recorded per-coordinate trajectories: the shared fields, and the finite-width result."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .observables import COORDINATES, METRICS


@dataclasses.dataclass(frozen=True)
class Record:
    """The fields every trajectory result shares, finite width or infinite, so that the two
    compare name by name: ``times``, the reduced state ``a, b, p, nu_a, nu_b`` (SPEC §4) and
    the ``metrics`` dict (:data:`METRICS`)."""

    times: np.ndarray
    a: np.ndarray
    b: np.ndarray
    p: np.ndarray
    nu_a: np.ndarray
    nu_b: np.ndarray
    metrics: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Trajectory(Record):
    """Recorded trajectories of one width, all seeds.

    Attributes:
        times: training times ``t = lr * step`` of the records, shape (T,).
        a, b, p: per-coordinate signal quantities ``a_k, b_k, p_k`` (SPEC §4), (seeds, T, r).
        nu_a, nu_b: per-coordinate noise norms ``nu^A_j, nu^B_j``, (seeds, T, n).
        metrics: ``loss, rho_min, rho_mean, kappa_a, kappa_b, balance, alignment, nsr,
            offdiag``, each (seeds, T).
        width: the network width ``m``.
    """

    width: int

    def save(self, path: str | Path) -> Path:
        """Write the arrays to a ``.npz`` file (no pickles); returns the path."""
        path = Path(path)
        arrays = {name: getattr(self, name) for name in ("times", *COORDINATES)}
        arrays.update({f"metric_{name}": self.metrics[name] for name in METRICS})
        np.savez(path, width=np.asarray(self.width), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        """Read a file written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as data:
            return cls(
                **{name: data[name] for name in ("times", *COORDINATES)},
                metrics={name: data[f"metric_{name}"] for name in METRICS},
                width=int(data["width"]),
            )
