r"""The two towers E_im, E_tx of CLIP on the JGHM's leaves (spec §7, §10), with equinox.

A tower maps one sequence of leaves (T,) to an embedding (q,) and its per-layer hidden states
(what the guided penalty pulls toward the BP messages). The score of a pair is
:math:`S = \langle E_{im}(x_{im}), E_{tx}(x_{tx}) \rangle` (no normalization, no temperature).

- :class:`MLPTower`: an MLP on the one-hot leaves, T·V → width → … → q (GELU); the CPU default.
- :class:`TransformerTower`: token plus learned positional embedding (d), pre-LayerNorm blocks
  of multi-head softmax attention and an MLP d → 4d → d (GELU), a per-token linear readout to
  R^q and a learned linear pooling over the T positions.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

ARCHITECTURES = ("mlp", "transformer")


class MLPTower(eqx.Module):
    """E(x) = MLP(one_hot(x).ravel()); no hidden states for guidance."""

    mlp: eqx.nn.MLP
    states: int = eqx.field(static=True)

    def __init__(self, leaves: int, states: int, width: int, layers: int, out: int, *, key):
        self.states = states
        self.mlp = eqx.nn.MLP(
            leaves * states, out, width, layers - 1, activation=jax.nn.gelu, key=key
        )  # layers linear maps

    def __call__(self, leaves) -> tuple[jax.Array, list[jax.Array]]:
        return self.mlp(jax.nn.one_hot(leaves, self.states).ravel()), []


class Block(eqx.Module):
    r"""Pre-LayerNorm block: :math:`h \leftarrow h + \mathrm{MHA}(\mathrm{LN}(h))`, then
    :math:`h \leftarrow h + \mathrm{MLP}(\mathrm{LN}(h))` token by token."""

    attention_norm: eqx.nn.LayerNorm
    attention: eqx.nn.MultiheadAttention
    mlp_norm: eqx.nn.LayerNorm
    mlp: eqx.nn.MLP

    def __init__(self, dim: int, heads: int, *, key):
        attention_key, mlp_key = jax.random.split(key)
        self.attention_norm = eqx.nn.LayerNorm(dim)
        self.attention = eqx.nn.MultiheadAttention(heads, dim, key=attention_key)
        self.mlp_norm = eqx.nn.LayerNorm(dim)
        self.mlp = eqx.nn.MLP(dim, dim, 4 * dim, 1, activation=jax.nn.gelu, key=mlp_key)

    def __call__(self, h) -> jax.Array:
        normed = jax.vmap(self.attention_norm)(h)
        h = h + self.attention(normed, normed, normed)
        return h + jax.vmap(lambda token: self.mlp(self.mlp_norm(token)))(h)


class TransformerTower(eqx.Module):
    """Embedding, ``layers`` blocks, readout to R^q, linear pooling over positions."""

    embedding: eqx.nn.Embedding
    position: jax.Array
    blocks: list[Block]
    readout: eqx.nn.Linear
    pooling: jax.Array

    def __init__(self, leaves: int, states: int, dim: int, layers: int, heads: int, out: int, *, key):
        keys = jax.random.split(key, layers + 3)
        self.embedding = eqx.nn.Embedding(states, dim, key=keys[0])
        self.position = 0.02 * jax.random.normal(keys[1], (leaves, dim))
        self.blocks = [Block(dim, heads, key=k) for k in keys[3:]]
        self.readout = eqx.nn.Linear(dim, out, key=keys[2])
        self.pooling = jnp.full((leaves,), 1.0 / leaves)

    def __call__(self, leaves) -> tuple[jax.Array, list[jax.Array]]:
        h = jax.vmap(self.embedding)(leaves) + self.position
        hidden = []
        for block in self.blocks:
            h = block(h)
            hidden.append(h)
        return self.pooling @ jax.vmap(self.readout)(h), hidden


def tower(architecture: str, leaves: int, states: int, *, width: int, layers: int, heads: int, out: int, key):
    """One tower of the given architecture (``width``: the MLP's hidden units or the transformer's d)."""
    if architecture == "mlp":
        return MLPTower(leaves, states, width, layers, out, key=key)
    return TransformerTower(leaves, states, width, layers, heads, out, key=key)


def embed(model, leaves) -> tuple[jax.Array, list[jax.Array]]:
    """A batch (n, T) -> embeddings (n, q) and hidden states [(n, T, d), ...]."""
    return jax.vmap(model)(leaves)
