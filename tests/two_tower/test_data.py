"""Data model (SPEC §1) against its defining moments and spectra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynsim
from dynsim.two_tower.data import basis, latent_map, sample_latents, spectra, spectrum


@pytest.mark.parametrize("profile", ["geometric", "linear", "spike"])
@pytest.mark.parametrize("r", [1, 2, 7])
def test_profiles_have_requested_condition_number(profile, r):
    sigma = spectrum(profile, 5.0, r)
    assert sigma.shape == (r,)
    assert np.all(np.diff(sigma) <= 0)
    np.testing.assert_allclose(sigma.max() / sigma.min(), 5.0 if r > 1 else 1.0)


def test_profile_shapes():
    np.testing.assert_allclose(spectrum("geometric", 8.0, 4), [8.0, 4.0, 2.0, 1.0])
    np.testing.assert_allclose(spectrum("linear", 4.0, 4), [4.0, 3.0, 2.0, 1.0])
    np.testing.assert_allclose(spectrum("spike", 3.0, 3), [3.0, 1.0, 1.0])


def test_config_spectra_unequal_and_explicit():
    config = dynsim.load_config({"data": {"r": 3, "n": 2, "kappa": 4.0, "kappa_b": 2.0}})
    values = spectra(config.data)
    assert values["sigma_a"][0] / values["sigma_a"][-1] == pytest.approx(4.0)
    assert values["sigma_b"][0] / values["sigma_b"][-1] == pytest.approx(2.0)
    np.testing.assert_allclose(values["eta_a"], [0.3, 0.3])
    listed = dynsim.load_config({"data": {"r": 2, "n": 2, "spectrum": "list", "sigma": [3.0, 1.0], "eta": [0.1, 0.2]}})
    values = spectra(listed.data)
    np.testing.assert_allclose(values["sigma_b"], [3.0, 1.0])
    np.testing.assert_allclose(values["eta_b"], [0.1, 0.2])


def test_random_basis_is_orthonormal_and_key_dependent(key):
    columns = basis(key, 20, 12, "random", jnp.float64)
    np.testing.assert_allclose(columns.T @ columns, np.eye(12), atol=1e-13)
    other = basis(jax.random.fold_in(key, 1), 20, 12, "random", jnp.float64)
    assert not np.allclose(columns, other)
    np.testing.assert_array_equal(basis(key, 5, 3, "canonical", jnp.float64), np.eye(5, 3))


def test_second_moments_match_m_mt_plus_h_ht(key):
    r, n, d, samples = 3, 4, 9, 200_000
    k_basis, k_data = jax.random.split(key)
    sigma, eta = jnp.array([2.0, 1.5, 1.0]), jnp.array([0.5, 0.4, 0.3, 0.2])
    columns = basis(k_basis, d, r + n, "random", jnp.float64)
    p = latent_map(columns, sigma, eta)
    u_a, _ = sample_latents(k_data, samples, r, n, jnp.float64)
    x = np.asarray(u_a @ p.T)
    m_mat = np.asarray(columns[:, :r]) * np.asarray(sigma)
    h_mat = np.asarray(columns[:, r:]) * np.asarray(eta)
    expected = m_mat @ m_mat.T + h_mat @ h_mat.T
    # Entries of x x^T have variance <= (sum sigma^2 + sum eta^2)^2; 5 standard errors.
    tolerance = 5 * np.trace(expected) / np.sqrt(samples)
    np.testing.assert_allclose(x.T @ x / samples, expected, atol=tolerance)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=tolerance)


def test_positive_pairs_share_z_and_noises_are_independent(key):
    r, n = 3, 5
    u_a, u_b = sample_latents(key, 50_000, r, n, jnp.float64)
    np.testing.assert_array_equal(u_a[:, :r], u_b[:, :r])
    assert set(np.unique(np.asarray(u_a))) == {-1.0, 1.0}
    cross = np.asarray(u_a[:, r:].T @ u_b[:, r:]) / 50_000
    assert np.max(np.abs(cross)) < 5 / np.sqrt(50_000)
