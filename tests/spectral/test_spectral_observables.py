"""Observables of specs/spectral.md §2–3 against definitions, exact optima and the probe bounds.

§6 checks 2, 3 (at the exact minimizer), 7 (first part), 9 and 10 (subclass task).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynsim.losses import spectral
from dynsim.spectral import graph as spectral_graph
from dynsim.spectral import observables

ILLUSTRATION = (3, 2, 4, (0.5, 0.3, 0.15, 0.05))  # spec §1: r, S, n, theta

# One compile per shape: much cheaper than eager dispatch of every operation.
observe = jax.jit(observables.observe)
population_loss = jax.jit(observables.population_loss)
subspace_sine = jax.jit(observables.subspace_sine)
probe_errors = jax.jit(observables.probe_errors)  # the probe alone compiles in half the time of observe


def _augmentation_file(tmp_path, natural=6, size=9, classes=2, seed=0):
    """A non-regular user graph that is an augmentation graph: W = Augᵀ diag(P) Aug, random P and Aug."""
    rng = np.random.default_rng(seed)
    aug = rng.dirichlet(np.full(size, 0.5), size=natural)
    prior = rng.dirichlet(np.ones(natural))
    path = tmp_path / "graph.npz"
    np.savez(path, W=aug.T @ (prior[:, None] * aug), labels=np.arange(size) % classes)
    return spectral_graph.load_graph(path)


GRAPHS = {
    "hsbm": lambda tmp_path: spectral_graph.hsbm(*ILLUSTRATION),
    "ring": lambda tmp_path: spectral_graph.ring(12, 0.7, 3),
    "file": _augmentation_file,
}


def _adjacency(graph):
    """Ā from W, written out here rather than taken from the code under test."""
    degrees = graph.W.sum(axis=1)
    return graph.W / np.sqrt(np.outer(degrees, degrees))


def _optimum(graph, k, seed=0):
    """Φ* = D^{-1/2} U_k Λ_k^{1/2} R for a random orthogonal R, from numpy's own eigh; also γ (descending)."""
    gammas, vectors = np.linalg.eigh(_adjacency(graph))
    gammas, vectors = gammas[::-1], vectors[:, ::-1]
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(k, k)))
    phi = (vectors[:, :k] * np.sqrt(gammas[:k])) @ rotation / np.sqrt(graph.W.sum(axis=1))[:, None]
    return jnp.asarray(phi), gammas


def _padded_optimum(graph, k, width, seed=0):
    """Φ* with zero columns up to ``width``: the same span, hence the same probe, at one compiled shape."""
    phi = _optimum(graph, k, seed)[0]
    return jnp.pad(phi, ((0, 0), (0, width - k)))


def _random_phi(graph, k, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(graph.num_nodes, k)))


@pytest.mark.parametrize("family", GRAPHS)
def test_loss_matches_definition_and_factorization_identity(family, tmp_path):
    graph = GRAPHS[family](tmp_path)
    phi = _random_phi(graph, 3)
    loss = float(population_loss(phi, jnp.asarray(graph.W), jnp.asarray(graph.degrees)))
    # Eq. 6 as expectations over pairs: positives ∼ W, negatives ∼ w ⊗ w.
    similarity = np.asarray(phi) @ np.asarray(phi).T
    degrees = graph.W.sum(axis=1)
    expected = -2 * np.sum(graph.W * similarity) + np.sum(np.outer(degrees, degrees) * similarity**2)
    assert loss == pytest.approx(expected, rel=1e-12)
    # Lemma 3.2: L_mf(F) = ‖Ā − FFᵀ‖²_F = L(f) + Σ γ_i².
    F = np.sqrt(degrees)[:, None] * np.asarray(phi)
    mf = np.sum((_adjacency(graph) - F @ F.T) ** 2)
    assert mf - loss == pytest.approx(np.sum(np.linalg.eigvalsh(_adjacency(graph)) ** 2), abs=1e-10)


def test_population_loss_gradient(tmp_path):
    graph = _augmentation_file(tmp_path)
    W, degrees = jnp.asarray(graph.W), jnp.asarray(graph.degrees)
    phi = _random_phi(graph, 3)
    grad = jax.jit(jax.grad(observables.population_loss))(phi, W, degrees)
    D = jnp.diag(degrees)
    np.testing.assert_allclose(grad, -4 * W @ phi + 4 * D @ phi @ phi.T @ D @ phi, rtol=1e-12, atol=1e-14)
    step = 1e-5
    for direction in jnp.asarray(np.random.default_rng(0).normal(size=(3, *phi.shape))):
        plus = population_loss(phi + step * direction, W, degrees)
        minus = population_loss(phi - step * direction, W, degrees)
        assert (plus - minus) / (2 * step) == pytest.approx(float(jnp.sum(grad * direction)), rel=1e-8)


