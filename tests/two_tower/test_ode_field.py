"""The reduced vector field (SPEC §5) against derivations that do not use its closed form.

- the reduced loss against the expectation over negatives, enumerated;
- the closed-form field against the Gram-space gradient flow ``dK/dt = -2 gamma (Gs K + K Gs)``
  with ``Gs`` from automatic differentiation of the reduced loss through the Gram entries;
- the full ``2(r+n) × 2(r+n)`` Gram flow of the population loss of the model itself
  (enumerated over every sign pattern), started at ``K = I``: it stays diagonal, and its
  diagonal follows ``dynsim.ode.solve``;
- the infinite-width metrics against the finite-width metrics code on a diagonal Gram matrix.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from enumeration import gram_flow, population_loss, signs

import dynsim
from dynsim.losses import LOSSES
from dynsim.two_tower import reduced as _reduced
from dynsim.two_tower.observables import metrics as finite_metrics

KINDS = ("infonce", "positive", "spectral")


@pytest.mark.parametrize("tau, lam", [(0.3, 1.0), (2.0, 0.5), (7.0, 3.0)])
def test_reduced_loss_is_the_expectation_over_negatives(tau, lam):
    rng = np.random.default_rng(1)
    c = rng.uniform(-0.4, 0.6, size=5)
    z = rng.choice([-1.0, 1.0], size=5)
    negatives = (signs(5) * z) @ c  # <f_A(x_A), f_B(x_B')> for every x_B'
    expected_infonce = -tau * c.sum() + np.log(np.exp(tau * c.sum()) + lam * np.mean(np.exp(tau * negatives)))
    expected_spectral = -2 * c.sum() + lam * np.mean(negatives**2)
    assert float(_reduced.reduced_loss(jnp.asarray(c), tau, lam, "infonce")) == pytest.approx(expected_infonce, 1e-13)
    assert float(_reduced.reduced_loss(jnp.asarray(c), tau, lam, "spectral")) == pytest.approx(expected_spectral, 1e-13)
    assert float(_reduced.reduced_loss(jnp.asarray(c), tau, lam, "positive")) == pytest.approx(-tau * c.sum(), 1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_sensitivities_are_the_gradient_of_the_reduced_loss(kind):
    c = jnp.asarray(np.random.default_rng(2).uniform(-0.5, 0.5, size=6))
    for tau in (0.05, 1.0, 20.0):
        by_autodiff = jax.grad(_reduced.reduced_loss)(c, tau, 1.5, kind)
        np.testing.assert_allclose(_reduced.sensitivities(c, tau, 1.5, kind), by_autodiff, rtol=1e-12, atol=1e-14)


def _random_state(rng, r, n):
    sigma2_a, sigma2_b = rng.uniform(0.5, 4.0, r), rng.uniform(0.5, 4.0, r)
    eta2_a, eta2_b = rng.uniform(0.05, 0.5, n), rng.uniform(0.05, 0.5, n)
    a, b = rng.uniform(0.5, 3.0, r), rng.uniform(0.5, 3.0, r)
    p = rng.uniform(-0.5, 1.0, r) * np.sqrt(a * b)
    y = np.concatenate([a, b, p, rng.uniform(0.05, 0.5, n), rng.uniform(0.05, 0.5, n)])
    return y, (sigma2_a, sigma2_b, eta2_a, eta2_b)


def _field_by_gram_autodiff(y, spectra, tau, gamma, lam, kind):
    """``dy/dt`` from ``dK/dt = -2 gamma (Gs K + K Gs)``, ``Gs = sym(dL/dK)`` by ``jax.grad``."""
    sigma2_a, sigma2_b, eta2_a, eta2_b = spectra
    r, n = len(sigma2_a), len(eta2_a)
    q = r + n
    d = np.sqrt(np.concatenate([sigma2_a, eta2_a, sigma2_b, eta2_b]))  # Q = D K D
    s = _reduced.split(jnp.asarray(y), r)
    diag_q = np.concatenate([s["a"], s["nu_a"], s["b"], s["nu_b"]])
    signal = np.arange(r)
    k = np.diag(diag_q / d**2)
    k[signal, q + signal] = k[q + signal, signal] = s["p"] / (d[signal] * d[q + signal])

    def loss_of_gram(k):
        gram = d[:, None] * k * d[None, :]
        alpha, beta = jnp.trace(gram[:q, :q]), jnp.trace(gram[q:, q:])
        return _reduced.reduced_loss(gram[signal, q + signal] / jnp.sqrt(alpha * beta), tau, lam, kind)

    grad = jax.grad(loss_of_gram)(jnp.asarray(k))
    gs = (grad + grad.T) / 2
    dq = d[:, None] * (-2 * gamma * (gs @ k + k @ gs)) * d[None, :]
    dd = jnp.diagonal(dq)
    return np.concatenate([dd[:r], dd[q : q + r], dq[signal, q + signal], dd[r:q], dd[q + r :]])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tau, gamma", [(0.05, 20.0), (1.0, 1.0), (8.0, 0.125)])
def test_closed_form_field_equals_gram_space_gradient_flow(kind, tau, gamma):
    rng = np.random.default_rng(3)
    for _ in range(3):
        y, spectra = _random_state(rng, r=4, n=3)
        args = _reduced.ReducedArgs(
            *map(jnp.asarray, spectra),
            taus=jnp.array([tau]),
            gammas=jnp.array([gamma]),
            boundaries=jnp.zeros(0),
            lam=jnp.asarray(0.7),
        )
        closed = np.asarray(_reduced.vector_field(0.0, jnp.asarray(y), args, kind))
        expected = _field_by_gram_autodiff(y, spectra, tau, gamma, 0.7, kind)
        np.testing.assert_allclose(closed, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def test_field_and_loss_are_finite_at_extreme_tau_and_many_coordinates():
    r, n = 64, 192
    rng = np.random.default_rng(4)
    y, spectra = _random_state(rng, r, n)
    for tau in (1e-3, 50.0, 1e4):
        args = _reduced.ReducedArgs(
            *map(jnp.asarray, spectra),
            taus=jnp.array([tau]),
            gammas=jnp.array([1.0]),
            boundaries=jnp.zeros(0),
            lam=jnp.asarray(1.0),
        )
        assert np.all(np.isfinite(_reduced.vector_field(0.0, jnp.asarray(y), args, "infonce")))
        c, _, _ = _reduced.cosines(jnp.asarray(y), r)
        assert np.isfinite(float(_reduced.reduced_loss(c, tau, 1.0, "infonce")))


@pytest.mark.parametrize("kind", KINDS)
def test_full_gram_flow_stays_diagonal_and_follows_the_reduced_ode(kind):
    r, n = 2, 1
    q = r + n
    config = dynsim.load_config(
        {
            "data": {"r": r, "n": n, "spectrum": "list", "sigma": [1.6, 1.0], "sigma_b": [1.2, 0.9], "noise": 0.6},
            "loss": {"kind": kind, "stages": [[0.5, 1.0], [3.0, 1.0]], "lam": 0.8},
            "train": {"lr": 0.1},
            "run": {"record_every": 1.0},
        }
    )
    d = np.array([1.6, 1.0, 0.6, 1.2, 0.9, 0.6])
    ends = gram_flow(d, r, n, config.loss.stages, 0.8, kind, dt=0.01)
    solution = dynsim.ode.solve(config, rtol=1e-11, atol=1e-13)
    signal = np.arange(r)
    keep = np.eye(2 * q, dtype=bool)
    keep[signal, q + signal] = keep[q + signal, signal] = True
    for k, index in zip(ends, (1, 2), strict=True):
        assert np.abs(k[~keep]).max() < 1e-14
        gram = d[:, None] * k * d[None, :]
        diag = np.diagonal(gram)
        flow = np.concatenate([diag[:r], diag[q : q + r], gram[signal, q + signal], diag[r:q], diag[q + r :]])
        ode = np.concatenate([getattr(solution, name)[index] for name in ("a", "b", "p", "nu_a", "nu_b")])
        assert np.abs(ode[2 * r : 3 * r]).min() > 0.05  # the cross terms p_k have grown
        np.testing.assert_allclose(flow, ode, rtol=1e-8, atol=1e-10)


def test_population_loss_gradient_is_not_diagonal_off_the_invariant_set():
    # The invariance above is a property of the loss, not of the test: at a generic K the
    # gradient has off-diagonal entries of order one.
    r, n = 2, 1
    rng = np.random.default_rng(5)
    noise = rng.normal(size=(6, 6))
    k = jnp.eye(6) + 0.2 * (noise + noise.T)
    grad = jax.grad(population_loss)(k, np.ones(6), r, n, 1.0, 1.0, "infonce")
    assert np.abs(np.asarray(grad) - np.diag(np.diagonal(grad)))[:3, 3:].max() > 1e-2


def _diagonal_gram(y, r):
    s = {name: np.asarray(v) for name, v in _reduced.split(jnp.asarray(y), r).items()}
    q = r + len(s["nu_a"])
    gram = np.diag(np.concatenate([s["a"], s["nu_a"], s["b"], s["nu_b"]]))
    gram[np.arange(r), q + np.arange(r)] = gram[q + np.arange(r), np.arange(r)] = s["p"]
    return jnp.asarray(gram)


@pytest.mark.parametrize("kind", ["positive", "spectral"])
def test_infinite_width_metrics_equal_the_finite_width_metrics_at_a_diagonal_gram(key, kind):
    r, n, samples = 3, 2, 3000
    rng = np.random.default_rng(6)
    y, _ = _random_state(rng, r, n)
    y[2 * r : 3 * r] = np.abs(y[2 * r : 3 * r]) * [1.0, -0.6, 0.3]  # mixed signs: a non-trivial score
    infinite = _reduced.metrics(jnp.asarray(y), 1.3, 0.9, r, kind)
    finite = finite_metrics(
        _diagonal_gram(y, r),
        r,
        key,
        loss_fn=LOSSES[kind],
        tau=1.3,
        lam=0.9,
        normalization="population",
        samples=samples,
    )
    for name in ("rho_min", "rho_mean", "kappa_a", "kappa_b", "balance", "nsr"):
        assert float(infinite[name]) == pytest.approx(float(finite[name]), rel=1e-12), name
    assert float(finite["offdiag"]) == pytest.approx(0.0, abs=1e-15) and float(infinite["offdiag"]) == 0.0
    # Sampled estimates: the alignment score within 4 binomial standard errors; the loss
    # exactly for `positive` (s_ii = S on every sample) and within a few percent for `spectral`.
    score = float(_reduced.alignment_score(jnp.asarray(y[2 * r : 3 * r])))
    assert 0.2 < score < 0.8
    assert abs(float(finite["alignment"]) - score) < 4 * np.sqrt(score * (1 - score) / samples)
    assert float(finite["loss"]) == pytest.approx(float(infinite["loss"]), rel=1e-12 if kind == "positive" else 0.03)


def test_alignment_score_counts_subsets_with_positive_sum(reference):
    rng = np.random.default_rng(7)
    for r in (1, 3, 6, 10):
        p = rng.normal(size=r)
        assert float(_reduced.alignment_score(jnp.asarray(p))) == pytest.approx(reference.alignment(p), abs=1e-15)
    assert float(_reduced.alignment_score(jnp.ones(14))) == 1 - 2.0**-14
    assert float(_reduced.alignment_score(jnp.zeros(5))) == 0.0
    # Beyond r = 12 the mixed-sign score is estimated on 4096 fixed patterns.
    p = np.concatenate([np.ones(8), -0.5 * np.ones(8)])
    exact = reference.alignment(p)
    assert abs(float(_reduced.alignment_score(jnp.asarray(p))) - exact) < 4 * np.sqrt(exact * (1 - exact) / 4096)
