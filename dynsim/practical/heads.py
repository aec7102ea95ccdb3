r"""The trained heads on top of the frozen features (seed 001 §6): a fully-connected network with
batch norm between layers, built from equinox modules.

With ``layers = 3`` (the seed's), a head is

.. math::
    h(x) = W_3\, \mathrm{relu}(\mathrm{BN}_2(W_2\, \mathrm{relu}(\mathrm{BN}_1(W_1 x + c_1)) + c_2)) + c_3,

and the embedding is :math:`f(x) = h(x) / \|h(x)\|` (CLIP's cosine similarity). Batch norm
follows PyTorch's ``BatchNorm1d`` (momentum 0.1): in training it normalizes each unit by the
batch mean and the biased batch variance, :math:`\mathrm{BN}(z) = g (z - \mu_B)/\sqrt{\sigma_B^2 +
\epsilon} + \beta`, and updates the running statistics :math:`\bar\mu \leftarrow \rho\bar\mu +
(1 - \rho)\mu_B`, :math:`\bar v \leftarrow \rho \bar v + (1 - \rho)\,\frac{B}{B-1}\sigma_B^2` (from 0
and 1, :math:`\rho` = :data:`MOMENTUM`); in evaluation it uses :math:`\bar\mu, \bar v`.

The running statistics are an explicit pytree (:class:`Running`) passed in and returned, not an
``eqx.nn.State``: equinox's ``BatchNorm`` refuses its own state update inside the engine's
``shard_map`` over seeds (equinox 0.13.8 with JAX 0.10: the updated value carries a sharding
that the initial constant lacks, and ``State.set`` rejects the mismatch).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

MOMENTUM = 0.9  # rho of the running statistics (PyTorch's momentum 0.1)
EPS = 1e-5


class Running(NamedTuple):
    """Running mean and (unbiased) variance of every batch-norm layer of a head."""

    mean: tuple[jax.Array, ...]
    var: tuple[jax.Array, ...]


class Head(eqx.Module):
    """``layers`` linear maps with batch norm (affine ``scale``, ``shift``) and ReLU between them."""

    linears: tuple[eqx.nn.Linear, ...]
    scales: tuple[jax.Array, ...]
    shifts: tuple[jax.Array, ...]


def head(features: int, width: int, out: int, layers: int, key) -> tuple[Head, Running]:
    """A head ``features -> width -> ... -> out`` (PyTorch's default initialization of linear
    layers: uniform on ±1/√fan_in) and its initial running statistics."""
    sizes = [features] + [width] * (layers - 1) + [out]
    keys = jax.random.split(key, layers)
    linears = tuple(eqx.nn.Linear(sizes[i], sizes[i + 1], key=keys[i]) for i in range(layers))
    hidden = sizes[1:-1]
    model = Head(linears, tuple(jnp.ones(h) for h in hidden), tuple(jnp.zeros(h) for h in hidden))
    return model, Running(tuple(jnp.zeros(h) for h in hidden), tuple(jnp.ones(h) for h in hidden))


def embed(model: Head, running: Running, x, train: bool) -> tuple[jax.Array, Running]:
    r"""Unit embeddings :math:`f(x_i) = h(x_i)/\|h(x_i)\|` of a batch ``x`` (n, features).

    ``train``: batch statistics, and the running statistics updated; else the running
    statistics, returned unchanged.
    """
    means, variances = [], []
    for i, linear in enumerate(model.linears):
        x = jax.vmap(linear)(x)
        if i == len(model.linears) - 1:
            break
        if train:
            mean, var = jnp.mean(x, axis=0), jnp.var(x, axis=0)
            batch = x.shape[0]
            means.append(MOMENTUM * running.mean[i] + (1 - MOMENTUM) * mean)
            variances.append(MOMENTUM * running.var[i] + (1 - MOMENTUM) * var * batch / (batch - 1))
        else:
            mean, var = running.mean[i], running.var[i]
        x = jax.nn.relu(model.scales[i] * (x - mean) / jnp.sqrt(var + EPS) + model.shifts[i])
    updated = Running(tuple(means), tuple(variances)) if train else running
    return x / jnp.linalg.norm(x, axis=1, keepdims=True), updated
