"""BP, the sampler and the exact references of the JGHM against brute-force enumeration and
closed forms (shared/specs/jghm.md §9, checks 1, 2, 4, 5, 6)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynsim.jghm import bayes, bp
from dynsim.jghm.tree import descend, sample, sample_given_first_leaf, tree


def joint_table(transitions, prior):
    """p(root, every leaf configuration) of one tree by summing over every internal assignment:
    (V, V**leaves), leaves in breadth-first order."""
    depth, branching, states = transitions.shape[:3]
    leaves = branching**depth
    table = np.zeros((states, states**leaves))
    sizes = [branching**level for level in range(depth + 1)]
    internal = sum(sizes[1:-1])
    for root in range(states):
        for inner in itertools.product(range(states), repeat=internal):
            for leaf in itertools.product(range(states), repeat=leaves):
                levels, offset = [[root]], 0
                for size in sizes[1:-1]:
                    levels.append(list(inner[offset : offset + size]))
                    offset += size
                levels.append(list(leaf))
                p = prior[root]
                for layer in range(depth):
                    for j, parent in enumerate(levels[layer]):
                        for c in range(branching):
                            p *= transitions[layer, c, parent, levels[layer + 1][branching * j + c]]
                table[root, np.ravel_multi_index(leaf, (states,) * leaves)] += p
    return table


@pytest.fixture(scope="module")
def tiny():
    return tree(depth=2, branching=2, states=3, flip=0.3, seed=5)


def test_transitions_are_row_stochastic_and_affine_in_the_flip(tiny):
    """T(p) = (1 − p) Π + p softmax(G) on the same (Π, G) at every p (the draws ignore p)."""
    permutation, softmax = (tree(2, 2, 3, p, 5).transitions for p in (0.0, 1.0))
    for modality in ("image", "text"):
        t = tiny.transitions[modality]
        assert t.shape == (2, 2, 3, 3)
        np.testing.assert_allclose(t.sum(axis=-1), 1, atol=1e-12)
        np.testing.assert_allclose(t, 0.7 * permutation[modality] + 0.3 * softmax[modality], atol=1e-12)
        assert set(np.unique(permutation[modality])) == {0.0, 1.0}
        assert np.all(softmax[modality] > 0)
    assert not np.allclose(permutation["image"], permutation["text"]) or not np.allclose(
        softmax["image"], softmax["text"]
    )


def test_root_posterior_matches_enumeration(tiny):
    """Check 1: BP's root posterior equals the enumerated p(y | leaves) for every leaf set."""
    for modality in ("image", "text"):
        table = joint_table(tiny.transitions[modality], tiny.prior)
        leaves = np.array(list(itertools.product(range(3), repeat=4)))
        expected = (table / table.sum(axis=0)).T
        got = np.asarray(bp.root_posterior(tiny, jnp.asarray(leaves), modality))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        likelihood = np.asarray(bp.root_log_likelihood(tiny, jnp.asarray(leaves), modality))
        np.testing.assert_allclose(np.exp(likelihood), table.T / tiny.prior, rtol=1e-12)


def test_node_posteriors_match_enumeration_with_unobserved_leaves(tiny):
    """The downward pass: leaves 2 and 3 unobserved, a root message from the other modality."""
    transitions = tiny.transitions["text"]
    table = joint_table(transitions, tiny.prior).reshape(3, 3, 3, 3, 3)  # root, leaf0..3
    message = np.log(np.array([0.2, 0.5, 0.3]))
    weighted = table * np.exp(message)[:, None, None, None, None]
    rng = np.random.default_rng(0)
    for x0, x1 in rng.integers(0, 3, size=(4, 2)):
        evidence = np.zeros((1, 4, 3))
        evidence[0, 0] = np.where(np.arange(3) == x0, 0, -np.inf)
        evidence[0, 1] = np.where(np.arange(3) == x1, 0, -np.inf)
        levels = bp.node_posteriors(tiny, jnp.asarray(evidence), "text", jnp.asarray(message)[None])
        given = weighted[:, x0, x1]  # (root, leaf2, leaf3)
        given = given / given.sum()
        np.testing.assert_allclose(levels[0][0, 0], given.sum(axis=(1, 2)), atol=1e-12)
        np.testing.assert_allclose(levels[2][0, 2], given.sum(axis=(0, 2)), atol=1e-12)
        np.testing.assert_allclose(levels[2][0, 3], given.sum(axis=(0, 1)), atol=1e-12)
        np.testing.assert_allclose(levels[2][0, 0], np.eye(3)[x0], atol=1e-12)
        # the middle level by enumerating the internal nodes directly
        assert np.allclose(levels[1].sum(axis=-1), 1)
    # middle nodes: p(z_1 | leaves) against a second enumeration over (root, z_1, z_2)
    leaves = (0, 2, 1, 1)
    weights = np.zeros((3, 3))
    for r, a, b in itertools.product(range(3), repeat=3):
        p = tiny.prior[r] * transitions[0, 0, r, a] * transitions[0, 1, r, b]
        p *= transitions[1, 0, a, leaves[0]] * transitions[1, 1, a, leaves[1]]
        p *= transitions[1, 0, b, leaves[2]] * transitions[1, 1, b, leaves[3]]
        weights[a, b] += p
    levels = bp.node_posteriors(tiny, bp.leaf_evidence(jnp.asarray([leaves]), 3), "text")
    np.testing.assert_allclose(levels[1][0, 0], weights.sum(axis=1) / weights.sum(), atol=1e-12)
    np.testing.assert_allclose(levels[1][0, 1], weights.sum(axis=0) / weights.sum(), atol=1e-12)


