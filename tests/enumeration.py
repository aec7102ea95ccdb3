"""The two-tower population loss and its Gram-space gradient flow by brute-force enumeration of
every latent sign pattern: the independent reference for the reduced ODE and its sectors
(tests/two_tower/test_ode_field.py, tests/two_tower/test_fluctuations.py)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np


def signs(count):
    """Every sign pattern of ``count`` coordinates, (2^count, count)."""
    return np.array(list(itertools.product([-1.0, 1.0], repeat=count))).reshape(-1, count)


def population_loss(k, d, r, n, tau, lam, kind):
    """The model's population loss at a general latent Gram matrix ``K`` (2q × 2q, ``Q = D K D``),
    by enumerating every sign pattern of a positive pair and of an independent negative."""
    q = r + n
    gram = d[:, None] * k * d[None, :]
    cross = gram[:q, q:] / jnp.sqrt(jnp.trace(gram[:q, :q]) * jnp.trace(gram[q:, q:]))
    pairs = signs(r + 2 * n)
    u_a = np.concatenate([pairs[:, :r], pairs[:, r : r + n]], axis=1)
    u_b = np.concatenate([pairs[:, :r], pairs[:, r + n :]], axis=1)
    single = signs(q)
    s_pos = jnp.sum((u_a @ cross) * u_b, axis=1)
    if kind == "positive":
        return -tau * jnp.mean(s_pos)
    s_neg_a = u_a @ cross @ single.T  # anchor x_A, every x_B'
    if kind == "spectral":
        return -2 * jnp.mean(s_pos) + lam * jnp.mean(s_neg_a**2)
    s_neg_b = (single @ cross @ u_b.T).T  # anchor x_B, every x_A'
    log_mean = lambda s: jax.nn.logsumexp(tau * s, axis=1) - np.log(s.shape[1])  # noqa: E731
    loss_a = jnp.logaddexp(tau * s_pos, np.log(lam) + log_mean(s_neg_a)) - tau * s_pos
    loss_b = jnp.logaddexp(tau * s_pos, np.log(lam) + log_mean(s_neg_b)) - tau * s_pos
    return jnp.mean(loss_a + loss_b) / 2


def gram_rate(k, d, r, n, tau, gamma, lam, kind):
    """``dK/dt = -2 gamma (Gs K + K Gs)``, ``Gs`` the symmetrized gradient of :func:`population_loss`."""
    grad = jax.grad(population_loss)(k, d, r, n, tau, lam, kind)
    gs = (grad + grad.T) / 2
    return -2 * gamma * (gs @ k + k @ gs)


def gram_flow(d, r, n, stages, lam, kind, dt, start=None):
    """RK4 on :func:`gram_rate` from ``K = start`` (default ``I``), ``gamma = 1/tau`` per stage;
    ``K`` at each stage's end."""
    k = jnp.eye(2 * (r + n)) if start is None else jnp.asarray(start)
    ends = []
    for tau, duration in stages:

        def rk4(k, _, tau=tau):
            rate = lambda k: gram_rate(k, d, r, n, tau, 1.0 / tau, lam, kind)  # noqa: E731
            k1 = rate(k)
            k2 = rate(k + dt / 2 * k1)
            k3 = rate(k + dt / 2 * k2)
            k4 = rate(k + dt * k3)
            return k + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

        k = jax.lax.scan(rk4, k, None, length=int(round(duration / dt)))[0]
        ends.append(np.asarray(k))
    return ends
