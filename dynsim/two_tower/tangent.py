r"""The linearization of the two-tower dynamics around its infinite-width path: the maths of
:func:`dynsim.ode.fluctuations` (shared/notes/fluctuations.md §2).

At width ``m`` the latent Gram matrix is :math:`Q = Q_\infty + m^{-1/2} Q_1 + m^{-1} Q_2 + \dots`
with :math:`Q_1(0) = D E D` for the Wishart fluctuation ``E`` of :math:`K_0`. On the invariant
set the field's Jacobian is block-diagonal by sector (:mod:`dynsim.two_tower.sectors`), so

- the state ``y`` fluctuates by :math:`\Phi(t)\,\delta y_0`, with :math:`\dot\Phi = J\Phi` the
  tangent of the reduced ODE and :math:`\mathrm{Cov}\,\delta y_0 = \Sigma_0/m` diagonal
  (:func:`initial_variance`), hence :math:`\Sigma(t) = \Phi\Sigma_0\Phi^T`;
- each off-invariant sector :math:`\chi` evolves alone, :math:`\dot\Psi_\chi = J_\chi\Psi_\chi`;
- the mean moves at order ``1/m``: :math:`\dot\mu_2 = J\mu_2 + \tfrac12 f''[\Sigma] +
  \sum_\chi \tfrac12 F_{\mathcal D}''[P_\chi]`, :math:`P_\chi = \Psi_\chi P_{\chi,0}\Psi_\chi^T`;
- SGD's batch noise adds :math:`\dot P_s = JP_s + P_sJ^T + \eta\,C(t)`, ``C`` the covariance of
  the batch field's invariant part (``∝ 1/B``), or through the step map itself,
  :math:`P_{k+1} = M_k P_k M_k^T + \eta^2 C_k`, :math:`M_k = \partial y_{k+1}/\partial y_k`.

Everything is float64 and written for one configuration; :mod:`dynsim.two_tower.fluctuations`
runs it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.schedule import stage_index, stage_value
from ..losses import LOSSES
from . import reduced as _reduced
from .sectors import ENTRIES, Stage, gradient_field, row_variances, sector_field, traces


class Layout(NamedTuple):
    """The flat state of the continuous solve: ``[y, Phi, mu_2, Psi, P_s]`` (each may be empty)."""

    dim: int
    sectors: int
    noise: bool

    def sizes(self):
        d = self.dim
        return (d, d * d, d if self.sectors else 0, 16 * self.sectors, d * d if self.noise else 0)

    def unpack(self, state):
        """``(y, Phi, mu_2, Psi, P_s)`` of one flat state (or a leading axis of them)."""
        d, s = self.dim, self.sectors
        parts = jnp.split(state, np.cumsum(self.sizes())[:-1], axis=-1)
        lead = state.shape[:-1]
        return (
            parts[0],
            parts[1].reshape(*lead, d, d),
            parts[2],
            parts[3].reshape(*lead, s, 4, 4),
            parts[4].reshape(*lead, d, d) if self.noise else parts[4],
        )


def initial_variance(args: _reduced.ReducedArgs) -> jax.Array:
    r""":math:`\Sigma_0`: the per-unit-width variance of ``y(0)`` (diagonal; Wishart
    :math:`\mathrm{Cov}(K_{ij}, K_{kl}) = (\delta_{ik}\delta_{jl} + \delta_{il}\delta_{jk})/m`):
    :math:`2\sigma_{Ak}^4`, :math:`2\sigma_{Bk}^4`, :math:`\sigma_{Ak}^2\sigma_{Bk}^2`, :math:`2\eta_{Aj}^4`,
    :math:`2\eta_{Bj}^4`."""
    signal = [2 * args.sigma2_a**2, 2 * args.sigma2_b**2, args.sigma2_a * args.sigma2_b]
    return jnp.concatenate([*signal, 2 * args.eta2_a**2, 2 * args.eta2_b**2])


def sector_initial_variance(args: _reduced.ReducedArgs, rows, mask) -> jax.Array:
    r""":math:`P_{\chi,0}`: the per-unit-width variance of each sector entry,
    :math:`\mathrm{Var}\, Q_{ij} = D_i^2 D_j^2` (diagonal), (S, 4)."""
    d2 = row_variances(spectra_of(args))[rows]
    first, second = np.array(ENTRIES).T
    return jnp.where(mask, d2[:, first] * d2[:, second], 0.0)


def spectra_of(args: _reduced.ReducedArgs) -> tuple:
    """``(sigma2_a, sigma2_b, eta2_a, eta2_b)``: the squared spectra the fields read."""
    return (args.sigma2_a, args.sigma2_b, args.eta2_a, args.eta2_b)


def stage_at(args: _reduced.ReducedArgs, t) -> Stage:
    """``tau``, ``gamma`` and ``lam`` at training time ``t``."""
    tau, gamma = stage_value(jnp.stack([args.taus, args.gammas], axis=1), args.boundaries, t)
    return Stage(tau, gamma, args.lam)


def second_derivative(fn, x, v):
    r""":math:`\frac{d^2}{d\epsilon^2} fn(x + \epsilon v)` at 0 (forward over forward)."""
    return jax.jvp(lambda x: jax.jvp(fn, (x,), (v,))[1], (x,), (v,))[1]


def sector_jacobian(y, sector, args, stage: Stage, kind: str):
    r""":math:`J_\chi`: the Jacobian of one sector's entries in themselves at ``y`` (4 × 4)."""
    field = lambda delta: sector_field(y, delta, sector, spectra_of(args), stage, kind)[1]  # noqa: E731
    return jax.jacfwd(field)(jnp.zeros(4))


