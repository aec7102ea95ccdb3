"""``dynsim.ode``: the infinite-width limit of the model, by an adaptive ODE solve.

As the width ``m -> inf`` the Gram matrix ``W^T W`` starts at the identity and gradient
flow keeps it diagonal in the latent basis, so training reduces to an ODE in the
per-coordinate state ``y = (a, b, p, nu^A, nu^B)`` (SPEC §5, seed 001 §5.2 eq. 8; derived
step by step in ``ode/README.md``). :func:`solve` integrates it for one configuration and
:func:`solve_batch` for many at once, with diffrax, in float64.

What maps onto the ODE: the data spectra (``data.spectrum``, ``kappa``, ``kappa_b``,
``sigma``, ``sigma_b``, ``noise``, ``eta``), the loss (``loss.*``) and ``train.lr``, which
fixes the stage boundaries ``round(T_k / lr) * lr`` and the default save grid, exactly as
in the finite-width simulator. ``data.basis`` and ``data.d`` do not enter (the limit is
basis-free); ``train.normalization = "batch"`` is taken at its population limit;
``train.batch`` and ``train.precision`` do not enter. Optimizers other than ``sgd`` have
no reduced ODE here and are refused.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._lazy import lazy_attributes
from ..engine import exported
from ..engine.config import ConfigError
from ..engine.infinite import DEFAULT_SOLVER, Integration, SolverError, check_solver_name
from ..engine.runner import record_steps
from ..engine.schedule import stage_value, steps_per_record
from . import reduced as _reduced
from .config import Config, load_config
from .data import spectra
from .observables import COORDINATES, METRICS
from .trajectory import Record

DEFAULT_MAX_STEPS = 100_000

__all__ = ["ODESolution", "SOLVERS", "SolverError", "solve", "solve_batch"]  # noqa: F822 (SOLVERS: __getattr__)


# SOLVERS (name -> diffrax solver class) on first use: it imports diffrax.
__getattr__ = lazy_attributes(__name__, {"SOLVERS": ("dynsim.engine.integrate", "SOLVERS")})


@dataclasses.dataclass(frozen=True)
class ODESolution(Record):
    r"""The infinite-width trajectory of one configuration, or of a batch.

    Attributes:
        times: training times of the saved points, (T,); (N, T) for a batch, where a
            configuration with a shorter default grid is padded by repeating its last point.
        a, b, p: per-coordinate signal quantities ``a_k, b_k, p_k`` (SPEC §4), (T, r).
        nu_a, nu_b: per-coordinate noise norms ``nu^A_j, nu^B_j``, (T, n).
        metrics: ``loss, rho_min, rho_mean, kappa_a, kappa_b, balance, alignment, nsr,
            offdiag``, each (T,), with the names and meanings of :class:`dynsim.Trajectory`.
            At infinite width ``loss`` is the population loss, ``offdiag`` is 0, and the
            alignment score has the closed form
            :math:`2^{-r}\#\{T \subseteq [r] : \sum_{k \in T} p_k > 0\}`, which is
            :math:`1 - 2^{-r}` once every :math:`p_k > 0`.
        num_steps: solver steps taken, accepted and rejected (an int; (N,) for a batch).

    A batch is indexed like a list: ``batch[i]`` is configuration ``i``'s solution with
    its padding removed, and ``len(batch)`` the number of configurations.
    """

    num_steps: int | np.ndarray

    def _check_batched(self):
        if self.times.ndim != 2:
            raise TypeError("a single ODESolution cannot be indexed; solve_batch returns a batch")

    def __len__(self) -> int:
        self._check_batched()
        return self.times.shape[0]

    def __getitem__(self, index: int) -> ODESolution:
        self._check_batched()
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"index a batch with one integer, got {index!r}")
        times = self.times[index]
        length = 1 + int(np.count_nonzero(np.diff(times) > 0))  # padding repeats the last time
        return ODESolution(
            times=times[:length],
            **{name: getattr(self, name)[index, :length] for name in COORDINATES},
            metrics={name: values[index, :length] for name, values in self.metrics.items()},
            num_steps=int(self.num_steps[index]),
        )


@dataclasses.dataclass(frozen=True)
class _Problem:
    args: _reduced.ReducedArgs  # NumPy arrays
    end: float
    grid: np.ndarray


def _problem(config: Config, where: str) -> _Problem:
    if config.train.optimizer != "sgd":
        raise ConfigError(
            f"{where}train.optimizer = {config.train.optimizer!r} has no reduced ODE: the infinite-width "
            "limit is the gradient flow of plain SGD; use train.optimizer = 'sgd'"
        )
    return _cached_problem(config)


@functools.lru_cache(maxsize=64)
def _cached_problem(config: Config) -> _Problem:
    """The arrays of one (frozen, hashable) configuration, built once: repeated solves skip
    this host work. The arrays are read-only, as they are shared between calls."""
    lr = config.train.lr
    steps = config.steps_per_stage
    ends = np.cumsum(steps) * lr
    taus = np.array([tau for tau, _ in config.loss.stages], dtype=float)
    values = spectra(config.data)
    args = _reduced.ReducedArgs(
        sigma2_a=values["sigma_a"] ** 2,
        sigma2_b=values["sigma_b"] ** 2,
        eta2_a=values["eta_a"] ** 2,
        eta2_b=values["eta_b"] ** 2,
        taus=taus,
        gammas=1.0 / taus if config.loss.rescale else np.ones_like(taus),
        boundaries=ends[:-1],
        lam=np.asarray(float(config.loss.lam)),
    )
    grid = record_steps(sum(steps), steps_per_record(config.run.record_every, lr)) * lr
    for array in (*args, grid):
        array.setflags(write=False)
    return _Problem(args=args, end=float(ends[-1]), grid=grid)


def _check_batchable(configs: Sequence[Config]) -> None:
    first = configs[0]
    for i, config in enumerate(configs[1:], start=1):
        for field, mine, theirs in (
            ("data.r", config.data.r, first.data.r),
            ("data.n", config.data.n, first.data.n),
            ("loss.kind", config.loss.kind, first.loss.kind),
        ):
            if mine != theirs:
                raise ConfigError(
                    f"configs[{i}] cannot be batched with configs[0]: {field} = {mine!r} differs from {theirs!r}; "
                    "data.r, data.n and loss.kind fix the compiled program, so solve such groups in separate batches"
                )


def _check_times(ts, end: float, where: str) -> np.ndarray:
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size == 0:
        raise ConfigError(f"ts must be a non-empty 1-D array of times, got shape {ts.shape}")
    if not np.all(np.isfinite(ts)) or ts[0] < 0 or ts[-1] > end * (1 + 1e-12):
        raise ConfigError(f"ts must lie in [0, {end:g}], the {where}training time; got [{ts[0]:g}, {ts[-1]:g}]")
    ts = np.minimum(ts, end)  # forgive rounding at the end time
    if np.any(np.diff(ts) <= 0):
        raise ConfigError(f"ts must be strictly increasing (after clipping to the end time {end:g})")
    return ts


def _pad_to(values: np.ndarray, length: int, fill) -> np.ndarray:
    return np.concatenate([values, np.full(length - values.shape[0], fill)])


def _stack(problems: list[_Problem], grids: list[np.ndarray]):
    """Batch the problems: stages padded by repeating the last one (boundaries at the end
    time, so it never runs), grids by repeating their last time."""
    num_stages = max(problem.args.taus.shape[0] for problem in problems)
    num_times = max(grid.shape[0] for grid in grids)
    padded = []
    for problem in problems:
        args = problem.args
        padded.append(
            args._replace(
                taus=_pad_to(args.taus, num_stages, args.taus[-1]),
                gammas=_pad_to(args.gammas, num_stages, args.gammas[-1]),
                boundaries=_pad_to(args.boundaries, num_stages - 1, problem.end),
            )
        )
    args = jax.tree.map(lambda *xs: np.stack(xs), *padded)
    ts = np.stack([_pad_to(grid, num_times, grid[-1]) for grid in grids])
    ends = np.array([problem.end for problem in problems])
    return args, ts, ends


def _solve_one(args, ts, end, *, kind, solver, rtol, atol, max_steps):
    from ..engine.integrate import integrate  # diffrax: only when tracing

    r = args.sigma2_a.shape[0]
    out = integrate(
        functools.partial(_reduced.vector_field, kind=kind),
        _reduced.initial_state(args),
        args,
        ts,
        end,
        jnp.append(args.boundaries, end),
        solver=solver,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )
    taus = jax.vmap(lambda t: stage_value(args.taus, args.boundaries, t))(ts)
    values = jax.vmap(lambda y, tau: _reduced.metrics(y, tau, args.lam, r, kind))(out.ys, taus)
    return values, out


@functools.partial(jax.jit, static_argnames=("batched", "kind", "solver", "rtol", "atol", "max_steps"))
def _solve_arrays(args, ts, ends, *, batched, **options):
    """One solve and its metrics at every save time; ``vmap``-ed over configurations if ``batched``.

    Returns the metrics stacked along a last axis in :data:`METRICS` order (one transfer).
    """
    one = functools.partial(_solve_one, **options)
    values, out = (jax.vmap(one) if batched else one)(args, ts, ends)
    r = args.sigma2_a.shape[-1]
    values["alignment"] = _reduced.alignment_score(_reduced.split(out.ys, r)["p"])  # all states at once
    return jnp.stack([values[name] for name in METRICS], axis=-1), out


@functools.cache
def _flat_program(*, solver, **options):
    """:func:`_solve_arrays` as a jitted function of the arguments' fields and of plain tuples,
    the form ``jax.export`` serializes (one per solver and options, so that it compiles once)."""
    from ..engine.integrate import resolve_solver  # diffrax: only when tracing

    def program(fields, ts, ends):
        values, out = _solve_arrays(_reduced.ReducedArgs(*fields), ts, ends, solver=resolve_solver(solver), **options)
        return values, tuple(out)

    return jax.jit(program)


def _raise_failure(out, ends, ts, max_steps: int, batched: bool) -> None:
    if np.all(out.succeeded):
        return
    out, ends, ts = jax.tree.map(np.atleast_1d, out), np.atleast_1d(ends), np.atleast_2d(ts)
    i = int(np.flatnonzero(~out.succeeded)[0])
    where = f"configs[{i}]: " if batched else ""
    time = float(out.time_reached[i])
    if int(out.num_steps[i]) >= max_steps:
        reason = f"it exhausted max_steps = {max_steps}"
    else:
        reason = "the step size collapsed or the state became non-finite"
    last_saved = ts[i][ts[i] <= time]
    raise SolverError(
        f"{where}the ODE solver stopped at t = {time:.6g} of {ends[i]:g} (last saved point "
        f"t = {last_saved[-1] if last_saved.size else 0:g}): {reason}. The field is stiffest with strong "
        "negatives (large lam) and a large kappa; try a larger max_steps, looser rtol/atol, or solver='kvaerno5'",
        time=time,
        index=i if batched else None,
    )


def solve_batch(
    configs: Sequence[Config | dict | str],
    ts=None,
    *,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    solver=None,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> ODESolution:
    """Solve the reduced ODE for many configurations in one compiled, vmapped call.

    The configurations must share ``data.r``, ``data.n`` and ``loss.kind``; everything
    else may differ (spectra, noise, ``lam``, rescaling, stage temperatures, durations and
    counts, ``lr``, ``record_every``). A second call with the same shapes reuses the
    compiled program.

    Args:
        configs: :class:`dynsim.Config` objects, nested dicts or TOML paths.
        ts: save times shared by all configurations, within every one's training time;
            default: each configuration's own grid (see :func:`solve`), padded to the
            longest by repeating its last point.
        rtol, atol, solver, max_steps: as in :func:`solve`.

    Returns:
        A batched :class:`ODESolution`: every array has a leading axis of length
        ``len(configs)``; ``solution[i]`` is configuration ``i`` alone.

    Raises:
        ConfigError: an invalid configuration, one without a reduced ODE, configurations
            that cannot share a program (the message names the field), or bad ``ts``.
        SolverError: a solve did not reach its end time (names the configuration and time).

    Example:
        >>> import dynsim
        >>> configs = [{"loss": {"lam": lam}, "data": {"r": 2, "n": 2}} for lam in (0.5, 1.0, 2.0)]
        >>> batch = dynsim.ode.solve_batch(configs)
        >>> batch.metrics["kappa_a"].shape
        (3, 84)
    """
    if isinstance(configs, (Config, dict, str)) or not len(configs):
        raise ConfigError("configs must be a non-empty sequence of configurations")
    options = {"rtol": rtol, "atol": atol, "solver": solver, "max_steps": max_steps}
    return _solve([load_config(config) for config in configs], ts, batched=True, **options)


def _solve(configs: list[Config], ts, *, batched: bool, rtol, atol, solver, max_steps) -> ODESolution:
    _check_batchable(configs)
    problems = [_problem(config, f"configs[{i}]: " if batched else "") for i, config in enumerate(configs)]
    if ts is None:
        grids = [problem.grid for problem in problems]
    else:
        shortest = min(problems, key=lambda problem: problem.end)
        grids = [_check_times(ts, shortest.end, "shortest " if batched else "")] * len(problems)
    if batched:
        args, times, ends = _stack(problems, grids)
    else:  # nothing to pad
        args, times, ends = problems[0].args, grids[0].copy(), problems[0].end  # times goes to the caller
    options = {"batched": batched, "kind": configs[0].loss.kind, "rtol": float(rtol), "atol": float(atol)}
    options["max_steps"] = int(max_steps)
    with jax.enable_x64(True):
        if solver is None or isinstance(solver, str):  # a named solver: the program is kept exported
            named = check_solver_name(solver or DEFAULT_SOLVER)
            name = ("two_tower.ode", named, *sorted(options.items()))
            build = functools.partial(_flat_program, solver=named, **options)
            values, out = exported.call(name, build, tuple(args), times, np.float64(ends))
        else:  # a diffrax solver instance: traced in this process
            values, out = _flat_program(solver=solver, **options)(tuple(args), times, np.float64(ends))
        values, out = jax.tree.map(np.asarray, (values, Integration(*out)))
    _raise_failure(out, ends, times, max_steps, batched)
    return ODESolution(
        times=times,
        **_reduced.split(out.ys, configs[0].data.r),
        metrics={name: values[..., i] for i, name in enumerate(METRICS)},
        num_steps=out.num_steps if batched else int(out.num_steps),
    )


def solve(
    config: Config | dict | str | None = None,
    ts=None,
    *,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    solver=None,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> ODESolution:
    r"""Integrate the infinite-width reduced ODE (SPEC §5) of one configuration.

    Starts at ``K = I``: :math:`a_k = \sigma_{Ak}^2`, :math:`b_k = \sigma_{Bk}^2`,
    :math:`p_k = 0`, :math:`\nu_j = \eta_j^2`, and runs the temperature stages with their
    boundaries at ``round(T_k / lr) * lr``; each boundary is a jump time of the step-size
    controller, so no step crosses it. Adaptive steps with a PID controller, float64.

    Args:
        config: a :class:`dynsim.Config`, nested dict, TOML path, or ``None`` (the default).
        ts: save times in ``[0, T]``, strictly increasing; default: every
            ``run.record_every`` of training time, the grid the finite-width simulator
            records on (``dynsim.simulate(config).times``), so the two line up.
        rtol, atol: relative and absolute tolerances of the step-size controller.
        solver: ``None`` (Tsit5, explicit), a name in :data:`SOLVERS` (``"kvaerno5"`` is
            implicit, for stiff cases; it is much slower on every case measured, see
            docs/ode.md), or a diffrax solver instance.
        max_steps: cap on solver steps; reaching it raises :class:`SolverError`.

    Returns:
        An :class:`ODESolution`; ``num_steps`` reports the steps taken.

    Raises:
        ConfigError: an invalid configuration, an optimizer other than ``sgd``, or bad ``ts``.
        SolverError: the solver did not reach the end time (names the time it reached).

    Example:
        >>> import dynsim
        >>> solution = dynsim.ode.solve({"loss": {"kind": "positive", "stages": [[1.0, 400.0]]}})
        >>> round(float(solution.metrics["rho_min"][-1]), 4), bool(solution.metrics["kappa_a"][-1] > 4)
        (1.0, True)
    """
    options = {"rtol": rtol, "atol": atol, "solver": solver, "max_steps": max_steps}
    return _solve([load_config(config)], ts, batched=False, **options)
