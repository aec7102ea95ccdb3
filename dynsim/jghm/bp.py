r"""Exact inference on one JGHM tree by belief propagation in log space (spec §5).

Upward pass: the message of child c of node v to v is
:math:`q_{vc}(s) = \log \sum_{s'} T_{ℓ,c}[s, s'] e^{h_{vc}(s')}` and
:math:`h_v = \sum_c q_{vc}`, so :math:`h_v(s) = \log p(\text{leaves under } v \mid x_v = s)`.
A level stored breadth-first, (n, m^ℓ, V), reshaped to (n, m^{ℓ-1}, m, V) is one vectorized
message (T depends on (ℓ, c) only); cost O(#nodes V²). Downward pass: the belief of child c of
v is :math:`b_{vc} = h_{vc} + \log T_{ℓ,c}^\top e^{b_v - q_{vc}}`, normalized per node.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .tree import Tree


def leaf_evidence(leaves, states: int) -> jax.Array:
    """(n, m^L, V) log-evidence of observed leaves: ``log 1[s = x]`` (0 or -inf)."""
    return jnp.where(jax.nn.one_hot(leaves, states) > 0, 0.0, -jnp.inf)


def _message(transitions, h) -> jax.Array:
    """q[n, j, c, s] = log Σ_s' T[c, s, s'] exp h[n, j, c, s'] (max-shifted per child)."""
    top = jnp.max(h, axis=-1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    return jnp.log(jnp.einsum("njcv,csv->njcs", jnp.exp(h - top), transitions)) + top


def upward(transitions, evidence) -> list[jax.Array]:
    r"""Every level's :math:`h` (log-likelihood of the leaves under a node), root first.

    Args:
        transitions: (L, m, V, V) of one modality.
        evidence: (n, m^L, V) log-evidence of the leaves (:func:`leaf_evidence` for observed
            leaves, ``-(z - s)²/(2σ²)`` for noisy ones, zeros for unobserved ones).

    Returns:
        ``[h_0 (n, 1, V), h_1 (n, m, V), ..., h_L = evidence]``.
    """
    transitions = jnp.asarray(transitions)
    depth, branching, states = transitions.shape[:3]
    levels = [evidence]
    for layer in range(depth - 1, -1, -1):
        h = levels[0]
        children = h.reshape(h.shape[0], -1, branching, states)
        levels.insert(0, _message(transitions[layer], children).sum(axis=2))
    return levels


def root_log_likelihood(model: Tree, leaves, modality: str) -> jax.Array:
    """(n, V) log p(leaves | y)."""
    evidence = leaf_evidence(leaves, model.states)
    return upward(model.transitions[modality], evidence)[0][:, 0]


def root_posterior(model: Tree, leaves, modality: str) -> jax.Array:
    """(n, V) π(y) = p(y | leaves) ∝ p_y(y) p(leaves | y) of one modality's observed leaves."""
    log_prior = jnp.log(jnp.asarray(model.prior))
    return jax.nn.softmax(log_prior + root_log_likelihood(model, leaves, modality), axis=-1)


def node_posteriors(model: Tree, evidence, modality: str, root_message=None) -> list[jax.Array]:
    r"""Posterior marginals of every node given leaf evidence: ``[(n, 1, V), (n, m, V), ...,
    (n, m^L, V)]``, root first.

    Args:
        evidence: (n, m^L, V) log-evidence of the leaves (see :func:`upward`).
        root_message: optional (n, V) log-message added to the root's belief, e.g. the other
            modality's ``log p(x_other | y)`` to condition on it.
    """
    transitions = jnp.asarray(model.transitions[modality])
    branching, states = transitions.shape[1:3]
    levels = upward(transitions, evidence)
    belief = jnp.log(jnp.asarray(model.prior)) + levels[0][:, 0]
    if root_message is not None:
        belief = belief + root_message
    beliefs = [jax.nn.log_softmax(belief, axis=-1)[:, None]]
    for layer, h in enumerate(levels[1:]):
        children = h.reshape(h.shape[0], -1, branching, states)
        message = _message(transitions[layer], children)  # (n, j, c, s): what the parent's belief holds of it
        parent = jnp.where(jnp.isneginf(message), -jnp.inf, beliefs[-1][:, :, None, :] - message)
        top = jnp.max(parent, axis=-1, keepdims=True)
        down = jnp.log(jnp.einsum("njcs,csv->njcv", jnp.exp(parent - top), transitions[layer])) + top
        beliefs.append(jax.nn.log_softmax((down + children).reshape(h.shape), axis=-1))
    return [jnp.exp(b) for b in beliefs]


def upward_beliefs(model: Tree, leaves, modality: str) -> list[jax.Array]:
    """Per level ℓ = 0..L, each node's upward message normalized: p(x_v | leaves under v) under a
    uniform prior on x_v, (n, m^ℓ, V); the targets of the guided penalty."""
    levels = upward(model.transitions[modality], leaf_evidence(leaves, model.states))
    return [jax.nn.softmax(h, axis=-1) for h in levels]


def pmi(model: Tree, image_posterior, text_posterior) -> jax.Array:
    r"""The Bayes score :math:`S^*(x_{im}, x_{tx}) = \log \sum_y π_{im}(y) π_{tx}(y) / p_y(y)` of
    every pair, (n_im, n_tx), from the root posteriors (n_im, V) and (n_tx, V)."""
    return jnp.log((image_posterior / jnp.asarray(model.prior)) @ text_posterior.T)