def sector_forcing(y, root, sector, args, stage: Stage, kind: str):
    r""":math:`\tfrac12 \sum_j F_{\mathcal D}''[L_j, L_j]` for the columns ``L_j`` of ``root``
    (:math:`P_\chi = L L^T`): one sector's push on the invariant state at second order."""
    field = lambda delta: sector_field(y, delta, sector, spectra_of(args), stage, kind)[0]  # noqa: E731
    return 0.5 * jnp.sum(jax.vmap(lambda v: second_derivative(field, jnp.zeros(4), v), in_axes=1)(root), axis=0)


def continuous_field(t, state, problem, *, layout: Layout, kind: str):
    """The time derivative of the flat state ``[y, Phi, mu_2, Psi, P_s]`` (:class:`Layout`).

    ``problem = (args, sigma0, sectors, root0, grid, noise_rate)``: the reduced arguments, the
    initial variance, the sector table (a tuple of arrays), each sector's initial standard
    deviations (S, 4), and the batch-noise rate :math:`\\eta C` per interval of ``grid``.
    """
    args, sigma0, sector_table, root0, grid, noise_rate = problem
    y, phi, mu2, psi, p_s = layout.unpack(state)
    field = lambda y: _reduced.vector_field(t, y, args, kind)  # noqa: E731
    jac = jax.jacfwd(field)(y)
    parts = [field(y), jac @ phi]
    if layout.sectors:
        stage = stage_at(args, t)
        columns = phi * jnp.sqrt(sigma0)[None, :]
        own = 0.5 * jnp.sum(jax.vmap(lambda v: second_derivative(field, y, v), in_axes=1)(columns), axis=0)

        def one(sector, psi_chi, root):
            jac_chi = sector_jacobian(y, sector, args, stage, kind)
            push = sector_forcing(y, psi_chi * root[None, :], sector, args, stage, kind)
            return jac_chi @ psi_chi, push

        dpsi, pushes = jax.vmap(one)(sector_table, psi, root0)
        parts += [jac @ mu2 + own + jnp.sum(pushes, axis=0), dpsi.reshape(-1)]
    if layout.noise:
        interval = jnp.clip(jnp.searchsorted(grid, t, side="right") - 1, 0, grid.shape[0] - 2)
        parts.append((jac @ p_s + p_s @ jac.T + noise_rate[interval]).reshape(-1))
    parts[1] = parts[1].reshape(-1)
    return jnp.concatenate(parts)


def population_gradient(y, stage: Stage, kind: str, r: int):
    r""":math:`(\partial\ell/\partial p, \partial\ell/\partial\alpha, \partial\ell/\partial\beta)` of the
    reduced population loss :math:`\ell = L(p/\sqrt{\alpha\beta})` (SPEC §5)."""
    loss = lambda p, alpha, beta: _reduced.reduced_loss(p / jnp.sqrt(alpha * beta), stage.tau, stage.lam, kind)  # noqa: E731
    return jax.grad(loss, argnums=(0, 1, 2))(_reduced.split(y, r)["p"], *traces(y, r))


def batch_gradient(z, y, stage: Stage, kind: str, r: int):
    r"""The same gradient for the batch loss of one batch of positive pairs with signal signs ``z``
    (B × r). At a point of :math:`\mathcal D` the pairs' noise signs do not enter
    (:math:`s_{ij} = \sum_k z^i_k c_k z^j_k`), and both normalizations give
    :math:`Z_A^2 = \alpha` (every latent sign squares to 1)."""

    def loss(p, alpha, beta):
        similarity = (z * (p / jnp.sqrt(alpha * beta))) @ z.T
        return LOSSES[kind](similarity, stage.tau, stage.lam)

    return jax.grad(loss, argnums=(0, 1, 2))(_reduced.split(y, r)["p"], *traces(y, r))