def test_sampler_matches_the_enumerated_law(tiny):
    """Leaf-configuration frequencies of 200 000 draws against the enumerated law (chi-square)."""
    table = joint_table(tiny.transitions["image"], tiny.prior).sum(axis=0)
    n = 200_000
    image, text, root = sample(tiny, jax.random.PRNGKey(1), n)
    codes = np.ravel_multi_index(np.asarray(image).T, (3,) * 4)
    counts = np.bincount(codes, minlength=81)
    chi2 = np.sum((counts - n * table) ** 2 / (n * table))
    assert chi2 < 81 + 5 * math.sqrt(2 * 81)  # mean 80, sd 12.7
    # the two trees share the root: the text's root posterior puts its mass on the drawn root
    posterior = np.asarray(bp.root_posterior(tiny, text[:2000], "text"))
    assert np.mean(posterior.argmax(axis=1) == np.asarray(root[:2000])) > 0.5


def test_draws_given_the_first_leaf_follow_the_conditional_law(tiny):
    table = joint_table(tiny.transitions["text"], tiny.prior).sum(axis=0).reshape(3, 27)
    n = 60_000
    labels = jnp.full((n,), 2)
    text = sample_given_first_leaf(tiny, jax.random.PRNGKey(2), labels)
    assert np.all(np.asarray(text[:, 0]) == 2)
    codes = np.ravel_multi_index(np.asarray(text[:, 1:]).T, (3,) * 3)
    counts = np.bincount(codes, minlength=27)
    expected = table[2] / table[2].sum()
    chi2 = np.sum((counts - n * expected) ** 2 / (n * expected))
    assert chi2 < 26 + 5 * math.sqrt(2 * 26)
    # and the descend with no clamp is the unconditional sampler
    assert descend(jax.random.PRNGKey(3), tiny.transitions["text"], jnp.zeros(5, int)).shape == (5, 4)


def test_bayes_label_posterior_matches_enumeration(tiny):
    """p(first text leaf | image leaves) by the path formula against the joint enumeration."""
    image_table = joint_table(tiny.transitions["image"], tiny.prior)  # (root, image config)
    text_table = joint_table(tiny.transitions["text"], tiny.prior).reshape(3, 3, 27).sum(axis=2)
    joint = image_table.T @ (text_table / tiny.prior[:, None])  # (image config, first leaf)
    expected = joint / joint.sum(axis=1, keepdims=True)
    leaves = jnp.asarray(list(itertools.product(range(3), repeat=4)))
    posterior = bp.root_posterior(tiny, leaves, "image")
    got = np.asarray(bayes.bayes_label_posterior(tiny, posterior, "first_leaf"))
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_pmi_is_the_enumerated_log_density_ratio(tiny):
    image_table = joint_table(tiny.transitions["image"], tiny.prior)
    text_table = joint_table(tiny.transitions["text"], tiny.prior)
    joint = image_table.T @ (text_table / tiny.prior[:, None])  # p(x_im, x_tx)
    ratio = np.log(joint / np.outer(joint.sum(axis=1), joint.sum(axis=0)))
    configs = jnp.asarray(list(itertools.product(range(3), repeat=4)))
    pi_im, pi_tx = (bp.root_posterior(tiny, configs, m) for m in ("image", "text"))
    np.testing.assert_allclose(np.asarray(bp.pmi(tiny, pi_im, pi_tx)), ratio, atol=1e-11)


def binomial_limit(K, V):
    """2 E log(1 + Bin(K - 1, 1/V))."""
    return 2 * sum(math.comb(K - 1, k) * V**-k * (1 - 1 / V) ** (K - 1 - k) * math.log1p(k) for k in range(K))


@pytest.mark.parametrize("in_batch", [False, True])
def test_bayes_risk_small_flip_limit(in_batch):
    """Check 2: as p -> 0, R*_K -> 2 E log(1 + Bin(K-1, 1/V)) (0.3990 at V = 10, K = 4)."""
    assert binomial_limit(4, 10) == pytest.approx(0.3990, abs=5e-5)
    model = tree(depth=3, branching=2, states=10, flip=1e-7, seed=3)
    risk, error = bayes.bayes_clip_risk(model, 4, jax.random.PRNGKey(4), 20_000, in_batch=in_batch)
    assert abs(risk - binomial_limit(4, 10)) < 4 * error + 1e-3


