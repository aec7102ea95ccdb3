r"""The joint generative hierarchical model (JGHM; shared/specs/jghm.md §4): two random trees, image
and text, that share their root label y, and its sampler.

Per modality and layer ℓ = 1..L the transitions are translation-invariant: one permutation
Π_ℓ shared by the layer and, per child slot c, a matrix G_{ℓ,c} of iid N(0, σ_f²) entries;
:math:`T_{ℓ,c} = (1 - p) Π_ℓ + p \operatorname{rowsoftmax}(G_{ℓ,c})`. With probability 1 − p a
child is the permuted parent, otherwise a draw from a random categorical. ``(Π, G)`` come from
their own key (text first, as the official code draws them), so a sweep over p changes only the
mixing weight on the same matrices. Levels are breadth-first: the children of node j of a level
are nodes ``m j + c`` of the next one.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import check_count

MODALITIES = ("image", "text")


@functools.partial(jax.tree_util.register_dataclass, data_fields=["transitions", "prior", "flip"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Tree:
    """A JGHM: root prior p_y and, per modality, the transitions T (L, m, V, V) (``T[ℓ-1, c]`` maps
    a parent's state at depth ℓ−1 to its child c's at depth ℓ; rows sum to 1).

    Attributes:
        transitions: ``{"image": (L_im, m_im, V, V), "text": (L_tx, m_tx, V, V)}`` NumPy arrays.
        prior: (V,) the root prior (uniform).
        flip: ``(p_image, p_text)``, the flip probabilities.

    A pytree (its arrays are the leaves), so it can be an argument of a compiled function.
    """

    transitions: Mapping[str, np.ndarray]
    prior: np.ndarray
    flip: tuple[float, float]

    @property
    def states(self) -> int:
        """V, the number of states of every node."""
        return self.prior.shape[0]

    def depth(self, modality: str) -> int:
        """L of a modality's tree."""
        return self.transitions[modality].shape[0]

    def branching(self, modality: str) -> int:
        """m of a modality's tree."""
        return self.transitions[modality].shape[1]

    def leaves(self, modality: str) -> int:
        """m^L, the number of leaves (tokens) of a modality."""
        return self.branching(modality) ** self.depth(modality)

    def path(self, modality: str) -> jax.Array:
        r"""(V, V) :math:`T_{1,0} T_{2,0} \cdots T_{L,0}`: the root's law of the first (leftmost) leaf."""
        out = jnp.eye(self.states)
        for layer in jnp.asarray(self.transitions[modality]):
            out = out @ layer[0]
        return out


def _per_modality(name: str, value) -> dict:
    if isinstance(value, Mapping):
        if set(value) != set(MODALITIES):
            raise ValueError(f"{name} = {dict(value)!r} is invalid: give one value or both 'image' and 'text'")
        return dict(value)
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} = {list(value)!r} is invalid: give one value or a pair (image, text)")
        return dict(zip(MODALITIES, value, strict=True))
    return {modality: value for modality in MODALITIES}


def _layers(key, depth: int, branching: int, states: int, flip: float, scale: float) -> np.ndarray:
    """(L, m, V, V) transitions of one modality from its key (the draws do not depend on ``flip``)."""
    out = np.empty((depth, branching, states, states))
    for layer, layer_key in enumerate(jax.random.split(key, depth)):
        perm_key, noise_key = jax.random.split(layer_key)
        permutation = np.eye(states)[np.asarray(jax.random.permutation(perm_key, states))]
        draws = jax.random.normal(noise_key, (branching, states, states), dtype=jnp.float32)
        noise = scale * np.asarray(draws, dtype=np.float64)  # float32 draws: the same at either precision
        softmax = np.exp(noise - noise.max(axis=-1, keepdims=True))
        out[layer] = (1 - flip) * permutation + flip * softmax / softmax.sum(axis=-1, keepdims=True)
    return out


