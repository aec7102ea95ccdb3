"""What the finite-width backends of the two-tower model share.

A backend (``_param``: literal SGD on ``W``; ``_gram``: the exact Gram-space recursion)
supplies ``resolve_init`` and ``simulate_seed``; both read the same :class:`Plan` and
:class:`Inputs`, draw the same batches from the same keys, record the latent Gram matrix
``Q`` (SPEC §4) and leave the metrics to :func:`observe_records`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..engine.optimizers import optimizer as engine_optimizer
from ..engine.runner import map_seeds
from ..engine.schedule import stage_index, steps_per_record
from ..losses import LOSSES
from .config import Config
from .data import basis, sample_latents, spectra
from .memory import records_at_once
from .observables import coordinates, metrics


class Plan(NamedTuple):
    """What fixes the compiled program: shapes, step counts and options (hashable, static)."""

    width: int | None  # None when no shape depends on it (Gram space with a Bartlett K_0)
    r: int
    n: int
    d: int
    batch: int
    lr: float
    optimizer: str
    momentum: float
    loss: str
    normalization: str
    steps_per_stage: tuple[int, ...]
    record_every: int
    samples: int
    dtype: str
    init: str = "exact"  # how the initial state is drawn: "exact" (W_0) or "bartlett" (K_0 ~ Wishart)


class Inputs(NamedTuple):
    """Values that do not change the program (traced): bases, spectra, schedule, ``lam``, width."""

    columns_a: jax.Array  # [U_A V_A], d × q
    columns_b: jax.Array
    sigma_a: jax.Array
    sigma_b: jax.Array
    eta_a: jax.Array
    eta_b: jax.Array
    taus: jax.Array  # per stage
    gammas: jax.Array  # per stage: 1/tau with gradient rescaling, else 1
    lam: jax.Array
    width: jax.Array  # m as a value, for what depends on it without a shape (the Wishart K_0)


def plan_and_inputs(config: Config, width: int, data_key: jax.Array, init: str = "exact") -> tuple[Plan, Inputs]:
    """Split a configuration into the static :class:`Plan` and the traced :class:`Inputs`.

    ``init`` is a backend's resolved initialization (``resolve_init``), not ``"auto"``. With
    ``"bartlett"`` no shape depends on the width, so it is left out of the plan and every
    width shares one compiled program.
    """
    data, train = config.data, config.train
    q = data.r + data.n
    dtype = jnp.dtype(train.precision)
    plan = Plan(
        width=None if init == "bartlett" else width,
        r=data.r,
        n=data.n,
        d=data.dim,
        batch=train.batch,
        lr=train.lr,
        optimizer=train.optimizer,
        momentum=train.momentum,
        loss=config.loss.kind,
        normalization=train.normalization,
        steps_per_stage=config.steps_per_stage,
        record_every=steps_per_record(config.run.record_every, train.lr),
        samples=config.run.alignment_samples,
        dtype=train.precision,
        init=init,
    )
    key_a, key_b = jax.random.split(data_key)
    taus = np.array([tau for tau, _ in config.loss.stages])
    values = spectra(data)
    inputs = Inputs(
        columns_a=basis(key_a, data.dim, q, data.basis, dtype),
        columns_b=basis(key_b, data.dim, q, data.basis, dtype),
        **{name: jnp.asarray(v, dtype) for name, v in values.items()},
        taus=jnp.asarray(taus, dtype),
        gammas=jnp.asarray(1.0 / taus if config.loss.rescale else np.ones_like(taus), dtype),
        lam=jnp.asarray(config.loss.lam, dtype),
        width=jnp.asarray(width, dtype),
    )
    return plan, inputs


def optimizer(plan: Plan) -> optax.GradientTransformation:
    """The optax optimizer of ``train.optimizer`` (:func:`dynsim.engine.optimizers.optimizer`)."""
    return engine_optimizer(plan.optimizer, plan.lr, plan.momentum)


def split_seed_key(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(init_key, step_key, eval_key)`` of one seed: the initial state, the batches, the metrics."""
    init_key, step_key, eval_key = jax.random.split(key, 3)
    return init_key, step_key, eval_key


def step_inputs(plan: Plan, inputs: Inputs, step_key: jax.Array, step):
    """What step ``step`` (0-based) sees: its fresh batch ``(u_A, u_B)``, ``tau`` and ``gamma``."""
    stage = stage_index(step, plan.steps_per_stage)
    latents = sample_latents(jax.random.fold_in(step_key, step), plan.batch, plan.r, plan.n, jnp.dtype(plan.dtype))
    return latents, inputs.taus[stage], inputs.gammas[stage]


def observe_record(item, inputs: Inputs, plan: Plan):
    """Per-coordinate quantities and metrics of one recorded Gram matrix.

    ``item = (key, step, gram)``: the seed's key, the step count of the record and its ``Q``.
    The Monte-Carlo sample of the record is drawn with ``fold_in(eval_key, step)``; ``tau`` is
    the one the next step uses (the last stage's at the end).
    """
    key, step, gram = item
    values = metrics(
        gram,
        plan.r,
        jax.random.fold_in(split_seed_key(key)[2], step),
        loss_fn=LOSSES[plan.loss],
        tau=inputs.taus[stage_index(step, plan.steps_per_stage)],
        lam=inputs.lam,
        normalization=plan.normalization,
        samples=plan.samples,
    )
    return coordinates(gram, plan.r), values


def observe_records(keys, grams, steps, inputs: Inputs, plan: Plan, devices) -> tuple[dict, dict]:
    """Coordinates and metrics of every record of every seed, ``(seeds, T, ...)`` each.

    ``keys`` (seeds, 2), ``grams`` (seeds, T, 2q, 2q), ``steps`` (T,). Every record is one item
    of :func:`observe_record`, evaluated :func:`~dynsim.two_tower.memory.records_at_once` at a
    time (a number set by the configuration alone), so the memory of the metrics does not grow
    with the seeds or the records, and a record's metrics do not depend on them.
    """
    seeds, records = grams.shape[:2]
    items = (np.repeat(np.asarray(keys), records, axis=0), np.tile(steps, seeds), grams.reshape(-1, *grams.shape[2:]))
    batch = records_at_once(plan.samples, plan.r + plan.n, jnp.dtype(plan.dtype).itemsize)
    out = map_seeds(observe_record, items, inputs, plan, devices, batch_size=batch)
    return jax.tree.map(lambda x: x.reshape(seeds, records, *x.shape[1:]), out)