def test_bayes_risk_bounds_and_mutual_information():
    """2(log K − I) ≤ R*_K ≤ 2 log K; with I -> 0 (p = 1) R*_K -> 2 log K."""
    K = 8
    model = tree(depth=3, branching=2, states=4, flip=0.3, seed=0)
    info, info_error = bayes.mutual_information(model, jax.random.PRNGKey(0), 20_000)
    risk, error = bayes.bayes_clip_risk(model, K, jax.random.PRNGKey(1), 8_000)
    assert 0 < info < math.log(4)
    assert 2 * (math.log(K) - info) - 4 * (error + 2 * info_error) <= risk <= 2 * math.log(K) + 4 * error
    assert risk > 2 * (math.log(K) - info) + 0.05  # the InfoNCE bound is not tight at K = 8
    flat = tree(depth=3, branching=2, states=4, flip=1.0, seed=0)
    # at p = 1 a child ignores its parent only through softmax(G), whose rows differ: I is small, not 0
    flat_info, _ = bayes.mutual_information(flat, jax.random.PRNGKey(0), 20_000)
    flat_risk, flat_error = bayes.bayes_clip_risk(flat, K, jax.random.PRNGKey(1), 8_000)
    assert 2 * math.log(K) - flat_risk < 2 * flat_info + 4 * flat_error + 1e-3


def _scores_against(model, key, n, count):
    """S* of n joint pairs, against ``count`` fresh texts each, and the pairs' posteriors."""
    image, text, _ = sample(model, key, n)
    _, marginal_text, _ = sample(model, jax.random.fold_in(key, 1), count)
    pi_im, pi_tx = (bp.root_posterior(model, x, m) for x, m in ((image, "image"), (text, "text")))
    pi_marginal = bp.root_posterior(model, marginal_text, "text")
    return bayes.pair_pmi(model, pi_im, pi_tx), bp.pmi(model, pi_im, pi_marginal)


def test_sufficiency_anchors():
    """Check 4: Suff_im(S*) ≈ 0 (O(1/N) low); a constant score gives exactly the estimate of I."""
    model = tree(depth=3, branching=2, states=4, flip=0.2, seed=0)
    paired, marginal = _scores_against(model, jax.random.PRNGKey(7), 2048, 4096)
    value, error = bayes.mean_and_error(bayes.sufficiency_terms(paired, paired, marginal))
    assert abs(value) < 4 * error + 5e-3
    constant = bayes.sufficiency_terms(jnp.zeros_like(paired), paired, jnp.zeros_like(marginal))
    np.testing.assert_allclose(constant, paired, atol=1e-12)  # mean = E[S*] = I on the same pairs
    shifted = bayes.sufficiency_terms(paired + 3.0, paired, marginal + 3.0)
    np.testing.assert_allclose(shifted, bayes.sufficiency_terms(paired, paired, marginal), atol=1e-12)


def test_zero_shot_with_the_bayes_score_converges_like_one_over_m():
    """Check 5: with S = S* the zero-shot excess cross-entropy falls like 1/M (log-log slope -1)
    and the accuracy reaches the Bayes accuracy."""
    model = tree(depth=3, branching=2, states=4, flip=0.2, seed=0)
    prompts = (8, 32, 128, 512)
    result = bayes.bayes_zero_shot(model, jax.random.PRNGKey(11), 4000, prompts)
    assert np.all(result["gap"] > 0) and np.all(result["gap"][:2] > 3 * result["gap_se"][:2])
    slope = np.polyfit(np.log(prompts), np.log(result["gap"]), 1)[0]
    assert -1.25 < slope < -0.75
    assert abs(result["accuracy"][-1] - result["bayes_accuracy"]) < 0.02


def test_zero_shot_scores_by_hand():
    """The classifier p̂(y | x) ∝ p(y) mean_j e^{S(x, prompt_j)} on a hand-made case."""
    scores = jnp.log(jnp.array([[[1.0, 3.0], [2.0, 2.0]]]))  # one image, 2 classes, 2 prompts
    prior = jnp.array([0.25, 0.75])
    ce, correct = bayes.zero_shot(scores, jnp.array([0]), prior, (1, 2))
    # M = 1: weights 0.25 * 1 and 0.75 * 2; M = 2: 0.25 * 2 and 0.75 * 2
    np.testing.assert_allclose(np.asarray(ce[:, 0]), [-math.log(0.25 / 1.75), -math.log(0.5 / 2.0)], rtol=1e-12)
    assert not bool(correct[0, 0]) and not bool(correct[1, 0])  # class 1 wins: 1.5 > 0.25, then 1.5 > 0.5


def test_root_label_control_keeps_its_gap():
    """Check 6: with the root as label, x_im ⟂ y | x_tx fails and the gap does not vanish in M."""
    model = tree(depth=3, branching=2, states=4, flip=0.2, seed=0)
    result = bayes.bayes_zero_shot(model, jax.random.PRNGKey(12), 4000, (32, 512), label="root")
    assert result["gap"][-1] > 0.05 + 3 * result["gap_se"][-1] and result["gap"][-1] > 0.5 * result["gap"][0]