OPTIMA = [("hsbm", 3), ("hsbm", 6), ("ring", 5), ("file", 2)]  # ring-5: the shapes of the vmap test below


@pytest.mark.parametrize("family, k", OPTIMA)
def test_exact_minimizer(family, k, tmp_path):
    graph = GRAPHS[family](tmp_path)
    phi, gammas = _optimum(graph, k)
    assert gammas[k - 1] > gammas[k] + 1e-3  # a unique top-k eigenspace
    values = observe(phi, observables.graph_arrays(graph, k, k + 2))
    assert float(values["loss"]) == pytest.approx(-np.sum(gammas[:k] ** 2), abs=1e-12)
    assert abs(float(values["gap"])) < 1e-12
    np.testing.assert_allclose(values["eig"], gammas[:k], atol=1e-12)
    assert float(values["sine"]) < 1e-10
    np.testing.assert_allclose(values["mass"], np.append(gammas[:k], [0.0, 0.0]), atol=1e-12)
    # dynsim's own minimizer spans the same subspace with the same Gram matrix: Φ*Φ*ᵀ agree
    ours = spectral_graph.minimizer(graph, k)
    np.testing.assert_allclose(ours @ ours.T, np.asarray(phi @ phi.T), atol=1e-10)


def test_subspace_sine_reference_cases():
    graph = spectral_graph.hsbm(2, 2, 3, (0.3, 0.4, 0.2, 0.1))  # γ: 1, 0.64, 0.25 (×2), 0.09 (×8)
    _, vectors = spectral_graph.eigensystem(graph)
    basis = jnp.asarray(vectors[:, :3])
    for angle in (0.3, 1e-4, 1e-9):
        tilted = basis.at[:, 2].set(np.cos(angle) * vectors[:, 2] + np.sin(angle) * vectors[:, 5])
        mixed = tilted @ jnp.asarray([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [0.0, 1.0, 1.0]])  # same span
        assert float(subspace_sine(mixed, basis)) == pytest.approx(np.sin(angle), rel=1e-6, abs=1e-15)
        assert float(subspace_sine(1e-100 * mixed, basis)) == pytest.approx(np.sin(angle), rel=1e-6)
    assert float(subspace_sine(jnp.zeros((12, 3)), basis)) == 1.0
    rank_two = jnp.stack([basis[:, 0], basis[:, 0], basis[:, 1]], axis=1)
    assert float(subspace_sine(rank_two, basis)) == pytest.approx(1.0, abs=1e-12)
    # A wider span containing the basis: 0.
    assert float(subspace_sine(jnp.asarray(vectors[:, :5]), basis)) < 1e-14


def _reference_probe(graph, phi):
    """The probe of §3 by numpy least squares and explicit loops over natural and augmented points."""
    phi, size, classes = np.asarray(phi), graph.num_nodes, graph.num_classes
    mass = np.zeros((size, classes))
    for xbar, x in itertools.product(range(graph.aug.shape[0]), range(size)):
        mass[x, graph.labels[xbar]] += graph.prior[xbar] * graph.aug[xbar, x]
    targets = np.eye(classes)[mass.argmax(axis=1)]
    root = np.sqrt(graph.W.sum(axis=1))[:, None]
    head = np.linalg.lstsq(root * phi, root * targets, rcond=None)[0]
    predicted = (phi @ head).argmax(axis=1)
    augmented = sum(mass[x, c] for x in range(size) for c in range(classes) if c != predicted[x])
    ensembled = 0.0
    for xbar in range(graph.aug.shape[0]):
        votes = [sum(graph.aug[xbar, x] for x in range(size) if predicted[x] == c) for c in range(classes)]
        ensembled += graph.prior[xbar] * (int(np.argmax(votes)) != graph.labels[xbar])
    return augmented, ensembled


@pytest.mark.parametrize("family", GRAPHS)
def test_probe_matches_reference_fit(family, tmp_path):
    graph = GRAPHS[family](tmp_path)
    for seed in range(3):
        phi = _random_phi(graph, 4, seed)
        errors = probe_errors(phi, observables.graph_arrays(graph, 4, 1))
        np.testing.assert_allclose(errors, _reference_probe(graph, phi), rtol=0, atol=1e-12)