def tree(depth=4, branching=3, states=10, flip=0.2, seed=42, *, scale=1.0) -> Tree:
    """A JGHM with uniform root prior (spec §4).

    Args:
        depth, branching, flip: L, m and p; one value for both modalities, or a pair
            ``(image, text)`` or a mapping with keys ``"image"`` and ``"text"``.
        states: V, shared by the two trees (their root is one label).
        seed: the key of ``(Π, G)``; the same seed gives the same matrices at every ``flip``.
        scale: σ_f, the standard deviation of G's entries.

    Raises:
        ValueError: a value out of range (names it and the range).

    Example:
        >>> from dynsim.jghm import tree
        >>> model = tree(depth=2, branching=2, states=3, flip=0.1)
        >>> model.transitions["image"].shape, model.leaves("text")
        ((2, 2, 3, 3), 4)
    """
    depths, branchings, flips = (
        _per_modality(n, v) for n, v in (("depth", depth), ("branching", branching), ("flip", flip))
    )
    for modality in MODALITIES:
        check_count("depth", depths[modality], 1), check_count("branching", branchings[modality], 1)
        if not 0 <= flips[modality] <= 1:
            raise ValueError(f"flip = {flips[modality]!r} is invalid: must be in [0, 1]")
    check_count("states", states, 2)
    if not scale > 0:
        raise ValueError(f"scale = {scale!r} is invalid: must be > 0")
    text_key, image_key = jax.random.split(jax.random.PRNGKey(seed))
    keys = {"text": text_key, "image": image_key}
    transitions = {
        m: _layers(keys[m], int(depths[m]), int(branchings[m]), int(states), float(flips[m]), scale) for m in MODALITIES
    }
    return Tree(transitions, np.full(states, 1.0 / states), (float(flips["image"]), float(flips["text"])))


def _log(transitions) -> jax.Array:
    return jnp.log(jnp.asarray(transitions))


def descend(key, transitions, roots, path=None) -> jax.Array:
    r"""The leaves (n, m^L) of trees with the given roots, drawn level by level
    (:math:`x_{(j,c)} \sim \mathrm{Cat}(T_{ℓ,c}[x_j, \cdot])`).

    Args:
        transitions: (L, m, V, V) of one modality.
        roots: (n,) root states.
        path: optional (n, L): the states the leftmost node of levels 1..L is clamped to (a
            draw conditional on the leftmost path, see :func:`sample_given_first_leaf`).
    """
    logs = _log(transitions)
    depth, branching = logs.shape[:2]
    level = jnp.asarray(roots)[:, None]
    for layer, layer_key in enumerate(jax.random.split(key, depth)):
        logits = jnp.moveaxis(logs[layer][:, level], 0, 2)  # (n, nodes, m, V)
        level = jax.random.categorical(layer_key, logits).reshape(level.shape[0], -1)
        if path is not None:
            level = level.at[:, 0].set(path[:, layer])
    return level


def sample(model: Tree, key, n: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(image_leaves, text_leaves, root)``: n joint draws, integer arrays (n, m_im^L_im),
    (n, m_tx^L_tx) and (n,); y ~ p_y, then each tree from y."""
    root_key, image_key, text_key = jax.random.split(key, 3)
    roots = jax.random.categorical(root_key, jnp.log(jnp.asarray(model.prior)), shape=(n,))
    image = descend(image_key, model.transitions["image"], roots)
    text = descend(text_key, model.transitions["text"], roots)
    return image, text, roots


def sample_given_root(model: Tree, key, roots, modality: str) -> jax.Array:
    """Leaves (n, m^L) of one modality drawn from P(x | y = roots)."""
    return descend(key, model.transitions[modality], roots)


def sample_given_first_leaf(model: Tree, key, labels, modality: str = "text") -> jax.Array:
    r"""Leaves (n, m^L) drawn exactly from P(x | first leaf = labels): the leftmost path backward,
    :math:`z_ℓ \sim T_{ℓ,0}[z_{ℓ-1}, z_ℓ] (T_{ℓ+1,0} \cdots T_{L,0})[z_ℓ, y]` from
    :math:`z_0 \sim p_y(z_0) (T_{1,0} \cdots T_{L,0})[z_0, y]`, then every other node forward."""
    transitions = jnp.asarray(model.transitions[modality])
    depth = transitions.shape[0]
    labels = jnp.asarray(labels)
    suffix = [jnp.eye(model.states)]  # suffix[k] = T_{L-k+1,0} ... T_{L,0}
    for layer in range(depth - 1, -1, -1):
        suffix.append(transitions[layer, 0] @ suffix[-1])
    suffix = suffix[::-1]  # suffix[l] = T_{l+1,0} ... T_{L,0}
    keys = jax.random.split(key, depth + 1)
    weights = jnp.asarray(model.prior)[None, :] * suffix[0][:, labels].T
    state = jax.random.categorical(keys[0], jnp.log(weights))
    roots, path = state, []
    for layer in range(depth - 1):
        weights = transitions[layer, 0][state] * suffix[layer + 1][:, labels].T
        state = jax.random.categorical(keys[layer + 1], jnp.log(weights))
        path.append(state)
    path.append(labels)
    return descend(keys[depth], transitions, roots, jnp.stack(path, axis=1))