def step_map(y, stage: Stage, args, lr, kind: str):
    r"""One population SGD step on :math:`\mathcal D`, exactly as the Gram-space simulator takes it:
    :math:`Q \leftarrow (I - 2\eta\gamma D^2 G) Q (I - 2\eta\gamma G D^2)`, block by block
    (2 × 2 per signal coordinate, a scalar per noise coordinate), ``G`` the population gradient."""
    r = args.sigma2_a.shape[0]
    g_p, g_alpha, g_beta = population_gradient(y, stage, kind, r)
    s = _reduced.split(y, r)
    step = 2 * lr * stage.gamma
    # T = I - step D^2 G per signal coordinate:
    # [[1 - step sA g_alpha, -step sA g_p/2], [-step sB g_p/2, 1 - step sB g_beta]]
    t11, t12 = 1 - step * args.sigma2_a * g_alpha, -step * args.sigma2_a * g_p / 2
    t21, t22 = -step * args.sigma2_b * g_p / 2, 1 - step * args.sigma2_b * g_beta
    a, b, p = s["a"], s["b"], s["p"]
    new_a = t11 * t11 * a + 2 * t11 * t12 * p + t12 * t12 * b
    new_b = t21 * t21 * a + 2 * t21 * t22 * p + t22 * t22 * b
    new_p = t11 * t21 * a + (t11 * t22 + t12 * t21) * p + t12 * t22 * b
    new_nu_a = (1 - step * args.eta2_a * g_alpha) ** 2 * s["nu_a"]
    new_nu_b = (1 - step * args.eta2_b * g_beta) ** 2 * s["nu_b"]
    return jnp.concatenate([new_a, new_b, new_p, new_nu_a, new_nu_b])


def batch_field_covariance(key, y, stage: Stage, args, kind: str, batch: int, samples: int):
    r"""``C``: the covariance over batches of the batch field's invariant part
    (:func:`~dynsim.two_tower.sectors.gradient_field` of :func:`batch_gradient`), by Monte Carlo
    over ``samples`` independent batches of ``batch`` pairs."""
    r = args.sigma2_a.shape[0]
    z = jax.random.rademacher(key, (samples, batch, r), dtype=y.dtype)

    def field(z):
        return gradient_field(y, *batch_gradient(z, y, stage, kind, r), spectra_of(args), stage.gamma)

    fields = jax.vmap(field)(z)
    centered = fields - jnp.mean(fields, axis=0)
    return centered.T @ centered / (samples - 1)


@functools.partial(jax.jit, static_argnames=("kind", "steps_per_stage", "batch", "samples", "noise"))
def discrete_path(key, args, lr, record_steps, *, kind, steps_per_stage, batch, samples, noise):
    r"""The population SGD path on :math:`\mathcal D` with its tangent and its batch noise, recorded
    at ``record_steps`` (an increasing int array starting at 0).

    Per step ``k``: :math:`y_{k+1} = ` :func:`step_map` ``(y_k)``, :math:`M_k = \partial y_{k+1}/\partial y_k`,
    and (with ``noise``) :math:`\eta^2 C_k` from :func:`batch_field_covariance` on fresh batches
    (key ``fold_in(key, k)``). Returns, per record: ``y`` (T, D), the tangent :math:`\Phi` (T, D, D)
    and the noise covariance :math:`P` (T, D, D); per interval between records: its propagator
    :math:`\prod M_k`, its own noise :math:`\sum (\prod M) \eta^2 C_k (\prod M)^T` and the mean
    noise rate :math:`\eta C` (each (T-1, D, D)).
    """
    y0 = _reduced.initial_state(args)
    dim = y0.shape[0]
    eye = jnp.eye(dim, dtype=y0.dtype)

    def one_step(k, carry):
        y, propagator, injected, rate = carry
        stage = _stage_of_step(args, k, steps_per_stage)
        step = lambda y: step_map(y, stage, args, lr, kind)  # noqa: E731
        y_next, jac = step(y), jax.jacfwd(step)(y)
        propagator = jac @ propagator
        injected = jac @ injected @ jac.T
        if noise:
            cov = lr**2 * batch_field_covariance(jax.random.fold_in(key, k), y, stage, args, kind, batch, samples)
            injected, rate = injected + cov, rate + cov / lr
        return y_next, propagator, injected, rate

    def interval(carry, bounds):
        y, phi, cov = carry
        start, stop = bounds
        zero = jnp.zeros_like(eye)
        y, propagator, injected, rate = jax.lax.fori_loop(start, stop, one_step, (y, eye, zero, zero))
        phi, cov = propagator @ phi, propagator @ cov @ propagator.T + injected
        rate = rate / jnp.maximum(stop - start, 1)
        return (y, phi, cov), (y, phi, cov, propagator, injected, rate)

    bounds = (record_steps[:-1], record_steps[1:])
    zero = jnp.zeros_like(eye)
    _, (ys, phis, covs, propagators, injected, rates) = jax.lax.scan(interval, (y0, eye, zero), bounds)
    first = lambda x0, xs: jnp.concatenate([x0[None], xs])  # noqa: E731
    return first(y0, ys), first(eye, phis), first(zero, covs), propagators, injected, rates


def _stage_of_step(args, k, steps_per_stage):
    index = stage_index(k, steps_per_stage)
    return Stage(args.taus[index], args.gammas[index], args.lam)
