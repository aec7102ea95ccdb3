"""The debiased estimator's distance to its target (dynsim.spectral.bias) against a brute-force
enumeration, its exact identity at N = M = ∞, and the rates a second-order expansion predicts."""

import itertools

import numpy as np
import pytest

from dynsim.spectral import bias
from dynsim.spectral.graph import hsbm

T = 0.5


def _setup():
    graph = hsbm(2, 2, 3, (0.4, 0.3, 0.2, 0.1))
    return graph, np.random.default_rng(0).normal(size=(graph.num_nodes, 3))


def test_the_reference_loss_against_a_loop_over_every_datum_anchor_and_positive():
    graph, phi = _setup()
    f = phi / np.linalg.norm(phi, axis=1, keepdims=True)
    nodes = range(graph.num_nodes)
    total = 0.0
    for xbar, x, x_plus in itertools.product(range(graph.labels.size), nodes, nodes):
        c = graph.labels[xbar]
        others = [b for b in range(graph.labels.size) if graph.labels[b] != c]
        mass = sum(graph.prior[b] for b in others)
        negative = sum(graph.prior[b] * graph.aug[b, y] * np.exp(f[x] @ f[y] / T) for b in others for y in nodes)
        loss = -np.log(np.exp(f[x] @ f[x_plus] / T) / (np.exp(f[x] @ f[x_plus] / T) + 8 * negative / mass))
        total += graph.prior[xbar] * graph.aug[xbar, x] * graph.aug[xbar, x_plus] * loss
    assert bias.reference_loss(graph, phi, T, 8) == pytest.approx(total, rel=1e-12)


def test_with_exact_expectations_and_the_true_prior_the_debiased_loss_is_the_reference():
    # p = τ⁺ p⁺ + τ⁻ p⁻ (class prior 1/2 here), so g = E_{p⁻} exactly and every draw's loss is its reference.
    graph, phi = _setup()
    exact = bias.sample_bias(graph, phi, t=T, tau_plus=0.5, negatives=None, same=None, weight=16.0, draws=2048)
    assert abs(exact["bias"]) < 1e-12 and exact["deviation"] < 1e-12
    wrong = bias.sample_bias(graph, phi, t=T, tau_plus=0.3, negatives=None, same=None, weight=16.0, draws=2048)
    assert wrong["deviation"] > 1e-3


def test_the_deviation_falls_like_one_over_root_n_and_m_and_the_bias_like_one_over_n_and_m():
    graph, phi = _setup()
    options = {"t": T, "tau_plus": 0.5, "draws": 16384}
    in_n = bias.bias_curve(graph, phi, "negatives", [16, 64, 256], same=None, **options)
    in_m = bias.bias_curve(graph, phi, "same", [8, 32, 128], negatives=None, weight=64.0, **options)
    for curve in (in_n, in_m):
        for row in curve["rows"]:  # every point resolved: the slopes fit bias, not sampling noise
            assert abs(row["bias"]) > 3 * row["bias_se"] and row["deviation"] > 3 * row["deviation_se"]
        assert curve["slopes"]["deviation"][0] == pytest.approx(-0.5, abs=0.1)
        assert curve["slopes"]["bias"][0] == pytest.approx(-1.0, abs=0.2)
    # the oracle's own bias (N draws from p⁻ in place of the expectation) is second order too
    assert all(abs(row["unbiased_bias"]) > 3 * row["unbiased_bias_se"] for row in in_n["rows"])
    assert in_n["slopes"]["unbiased_bias"][0] == pytest.approx(-1.0, abs=0.2)


def test_augmentations_of_the_anchor_s_own_datum_leave_a_bias_that_more_samples_do_not_remove():
    graph, phi = _setup()
    options = {"t": T, "tau_plus": 0.5, "negatives": None, "weight": 16.0, "draws": 4096}
    exact = bias.sample_bias(graph, phi, same=None, positives="datum", **options)
    sampled = bias.sample_bias(graph, phi, same=256, positives="datum", **options)
    assert abs(exact["bias"]) > 10 * exact["bias_se"] + 1e-3
    assert sampled["bias"] == pytest.approx(exact["bias"], abs=5 * sampled["bias_se"] + 0.1 * abs(exact["bias"]))
