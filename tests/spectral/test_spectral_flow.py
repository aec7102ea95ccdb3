"""Gradient flow of specs/spectral.md §5 against an independent Riccati solve, diffrax and its asymptotics.

§6 checks 4, 5 (reference side), 6 and 8.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

from dynsim.engine.config import ConfigError
from dynsim.engine.infinite import Integration, SolverError
from dynsim.spectral import flow as spectral_flow
from dynsim.spectral import graph as spectral_graph
from dynsim.spectral import observables

ILLUSTRATION = (3, 2, 4, (0.5, 0.3, 0.15, 0.05))  # spec §1: r, S, n, theta; γ = 1, 0.855625 ×2, 0.4225 ×3, 0.25 ×18

# Save times shared by the diffrax tests, so that their tabular solves share one compile.
TS = jnp.asarray([0.0, 2.0, 10.0, 40.0, 120.0])
# F(t) at every save time, one compile per shape.
trajectory = jax.jit(jax.vmap(spectral_flow.riccati, in_axes=(None, None, None, 0)))
population_loss = jax.jit(observables.population_loss)
subspace_sine = jax.jit(observables.subspace_sine)


def _lazy_path_file(tmp_path, size=8):
    """A non-regular user graph: a lazy walk on a path (reflecting ends) under a linearly rising prior."""
    aug = 0.5 * np.eye(size) + 0.25 * (np.eye(size, k=1) + np.eye(size, k=-1))
    aug[0, 0] = aug[-1, -1] = 0.75
    prior = np.arange(1.0, size + 1) / (size * (size + 1) / 2)
    path = tmp_path / "path.npz"
    np.savez(path, W=aug.T @ (prior[:, None] * aug), labels=np.arange(size) * 2 // size)
    return spectral_graph.load_graph(path)


def _solve(rhs, y0, ts):
    solution = scipy.integrate.solve_ivp(
        rhs, (0.0, ts[-1]), y0.ravel(), t_eval=ts, method="DOP853", rtol=1e-12, atol=1e-14
    )
    assert solution.success
    return solution.y.T.reshape(len(ts), *y0.shape)


def _pi_ode(adjacency, F0, ts):
    """Π(t) from dΠ/dt = 4(ĀΠ + ΠĀ − 2Π²) with scipy's DOP853, independently of the closed form.

    Rank k is invariant but repels: an error off range Π grows like e^{8γ_{k+1}t}, so this
    reference holds at short times only.
    """

    def rhs(t, y):
        pi = y.reshape(adjacency.shape)
        return (4 * (adjacency @ pi + pi @ adjacency - 2 * pi @ pi)).ravel()

    return _solve(rhs, F0 @ F0.T, ts)


def _f_ode(adjacency, F0, ts):
    """F(t) from dF/dt = 4(Ā − FFᵀ)F with scipy's DOP853: stable at any time."""

    def rhs(t, y):
        F = y.reshape(F0.shape)
        return (4 * (adjacency - F @ F.T) @ F).ravel()

    return _solve(rhs, F0, ts)


def _gram(states):
    return np.einsum("tik,tjk->tij", states, states)


RICCATI_GRAPHS = {
    "hsbm": lambda tmp_path: spectral_graph.hsbm(2, 2, 2, (0.3, 0.5, 0.1, 0.1)),
    "singular": lambda tmp_path: spectral_graph.hsbm(2, 2, 2, (0.0, 0.7, 0.2, 0.1)),  # γ_node = θ0² = 0
    "path": _lazy_path_file,
}


@pytest.mark.parametrize("family", RICCATI_GRAPHS)
def test_riccati_matches_independent_ode_solve(family, tmp_path):
    graph = RICCATI_GRAPHS[family](tmp_path)
    gammas, vectors = spectral_graph.eigensystem(graph)
    gammas = np.where(np.abs(gammas) < 1e-12, 0.0, gammas)  # exact zeros take the 8t branch
    F0 = 0.3 * np.random.default_rng(0).normal(size=(8, 3))
    ts = np.array([0.0, 0.3, 1.0, 4.0, 12.0, 30.0])  # one closed-form step in K is NaN by t = 12
    F = np.asarray(trajectory(jnp.asarray(gammas), jnp.asarray(vectors), jnp.asarray(F0), jnp.asarray(ts)))
    np.testing.assert_allclose(F[0], F0, rtol=0, atol=1e-15)
    adjacency = spectral_graph.normalized_adjacency(graph)
    np.testing.assert_allclose(_gram(F[:4]), _pi_ode(adjacency, F0, ts[:4]), atol=1e-9)
    np.testing.assert_allclose(_gram(F[3:]), _gram(_f_ode(adjacency, F0, ts[3:])), atol=1e-10)


