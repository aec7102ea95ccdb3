"""Losses (SPEC §3) against plain NumPy loops, and gradients against finite differences."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynsim.losses import infonce, positive, spectral
from dynsim.two_tower.data import sample_latents
from dynsim.two_tower.finite import Plan
from dynsim.two_tower.param import batch_loss


def numpy_infonce(s, tau, lam):
    batch = len(s)
    total = 0.0
    for i in range(batch):
        neg_a = np.mean([np.exp(tau * s[i, j]) for j in range(batch) if j != i])
        neg_b = np.mean([np.exp(tau * s[j, i]) for j in range(batch) if j != i])
        pos = np.exp(tau * s[i, i])
        total += (-np.log(pos / (pos + lam * neg_a)) - np.log(pos / (pos + lam * neg_b))) / 2
    return total / batch


def numpy_spectral(s, lam):
    batch = len(s)
    off = sum(s[i, j] ** 2 for i, j in itertools.product(range(batch), repeat=2) if i != j)
    return -2 * np.trace(s) / batch + lam * off / (batch * (batch - 1))


@pytest.mark.parametrize(("tau", "lam"), [(0.05, 1.0), (3.0, 0.5), (10.0, 4.0)])
def test_infonce_equals_numpy_loop(key, tau, lam):
    s = np.asarray(jax.random.uniform(key, (7, 7), jnp.float64, -1, 1))
    np.testing.assert_allclose(infonce(jnp.asarray(s), tau, lam), numpy_infonce(s, tau, lam), rtol=1e-13)


def test_infonce_is_stable_at_large_tau():
    s = jnp.array([[1.0, -1.0], [0.5, 1.0]])
    value = infonce(s, 2000.0, 1.0)
    assert np.isfinite(value) and value >= 0 and value < 1e-100 + 1e-300


def test_spectral_and_positive_equal_numpy(key):
    s = np.asarray(jax.random.normal(key, (6, 6), jnp.float64))
    np.testing.assert_allclose(spectral(jnp.asarray(s), 1.0, 0.7), numpy_spectral(s, 0.7), rtol=1e-13)
    np.testing.assert_allclose(positive(jnp.asarray(s), 2.5, 1.0), -2.5 * np.trace(s) / 6, rtol=1e-14)


def _plan(loss, normalization):
    return Plan(
        width=3,
        r=2,
        n=2,
        d=5,
        batch=6,
        lr=0.1,
        optimizer="sgd",
        momentum=0.0,
        loss=loss,
        normalization=normalization,
        steps_per_stage=(1,),
        record_every=1,
        samples=4,
        dtype="float64",
    )


def _problem(key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    weights = (jax.random.normal(k1, (3, 5), jnp.float64), jax.random.normal(k2, (3, 5), jnp.float64))
    maps = (jax.random.normal(k3, (5, 4), jnp.float64), jax.random.normal(k4, (5, 4), jnp.float64))
    return weights, maps, sample_latents(key, 6, 2, 2, jnp.float64)


@pytest.mark.parametrize("loss", ["infonce", "positive", "spectral"])
@pytest.mark.parametrize("normalization", ["population", "batch"])
def test_gradient_matches_central_differences(key, loss, normalization):
    plan = _plan(loss, normalization)
    weights, maps, latents = _problem(key)
    grads = jax.grad(batch_loss)(weights, maps, latents, 1.7, 0.8, plan)
    h = 1e-6
    for tower in range(2):
        for index in itertools.product(range(3), range(5)):
            bump = [jnp.zeros((3, 5)), jnp.zeros((3, 5))]
            bump[tower] = bump[tower].at[index].set(h)
            up = batch_loss(tuple(w + b for w, b in zip(weights, bump, strict=True)), maps, latents, 1.7, 0.8, plan)
            down = batch_loss(tuple(w - b for w, b in zip(weights, bump, strict=True)), maps, latents, 1.7, 0.8, plan)
            assert float(grads[tower][index]) == pytest.approx(float(up - down) / (2 * h), rel=1e-6, abs=1e-9)


def test_positive_gradient_is_linear_in_tau(key):
    plan = _plan("positive", "population")
    weights, maps, latents = _problem(key)
    g1 = jax.grad(batch_loss)(weights, maps, latents, 1.0, 1.0, plan)
    g3 = jax.grad(batch_loss)(weights, maps, latents, 3.0, 1.0, plan)
    for a, b in zip(g1, g3, strict=True):
        np.testing.assert_allclose(b, 3.0 * a, rtol=1e-13)
