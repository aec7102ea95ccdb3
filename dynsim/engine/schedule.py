"""Piecewise-constant stage schedules in training time (SPEC §3).

A schedule is a list of stages ``(value_k, T_k)``; with step size ``lr`` stage ``k`` lasts
``round(T_k / lr)`` steps, and step ``s`` (0-based) belongs to the stage whose step range
holds it; in continuous time (the ODE side), :func:`stage_value` looks a value up by ``t``.
The stage values stay traced arrays, so changing them does not recompile.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .types import Array


def stage_steps(durations, lr: float) -> tuple[int, ...]:
    """Steps per stage, ``round(T_k / lr)``."""
    return tuple(int(round(duration / lr)) for duration in durations)


def stage_index(step, steps_per_stage: tuple[int, ...]):
    """Index of the stage that step ``step`` runs in (the last stage from its end on)."""
    boundaries = np.cumsum(steps_per_stage)[:-1]
    return jnp.searchsorted(jnp.asarray(boundaries, dtype=jnp.int32), step, side="right")


def steps_per_record(record_every: float, lr: float) -> int:
    """Steps between records, ``round(record_every / lr)`` and at least 1."""
    return max(1, int(round(record_every / lr)))


def stage_value(values: Array, boundaries: Array, t) -> Array:
    """The value of a stage schedule at time ``t``; a boundary belongs to the stage it starts.

    ``values`` may carry trailing axes (e.g. ``(tau, gamma)`` per stage). A chain of selects
    rather than a gather: it returns the stored value exactly and fuses into the caller.
    """
    value = values[-1]
    for k in range(boundaries.shape[0] - 1, -1, -1):
        value = jnp.where(t < boundaries[k], values[k], value)
    return value