def test_riccati_stays_finite_at_late_times():
    graph = spectral_graph.hsbm(2, 2, 2, (0.3, 0.5, 0.1, 0.1))  # γ: 1, 0.64, 0.49 ×2, 0.09 ×4
    gammas, vectors = spectral_graph.eigensystem(graph)
    F0 = jnp.asarray(0.3 * np.random.default_rng(1).normal(size=(8, 4)))
    F = trajectory(jnp.asarray(gammas), jnp.asarray(vectors), F0, jnp.asarray([200.0, 5000.0]))
    optimum = (vectors[:, :4] * gammas[:4]) @ vectors[:, :4].T  # U_k Λ_k U_kᵀ (e^{8t} overflows past t ≈ 88)
    np.testing.assert_allclose(_gram(np.asarray(F)), np.stack([optimum, optimum]), atol=1e-12)


def test_fields_are_negative_gradients():
    # −∇L(Φ) = 4WΦ − 4DΦΦᵀDΦ (checked against jax.grad and finite differences in
    # test_spectral_observables.py), and ∇_V L(ΨV) = Ψᵀ ∇_Φ L by the chain rule.
    rng = np.random.default_rng(2)
    weights = rng.uniform(size=(7, 7))
    weights = (weights + weights.T) / np.sum(weights + weights.T)
    degrees, features = weights.sum(axis=1), rng.normal(size=(7, 4))
    phi, V = rng.normal(size=(7, 3)), rng.normal(size=(4, 3))

    def descent(phi):
        return 4 * weights @ phi - 4 * np.diag(degrees) @ phi @ phi.T @ np.diag(degrees) @ phi

    tabular = spectral_flow.tabular_field(0.0, jnp.asarray(phi), (jnp.asarray(weights), jnp.asarray(degrees)))
    np.testing.assert_allclose(tabular, descent(phi), rtol=1e-12)
    args = (features.T @ weights @ features, features.T @ (degrees[:, None] * features))
    linear = spectral_flow.linear_field(0.0, jnp.asarray(V), tuple(map(jnp.asarray, args)))
    np.testing.assert_allclose(linear, features.T @ descent(features @ V), rtol=1e-12)


def test_closed_form_matches_diffrax_on_regular_graph():
    graph = spectral_graph.hsbm(2, 2, 2, (0.3, 0.5, 0.1, 0.1))
    phis = jnp.asarray(0.5 * np.random.default_rng(3).normal(size=(2, 8, 3)))
    closed = jax.vmap(lambda phi: spectral_flow.flow(graph, phi, TS))(phis)  # Φ-space time; F-space is t / 8
    for seed in range(2):
        integrated = spectral_flow.flow(graph, phis[seed], TS, method="diffrax")
        np.testing.assert_allclose(_gram(np.asarray(closed[seed])), _gram(np.asarray(integrated)), atol=1e-8)


def test_linear_encoder_with_orthogonal_features_is_tabular(tmp_path):
    # Φ = ΨV with ΨΨᵀ = I follows dΦ/dt = ΨΨᵀ(−∇L) = −∇L: one-hot features (Ψ = I) and a rotation.
    graph = _lazy_path_file(tmp_path)  # not regular: both go through diffrax
    phi0 = jnp.asarray(0.5 * np.random.default_rng(4).normal(size=(8, 3)))
    tabular = spectral_flow.flow(graph, phi0, TS)
    for features in (np.eye(8), np.linalg.qr(np.random.default_rng(5).normal(size=(8, 8)))[0]):
        V0 = jnp.stack([features.T @ phi0, jnp.zeros((8, 3))])  # a second seed, to run under vmap
        V = jax.vmap(lambda v, f=features: spectral_flow.flow(graph, v, TS, encoder="linear", features=f))(V0)
        np.testing.assert_allclose(features @ V[0], tabular, rtol=1e-9, atol=1e-11)
        np.testing.assert_array_equal(V[1], 0.0)  # Φ = 0 is a fixed point