BOUND_CASES = {
    "hsbm": (lambda tmp_path: spectral_graph.hsbm(*ILLUSTRATION), (1, 2, 3, 4, 6, 8)),
    # θ2 = 0.3 puts γ_sub = 0.25 above γ_cls = 0.16: the class contrast enters only at k = 4.
    "hsbm_overlap": (lambda tmp_path: spectral_graph.hsbm(2, 2, 3, (0.3, 0.3, 0.1, 0.3)), (1, 2, 3, 4, 5)),
    "ring": (lambda tmp_path: spectral_graph.ring(12, 0.7, 3), (1, 2, 3, 4, 5, 6, 8)),
    "ring_lazy": (lambda tmp_path: spectral_graph.ring(16, 0.5, 4), (2, 3, 4, 5, 7, 9)),
}


@pytest.mark.parametrize("case", BOUND_CASES)
def test_probe_bounds_at_optimum(case, tmp_path):
    build, ks = BOUND_CASES[case]
    graph = build(tmp_path)
    arrays = observables.graph_arrays(graph, max(ks), 1)
    for k in ks:
        augmented, ensembled = probe_errors(_padded_optimum(graph, k, max(ks)), arrays)
        bounds = spectral_graph.probe_bounds(graph, k)
        assert float(augmented) <= bounds["bound_aug_cut"] + 1e-12 <= bounds["bound_aug"] + 2e-12
        assert float(ensembled) <= bounds["bound_ens"] + 1e-12


def test_user_graph_probe_bound(tmp_path):
    # (A, P) = (I, w): α* = 0 yet φ^ŷ > 0, so only the cut form applies, to both errors.
    graph = _augmentation_file(tmp_path, natural=9, size=9)
    arrays = observables.graph_arrays(graph, 5, 1)
    for k in (1, 2, 3, 5):
        augmented, ensembled = probe_errors(_padded_optimum(graph, k, 5), arrays)
        bounds = spectral_graph.probe_bounds(graph, k)
        assert float(ensembled) == pytest.approx(float(augmented), abs=1e-12)
        assert float(augmented) <= bounds["bound_aug_cut"]
        assert np.isnan([bounds["bound_aug"], bounds["bound_ens"], bounds["bound_zhang"]]).all()


def test_hsbm_probe_is_exact_once_k_reaches_r():
    # span U_k contains the class indicators: the fit is exact, g = ŷ, so the error is θ2 and E = 0.
    graph = spectral_graph.hsbm(*ILLUSTRATION)
    arrays = observables.graph_arrays(graph, 8, 1)
    for k in (3, 4, 5, 6, 7, 8):
        augmented, ensembled = probe_errors(_padded_optimum(graph, k, 8, seed=k), arrays)
        assert float(ensembled) == 0.0
        assert float(augmented) == pytest.approx(0.05, abs=1e-12)


def test_subclass_probe_drops_when_k_reaches_rS():
    r, S, theta2, alpha = 3, 2, 0.05, 0.15 + 0.05
    graph = spectral_graph.hsbm(*ILLUSTRATION, task="subclass")
    arrays = observables.graph_arrays(graph, r * S, 1)
    errors = {}
    for k in (r, r * S):
        errors[k] = tuple(map(float, probe_errors(_padded_optimum(graph, k, r * S), arrays)))
    # k = r: f is constant on each class, the S subclass scores tie and go to the first subclass.
    assert errors[r] == pytest.approx((1 - (1 - theta2) / S, 1 - 1 / S), abs=1e-12)
    assert errors[r * S] == pytest.approx((alpha, 0.0), abs=1e-12)


@jax.jit
@jax.vmap
def _batch_losses(z, z_plus):
    return spectral(z @ z_plus.T, None, 1.0)


def test_minibatch_estimator_is_unbiased(key):
    # 7 (first part) and the premise of 14: the mean of the minibatch loss is L(Φ) at every B.
    graph = spectral_graph.hsbm(*ILLUSTRATION)
    phi = 0.5 * _random_phi(graph, 3)
    population = float(population_loss(phi, jnp.asarray(graph.W), jnp.asarray(graph.degrees)))
    pairs = 1 << 16
    x, x_plus = spectral_graph.pair_sampler(graph)(key, pairs)  # independent pairs, cut into batches below
    for batch in (2, 8, 64):
        z, z_plus = phi[x.reshape(-1, batch)], phi[x_plus.reshape(-1, batch)]
        losses = np.asarray(_batch_losses(z, z_plus))
        error = losses.std(ddof=1) / np.sqrt(losses.size)
        assert abs(losses.mean() - population) < 3 * error, batch


