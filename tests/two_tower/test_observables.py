"""Metrics (SPEC §4) on hand-built Gram matrices with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynsim.losses import LOSSES
from dynsim.two_tower.observables import (
    alignment_score,
    condition_number,
    coordinates,
    gram_factor,
    max_offdiagonal_cosine,
    metrics,
    stable_rank,
)


def _gram(s_a, n_a, s_b, n_b):
    maps = np.concatenate([s_a, n_a, s_b, n_b], axis=1)
    return jnp.asarray(maps.T @ maps)


def _metrics(gram, r, key, samples=4000):
    return metrics(
        gram, r, key, loss_fn=LOSSES["infonce"], tau=1.0, lam=1.0, normalization="population", samples=samples
    )


def test_coordinates_read_the_right_blocks(key):
    rng = np.random.default_rng(0)
    s_a, n_a, s_b, n_b = (rng.normal(size=(10, k)) for k in (3, 2, 3, 2))
    y = coordinates(_gram(s_a, n_a, s_b, n_b), 3)
    np.testing.assert_allclose(y["a"], np.sum(s_a**2, axis=0))
    np.testing.assert_allclose(y["b"], np.sum(s_b**2, axis=0))
    np.testing.assert_allclose(y["p"], np.sum(s_a * s_b, axis=0))
    np.testing.assert_allclose(y["nu_a"], np.sum(n_a**2, axis=0))
    np.testing.assert_allclose(y["nu_b"], np.sum(n_b**2, axis=0))


def test_constant_map_has_alignment_zero(key):
    f_a = jax.random.normal(key, (500, 7))
    f_b = jnp.tile(jnp.arange(7.0), (500, 1))
    assert float(alignment_score(f_a, f_b)) == 0.0


def test_identical_orthonormal_maps_align_except_on_ties(key):
    # f_A = f_B = z / sqrt(r): the positive is at distance 0, a negative only ties when z' = z,
    # which has probability 2^-r, so the score is 1 - 2^-r.
    r, width = 2, 6
    s = np.eye(width, r)
    values = _metrics(_gram(s, np.zeros((width, 0)), s, np.zeros((width, 0))), r, key)
    samples = 4000
    assert abs(float(values["alignment"]) - (1 - 2.0**-r)) < 4 * np.sqrt(0.25 * 0.75 / samples)
    assert float(values["rho_min"]) == pytest.approx(1.0)


def test_orthonormal_balanced_maps_have_balance_r_and_kappa_one(key):
    r, width = 4, 12
    s_a = np.eye(width, r)
    s_b = np.eye(width, r, k=-r)
    values = _metrics(_gram(s_a, np.zeros((width, 0)), s_b, np.zeros((width, 0))), r, key, samples=64)
    assert float(values["balance"]) == pytest.approx(r)
    assert float(values["kappa_a"]) == pytest.approx(1.0)
    assert float(values["kappa_b"]) == pytest.approx(1.0)
    assert float(values["offdiag"]) == pytest.approx(0.0, abs=1e-15)
    assert float(values["rho_min"]) == pytest.approx(0.0, abs=1e-15)  # orthogonal towers


def test_known_singular_values_give_known_condition_number_and_stable_rank():
    rng = np.random.default_rng(1)
    q_left, _ = np.linalg.qr(rng.normal(size=(9, 3)))
    q_right, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    singular = np.array([5.0, 2.0, 0.5])
    s = q_left @ np.diag(singular) @ q_right.T
    gram = jnp.asarray(s.T @ s)
    assert float(condition_number(gram)) == pytest.approx(10.0, rel=1e-10)
    # Stable rank of S S^T: sum s_i^4 / s_1^4.
    assert float(stable_rank(gram)) == pytest.approx(np.sum(singular**4) / 5.0**4, rel=1e-10)
    cosines = np.abs(s.T @ s) / np.sqrt(np.outer(np.sum(s**2, 0), np.sum(s**2, 0)))
    assert float(max_offdiagonal_cosine(gram)) == pytest.approx(np.max(cosines - np.diag(np.diag(cosines))))


def test_noise_signal_ratio_and_factor(key):
    r, width = 2, 8
    s_a = np.eye(width, r) * 2.0
    n_a = np.eye(width, 3, k=-r) * 0.5
    values = _metrics(_gram(s_a, n_a, s_a, n_a), r, key, samples=16)
    assert float(values["nsr"]) == pytest.approx(np.sqrt(3 * 0.25) / np.sqrt(2 * 4.0))
    gram = _gram(s_a, n_a, s_a, n_a)
    factor = gram_factor(gram)
    np.testing.assert_allclose(factor.T @ factor, gram, atol=1e-12)
