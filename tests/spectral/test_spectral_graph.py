"""Augmentation graphs of specs/spectral.md §1 against their definitions and closed forms (§6 checks 1, 10)."""

import itertools

import numpy as np
import pytest

from dynsim.engine.config import ConfigError
from dynsim.spectral import graph as spectral_graph

ILLUSTRATION = (3, 2, 4, (0.5, 0.3, 0.15, 0.05))  # spec §1: r, S, n, theta


def _naive_hsbm_aug(r, S, n, theta):
    """A(x|x̄) written out from the verbal rule of §1, one entry at a time."""
    theta0, theta1, theta_s, theta2 = theta
    size = r * S * n
    aug = np.zeros((size, size))
    for xbar, x in itertools.product(range(size), repeat=2):
        (c, s), (c2, s2) = divmod(xbar // n, S), divmod(x // n, S)
        aug[xbar, x] = (
            theta0 * (x == xbar)
            + (theta1 / n if (c, s) == (c2, s2) else 0)
            + (theta_s / (n * (S - 1)) if c == c2 and s != s2 else 0)
            + (theta2 / (n * S * (r - 1)) if c != c2 else 0)
        )
    return aug


def _naive_ring_aug(size, theta0):
    aug = np.zeros((size, size))
    for i in range(size):
        aug[i, i] += theta0
        aug[i, (i + 1) % size] += (1 - theta0) / 2
        aug[i, (i - 1) % size] += (1 - theta0) / 2
    return aug


def _save(tmp_path, name="graph.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _random_weights(size, seed, self_loops=True):
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.uniform(size=(size, size)) * (rng.uniform(size=(size, size)) < 0.6), k=1)
    weights = upper + 0.1 * np.roll(np.eye(size), 1, axis=1)  # a cycle: no isolated node
    weights = weights + weights.T
    return weights + np.diag(rng.uniform(size=size)) if self_loops else weights


def _user_graph(tmp_path, size=9, seed=0, classes=3, self_loops=True):
    labels = np.arange(size) % classes
    return spectral_graph.load_graph(_save(tmp_path, W=_random_weights(size, seed, self_loops), labels=labels))


def _hsbm_table(r, S, n, theta):
    """The spectrum of §1 Family A, expanded by multiplicity and sorted descending."""
    theta0, theta1, theta_s, theta2 = theta
    blocks = [(1.0, 1), (theta0**2, r * S * (n - 1))]
    if r > 1:
        blocks.append(((1 - r * theta2 / (r - 1)) ** 2, r - 1))
    if S > 1:
        blocks.append(((theta0 + theta1 - theta_s / (S - 1)) ** 2, r * (S - 1)))
    return np.sort(np.concatenate([np.full(m, g) for g, m in blocks]))[::-1]


HSBM_CASES = [
    ILLUSTRATION,
    (2, 3, 2, (0.2, 0.5, 0.2, 0.1)),
    (4, 1, 3, (0.6, 0.3, 0.0, 0.1)),
    (1, 3, 3, (0.4, 0.4, 0.2, 0.0)),
    (2, 2, 1, (0.5, 0.2, 0.2, 0.1)),
    (2, 2, 3, (0.0, 0.7, 0.2, 0.1)),  # theta0 = 0: a zero eigenvalue
]


@pytest.mark.parametrize("r, S, n, theta", HSBM_CASES)
def test_hsbm_matches_definition_and_spectrum_table(r, S, n, theta):
    graph = spectral_graph.hsbm(r, S, n, theta)
    aug = _naive_hsbm_aug(r, S, n, theta)
    np.testing.assert_allclose(graph.aug, aug, rtol=0, atol=1e-15)
    np.testing.assert_allclose(graph.W, aug.T @ aug / aug.shape[0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(spectral_graph.spectrum(graph), _hsbm_table(r, S, n, theta), rtol=0, atol=1e-10)


@pytest.mark.parametrize("size, theta0", [(7, 0.5), (10, 0.8), (12, 0.65)])
def test_ring_matches_definition_and_fourier_spectrum(size, theta0):
    graph = spectral_graph.ring(size, theta0, 2)
    aug = _naive_ring_aug(size, theta0)
    np.testing.assert_allclose(graph.W, aug.T @ aug / size, rtol=0, atol=1e-15)
    expected = np.sort((theta0 + (1 - theta0) * np.cos(2 * np.pi * np.arange(size) / size)) ** 2)[::-1]
    np.testing.assert_allclose(spectral_graph.spectrum(graph), expected, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(graph.labels, np.arange(size) * 2 // size)


def test_spec_illustration():
    graph = spectral_graph.hsbm(*ILLUSTRATION)
    expected = np.array([1.0] + [0.855625] * 2 + [0.4225] * 3 + [0.25] * 18)
    np.testing.assert_allclose(spectral_graph.spectrum(graph), expected, rtol=0, atol=1e-10)
    assert spectral_graph.alpha(graph) == pytest.approx(0.05, abs=1e-12)


GRAPHS = {
    "hsbm": lambda tmp_path: spectral_graph.hsbm(*ILLUSTRATION),
    "ring": lambda tmp_path: spectral_graph.ring(9, 0.6, 3),
    "file": lambda tmp_path: _user_graph(tmp_path),
}


@pytest.mark.parametrize("family", GRAPHS)
def test_weights_and_normalized_adjacency(family, tmp_path):
    graph = GRAPHS[family](tmp_path)
    weights = graph.W
    assert weights.sum() == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(graph.degrees, weights.sum(axis=1), rtol=1e-13)
    np.testing.assert_allclose(graph.aug.sum(axis=1), 1.0, rtol=1e-14)
    if family != "file":  # a user graph's (A, P) = (I, w) defines the task only, not W
        np.testing.assert_allclose(weights, graph.aug.T @ (graph.prior[:, None] * graph.aug), atol=1e-15)
    adjacency = weights / np.sqrt(np.outer(weights.sum(axis=1), weights.sum(axis=1)))
    eigenvalues = np.linalg.eigvalsh(adjacency)
    # A Gram matrix W makes Ā PSD; a user graph may have any spectrum in [−1, 1].
    assert eigenvalues.min() > (-1e-12 if family != "file" else -1 - 1e-12)
    assert eigenvalues.max() == pytest.approx(1.0, abs=1e-12)
    gammas, vectors = spectral_graph.eigensystem(graph)
    np.testing.assert_allclose(gammas, eigenvalues[::-1], atol=1e-12)
    assert abs(vectors[:, 0] @ np.sqrt(graph.degrees)) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(adjacency @ vectors, vectors * gammas, atol=1e-12)
    np.testing.assert_allclose(np.linalg.eigvalsh(spectral_graph.laplacian(graph)), 1 - gammas, atol=1e-12)


@pytest.mark.parametrize(
    "graph, expected",
    [
        (spectral_graph.hsbm(*ILLUSTRATION), 0.05),
        (spectral_graph.hsbm(2, 3, 2, (0.2, 0.5, 0.2, 0.1)), 0.1),
        (spectral_graph.hsbm(*ILLUSTRATION, task="subclass"), 0.15 + 0.05),  # own subclass wins: 0.8 > 0.15
        (spectral_graph.ring(12, 0.7, 3), 3 * 0.3 / 12),
        (spectral_graph.ring(10, 0.5, 2), 2 * 0.5 / 10),
    ],
)
def test_bayes_error_closed_form(graph, expected):
    assert spectral_graph.alpha(graph) == pytest.approx(expected, abs=1e-12)


def test_user_graph_has_no_natural_data(tmp_path):
    weights = 7.0 * _random_weights(6, seed=3)
    graph = spectral_graph.load_graph(_save(tmp_path, W=weights, labels=np.array([10, 3, 3, 10, 10, 3])))
    np.testing.assert_array_equal(graph.labels, [1, 0, 0, 1, 1, 0])
    np.testing.assert_allclose(graph.W, weights / weights.sum(), rtol=1e-15)
    np.testing.assert_array_equal(graph.aug, np.eye(6))
    np.testing.assert_allclose(graph.prior, graph.degrees, rtol=0)
    assert spectral_graph.alpha(graph) == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_array_equal(spectral_graph.bayes_labels(graph), graph.labels)


def test_cut_weight_and_conductance_against_definitions(tmp_path):
    graph = _user_graph(tmp_path, size=8, seed=5)
    rng = np.random.default_rng(1)
    labelling = rng.integers(0, 3, size=8)
    subset = np.flatnonzero(rng.uniform(size=8) < 0.5)
    weights, size = graph.W, 8
    cut = sum(weights[x, y] for x, y in itertools.product(range(size), repeat=2) if labelling[x] != labelling[y])
    leaving = sum(weights[x, y] for x in subset for y in range(size) if y not in subset)
    assert spectral_graph.cut_weight(graph, labelling) == pytest.approx(cut, rel=1e-13)
    assert spectral_graph.conductance(graph, subset) == pytest.approx(leaving / weights[subset].sum(), rel=1e-13)
    # Singletons: 1 − w_xx / w_x, which is 1 only without a self-loop.
    assert spectral_graph.conductance(graph, [2]) == pytest.approx(1 - weights[2, 2] / weights[2].sum(), rel=1e-13)


def test_hsbm_cut_weight_closed_form():
    # φ^ŷ = 1 − Σ_c P(x ∈ c)P(x⁺ ∈ c) given x̄: 2θ2 − rθ2²/(r − 1), never above 2α* = 2θ2.
    r, theta2 = 3, 0.05
    graph = spectral_graph.hsbm(*ILLUSTRATION)
    cut = spectral_graph.cut_weight(graph, spectral_graph.bayes_labels(graph))
    assert cut == pytest.approx(2 * theta2 - r * theta2**2 / (r - 1), abs=1e-13)
    assert cut <= 2 * spectral_graph.alpha(graph)


def test_sparsest_partition_hand_example(tmp_path):
    # Two heavy pairs {0,1}, {2,3} (weight 3 each) joined by a light edge 1–2 (weight 1), no
    # self-loops; volumes 3, 4, 4, 3 out of 14. Every block not a union of pairs has φ = 1.
    weights = np.zeros((4, 4))
    for x, y, w in [(0, 1, 3.0), (2, 3, 3.0), (1, 2, 1.0)]:
        weights[x, y] = weights[y, x] = w
    graph = spectral_graph.load_graph(_save(tmp_path, W=weights, labels=np.array([0, 0, 1, 1])))
    rho = [spectral_graph.sparsest_partition(graph, m) for m in (1, 2, 3, 4)]
    np.testing.assert_allclose(rho, [0.0, 1 / 7, 1.0, 1.0], atol=1e-14)


def _set_partitions(items):
    """All set partitions of a list, recursively (the first item joins a block of the rest or stays alone)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _set_partitions(rest):
        yield [[first], *partition]
        for i in range(len(partition)):
            yield [*partition[:i], [first, *partition[i]], *partition[i + 1 :]]


def test_sparsest_partition_against_naive_enumeration(tmp_path):
    graph = _user_graph(tmp_path, size=7, seed=11)
    weights = graph.W

    def phi(block):
        outside = [y for y in range(7) if y not in block]
        return weights[np.ix_(block, outside)].sum() / weights[block].sum()

    best = {}
    for partition in _set_partitions(list(range(7))):
        worst = max(phi(block) for block in partition)
        best[len(partition)] = min(best.get(len(partition), np.inf), worst)
    assert len(list(_set_partitions(list(range(7))))) == 877  # Bell(7)
    for m in range(1, 8):
        assert spectral_graph.sparsest_partition(graph, m) == pytest.approx(best[m], abs=1e-14)


TINY = {
    "ring": lambda tmp_path: spectral_graph.ring(8, 0.6, 2),
    "hsbm": lambda tmp_path: spectral_graph.hsbm(2, 2, 2, (0.3, 0.4, 0.2, 0.1)),
    "file": lambda tmp_path: _user_graph(tmp_path, size=10, seed=2, self_loops=False),
    "ring12": lambda tmp_path: spectral_graph.ring(12, 0.7, 3),
}


@pytest.mark.parametrize("family", TINY)
def test_cheeger_lower_bound(family, tmp_path):
    graph = TINY[family](tmp_path)
    lambdas = 1 - spectral_graph.spectrum(graph)
    for m in range(1, graph.num_nodes + 1):
        assert lambdas[m - 1] / 2 <= spectral_graph.sparsest_partition(graph, m) + 1e-12


def test_all_singletons_without_self_loops(tmp_path):
    graph = _user_graph(tmp_path, size=10, seed=4, self_loops=False)
    assert np.all(np.diag(graph.W) == 0)
    assert spectral_graph.sparsest_partition(graph, 10) == pytest.approx(1.0, abs=1e-14)


def test_sparsest_partition_refuses_large_graphs():
    with pytest.raises(ValueError, match=r"N = 14 nodes is too many .*\(at most 12"):
        spectral_graph.sparsest_partition(spectral_graph.ring(14, 0.6, 2), 2)


def test_probe_bounds_formulas():
    graph = spectral_graph.hsbm(*ILLUSTRATION)
    bounds = spectral_graph.probe_bounds(graph, 3)
    alpha, lam = 0.05, 1 - 0.4225  # γ_4 = γ_sub
    cut = 2 * alpha - 3 * alpha**2 / 2
    expected = {
        "alpha": alpha,
        "lambda_next": lam,
        "cut": cut,
        "bound_aug_cut": 2 * cut / lam + alpha,
        "bound_aug": 4 * alpha / lam + alpha,
        "bound_ens": 8 * alpha / lam + 2 * alpha,
        "bound_zhang": 4 * alpha / lam + 8 * alpha,
    }
    assert bounds == pytest.approx(expected, abs=1e-12)
    assert spectral_graph.minimum(graph, 3) == pytest.approx(-(1 + 2 * 0.855625**2), abs=1e-12)


SAMPLED = {
    "hsbm": lambda tmp_path: spectral_graph.hsbm(2, 2, 3, (0.3, 0.4, 0.2, 0.1)),
    "hsbm_flat": lambda tmp_path: spectral_graph.hsbm(3, 1, 2, (0.5, 0.3, 0.0, 0.2)),
    "ring": lambda tmp_path: spectral_graph.ring(7, 0.6, 2),
    "file": lambda tmp_path: _user_graph(tmp_path, size=8, seed=6, self_loops=False),
}


@pytest.mark.parametrize("family", SAMPLED)
def test_pair_sampler_frequencies(family, tmp_path, key):
    graph = SAMPLED[family](tmp_path)
    draws = 400_000
    x, x_plus = spectral_graph.pair_sampler(graph)(key, draws)
    assert x.dtype == np.int32 and x_plus.dtype == np.int32
    size = graph.num_nodes
    counts = np.bincount(np.asarray(x) * size + np.asarray(x_plus), minlength=size * size).reshape(size, size)
    expected = draws * graph.W
    assert np.all(counts[graph.W == 0] == 0)
    support = graph.W > 0
    z = (counts[support] - expected[support]) / np.sqrt(expected[support] * (1 - graph.W[support]))
    assert np.abs(z).max() < 5.0


def test_large_family_graph_stays_lazy(key):
    graph = spectral_graph.hsbm(10, 10, 1000, (0.5, 0.3, 0.15, 0.05))
    x, x_plus = spectral_graph.pair_sampler(graph)(key, 4096)
    assert graph.num_nodes == 100_000 and graph.num_classes == 10
    assert 0 <= int(x.min()) and int(x_plus.max()) < 100_000
    # Same class 1 − θ2 of the time; W itself was never built.
    same = np.mean(np.asarray(x) // 10_000 == np.asarray(x_plus) // 10_000)
    assert abs(same - (1 - 0.05 * (2 - 0.05 * 10 / 9))) < 0.02
    assert "W" not in vars(graph) and "aug" not in vars(graph)


BAD_FILES = {
    "missing W": ({"labels": np.arange(3)}, r"missing array 'W'"),
    "missing labels": ({"W": np.ones((3, 3))}, r"missing array 'labels'"),
    "non-square": ({"W": np.ones((3, 4)), "labels": np.arange(3)}, r"W has shape \(3, 4\), must be .*square"),
    "nan": (
        {"W": np.where(np.eye(3) == 1, np.nan, 1.0), "labels": np.arange(3)},
        r"non-finite entry \(nan\) at \[0, 0\]",
    ),
    "inf": ({"W": np.where(np.eye(3) == 1, np.inf, 1.0), "labels": np.arange(3)}, r"non-finite entry \(inf\)"),
    "negative": ({"W": np.ones((3, 3)) - 2 * np.eye(3), "labels": np.arange(3)}, r"negative entries \(smallest -1"),
    "asymmetric": ({"W": np.triu(np.ones((3, 3))), "labels": np.arange(3)}, r"not symmetric: max \|W - W\^T\| = 1"),
    "isolated": ({"W": np.diag([1.0, 1.0, 0.0, 1.0]), "labels": np.arange(4)}, r"node 2 is isolated"),
    "label length": (
        {"W": np.ones((3, 3)), "labels": np.arange(4)},
        r"labels has shape \(4,\), must have length N = 3",
    ),
    "float labels": ({"W": np.ones((3, 3)), "labels": np.array([0.0, 1.0, 1.0])}, r"labels has dtype float64"),
    "single class": ({"W": np.ones((3, 3)), "labels": np.full(3, 4)}, r"single class \(4\)"),
    "objects": ({"W": np.full((3, 3), None), "labels": np.arange(3)}, r"cannot read W or labels"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_graph_file_is_one_line_config_error(case, tmp_path):
    arrays, message = BAD_FILES[case]
    path = _save(tmp_path, **arrays)
    with pytest.raises(ConfigError, match=message) as error:
        spectral_graph.load_graph(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_unreadable_graph_files(tmp_path):
    np.save(tmp_path / "plain.npy", np.ones((2, 2)))
    (tmp_path / "garbage.npz").write_bytes(b"not a graph")
    cases = [("absent.npz", "cannot read"), ("garbage.npz", "cannot read"), ("plain.npy", "not an .npz")]
    for name, message in cases:
        path = tmp_path / name
        with pytest.raises(ConfigError, match=message) as error:
            spectral_graph.load_graph(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)


BAD_ARGUMENTS = [
    (spectral_graph.hsbm, (0, 2, 2, (0.5, 0.3, 0.1, 0.1)), r"classes = 0 is invalid: must be >= 1"),
    (spectral_graph.hsbm, (2, 2.0, 2, (0.5, 0.3, 0.1, 0.1)), r"subclasses = 2.0 is invalid: must be an integer"),
    (spectral_graph.hsbm, (1, 1, 1, (1.0, 0.0, 0.0, 0.0)), r"nodes = 1 is invalid: .*>= 2"),
    (spectral_graph.hsbm, (2, 2, 2, (0.5, 0.3, 0.1)), r"theta = .* 4 non-negative numbers"),
    (spectral_graph.hsbm, (2, 2, 2, (0.5, 0.3, 0.3, -0.1)), r"theta = .* non-negative"),
    (spectral_graph.hsbm, (2, 2, 2, (0.5, 0.3, 0.1, 0.2)), r"theta = .* summing to 1"),
    (spectral_graph.hsbm, (2, 1, 2, (0.5, 0.3, 0.1, 0.1)), r"theta_s .* must be 0 when subclasses = 1"),
    (spectral_graph.hsbm, (1, 2, 2, (0.5, 0.3, 0.1, 0.1)), r"theta2 .* must be 0 when classes = 1"),
    (lambda *a: spectral_graph.hsbm(*a, task="label"), (2, 2, 2, (0.5, 0.3, 0.1, 0.1)), r"task = 'label'"),
    (spectral_graph.ring, (2, 0.5, 1), r"nodes = 2 is invalid: must be >= 3"),
    (spectral_graph.ring, (8, 1.5, 2), r"theta0 = 1.5 is invalid: must be a number in \[0, 1\]"),
    (spectral_graph.ring, (8, 0.5, 9), r"classes = 9 is invalid: must be an integer in \[1, 8\]"),
]


@pytest.mark.parametrize("build, args, message", BAD_ARGUMENTS)
def test_family_arguments_are_validated(build, args, message):
    with pytest.raises(ConfigError, match=message):
        build(*args)


def test_graph_caches_are_read_only():
    graph = spectral_graph.hsbm(2, 2, 2, (0.3, 0.4, 0.2, 0.1))
    assert spectral_graph.eigensystem(graph)[1] is spectral_graph.eigensystem(graph)[1]
    with pytest.raises(ValueError, match="read-only"):
        graph.W[0, 0] = 1.0