def test_observe_jits_vmaps_and_follows_dtype():
    graph = spectral_graph.ring(12, 0.7, 3)
    arrays = observables.graph_arrays(graph, 5, 7)
    phis = jnp.asarray(np.random.default_rng(2).normal(size=(4, 12, 5)))
    batched = jax.jit(jax.vmap(observables.observe, in_axes=(0, None)))(phis, arrays)
    for seed in range(4):
        single = observe(phis[seed], arrays)
        for name, value in single.items():
            np.testing.assert_allclose(batched[name][seed], value, rtol=1e-10, atol=1e-12, err_msg=name)
    # Φ = 0: finite throughout; the probe ties everywhere and predicts class 0 (ring: 4 nodes of 12).
    zero = observe(jnp.zeros((12, 5)), arrays)
    assert all(np.isfinite(value).all() for value in zero.values()) and float(zero["sine"]) == 1.0
    assert float(zero["probe_aug"]) == pytest.approx(2 / 3, abs=1e-12)
    shapes = jax.eval_shape(observables.observe, phis[0].astype(jnp.float32), arrays)  # traced, not compiled
    assert {shape.dtype for shape in shapes.values()} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize(("family", "shots"), [("hsbm", 1), ("hsbm", 3), ("ring", 2)])
def test_few_label_probe_matches_a_least_squares_fit_over_labeled_augmentations(family, shots, tmp_path):
    graph = GRAPHS[family](tmp_path)
    labeled = observables.labeled_points(graph, shots)
    assert [np.sum(graph.labels[labeled] == c) for c in range(graph.num_classes)] == [shots] * graph.num_classes
    phi = np.random.default_rng(1).normal(size=(graph.num_nodes, 4))
    # one weighted row per (labeled natural point, augmentation) pair, solved by lstsq
    rows = [(xbar, x) for xbar in labeled for x in range(graph.num_nodes) if graph.aug[xbar, x] > 0]
    scale = np.sqrt([graph.aug[xbar, x] for xbar, x in rows])[:, None]
    design = scale * phi[[x for _, x in rows]]
    targets = scale * np.eye(graph.num_classes)[[graph.labels[xbar] for xbar, _ in rows]]
    head = np.linalg.lstsq(design, targets, rcond=None)[0]
    predicted = np.argmax(phi @ head, axis=1)
    error = 0.0
    for xbar in range(graph.labels.size):
        votes = [
            sum(graph.aug[xbar, x] for x in range(graph.num_nodes) if predicted[x] == c)
            for c in range(graph.num_classes)
        ]
        error += graph.prior[xbar] * (int(np.argmax(votes)) != graph.labels[xbar])
    with jax.enable_x64(True):
        arrays = observables.graph_arrays(graph, 4, 1, shots)
        assert float(jax.jit(observables.few_label_error)(jnp.asarray(phi), arrays)) == pytest.approx(error, abs=1e-12)


def test_class_sine_is_the_sine_to_the_class_eigenvectors_on_the_hsbm_and_zero_at_class_collapse():
    # γ = 1, 0.856 (×2): u_1 is constant, u_2, u_3 the class contrasts
    graph = spectral_graph.hsbm(*ILLUSTRATION)
    gammas, vectors = spectral_graph.eigensystem(graph)
    assert gammas[2] - gammas[3] > 0.1
    with jax.enable_x64(True):
        arrays = observables.graph_arrays(graph, 5, 1)
        for seed in range(3):
            phi = jnp.asarray(np.random.default_rng(seed).normal(size=(graph.num_nodes, 5)))
            F = jnp.sqrt(arrays.degrees)[:, None] * phi
            expected = float(subspace_sine(F, jnp.asarray(vectors[:, 1:3])))
            assert float(observe(phi, arrays)["class_sine"]) == pytest.approx(expected, abs=1e-10)
        collapsed = observe(jnp.asarray(np.eye(5)[graph.labels]), arrays)
        assert float(collapsed["class_sine"]) < 1e-12 and float(collapsed["probe_few"]) == 0.0
        # two classes at ±v: rank one, no mean direction, and still the whole contrast
        two = spectral_graph.hsbm(2, 2, 3, (0.4, 0.3, 0.2, 0.1))
        antipodal = np.where(two.labels[:, None] == 0, 1.0, -1.0) * np.array([[0.6, 0.8]])
        values = observe(jnp.asarray(antipodal), observables.graph_arrays(two, 2, 1))
        assert float(values["class_sine"]) < 1e-12 and float(values["probe_few"]) == 0.0
