"""Finite-width simulation of the two-tower model by literal parameter-space SGD.

This is the reference implementation of the model (backend ``param``): every step draws
a fresh batch, forms the ``B × m`` embeddings and the ``B × B`` similarity matrix, and
differentiates the loss through them with ``jax.grad``. The update is
``W <- W - lr * gamma(t) * grad_W L`` (SPEC §3), through optax.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._config import Config
from ._data import basis, latent_map, sample_latents, spectra
from ._loss import LOSSES
from ._model import embed, init_weights, latent_gram, similarity
from ._observables import coordinates, metrics
from ._runner import record_steps, scan_run
from ._schedule import stage_index, stage_steps, steps_per_record


class Plan(NamedTuple):
    """What fixes the compiled program: shapes, step counts and options (hashable, static)."""

    width: int
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


class Inputs(NamedTuple):
    """Values that do not change the program (traced): bases, spectra, schedule, ``lam``."""

    columns_a: jax.Array  # [U_A V_A], d × q
    columns_b: jax.Array
    sigma_a: jax.Array
    sigma_b: jax.Array
    eta_a: jax.Array
    eta_b: jax.Array
    taus: jax.Array  # per stage
    gammas: jax.Array  # per stage: 1/tau with gradient rescaling, else 1
    lam: jax.Array


def plan_and_inputs(config: Config, width: int, data_key: jax.Array) -> tuple[Plan, Inputs]:
    """Split a configuration into the static :class:`Plan` and the traced :class:`Inputs`."""
    data, train = config.data, config.train
    q = data.r + data.n
    dtype = jnp.dtype(train.precision)
    plan = Plan(
        width=width,
        r=data.r,
        n=data.n,
        d=data.dim,
        batch=train.batch,
        lr=train.lr,
        optimizer=train.optimizer,
        momentum=train.momentum,
        loss=config.loss.kind,
        normalization=train.normalization,
        steps_per_stage=stage_steps([t for _, t in config.loss.stages], train.lr),
        record_every=steps_per_record(config.run.record_every, train.lr),
        samples=config.run.alignment_samples,
        dtype=train.precision,
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
    )
    return plan, inputs


def optimizer(plan: Plan) -> optax.GradientTransformation:
    """The optax optimizer of ``train.optimizer``: ``sgd``, heavy-ball ``momentum`` or ``adam``."""
    if plan.optimizer == "sgd":
        return optax.sgd(plan.lr)
    if plan.optimizer == "momentum":
        return optax.sgd(plan.lr, momentum=plan.momentum)
    return optax.adam(plan.lr)


def latent_maps(inputs: Inputs) -> tuple[jax.Array, jax.Array]:
    """``(P_A, P_B)``, the ``d × q`` latent maps ``[U diag(sigma)  V diag(eta)]`` of both towers."""
    return (
        latent_map(inputs.columns_a, inputs.sigma_a, inputs.eta_a),
        latent_map(inputs.columns_b, inputs.sigma_b, inputs.eta_b),
    )


def batch_loss(weights, maps, latents, tau, lam, plan: Plan):
    """Loss ``L`` of SPEC §3 on one batch: ``x = P u``, ``f = W x / Z``, ``s = f_A f_B^T``."""
    (w_a, w_b), (p_a, p_b), (u_a, u_b) = weights, maps, latents
    f_a = embed(w_a, p_a, u_a @ p_a.T, plan.normalization)
    f_b = embed(w_b, p_b, u_b @ p_b.T, plan.normalization)
    return LOSSES[plan.loss](similarity(f_a, f_b), tau, lam)


def make_step(plan: Plan, inputs: Inputs, maps, key):
    """``step_fn(state, step)`` for state ``(weights, opt_state)``: one online-SGD step."""
    opt = optimizer(plan)
    dtype = jnp.dtype(plan.dtype)

    def step_fn(state, step):
        weights, opt_state = state
        stage = stage_index(step, plan.steps_per_stage)
        latents = sample_latents(jax.random.fold_in(key, step), plan.batch, plan.r, plan.n, dtype)
        grads = jax.grad(batch_loss)(weights, maps, latents, inputs.taus[stage], inputs.lam, plan)
        grads = jax.tree.map(lambda g: inputs.gammas[stage] * g, grads)
        updates, opt_state = opt.update(grads, opt_state, weights)
        return optax.apply_updates(weights, updates), opt_state

    return step_fn


def init_state(plan: Plan, key):
    """Initial ``(weights, opt_state)``: ``W_A, W_B`` with iid ``N(0, 1/m)`` entries."""
    weights = init_weights(key, plan.width, plan.d, jnp.dtype(plan.dtype))
    return weights, optimizer(plan).init(weights)


def simulate_seed(key, inputs: Inputs, plan: Plan):
    """One seed's run: the latent Gram matrix ``Q`` at every record, and the divergence step.

    Only ``Q`` (``2q × 2q``) leaves the scan; :func:`observe_seed` turns it into metrics.
    """
    init_key, step_key, _ = jax.random.split(key, 3)
    maps = latent_maps(inputs)
    return scan_run(
        init_state(plan, init_key),
        make_step(plan, inputs, maps, step_key),
        lambda state, step: latent_gram(*state[0], *maps),
        sum(plan.steps_per_stage),
        plan.record_every,
    )


def observe_seed(per_seed, inputs: Inputs, plan: Plan):
    """Per-coordinate quantities and metrics of one seed's recorded Gram matrices.

    ``per_seed = (key, grams)``; the Monte-Carlo sample of the record at step ``s`` is drawn
    with ``fold_in(eval_key, s)``. At a record, ``tau`` is the one the next step uses
    (the last stage's at the end).
    """
    key, grams = per_seed
    eval_key = jax.random.split(key, 3)[2]
    steps = record_steps(sum(plan.steps_per_stage), plan.record_every)
    taus = inputs.taus[stage_index(steps, plan.steps_per_stage)]

    def one(gram, step, tau):
        values = metrics(
            gram,
            plan.r,
            jax.random.fold_in(eval_key, step),
            loss_fn=LOSSES[plan.loss],
            tau=tau,
            lam=inputs.lam,
            normalization=plan.normalization,
            samples=plan.samples,
        )
        return coordinates(gram, plan.r), values

    return jax.vmap(one)(grams, jnp.asarray(steps), taus)
