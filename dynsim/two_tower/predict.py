r"""The comparison's errors predicted from the fluctuation theory (:func:`dynsim.ode.fluctuations`).

At width ``m`` a seed's state is, to first order, the population SGD path (the ODE plus the
Euler bias of the step size), the Wishart fluctuation carried by the step map's tangent,
:math:`\Phi\delta_0/\sqrt m`, and the batch-noise path. Sampling that linear Gaussian model and
taking the comparison's own statistic (the relative error, maximized over coordinates and
times; :func:`dynsim.engine.compare.relative_errors`) predicts the mean and sd of
``sup_error["all"]`` at every width, with no delta method: a maximum is not smooth. The figure's
curve is :math:`\sqrt{C^2/m + F^2}`, ``C`` the width part's prefactor (the statistic of
:math:`\Phi\delta_0` is positively homogeneous, so at width ``m`` it is exactly :math:`C/\sqrt m`)
and ``F`` the predicted floor (Euler bias and batch noise at width ``10^12``).
"""

from __future__ import annotations

import functools

import numpy as np

from ..engine.compare import Prediction, relative_errors
from ..engine.results import Record
from .fluctuations import fluctuations

SAMPLES = 1000
FLOOR_WIDTH = float("inf")  # the floor run's width 10^12 leaves a width part of 1e-6 relative: none


def _sup_all(prediction, paths: np.ndarray, limit: Record) -> np.ndarray:
    record = Record(prediction.times, prediction.split(paths), {})
    return relative_errors(record, limit)[0]["all"]


@functools.lru_cache(maxsize=8)
def step_map_fluctuations(config):
    """:func:`~dynsim.two_tower.fluctuations.fluctuations` through the step map (``discrete=True``), the
    comparison's prediction, kept for the (frozen) configuration: ``dynsim compare`` draws its
    table, figures and summary from one run of it. Treat the result as read-only."""
    return fluctuations(config, discrete=True, mean_shift=False)


def predict(config, widths, limit: Record, samples: int = SAMPLES) -> Prediction:
    """The predicted ``sup_error["all"]`` at each of ``widths`` and at the floor (module docstring)."""
    prediction = step_map_fluctuations(config)
    at = [_sup_all(prediction, prediction.sample(width, samples, seed=i), limit) for i, width in enumerate(widths)]
    floor = _sup_all(prediction, prediction.sample(FLOOR_WIDTH, samples, seed=len(widths)), limit)
    # the width part alone, around the limit itself: its statistic at width m is exactly C / sqrt(m)
    fluctuation = prediction.sample(1.0, samples, seed=len(widths) + 1, noise=False) - prediction.mean
    width_only = fluctuation + limit_state(limit)
    constant = float(np.mean(_sup_all(prediction, width_only, limit)))
    grid = np.geomspace(min(widths), max(widths), 50)
    curve = np.sqrt(constant**2 / grid + np.mean(floor) ** 2)
    label = rf"predicted $\sqrt{{C^2/m + F^2}}$, C = {constant:.3g}, F = {np.mean(floor):.2g}"
    return Prediction(
        sup_mean=np.array([np.mean(x) for x in at]),
        sup_sd=np.array([np.std(x) for x in at]),
        floor=float(np.mean(floor)),
        curve=(grid, curve),
        label=label,
    )


def limit_state(limit: Record) -> np.ndarray:
    """The limit's state ``y = (a, b, p, nu^A, nu^B)`` on its times, (T, D)."""
    return np.concatenate([limit.coordinates[name] for name in ("a", "b", "p", "nu_a", "nu_b")], axis=-1)
