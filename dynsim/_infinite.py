"""Generic machinery for infinite-width limits: one adaptive diffrax solve of a vector field.

Nothing here knows which system it integrates: a system supplies ``field(t, y, args)``, an
initial state, its arguments and the times where the field jumps (temperature stage
boundaries). The solve never steps across a jump: the step-size controller is told the
jump times (``diffrax.ClipStepSizeController(jump_ts=...)``), so a step ends just before
each one and the next starts just after it. Errors are returned, not raised, so that the
solve can run under ``vmap``; the caller checks ``succeeded``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import diffrax
import jax.numpy as jnp

SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "kvaerno5": diffrax.Kvaerno5,
}
DEFAULT_SOLVER = "tsit5"


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


def resolve_solver(solver) -> diffrax.AbstractSolver:
    """A diffrax solver from ``None`` (Tsit5), a name in :data:`SOLVERS`, or a solver instance."""
    if solver is None:
        solver = DEFAULT_SOLVER
    if isinstance(solver, str):
        if solver not in SOLVERS:
            raise ValueError(f"solver = {solver!r} is invalid: must be one of {', '.join(map(repr, SOLVERS))}")
        return _named_solver(solver)
    if isinstance(solver, diffrax.AbstractSolver):
        return solver
    raise ValueError(f"solver = {solver!r} is invalid: give a name ({', '.join(SOLVERS)}) or a diffrax solver")


@functools.cache
def _named_solver(name: str) -> diffrax.AbstractSolver:
    # One instance per name: building an equinox module costs host time on every solve.
    return SOLVERS[name]()


def integrate(field, y0, args, ts, t1, jump_ts, *, solver, rtol, atol, max_steps) -> Integration:
    """Solve ``dy/dt = field(t, y, args)`` from ``t = 0`` to ``t1``, saving at ``ts``.

    Args:
        field: ``(t, y, args) -> dy/dt``.
        y0: initial state pytree.
        args: pytree passed to ``field``.
        ts: (T,) non-decreasing save times in ``[0, t1]``.
        t1: end time.
        jump_ts: times where ``field`` is discontinuous (may include ``t1``).
        solver: a diffrax solver; rtol, atol: PID controller tolerances; max_steps: step cap.

    Returns:
        An :class:`Integration`.
    """
    # Explicit solvers: diffrax's default I control took the fewest steps on our fields;
    # implicit (stiff) solvers: the smoother PI control diffrax recommends for stiff problems.
    coefficients = {"pcoeff": 0.3, "icoeff": 0.4} if isinstance(solver, diffrax.AbstractImplicitSolver) else {}
    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=rtol, atol=atol, **coefficients), jump_ts=jump_ts
    )
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver,
        t0=jnp.zeros_like(t1),
        t1=t1,
        dt0=None,
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts), diffrax.SubSaveAt(t1=True)]),
        stepsize_controller=controller,
        max_steps=max_steps,
        throw=False,
        # A plain while loop: the solution is not differentiated, so no checkpoints are needed.
        adjoint=diffrax.ForwardMode(),
    )
    return Integration(
        ys=solution.ys[0],
        succeeded=solution.result == diffrax.RESULTS.successful,
        num_steps=solution.stats["num_steps"],
        time_reached=solution.ts[1][0],
    )
