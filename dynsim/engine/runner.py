"""Generic simulation machinery: the scan loop, divergence tracking, seed keys, devices.

Nothing here knows which model runs: a system supplies ``step_fn(state, step) -> state``
and ``observe_fn(state, step) -> record`` over its own state pytree, and the seed axis is a
``vmap`` of one seed's run, sharded over devices.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

SEED_AXIS = "seeds"


class DeviceUnavailable(RuntimeError):
    """The requested device kind is not visible to JAX."""


class SimulationDiverged(FloatingPointError):
    """A run produced NaN or Inf; ``seed``, ``step`` and ``time`` say where it first did, ``where``
    at which point of the sweep (``"width 256"``), ``hint`` what to change."""

    def __init__(self, *, seed: int, step: int, time: float, where: str, hint: str):
        self.seed, self.step, self.time, self.where = seed, step, time, where
        super().__init__(
            f"seed {seed} at {where} diverged: the state became NaN/Inf at step {step} "
            f"(training time t = {time:g}); {hint}"
        )


def check_finite(
    diverged_at: np.ndarray, records, steps: np.ndarray, *, lr: float, first_seed: int, where: str, hint: str
):
    """Raise :class:`SimulationDiverged` for the first seed whose state or records went non-finite.

    Args:
        diverged_at, records, steps: as :func:`first_divergence` takes them.
        lr: the step size (training time ``t = lr * step``).
        first_seed: the label of the first seed; where, hint: as :class:`SimulationDiverged` takes them.
    """
    diverged_at = first_divergence(diverged_at, records, steps)
    bad = np.flatnonzero(diverged_at >= 0)
    if bad.size:
        step = int(diverged_at[bad[0]])
        raise SimulationDiverged(seed=first_seed + int(bad[0]), step=step, time=step * lr, where=where, hint=hint)


def record_steps(num_steps: int, every: int) -> np.ndarray:
    """Steps at which the state is recorded: ``0, every, 2 every, ...`` and always ``num_steps``."""
    steps = np.arange(0, num_steps + 1, every)
    return steps if steps[-1] == num_steps else np.append(steps, num_steps)


def first_divergence(diverged_at: np.ndarray, records, steps: np.ndarray) -> np.ndarray:
    """Per seed, the first step count at which the state or a record held NaN/Inf (-1: never).

    Args:
        diverged_at: (seeds,) from :func:`scan_run`, exact to the step.
        records: pytree of (seeds, T, ...) records; a non-finite record (e.g. an overflowing
            norm of finite weights) counts at its record step.
        steps: (T,) the step counts of the records.
    """
    finite = [np.isfinite(x).reshape(x.shape[0], x.shape[1], -1).all(axis=2) for x in jax.tree.leaves(records)]
    bad = ~np.logical_and.reduce(finite)
    never = np.int64(np.iinfo(np.int64).max)
    at_record = np.where(bad.any(axis=1), steps[np.argmax(bad, axis=1)], never)
    first = np.minimum(np.where(diverged_at >= 0, diverged_at, never), at_record)
    return np.where(first == never, -1, first)


def all_finite(tree) -> jax.Array:
    """Whether every floating-point entry of a pytree is finite (a scalar bool)."""
    leaves = [leaf for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(leaf)) for leaf in leaves])


class _Carry(NamedTuple):
    state: object
    step: jax.Array
    diverged_at: jax.Array  # first step after which the state was non-finite, -1 if none


def scan_run(state, step_fn, observe_fn, num_steps: int, every: int, finite_fn=all_finite):
    """Run ``step_fn`` ``num_steps`` times inside ``lax.scan``, observing on :func:`record_steps`.

    Args:
        state: initial state pytree.
        step_fn: ``(state, step) -> state``, ``step`` the 0-based index of the step taken.
        observe_fn: ``(state, step) -> record pytree``, ``step`` the number of steps done.
        num_steps, every: static step counts.
        finite_fn: ``state -> bool``, whether a new state is finite; by default every entry is
            read (:func:`all_finite`). A step that changes a few entries of a large state may
            check only those, the rest being finite already.

    Returns:
        ``(records, diverged_at)``: records stacked along a leading time axis, and the
        first step count at which the state held NaN/Inf (``-1`` if it never did).
    """

    def one_step(carry, _):
        new_state = step_fn(carry.state, carry.step)
        step = carry.step + 1
        fresh = (carry.diverged_at < 0) & ~finite_fn(new_state)
        return _Carry(new_state, step, jnp.where(fresh, step, carry.diverged_at)), None

    def advance(carry, steps):
        return jax.lax.scan(one_step, carry, None, length=steps)[0]

    def chunk(carry, _):
        carry = advance(carry, every)
        return carry, observe_fn(carry.state, carry.step)

    carry = _Carry(state, jnp.zeros((), jnp.int32), jnp.full((), -1, jnp.int32))
    records = [jax.tree.map(lambda x: x[None], observe_fn(state, carry.step))]
    carry, chunks = jax.lax.scan(chunk, carry, None, length=num_steps // every)
    records.append(chunks)
    if num_steps % every:
        carry = advance(carry, num_steps % every)
        records.append(jax.tree.map(lambda x: x[None], observe_fn(carry.state, carry.step)))
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *records), carry.diverged_at


def select_devices(kind: str) -> list:
    """All visible devices of ``kind`` (``auto``: JAX's default backend, ``cpu``, ``gpu``)."""
    if kind == "auto":
        return jax.devices()
    try:
        return jax.devices(kind)
    except RuntimeError:
        raise DeviceUnavailable(
            f"device {kind!r} requested but JAX sees none; for NVIDIA GPUs install "
            f"'jax[cuda12]' (pip install -U 'jax[cuda12]'), or use --device cpu"
        ) from None


def seed_keys(base_seed: int, salt: int, num_seeds: int, first: int = 0) -> tuple[jax.Array, jax.Array]:
    """``(data_key, keys)``: a key for what all runs share, and one key per seed
    ``first, ..., first + num_seeds - 1``.

    The per-seed key is ``fold_in(fold_in(run_key, salt), index)``, derived on the host, so a
    seed's result depends on neither the number of seeds, the chunk it runs in, nor the devices.
    ``salt`` (a non-negative integer) tells apart runs that must not share keys, such as the
    widths of a two-tower sweep; a system whose points must share their seeds' draws passes 0.
    """
    data_key, run_key = jax.random.split(jax.random.PRNGKey(base_seed))
    salt_key = jax.random.fold_in(run_key, salt % 2**32)
    if salt >= 2**32:  # fold_in takes 32 bits: fold the high word in as well
        salt_key = jax.random.fold_in(salt_key, salt // 2**32)
    keys = jnp.stack([jax.random.fold_in(salt_key, i) for i in range(first, first + num_seeds)])
    return data_key, keys


@functools.cache
def _sharded(fn, static, devices: tuple):
    mesh = Mesh(np.array(devices), (SEED_AXIS,))
    mapped = jax.vmap(lambda per_seed, shared: fn(per_seed, shared, static), in_axes=(0, None))
    spec = PartitionSpec(SEED_AXIS)
    sharded = jax.shard_map(mapped, mesh=mesh, in_specs=(spec, PartitionSpec()), out_specs=spec, check_vma=False)
    return jax.jit(sharded)


def _rows(tree, start: int, length: int):
    """Rows ``start .. start + length - 1`` of every leaf, the last row repeated past its end."""

    def rows(x):
        part = x[start : start + length]
        missing = length - part.shape[0]
        return jnp.concatenate([part, jnp.repeat(x[-1:], missing, axis=0)]) if missing else part

    return jax.tree.map(rows, tree)


def _head(tree, count: int):
    """The first ``count`` rows of every leaf, as NumPy arrays."""
    return jax.tree.map(lambda x: np.asarray(x)[:count], tree)


def map_seeds(fn, per_seed, shared, static, devices, batch_size: int | None = None) -> object:
    """``vmap`` of ``fn(per_seed, shared, static)`` over the seed axis, sharded over ``devices``.

    Args:
        fn: a module-level function; with the hashable ``static`` it keys the compilation
            cache, so a call that changes only array values reuses the compiled program.
        per_seed: pytree whose leaves have a leading axis of independent items: seeds (keys,
            per-seed records), or anything mapped alike (every record of every seed).
        shared: pytree of arrays every item reads (replicated).
        static: hashable configuration of the program (shapes, step counts, options).
        devices: devices to shard the leading axis over; it is padded to a multiple of
            their count and cut back afterwards.
        batch_size: ``None``: every item at once; a number: that many at once, one call of
            the same compiled program per batch, the last one padded. This bounds the memory
            of a ``fn`` with large temporaries, and an item's result does not depend on how
            many items there are (XLA's rounding can depend on the batch's shape). The batches
            are looped on the host, one call each.

    Returns:
        ``fn``'s outputs as NumPy arrays with the leading axis.
    """
    count = jax.tree.leaves(per_seed)[0].shape[0]
    size = count if batch_size is None else batch_size
    program = _sharded(fn, static, tuple(devices))
    length = size + -size % len(devices)
    starts = range(0, count, size)
    outs = [_head(program(_rows(per_seed, start, length), shared), min(size, count - start)) for start in starts]
    return outs[0] if len(outs) == 1 else jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