def test_linear_encoder_reaches_the_generalized_eigen_minimum(tmp_path):
    # Minimizers span the top-k generalized eigenvectors of (M₊, Σ): L* = −Σ_{i≤k} μ_i².
    graph = _lazy_path_file(tmp_path)
    features = np.sqrt(8) * np.random.default_rng(6).normal(size=(8, 4))
    positive, second = features.T @ graph.W @ features, features.T @ (graph.degrees[:, None] * features)
    mu = scipy.linalg.eigh(positive, second, eigvals_only=True)[::-1]
    assert mu[2] > mu[3] + 0.05
    # Zero feature columns leave their rows of V still (zero gradient): d = 4 in effect, at the
    # shapes of the test above, so that the two share one compile.
    padded = np.pad(features, ((0, 0), (0, 4)))
    V0 = jnp.asarray(0.1 * np.random.default_rng(7).normal(size=(2, 8, 3)))
    V = jax.vmap(lambda v: spectral_flow.flow(graph, v, 4 * TS, encoder="linear", features=padded))(V0)
    for seed in range(2):
        loss = population_loss(jnp.asarray(padded) @ V[seed, -1], jnp.asarray(graph.W), jnp.asarray(graph.degrees))
        assert float(loss) == pytest.approx(-np.sum(mu[:3] ** 2), abs=1e-9)


@pytest.mark.parametrize("k", [3, 6])  # r and rS: unique top-k eigenspaces
def test_subspace_error_decays_at_the_eigengap_rate(k):
    graph = spectral_graph.hsbm(*ILLUSTRATION)
    gammas, vectors = spectral_graph.eigensystem(graph)
    F0 = jnp.asarray(0.1 * np.random.default_rng(7).normal(size=(24, k)))
    ts = np.linspace(0.0, 10.0 / (gammas[k - 1] - gammas[k]), 400)  # the sine falls to about e^{-40}
    F = trajectory(jnp.asarray(gammas), jnp.asarray(vectors), F0, jnp.asarray(ts))
    sines = np.asarray(jax.vmap(subspace_sine, in_axes=(0, None))(F, jnp.asarray(vectors[:, :k])))
    late = (sines < 1e-3) & (sines > 1e-11)
    assert late.sum() > 50
    slope = np.polyfit(ts[late], np.log(sines[late]), 1)[0]
    assert slope == pytest.approx(-4 * (gammas[k - 1] - gammas[k]), rel=0.02)


def test_stepwise_plateaus_and_exits():
    # γ: 1, 0.49, 0.2025 ×2, 0.01 ×8; k = 4 learns the first three levels one after another.
    graph = spectral_graph.hsbm(2, 2, 3, (0.1, 0.55, 0.2, 0.15))
    gammas, vectors = spectral_graph.eigensystem(graph)
    s0, k = 1e-6, 4
    F0 = jnp.asarray(np.sqrt(s0) * vectors[:, :k])  # eigen-aligned: s_i(0) = s0
    ts = np.linspace(0.0, 12.0, 2401)
    F = np.asarray(trajectory(jnp.asarray(gammas), jnp.asarray(vectors), F0, jnp.asarray(ts)))
    mass = np.einsum("nk,tnj->tkj", vectors[:, :k], F) ** 2  # (T, modes, k)
    mass = mass.sum(axis=2)
    adjacency = spectral_graph.normalized_adjacency(graph)
    loss = -2 * np.einsum("tnk,nm,tmk->t", F, adjacency, F) + np.sum(np.einsum("tnk,tnj->tkj", F, F) ** 2, axis=(1, 2))
    levels = [(gammas[0], [0]), (gammas[1], [1]), (gammas[2], [2, 3])]
    exits = []
    for gamma, modes in levels:
        for mode in modes:
            exits.append(np.interp(gamma / 2, mass[:, mode], ts))  # s_i is increasing
            assert exits[-1] == pytest.approx(np.log(gamma / s0) / (8 * gamma), rel=0.10)
    assert exits[0] < exits[1] < min(exits[2], exits[3])
    plateau, edges = 0.0, [0.0, exits[0], exits[1], exits[2], ts[-1]]
    drops = [gammas[0] ** 2, gammas[1] ** 2, 2 * gammas[2] ** 2]
    for i, drop in enumerate(drops):
        # The slowest point between two exits sits within 10% of the step below the predicted level.
        inside = (ts > edges[i]) & (ts < edges[i + 1])
        flattest = np.argmin(np.abs(np.gradient(loss, ts))[inside])
        assert abs(loss[inside][flattest] - plateau) < 0.1 * drop
        plateau -= drop
    assert loss[-1] == pytest.approx(plateau, abs=1e-6)


