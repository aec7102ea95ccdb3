r"""``dynsim.ode.fluctuations``: the finite-width seed covariance, mean shift and SGD noise of the
two-tower model, predicted from the reduced ODE (shared/notes/fluctuations.md; docs/fluctuations.md).

At width ``m`` a seed's state is :math:`y(t) \approx \bar y(t) + m^{-1/2}\Phi(t)\delta_0 + \xi(t)
+ m^{-1}\mu_2(t)`: the infinite-width path, the Wishart fluctuation of :math:`K_0` carried by the
tangent flow, SGD's batch noise, and the mean shift through the sectors off the invariant set
(:mod:`dynsim.two_tower.tangent`). :func:`fluctuations` computes each on a time grid; the
:class:`Fluctuations` it returns gives covariances at any width (no new solve per width),
samples of the linear Gaussian model, the predicted spread of the metrics, and the horizon
past which the expansion fails.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import ConfigError, check_count
from ..engine.infinite import SolverError
from ..engine.runner import record_steps
from ..engine.schedule import steps_per_record
from . import reduced as _reduced
from . import tangent as _tangent
from .config import Config, load_config
from .observables import COORDINATES, condition_number, max_offdiagonal_cosine, stable_rank
from .ode import _check_times, _problem
from .sectors import ENTRIES, sectors

# Metrics predicted by sampling: the deterministic functions of Q (loss and alignment are
# Monte-Carlo estimates with their own sampling noise, and are not predicted).
PREDICTED_METRICS = ("rho_min", "rho_mean", "kappa_a", "kappa_b", "balance", "nsr", "offdiag")
# Monte-Carlo batches per step for the noise covariance: at least 16 and at most 256, and within
# that enough for the whole run to see 5000 (a relative error of about sqrt(2 / 5000) = 2% in the
# accumulated covariance).
NOISE_SAMPLES, NOISE_SAMPLES_MAX, NOISE_BATCHES_PER_RUN = 16, 256, 5000
VALIDITY_THRESHOLD = 0.1


@dataclasses.dataclass(frozen=True)
class Fluctuations:
    r"""The predicted fluctuations of one configuration at every saved time.

    The state is ``y = (a, b, p, nu^A, nu^B)`` flattened in that order, ``D = 3r + 2n``.

    Attributes:
        times: (T,) training times.
        mean: (T, D) the path the fluctuations are taken around: the infinite-width ODE
            (``discrete=False``) or the population SGD path at the configuration's step size.
        cov: (T, D, D) :math:`\Sigma(t) = \Phi\Sigma_0\Phi^T`, the covariance of ``y`` per unit
            width: at width ``m`` the width part of the covariance is ``cov / m``.
        noise_cov: (T, D, D) the batch-noise covariance at the configuration's ``lr`` and ``batch``
            (absolute, not per width; it scales as ``lr / batch``); zeros without ``noise``.
        tangent: (T, D, D) :math:`\Phi(t) = \partial y(t)/\partial y(0)`.
        mean_shift: (T, D) :math:`\mu_2(t)`, per unit width: :math:`E\,y \approx \bar y + \mu_2/m`;
            ``None`` without ``mean_shift``.
        sector_growth: (T,) the largest real part of the eigenvalues of the off-invariant
            Jacobians :math:`J_\chi`; positive where off-invariant fluctuations grow.
        off_invariant: (T,) the largest per-unit-width sd of an off-invariant entry relative to
            its diagonal, :math:`\max \sqrt{P_{\chi,ij}/(Q_{ii}Q_{jj})}` (a cosine's sd at m = 1).
        sector_roots: (T, S, 4, 4) :math:`\Psi_\chi P_{\chi,0}^{1/2}` per sector (for sampling).
        sector_rows, sector_mask: (S, 4) the sectors' local rows in ``Q`` and which entries exist.
        noise_propagator, noise_increment: (T-1, D, D) per interval between saved times, the
            step maps' product and the noise it injects (the noise paths of :meth:`sample`).
        r, n, lr, batch: the configuration's sizes, step size and batch.
        discrete: whether the tangent is the step map's (True) or the ODE's.
    """

    times: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    noise_cov: np.ndarray
    tangent: np.ndarray
    mean_shift: np.ndarray | None
    sector_growth: np.ndarray | None
    off_invariant: np.ndarray | None
    sector_roots: np.ndarray | None
    sector_rows: np.ndarray | None
    sector_mask: np.ndarray | None
    noise_propagator: np.ndarray | None
    noise_increment: np.ndarray | None
    r: int
    n: int
    lr: float
    batch: int
    discrete: bool

    def split(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Name the parts of a state-indexed last axis: ``a, b, p, nu_a, nu_b``."""
        return _reduced.split(values, self.r)

    def covariance(self, width: float) -> np.ndarray:
        """(T, D, D) the predicted seed covariance of ``y`` at ``width``: ``cov / width + noise_cov``."""
        return self.cov / width + self.noise_cov

    def sd(self, width: float) -> dict[str, np.ndarray]:
        """The predicted seed sd of every coordinate at ``width``, ``{name: (T, k)}``."""
        return self.split(np.sqrt(np.maximum(np.diagonal(self.covariance(width), axis1=1, axis2=2), 0.0)))

    def validity_horizon(self, width: float, threshold: float = VALIDITY_THRESHOLD) -> float:
        r"""The first saved time at which an off-invariant cosine's predicted sd,
        ``off_invariant / sqrt(width)``, exceeds ``threshold`` (``inf``: never within the times).

        Past it the first-order picture (off-invariant entries small, the state's fluctuations
        closed on the reduced tangent) no longer holds at that width.
        """
        if self.off_invariant is None:
            raise ValueError("no sectors were propagated: call fluctuations(..., mean_shift=True, discrete=False)")
        over = np.flatnonzero(self.off_invariant / np.sqrt(width) > threshold)
        return float(self.times[over[0]]) if over.size else float("inf")

    def sample(self, width: float, samples: int, seed: int = 0, noise: bool = True) -> np.ndarray:
        r"""(samples, T, D) paths of the linear Gaussian model at ``width``:
        :math:`\bar y + \Phi\delta_0/\sqrt m` plus, with ``noise``, the batch-noise path on the saved
        times (propagated by ``noise_propagator``, fed by ``noise_increment``); ``width = inf``
        gives the noise alone."""
        rng = np.random.default_rng(seed)
        sigma0 = np.diagonal(self.cov[0])
        paths = np.repeat(self.mean[None], samples, axis=0)
        if np.isfinite(width):
            delta0 = rng.standard_normal((samples, sigma0.size)) * np.sqrt(sigma0 / width)
            paths = paths + np.einsum("tij,sj->sti", self.tangent, delta0)
        if noise:
            if self.noise_propagator is None:
                raise ValueError("no noise paths: the times are not the configuration's record grid")
            current = np.zeros((samples, sigma0.size))
            for i, (propagator, increment) in enumerate(zip(self.noise_propagator, self.noise_increment, strict=True)):
                root = _psd_root(increment)
                current = current @ propagator.T + rng.standard_normal(current.shape) @ root.T
                paths[:, i + 1] += current
        return paths

    def metric_sd(self, width: float, samples: int = 512, seed: int = 0) -> dict[str, np.ndarray]:
        """The predicted seed sd of each of :data:`PREDICTED_METRICS` at ``width``, ``{name: (T,)}``,
        by sampling the linear Gaussian model of the whole Gram matrix (the invariant state and,
        where propagated, every sector) and evaluating the metrics on each sample: no delta
        method, which fails where the spectrum is degenerate (``kappa_a`` near balance)."""
        rng = np.random.default_rng(seed)
        sigma0 = np.diagonal(self.cov[0])
        delta0 = rng.standard_normal((samples, sigma0.size)) * np.sqrt(sigma0 / width)
        states = self.mean[None] + np.einsum("tij,sj->sti", self.tangent, delta0)
        grams = _gram_of(states, self.r, self.n)
        if self.sector_roots is not None:
            xi = rng.standard_normal((samples, *self.sector_roots.shape[1:3])) / np.sqrt(width)
            entries = np.einsum("tcij,scj->stci", self.sector_roots, xi)  # (samples, T, S, 4)
            first, second = np.array(ENTRIES).T
            rows, cols = self.sector_rows[:, first], self.sector_rows[:, second]
            keep = self.sector_mask
            values = np.where(keep, entries, 0.0)
            grams[:, :, rows[keep], cols[keep]] += values[:, :, keep]
            grams[:, :, cols[keep], rows[keep]] += values[:, :, keep]
        with jax.enable_x64(True):
            values = _metrics_of(jnp.asarray(grams.reshape(-1, *grams.shape[2:])), self.r)
        return {name: np.std(np.asarray(v).reshape(samples, -1), axis=0, ddof=1) for name, v in values.items()}


def _psd_root(matrix: np.ndarray) -> np.ndarray:
    """A square root ``R`` with ``R R^T = matrix`` for a symmetric PSD matrix (negative rounding clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return vectors * np.sqrt(np.maximum(values, 0.0))


def _gram_of(states: np.ndarray, r: int, n: int) -> np.ndarray:
    """The latent Gram matrices ``Q`` (…, 2q, 2q) on the invariant set of states (…, D)."""
    s = _reduced.split(states, r)
    q = r + n
    grams = np.zeros((*states.shape[:-1], 2 * q, 2 * q))
    diagonal = np.concatenate([s["a"], s["nu_a"], s["b"], s["nu_b"]], axis=-1)
    index = np.arange(2 * q)
    grams[..., index, index] = diagonal
    signal = np.arange(r)
    grams[..., signal, q + signal] = grams[..., q + signal, signal] = s["p"]
    return grams


@functools.partial(jax.jit, static_argnames="r")
def _metrics_of(grams, r):
    q = grams.shape[-1] // 2

    def one(gram):
        diag = jnp.diagonal(gram)
        a, b, p = diag[:r], diag[q : q + r], jnp.diagonal(gram[:r, q : q + r])
        rho = p / jnp.sqrt(a * b)
        return {
            "rho_min": jnp.min(rho),
            "rho_mean": jnp.mean(rho),
            "kappa_a": condition_number(gram[:r, :r]),
            "kappa_b": condition_number(gram[q : q + r, q : q + r]),
            "balance": stable_rank(gram[:q, :q]),
            "nsr": jnp.sqrt(jnp.sum(diag[r:q]) / jnp.sum(a)),
            "offdiag": max_offdiagonal_cosine(gram[:r, :r]),
        }

    return jax.vmap(one)(grams)


@functools.partial(jax.jit, static_argnames=("kind", "layout", "rtol", "atol", "max_steps"))
def _continuous(args, problem, ts, end, jump_ts, *, kind, layout, rtol, atol, max_steps):
    import diffrax  # only when tracing

    from ..engine.integrate import integrate

    y0 = _reduced.initial_state(args)
    dim = y0.shape[0]
    parts = [y0, jnp.eye(dim).reshape(-1)]
    if layout.sectors:
        parts += [jnp.zeros(dim), jnp.tile(jnp.eye(4).reshape(-1), layout.sectors)]
    if layout.noise:
        parts.append(jnp.zeros(dim * dim))
    field = functools.partial(_tangent.continuous_field, layout=layout, kind=kind)
    return integrate(
        field,
        jnp.concatenate(parts),
        problem,
        ts,
        end,
        jump_ts,
        # diffrax's own Tsit5, whose loop over stages traces the (large) field once; the
        # unrolled one of dynsim.engine.integrate traces it seven times and compiles for minutes.
        solver=diffrax.Tsit5(),
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )


@functools.partial(jax.jit, static_argnames="kind")
def _sector_diagnostics(ys, times, psis, args, table, root0, *, kind):
    """Per saved time: the sector Jacobians (S, 4, 4), the largest relative sd of an off-invariant
    entry (per unit width), and the sectors' roots. (The Jacobians' eigenvalues are taken on the
    host: a general eigensolver is not available on every device.)"""
    rows, mask = table[2], table[5]
    first, second = np.array(ENTRIES).T

    def at(y, t, psi):
        stage = _tangent.stage_at(args, t)
        jacs = jax.vmap(lambda sector: _tangent.sector_jacobian(y, sector, args, stage, kind))(table)
        roots = psi * root0[:, None, :]
        variance = jnp.sum(roots**2, axis=-1)  # diag of P = L L^T
        s = _reduced.split(y, args.sigma2_a.shape[0])
        diagonal = jnp.concatenate([s["a"], s["nu_a"], s["b"], s["nu_b"], jnp.ones(1)])[rows]  # Q_ii by row
        relative = jnp.where(mask, variance / (diagonal[:, first] * diagonal[:, second]), 0.0)
        return jacs, jnp.sqrt(jnp.max(relative)), roots

    return jax.lax.map(lambda x: at(*x), (ys, times, psis))


def solve_tangent(problem, args, kind, times, sigma0, sector_arrays, root0, rates, *, rtol, atol, max_steps):
    r"""The continuous solve of :mod:`dynsim.two_tower.tangent`: ``(y, Phi, mu_2, Psi, P_s)`` at ``times``.

    ``sigma0`` (D,) is the initial variance of ``y`` and ``root0`` (S, 4) the initial sd of each
    sector entry (both diagonal; the Wishart values in :func:`fluctuations`, any others for a
    second-order response to one chosen perturbation); ``sector_arrays`` the sector table
    (empty: no sectors, no mean shift); ``rates`` (T-1, D, D) the batch-noise rate per interval of
    the record grid (empty: no noise).
    """
    noise = rates.shape[-1] > 0
    layout = _tangent.Layout(dim=sigma0.size, sectors=len(root0), noise=noise)
    jumps = np.unique(np.concatenate([problem.args.boundaries, problem.grid if noise else [], [problem.end]]))
    solved = _continuous(
        args,
        (args, jnp.asarray(sigma0), sector_arrays, jnp.asarray(root0), jnp.asarray(problem.grid), jnp.asarray(rates)),
        jnp.asarray(times),
        jnp.float64(problem.end),
        jnp.asarray(jumps),
        kind=kind,
        layout=layout,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )
    if not bool(solved.succeeded):
        raise SolverError(
            f"the fluctuation solve stopped at t = {float(solved.time_reached):.6g} of {problem.end:g}: try a "
            "larger max_steps or looser rtol/atol",
            time=float(solved.time_reached),
        )
    return layout.unpack(solved.ys)


def fluctuations(
    config: Config | dict | str | None = None,
    ts=None,
    *,
    discrete: bool = False,
    noise: bool = True,
    mean_shift: bool = True,
    noise_samples: int | None = None,
    seed: int = 0,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 200_000,
) -> Fluctuations:
    r"""Predict the finite-width fluctuations of a configuration: the per-unit-width covariance
    :math:`\Sigma(t)` of ``y = (a, b, p, nu^A, nu^B)``, SGD's batch-noise covariance, the
    ``O(1/m)`` mean shift and the growth of the off-invariant sectors.

    Args:
        config: a :class:`dynsim.Config`, nested dict, TOML path or ``None`` (the default).
        ts: save times, as in :func:`dynsim.ode.solve` (default: the record grid). With
            ``discrete`` (or for the noise paths of :meth:`Fluctuations.sample`) the times must
            be the record grid.
        discrete: the tangent and the mean path of population SGD at ``train.lr`` (the step map
            the simulator takes), instead of the ODE's: comparisons with simulations are then
            free of the Euler bias. No mean shift or sectors in this mode.
        noise: add SGD's batch-noise covariance (``train.batch``, ``train.lr``), from the
            covariance of the batch field over ``noise_samples`` fresh Monte-Carlo batches per
            step (key ``seed``); default: 16 to 256, 5000 over the run where that fits.
        mean_shift: propagate the off-invariant sectors: the mean shift :math:`\mu_2`, the sector
            growth and the validity horizon (continuous mode only; not for r = 1, n = 0, which has
            no sector).
        rtol, atol, max_steps: the ODE solver's tolerances and step cap.

    Returns:
        A :class:`Fluctuations`; ``cov`` is (T, D, D), ``D = 3r + 2n``, per unit width.

    Raises:
        ConfigError: an invalid configuration, an optimizer other than ``sgd``, bad ``ts``, or
            bad options (each named).
        SolverError: the solve did not reach the end time.

    Example:
        >>> import dynsim
        >>> config = {"data": {"r": 2, "n": 1}, "loss": {"stages": [[1.0, 2.0]]}, "train": {"lr": 0.05},
        ...     "run": {"record_every": 0.25}}
        >>> prediction = dynsim.ode.fluctuations(config, noise=False, mean_shift=False)
        >>> prediction.cov.shape, bool(prediction.cov[0, 0, 0] == 2 * 4.0**4)
        ((9, 8, 8), True)
    """
    config = load_config(config)
    problem = _problem(config, "")
    lr, kind = config.train.lr, config.loss.kind
    total = sum(config.steps_per_stage)
    if noise_samples is None:
        noise_samples = min(NOISE_SAMPLES_MAX, max(NOISE_SAMPLES, -(-NOISE_BATCHES_PER_RUN // total)))
    noise_samples = check_count("noise_samples", noise_samples, 2)
    steps = record_steps(total, steps_per_record(config.run.record_every, lr))
    on_grid = ts is None
    if ts is not None:
        times = _check_times(ts, problem.end, "")
        on_grid = times.shape == problem.grid.shape and np.allclose(times, problem.grid, rtol=0, atol=1e-9 * lr)
        if discrete and not on_grid:
            raise ConfigError("ts must be the record grid with discrete=True (the steps of the simulator)")
    times = problem.grid if on_grid else times
    with jax.enable_x64(True):
        args = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), problem.args)
        if discrete or noise:
            path = _tangent.discrete_path(
                jax.random.PRNGKey(seed),
                args,
                jnp.float64(lr),
                jnp.asarray(steps, jnp.int32),
                kind=kind,
                steps_per_stage=config.steps_per_stage,
                batch=config.train.batch,
                samples=noise_samples,
                noise=noise,
            )
            ys, phis, covs, propagators, injected, rates = (np.asarray(x) for x in path)
            if not np.all(np.isfinite(ys)):
                raise SolverError("the population SGD path became non-finite: lower train.lr", time=float("nan"))
        else:
            propagators = injected = None
        if not noise:
            rates = np.zeros((problem.grid.size - 1, 0, 0))  # an empty rate: no noise in the solve
        sigma0 = np.asarray(_tangent.initial_variance(args))
        result = dict(
            noise_propagator=propagators if on_grid and noise else None,
            noise_increment=injected if on_grid and noise else None,
            mean_shift=None,
            sector_growth=None,
            off_invariant=None,
            sector_roots=None,
            sector_rows=None,
            sector_mask=None,
        )
        if discrete:
            mean, tangent, noise_cov = ys, phis, covs  # covs is zero without noise
        else:
            has_sectors = config.data.r + 2 * config.data.n >= 2  # r = 1, n = 0 has none
            table = sectors(config.data.r, config.data.n) if mean_shift and has_sectors else None
            sector_arrays = () if table is None else tuple(jnp.asarray(x) for x in table)
            root0 = (
                jnp.zeros((0, 4))
                if table is None
                else jnp.sqrt(_tangent.sector_initial_variance(args, jnp.asarray(table.rows), jnp.asarray(table.mask)))
            )
            solver = {"rtol": float(rtol), "atol": float(atol), "max_steps": int(max_steps)}
            solved = solve_tangent(problem, args, kind, times, sigma0, sector_arrays, root0, rates, **solver)
            y, phi, mu2, psi, p_s = solved
            mean, tangent = np.asarray(y), np.asarray(phi)
            noise_cov = np.asarray(p_s) if noise else np.zeros_like(tangent)
            if table is not None:
                diagnostics = _sector_diagnostics(y, jnp.asarray(times), psi, args, sector_arrays, root0, kind=kind)
                jacs, off, roots = diagnostics
                growth = np.linalg.eigvals(np.asarray(jacs)).real.max(axis=(1, 2))
                result.update(
                    mean_shift=np.asarray(mu2),
                    sector_growth=growth,
                    off_invariant=np.asarray(off),
                    sector_roots=np.asarray(roots),
                    sector_rows=table.rows,
                    sector_mask=table.mask,
                )
        cov = np.einsum("tij,j,tkj->tik", tangent, sigma0, tangent)
    return Fluctuations(
        times=np.asarray(times),
        mean=mean,
        cov=cov,
        noise_cov=noise_cov,
        tangent=tangent,
        r=config.data.r,
        n=config.data.n,
        lr=lr,
        batch=config.train.batch,
        discrete=discrete,
        **result,
    )


__all__ = ["COORDINATES", "Fluctuations", "fluctuations"]
