"""Independent NumPy/SciPy reference for the infinite-width reduced ODE (SPEC §5).

Used only by the tests, as a second implementation to check ``dynsim.ode`` against. It
shares no code with ``dynsim``: the spectra, the closed-form field (derived in this
directory's README.md), the stage handling (one ``scipy.integrate.solve_ivp`` call per
temperature stage, restarted at each boundary) and the metrics are written out again here
in plain NumPy.

State layout: ``y = [a (r), b (r), p (r), nu_a (n), nu_b (n)]``.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import expit


def spectrum(profile: str, kappa: float, r: int) -> np.ndarray:
    """Signal spectrum of SPEC §1 (descending, largest/smallest = kappa)."""
    if profile == "geometric":
        return np.array([kappa ** ((r - k) / (r - 1)) if r > 1 else kappa for k in range(1, r + 1)])
    if profile == "linear":
        return np.array([kappa - (kappa - 1) * k / (r - 1) if r > 1 else kappa for k in range(r)])
    if profile == "spike":
        return np.array([kappa] + [1.0] * (r - 1))
    raise ValueError(profile)


def _log_cosh(x):
    return np.logaddexp(x, -x) - np.log(2.0)


def loss(c, tau, lam, kind):
    """Reduced population loss ``L(c)``."""
    total = np.sum(c)
    if kind == "infonce":
        return np.logaddexp(tau * total, np.log(lam) + np.sum(_log_cosh(tau * c))) - tau * total
    if kind == "positive":
        return -tau * total
    if kind == "spectral":
        return -2 * total + lam * np.dot(c, c)
    raise ValueError(kind)


def sensitivity(c, tau, lam, kind):
    """``u_k = dL/dc_k``; for infonce ``-tau (1 - pi)(1 - tanh(tau c_k))`` with
    ``1 - pi = 1 / (1 + e^{tau S} / (lam prod cosh))`` and ``1 - tanh x = e^{-x} / cosh x``."""
    if kind == "infonce":
        one_minus_pi = expit(np.log(lam) + np.sum(_log_cosh(tau * c)) - tau * np.sum(c))
        return -tau * one_minus_pi * np.exp(-tau * c) / np.cosh(tau * c)
    if kind == "positive":
        return -tau * np.ones_like(c)
    if kind == "spectral":
        return -2 + 2 * lam * c
    raise ValueError(kind)


def field(y, s2a, s2b, e2a, e2b, tau, gamma, lam, kind):
    """``dy/dt`` of SPEC §5 for fixed ``tau`` and ``gamma``."""
    r, n = len(s2a), len(e2a)
    a, b, p = y[:r], y[r : 2 * r], y[2 * r : 3 * r]
    nu_a, nu_b = y[3 * r : 3 * r + n], y[3 * r + n :]
    alpha = a.sum() + nu_a.sum()
    beta = b.sum() + nu_b.sum()
    root = np.sqrt(alpha * beta)
    c = p / root
    u = sensitivity(c, tau, lam, kind)
    g = np.dot(c, u)
    return np.concatenate(
        [
            2 * gamma * s2a * (g * a / alpha - u * p / root),
            2 * gamma * s2b * (g * b / beta - u * p / root),
            gamma * (g * p * (s2a / alpha + s2b / beta) - u * (s2b * a + s2a * b) / root),
            2 * gamma * e2a * g * nu_a / alpha,
            2 * gamma * e2b * g * nu_b / beta,
        ]
    )


def solve(sigma_a, sigma_b, eta_a, eta_b, stages, lam, kind, rescale, t_eval, rtol=1e-11, atol=1e-13, method="DOP853"):
    """Integrate from ``K = I`` through ``stages = [(tau_k, T_k), ...]``, restarting
    ``solve_ivp`` (``method``, DOP853 by default) at each stage boundary; returns ``y`` at ``t_eval`` (T × (3r+2n))."""
    s2a, s2b = np.asarray(sigma_a) ** 2, np.asarray(sigma_b) ** 2
    e2a, e2b = np.asarray(eta_a) ** 2, np.asarray(eta_b) ** 2
    y = np.concatenate([s2a, s2b, np.zeros_like(s2a), e2a, e2b])
    t_eval = np.asarray(t_eval, dtype=float)
    out = np.full((len(t_eval), len(y)), np.nan)
    start = 0.0
    for tau, duration in stages:
        end = start + duration
        gamma = 1 / tau if rescale else 1.0
        inside = (t_eval >= start) & (t_eval <= end)
        times = np.union1d(t_eval[inside], [end])  # sorted; the stage's end is always last
        solution = solve_ivp(
            lambda t, y, tau=tau, gamma=gamma: field(y, s2a, s2b, e2a, e2b, tau, gamma, lam, kind),
            (start, end),
            y,
            method=method,
            t_eval=times,
            rtol=rtol,
            atol=atol,
        )
        assert solution.success, solution.message
        out[inside] = solution.y.T[: np.count_nonzero(inside)]
        y = solution.y[:, -1]
        start = end
    return out


def alignment(p):
    """``2^-r #{T subset of [r] : sum_{k in T} p_k > 0}``, by listing every subset."""
    r = len(p)
    wins = sum(
        sum(p[k] for k in subset) > 0 for size in range(r + 1) for subset in itertools.combinations(range(r), size)
    )
    return wins / 2**r


def metrics(y, r, tau, lam, kind):
    """Metrics of SPEC §4 at one infinite-width state (diagonal Gram blocks)."""
    a, b, p = y[:r], y[r : 2 * r], y[2 * r : 3 * r]
    n = (len(y) - 3 * r) // 2
    nu_a, nu_b = y[3 * r : 3 * r + n], y[3 * r + n :]
    rho = p / np.sqrt(a * b)
    covariance = np.concatenate([a, nu_a])  # eigenvalues of Sigma_A, up to scale
    return {
        "loss": loss(p / np.sqrt((a.sum() + nu_a.sum()) * (b.sum() + nu_b.sum())), tau, lam, kind),
        "rho_min": rho.min(),
        "rho_mean": rho.mean(),
        "kappa_a": np.sqrt(a.max() / a.min()),
        "kappa_b": np.sqrt(b.max() / b.min()),
        "balance": np.sum(covariance**2) / covariance.max() ** 2,
        "alignment": alignment(p),
        "nsr": np.sqrt(nu_a.sum() / a.sum()),
    }