def test_degenerate_block_reaches_the_minimum_without_a_unique_subspace():
    graph = spectral_graph.hsbm(*ILLUSTRATION)  # k = 4 cuts the subclass block (γ = 0.4225 ×3)
    gammas, vectors = spectral_graph.eigensystem(graph)
    F0 = jnp.asarray(0.1 * np.random.default_rng(8).normal(size=(24, 4)))
    F = trajectory(jnp.asarray(gammas), jnp.asarray(vectors), F0, jnp.asarray([60.0, 90.0]))
    phi = F / jnp.sqrt(jnp.asarray(graph.degrees))[:, None]
    for i in range(2):
        loss = population_loss(phi[i], jnp.asarray(graph.W), jnp.asarray(graph.degrees))
        assert float(loss) == pytest.approx(spectral_graph.minimum(graph, 4), abs=1e-12)
        assert float(subspace_sine(F[i], jnp.asarray(vectors[:, :3]))) < 1e-10  # span F ⊇ span U_r
    sines = [float(subspace_sine(F[i], jnp.asarray(vectors[:, :4]))) for i in range(2)]
    assert sines[0] > 0.05 and sines[1] == pytest.approx(sines[0], abs=1e-10)  # settled, away from U_4


def test_flow_refuses_what_does_not_apply(tmp_path):
    regular, irregular = spectral_graph.hsbm(2, 2, 2, (0.3, 0.5, 0.1, 0.1)), _lazy_path_file(tmp_path)
    phi, ts = jnp.zeros((8, 2)), jnp.asarray([0.0, 1.0])
    cases = [
        (irregular, {"method": "closed"}, "degrees are not all equal"),
        (regular, {"method": "closed", "encoder": "linear", "features": np.eye(8)}, "the linear encoder"),
        (regular, {"encoder": "linear"}, "features missing"),
        (regular, {"features": np.eye(8)}, "features given"),
        (regular, {"method": "euler"}, "method = 'euler' is invalid"),
        (regular, {"encoder": "mlp"}, "encoder = 'mlp' is invalid"),
    ]
    for graph, options, message in cases:
        with pytest.raises(ConfigError, match=message):
            spectral_flow.flow(graph, phi, ts, **options)
    # The closed form reaches each save time from the one before: out of order, it would be silently wrong.
    for bad in ([0.0, 400.0, 50.0], [-1.0, 2.0]):
        with pytest.raises(ConfigError, match="non-decreasing and >= 0"):
            spectral_flow.flow(regular, phi, jnp.asarray(bad))


def test_failed_solve_raises(tmp_path, monkeypatch):
    # The host-side check, on a solve that reports failure (a real one costs a compile or 10^5 steps).
    # Under vmap or jit the failure leaves inf states instead (dynsim.engine.integrate.integrate).
    failed = Integration(ys=None, succeeded=jnp.asarray(False), num_steps=jnp.asarray(7), time_reached=jnp.asarray(1.5))
    monkeypatch.setattr(spectral_flow, "integrate", lambda *args, **kwargs: failed)
    with pytest.raises(SolverError, match=r"solve stopped at t = 1.5 of 120 after 7 steps") as error:
        spectral_flow.flow(_lazy_path_file(tmp_path), jnp.ones((8, 3)), TS)
    assert error.value.time == 1.5
