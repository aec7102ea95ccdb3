"""Finite-width simulation in Gram space (backend ``gram``): exact at any width, at a cost that
does not depend on it (SPEC §6).

Let ``C_A = [U_A V_A]`` and ``Omega = [W_A C_A, W_B C_B]`` (``m × 2q``, ``q = r + n``). The
model sees ``W`` only through ``Omega`` (``W_A x_A = W_A C_A diag(sigma_A, eta_A) u_A``), and
ambient directions outside ``span C`` never receive gradient. The batch loss is a function
``l(K)`` of ``K = Omega^T Omega`` alone (:func:`dynsim._model.gram_similarity`), so
``grad_Omega l = Omega (G + G^T)`` with ``G = dl/dK``: every gradient is ``Omega_0`` times a
``2q × 2q`` coefficient. An optimizer linear in the gradient (SGD, heavy-ball momentum) keeps
``Omega_t = Omega_0 Phi_t``; it runs on ``Phi`` with the coefficient gradient
``gamma Phi (G + G^T)``, and ``K_t = Phi_t^T K_0 Phi_t``. For SGD this is the step
``K <- T^T K T``, ``T = I - 2 lr gamma Gs``, ``Gs = (G + G^T) / 2``.

Per step the cost is ``O(B^2 q + B q^2 + q^3)``, whatever the width ``m``; the width enters
only through ``K_0``: ``Wishart_{2q}(m, I/m)`` by the Bartlett decomposition, or formed
from the very ``W_0`` the ``param`` backend draws with the same key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ..engine.config import ConfigError
from ..engine.runner import scan_run
from ..losses import LOSSES
from .config import Config
from .finite import Inputs, Plan, optimizer, split_seed_key, step_inputs
from .model import bartlett_gram, gram_similarity, init_weights, latent_gram


def resolve_init(config: Config, width: int, init: str) -> str:
    """The initialization for ``init`` at this width (``_config.check_backend`` has run).

    ``auto`` is ``bartlett`` when ``m >= 2(r + n)`` and ``exact`` below, where the Wishart
    is singular; ``bartlett`` below that width is refused.
    """
    dim = 2 * (config.data.r + config.data.n)
    if init == "auto":
        return "bartlett" if width >= dim else "exact"
    if init == "bartlett" and width < dim:
        raise ConfigError(
            f"run.init = 'bartlett' is invalid at width {width}: the Wishart K_0 is singular below "
            f"m = 2(r + n) = {dim}; use init 'exact' or 'auto'"
        )
    return init


def latent_scales(inputs: Inputs) -> jax.Array:
    """``D = (sigma_A, eta_A, sigma_B, eta_B)``, the diagonal of :func:`latent_gram_of`."""
    return jnp.concatenate([inputs.sigma_a, inputs.eta_a, inputs.sigma_b, inputs.eta_b])


def latent_gram_of(gram, scales) -> jax.Array:
    """The latent Gram matrix ``Q = D K D`` of SPEC §4 from ``K = Omega^T Omega``."""
    return scales[:, None] * gram * scales[None, :]


def initial_gram(key, inputs: Inputs, plan: Plan) -> jax.Array:
    """``K_0 = Omega_0^T Omega_0`` by ``plan.init``: ``bartlett`` or ``exact`` (from ``W_0``)."""
    dtype = jnp.dtype(plan.dtype)
    if plan.init == "bartlett":
        return bartlett_gram(key, inputs.width, 2 * (plan.r + plan.n), dtype)
    w_a, w_b = init_weights(key, plan.width, plan.d, dtype)
    return latent_gram(w_a, w_b, inputs.columns_a, inputs.columns_b)


def gram_loss(gram, scales, latents, tau, lam, plan: Plan):
    """The batch loss ``l(K)`` of SPEC §3 as a function of ``K`` (``Q = D K D``)."""
    return LOSSES[plan.loss](gram_similarity(latent_gram_of(gram, scales), *latents, plan.normalization), tau, lam)


def make_step(plan: Plan, inputs: Inputs, gram0, key):
    """``step_fn(state, step)`` for state ``(Phi, opt_state)``: one online-SGD step in Gram space."""
    opt = optimizer(plan)
    scales = latent_scales(inputs)

    def step_fn(state, step):
        phi, opt_state = state
        latents, tau, gamma = step_inputs(plan, inputs, key, step)
        grad = jax.grad(gram_loss)(phi.T @ gram0 @ phi, scales, latents, tau, inputs.lam, plan)
        coefficient = gamma * (phi @ (grad + grad.T))  # grad_Omega = Omega_0 @ coefficient
        updates, opt_state = opt.update(coefficient, opt_state, phi)
        return optax.apply_updates(phi, updates), opt_state

    return step_fn


def simulate_seed(key, inputs: Inputs, plan: Plan):
    """One seed's run: the latent Gram matrix ``Q = D Phi^T K_0 Phi D`` at every record, and
    the divergence step (same keys, batches and records as ``_param.simulate_seed``)."""
    init_key, step_key, _ = split_seed_key(key)
    gram0 = initial_gram(init_key, inputs, plan)
    scales = latent_scales(inputs)
    identity = jnp.eye(gram0.shape[0], dtype=gram0.dtype)
    return scan_run(
        (identity, optimizer(plan).init(identity)),
        make_step(plan, inputs, gram0, step_key),
        lambda state, step: latent_gram_of(state[0].T @ gram0 @ state[0], scales),
        sum(plan.steps_per_stage),
        plan.record_every,
    )
