"""Zero-shot classification, the linear probe, balance and alignment against NumPy written from
their definitions, on random embeddings (single- and multi-label)."""

import itertools

import jax
import numpy as np
import pytest

from dynsim.practical import observables


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_zero_shot(a, prompts, present, labels):
    """For each example the class of highest cosine among present classes; correct if labelled so."""
    correct = []
    for x, y in zip(a, labels, strict=True):
        best, best_cosine = None, -np.inf
        for c, w in enumerate(prompts):
            if present[c]:
                cosine = x @ w / np.linalg.norm(w)
                if cosine > best_cosine:
                    best, best_cosine = c, cosine
        correct.append(y[best] > 0)
    return np.array(correct)


@pytest.mark.parametrize("multi", [False, True])
def test_zero_shot_matches_numpy(key, multi):
    rng = np.random.default_rng(2)
    n, pool, classes, q = 60, 50, 5, 6
    if multi:
        labels, pool_labels = (rng.random((n, classes)) < 0.35) * 1.0, (rng.random((pool, classes)) < 0.35) * 1.0
        pool_labels[:, 4] = 0  # a class absent from the pool is never predicted
    else:
        labels, pool_labels = np.eye(classes)[rng.integers(0, classes, n)], np.eye(classes)[rng.integers(0, 4, pool)]
    a, b = unit(rng.normal(size=(n, q))), unit(rng.normal(size=(pool, q)))
    for m in (1, 3, 100):
        prompts, present = observables.class_prompts(b, pool_labels, m, key)
        prompts, present = np.asarray(prompts), np.asarray(present)
        np.testing.assert_array_equal(present, pool_labels.sum(axis=0) > 0)
        for c in np.flatnonzero(present):
            members = np.flatnonzero(pool_labels[:, c])
            size = min(m, members.size)
            # the prompt is the mean of `size` distinct members of the class: some subset matches
            means = (b[list(subset)].mean(axis=0) for subset in itertools.combinations(members, size))
            assert any(np.allclose(prompts[c], mean, atol=1e-12) for mean in means), (m, c)
        correct = observables.zero_shot_correct(a, prompts, present, labels)
        np.testing.assert_array_equal(correct, numpy_zero_shot(a, prompts, present, labels))
        labelled = labels.sum(axis=1) > 0
        expected = numpy_zero_shot(a, prompts, present, labels)[labelled].mean()
        assert np.isclose(observables.accuracy(correct, labels), expected)


def test_prompt_draws_differ_by_key_and_cover_the_class():
    labels = np.eye(2)[np.repeat([0, 1], 10)]
    b = np.eye(20)  # each pool example its own direction, so a prompt shows which examples it used
    seen = set()
    for i in range(20):
        prompts, _ = observables.class_prompts(b, labels, 3, jax.random.PRNGKey(i))
        used = np.flatnonzero(np.asarray(prompts[0]) > 0)
        assert used.size == 3 and np.allclose(np.asarray(prompts[0])[used], 1 / 3) and (used < 10).all()
        seen.update(used.tolist())
    assert seen == set(range(10))


def test_linear_probe_is_ridge_regression():
    rng = np.random.default_rng(3)
    train, test = rng.normal(size=(80, 4)), rng.normal(size=(30, 4))
    labels = np.eye(3)[rng.integers(0, 3, 80)]
    ridge = 0.01
    design = np.hstack([train, np.ones((80, 1))])
    # ridge as an augmented least-squares problem (a second derivation of the normal equations)
    augmented = np.vstack([design, np.sqrt(ridge * 80) * np.eye(5)])
    weights = np.linalg.lstsq(augmented, np.vstack([labels, np.zeros((5, 3))]), rcond=None)[0]
    expected = np.argmax(np.hstack([test, np.ones((30, 1))]) @ weights, axis=1)
    np.testing.assert_array_equal(observables.linear_probe(train, labels, test, ridge), expected)


def test_balance_of_known_spectra():
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    spectrum = np.array([9.0, 4.0, 1.0, 0.25, 0.0])
    # ten points ±c_i u_i whose sample covariance is exactly basis diag(spectrum) basis^T
    scaled = basis * np.sqrt(spectrum * 9 / 2)
    points = np.vstack([scaled.T, -scaled.T])
    np.testing.assert_allclose(observables.covariance_spectrum(points), spectrum, atol=1e-12)
    measured = observables.balance(np.asarray(spectrum), rank=3)
    assert np.isclose(measured["condition"], 3.0)  # sqrt(9 / 1)
    assert np.isclose(measured["stable_rank"], (81 + 16 + 1 + 1 / 16) / 81)
    p = spectrum[:4] / spectrum.sum()
    assert np.isclose(measured["effective_rank"], np.exp(-(p * np.log(p)).sum()))
    flat = observables.balance(np.ones(4), rank=4)
    assert np.allclose([flat["condition"], flat["stable_rank"], flat["effective_rank"]], [1, 4, 4])


def test_alignment_cosine_and_score():
    rng = np.random.default_rng(5)
    a = unit(rng.normal(size=(50, 3)))
    b = unit(a + 0.8 * rng.normal(size=(50, 3)))
    measured = observables.alignment(a, b)
    assert np.isclose(measured["cosine"], np.mean(np.sum(a * b, axis=1)))
    others = np.roll(np.arange(50), 1)
    closer = np.linalg.norm(a - b, axis=1) < np.linalg.norm(a - b[others], axis=1)  # Def. 4.1 by distances
    assert np.isclose(measured["score"], closer.mean())
    assert observables.alignment(a, a)["score"] == 1.0
