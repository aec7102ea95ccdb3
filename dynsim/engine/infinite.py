"""What every system's limit shares without loading its solver: the solver names, the outcome of
one solve and the error a failed solve raises.

The diffrax integration itself is :mod:`dynsim.engine.integrate`, imported only when a program
has to be traced (not when :mod:`dynsim.engine.exported` runs one from the cache), so that a solve
in a new process need not import diffrax.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SOLVER_NAMES = ("tsit5", "dopri5", "dopri8", "kvaerno5")
DEFAULT_SOLVER = "tsit5"


class SolverError(RuntimeError):
    """The ODE solver did not reach the end time; ``time`` says where it stopped."""

    def __init__(self, message: str, *, time: float, index: int | None = None):
        self.time, self.index = time, index
        super().__init__(message)


def check_solved(values, times, first_seed: int, what: str) -> None:
    """Raise :class:`SolverError` for the first seed whose limit went non-finite.

    Args:
        values: (seeds, T) a quantity of every seed's solution at every save time (a failed
            solve leaves it non-finite from where it stopped).
        times: (T,) the save times; first_seed: the label of the first seed.
        what: the solution's name in the message (``"the exact flow"``).
    """
    bad = ~np.isfinite(values)
    if bad.any():
        seed, index = np.argwhere(bad)[0]
        raise SolverError(
            f"{what} of seed {first_seed + seed} stopped before t = {times[index]:g}: the diffrax solve failed "
            "(a non-finite state, or too many steps)",
            time=float(times[max(index - 1, 0)]),
        )


class Integration(NamedTuple):
    """The outcome of one solve.

    ``ys`` holds the state at each save time (``inf`` past a failure), ``succeeded`` whether
    the solver reached ``t1``, ``num_steps`` the steps it took (accepted and rejected),
    and ``time_reached`` where it stopped.
    """

    ys: object
    succeeded: object
    num_steps: object
    time_reached: object


def check_solver_name(solver: str) -> str:
    """``solver`` if it is one of :data:`SOLVER_NAMES`, else a ``ValueError`` naming them."""
    if solver not in SOLVER_NAMES:
        raise ValueError(f"solver = {solver!r} is invalid: must be one of {', '.join(map(repr, SOLVER_NAMES))}")
    return solver
