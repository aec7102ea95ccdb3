"""Model (SPEC §2): normalization and the signal / noise maps."""

import jax
import jax.numpy as jnp
import numpy as np

from dynsim.two_tower.data import basis, latent_map, sample_latents
from dynsim.two_tower.model import embed, init_weights, latent_gram


def _setup(key, width=64, r=3, n=4, d=9):
    k_w, k_b = jax.random.split(key)
    columns = basis(k_b, d, r + n, "random", jnp.float64)
    p = latent_map(columns, jnp.array([3.0, 2.0, 1.0]), jnp.full(n, 0.5))
    w_a, w_b = init_weights(k_w, width, d, jnp.float64)
    return columns, p, w_a, w_b


def test_init_variance_is_one_over_m(key):
    w_a, w_b = init_weights(key, 512, 40, jnp.float64)
    assert w_a.shape == (512, 40) and not np.allclose(w_a, w_b)
    np.testing.assert_allclose(np.var(np.asarray(w_a)) * 512, 1.0, atol=0.02)


def test_population_normalization_has_unit_mean_square(key):
    _, p, w_a, _ = _setup(key)
    u_a, _ = sample_latents(jax.random.fold_in(key, 7), 200_000, 3, 4, jnp.float64)
    f = embed(w_a, p, u_a @ p.T, "population")
    sq = np.sum(np.asarray(f) ** 2, axis=1)
    assert abs(sq.mean() - 1.0) < 5 * sq.std() / np.sqrt(sq.size)


def test_batch_normalization_is_exact_on_the_batch(key):
    _, p, w_a, _ = _setup(key)
    u_a, _ = sample_latents(key, 17, 3, 4, jnp.float64)
    f = embed(w_a, p, u_a @ p.T, "batch")
    np.testing.assert_allclose(np.mean(np.sum(np.asarray(f) ** 2, axis=1)), 1.0, rtol=1e-14)


def test_latent_gram_holds_signal_and_noise_maps(key):
    r, n = 3, 4
    columns, p, w_a, w_b = _setup(key, r=r, n=n)
    sigma, eta = np.array([3.0, 2.0, 1.0]), np.full(n, 0.5)
    u, v = np.asarray(columns[:, :r]), np.asarray(columns[:, r:])
    s_a, n_a = np.asarray(w_a) @ u @ np.diag(sigma), np.asarray(w_a) @ v @ np.diag(eta)
    s_b, n_b = np.asarray(w_b) @ u @ np.diag(sigma), np.asarray(w_b) @ v @ np.diag(eta)
    q = np.asarray(latent_gram(w_a, w_b, p, p))
    np.testing.assert_allclose(q[:r, :r], s_a.T @ s_a, rtol=1e-12)
    np.testing.assert_allclose(q[r : r + n, r : r + n], n_a.T @ n_a, rtol=1e-12)
    np.testing.assert_allclose(q[:r, 7 : 7 + r], s_a.T @ s_b, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(q[7 + r :, 7 + r :], n_b.T @ n_b, rtol=1e-12)
    # f_A(x) = (S_A z + N_A xi) / Z_A with Z_A^2 = ||S_A||_F^2 + ||N_A||_F^2
    u_a, _ = sample_latents(key, 5, r, n, jnp.float64)
    u_a = np.asarray(u_a)
    expected = (u_a[:, :r] @ s_a.T + u_a[:, r:] @ n_a.T) / np.sqrt(np.sum(s_a**2) + np.sum(n_a**2))
    np.testing.assert_allclose(embed(w_a, p, u_a @ np.asarray(p).T, "population"), expected, rtol=1e-12)
