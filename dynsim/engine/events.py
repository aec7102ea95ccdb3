"""Events read off recorded metrics: when a trajectory first reaches a level.

A system's :class:`~dynsim.engine.system.Events` turn recorded metrics into times (when the
towers align, when a plateau ends); they are written with :func:`first_crossing`, which reads
the time off the piecewise-linear interpolant of the records, so it is not rounded up to the
record grid.
"""

from __future__ import annotations

import numpy as np


def first_crossing(times, values, threshold: float, *, rising: bool, start: float | None = None) -> float:
    """The first time ``t >= start`` at which the linear interpolant of ``values`` reaches ``threshold``.

    Args:
        times: record times, strictly increasing, (T,).
        values: the metric at those times, (T,); non-finite records count as not reached.
        threshold: the level to reach.
        rising: ``True``: reach means ``value >= threshold``; ``False``: ``value <= threshold``.
        start: search from this time on (default ``times[0]``); ``NaN`` or outside the records gives ``NaN``.

    Returns:
        The time (``start`` itself when the interpolant is already there), or ``NaN`` if the
        records never reach the threshold after ``start``.
    """
    times, values = np.asarray(times, dtype=float), np.asarray(values, dtype=float)
    if times.size == 0:
        return float("nan")
    start = times[0] if start is None else float(start)
    if not times[0] <= start <= times[-1]:  # also NaN
        return float("nan")
    gap = (values - threshold) if rising else (threshold - values)  # >= 0: reached
    gap = np.where(np.isfinite(gap), gap, np.nan)  # a non-finite record never counts as reached
    # Search the interpolant from `start` on: `start` itself, then the later records.
    later = times > start
    gap = np.concatenate([[np.interp(start, times, gap)], gap[later]])
    times = np.concatenate([[start], times[later]])
    reached = np.flatnonzero(gap >= 0)
    if reached.size == 0:
        return float("nan")
    i = int(reached[0])
    if i == 0 or not np.isfinite(gap[i - 1]):
        return float(times[i])
    # gap[i - 1] < 0 <= gap[i]: the segment's linear interpolant crosses zero in between.
    return float(times[i - 1] + (times[i] - times[i - 1]) * gap[i - 1] / (gap[i - 1] - gap[i]))
