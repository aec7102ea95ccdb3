"""Finite-width simulation of the two-tower model by literal parameter-space SGD.

This is the reference implementation of the model (backend ``param``): every step draws
a fresh batch, forms the ``B × m`` embeddings and the ``B × B`` similarity matrix, and
differentiates the loss through them with ``jax.grad``. The update is
``W <- W - lr * gamma(t) * grad_W L`` (SPEC §3), through optax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ..engine.runner import scan_run
from ..losses import LOSSES
from .config import Config
from .data import latent_map
from .finite import Inputs, Plan, optimizer, split_seed_key, step_inputs
from .model import embed, init_weights, latent_gram, similarity


def resolve_init(config: Config, width: int, init: str) -> str:
    """The initialization this backend uses: it always draws ``W_0`` (``"exact"``)."""
    del config, width, init
    return "exact"


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

    def step_fn(state, step):
        weights, opt_state = state
        latents, tau, gamma = step_inputs(plan, inputs, key, step)
        grads = jax.grad(batch_loss)(weights, maps, latents, tau, inputs.lam, plan)
        grads = jax.tree.map(lambda g: gamma * g, grads)
        updates, opt_state = opt.update(grads, opt_state, weights)
        return optax.apply_updates(weights, updates), opt_state

    return step_fn


def init_state(plan: Plan, key):
    """Initial ``(weights, opt_state)``: ``W_A, W_B`` with iid ``N(0, 1/m)`` entries."""
    weights = init_weights(key, plan.width, plan.d, jnp.dtype(plan.dtype))
    return weights, optimizer(plan).init(weights)


def simulate_seed(key, inputs: Inputs, plan: Plan):
    """One seed's run: the latent Gram matrix ``Q`` at every record, and the divergence step.

    Only ``Q`` (``2q × 2q``) leaves the scan; ``finite.observe_records`` turns it into metrics.
    """
    init_key, step_key, _ = split_seed_key(key)
    maps = latent_maps(inputs)
    return scan_run(
        init_state(plan, init_key),
        make_step(plan, inputs, maps, step_key),
        lambda state, step: latent_gram(*state[0], *maps),
        sum(plan.steps_per_stage),
        plan.record_every,
    )
