r"""The finite process of the spectral system: SGD on the minibatch estimator, or gradient descent
on the population loss, one seed at a time inside the engine's ``lax.scan`` (spec §2, §5).

The parameters are the embedding table Φ ∈ R^{N×k} (tabular encoder) or V ∈ R^{d×k} (linear
encoder, Φ = ΨV). A step of ``sgd`` draws B positive pairs (edges drawn with probability
w_{xx'}), embeds both views, z_i = f(x_i), z_i^+ = f(x_i^+), and descends the estimator
:math:`\hat L = -\frac{2}{B}\sum_i z_i^T z_i^+ + \frac{1}{B(B-1)}\sum_{i\ne j}(z_i^T z_j^+)^2`
(:func:`dynsim.losses.spectral`, unbiased for the population loss); a step of ``gd`` descends
:math:`L(Φ) = -2\,\mathrm{tr}(Φ^TWΦ) + \|Φ^TDΦ\|_F^2` itself. Both go through optax, but for one
case: plain SGD on the tabular encoder touches only the 2B rows of its pairs, and updates only
those (:func:`make_sparse_step`): the same arithmetic as the dense optax update, without forming
the N × k gradient, which bounds the dense step at large N (docs/performance.md). Every record
observes Φ with :func:`dynsim.spectral.observables.observe`, so finite runs and the exact flow
report the same quantities; InfoNCE runs observe their unit-norm embedding, the f they are
trained as.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..engine.optimizers import optimizer as engine_optimizer
from ..engine.runner import all_finite, scan_run
from ..losses import spectral
from .config import LossPlan
from .debiased import debiased, debiased_g, in_batch, infonce, natural_sampler, unit
from .graph import Graph, augmenter, pair_sampler
from .observables import GraphArrays, observe, population_loss


class Plan(NamedTuple):
    """What fixes the compiled program (hashable, static): the graph (one object per ``[graph]``
    section), shapes, step counts and options."""

    graph: Graph
    encoder: str
    k: int
    dim: int  # the rows of the parameters: N (tabular) or d (linear)
    method: str
    batch: int
    lr: float
    optimizer: str
    momentum: float
    steps: int
    record_every: int
    init_scale: float
    dtype: str
    loss: LossPlan | None = None  # None: the spectral loss


class Inputs(NamedTuple):
    """Arrays every seed reads (traced): the graph's arrays and the node features (None: tabular)."""

    arrays: GraphArrays
    features: jax.Array | None


def optimizer(plan: Plan) -> optax.GradientTransformation:
    """The optax optimizer of ``train.optimizer`` (:func:`dynsim.engine.optimizers.optimizer`)."""
    return engine_optimizer(plan.optimizer, plan.lr, plan.momentum)


def embedding(params: jax.Array, features: jax.Array | None) -> jax.Array:
    """The table Φ (N × k) of the parameters: Φ itself (tabular) or ΨV (linear)."""
    return params if features is None else features @ params


def initial_params(key: jax.Array, plan: Plan) -> jax.Array:
    """Φ_0 or V_0 with iid N(0, init_scale²) entries."""
    return plan.init_scale * jax.random.normal(key, (plan.dim, plan.k), jnp.dtype(plan.dtype))


def split_seed_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(init_key, step_key)`` of one seed: its initial parameters, its batches."""
    init_key, step_key = jax.random.split(key)
    return init_key, step_key


def embed_nodes(params: jax.Array, features: jax.Array | None, nodes: jax.Array) -> jax.Array:
    """The embeddings f(x) of the nodes ``nodes``, (B, k): rows of Φ, or ψ(x)ᵀV."""
    return params[nodes] if features is None else features[nodes] @ params


def make_loss(plan: Plan, inputs: Inputs, step_key: jax.Array):
    """``loss(params, step)``: the minibatch estimator on step ``step``'s fresh pairs (``sgd``),
    or the population loss (``gd``)."""
    if plan.method == "gd":
        return lambda params, step: population_loss(
            embedding(params, inputs.features), inputs.arrays.W, inputs.arrays.degrees
        )
    if plan.loss is not None:
        return make_infonce_loss(plan, inputs, step_key)
    sample = pair_sampler(plan.graph)

    def minibatch(params, step):
        x, x_plus = sample(jax.random.fold_in(step_key, step), plan.batch)
        z, z_plus = embed_nodes(params, inputs.features, x), embed_nodes(params, inputs.features, x_plus)
        return spectral(z @ z_plus.T, None, 1.0)

    return minibatch


def make_infonce_loss(plan: Plan, inputs: Inputs, step_key: jax.Array):
    r"""``loss(params, step)`` of an InfoNCE kind (spec §4) on step ``step``'s fresh draws.

    B natural points x̄ ∼ P and two augmentations of each, the anchor x and its positive x⁺, all
    embeddings unit-norm. ``in_batch``: :func:`~dynsim.spectral.debiased.in_batch`. ``general``:
    N negatives per anchor, natural points drawn from P (``infonce``, ``debiased``) or from P given
    another class than the anchor's (``unbiased``), augmented; for ``debiased`` M samples v, a
    natural point of the anchor's class (``positives = "class"``) or the anchor's own (``"datum"``),
    augmented afresh.
    """
    kind, t, tau_plus, count, same_count, positives, form = plan.loss  # a LossPlan
    marginal, same, other = natural_sampler(plan.graph)
    augment, labels = augmenter(plan.graph), jnp.asarray(plan.graph.labels)

    def loss(params, step):
        keys = jax.random.split(jax.random.fold_in(step_key, step), 7)

        def embed(xbar, key):
            return unit(embed_nodes(params, inputs.features, augment(key, xbar)))

        xbar = marginal(keys[0], (plan.batch,))
        anchor, positive = embed(xbar, keys[1]), embed(xbar, keys[2])
        if form == "in_batch":
            return in_batch(anchor, positive, t, tau_plus if kind == "debiased" else None)
        classes = jnp.repeat(labels[xbar][:, None], count, axis=1)
        drawn = other(keys[3], classes) if kind == "unbiased" else marginal(keys[3], classes.shape)
        negatives = embed(drawn, keys[4])
        if kind != "debiased":
            return infonce(anchor, positive, negatives, t)
        own = jnp.repeat(xbar[:, None], same_count, axis=1)
        v = embed(same(keys[5], labels[own]) if positives == "class" else own, keys[6])
        return debiased(anchor, positive, debiased_g(anchor, negatives, v, t, tau_plus), count, t)

    return loss


def sparse(plan: Plan) -> bool:
    """Whether a run takes :func:`make_sparse_step`: plain SGD on spectral minibatches of the tabular encoder."""
    return plan.method == "sgd" and plan.optimizer == "sgd" and plan.encoder == "tabular" and plan.loss is None


def make_sparse_step(plan: Plan, step_key: jax.Array):
    r"""``step_fn(state, step)`` for state ``(Φ, rows)``: plain SGD on the rows of step ``step``'s pairs,
    :math:`Φ_{x_i} \leftarrow Φ_{x_i} - η\,\partial\hat L/\partial z_i` and likewise for
    :math:`x_i^+` (contributions to a row drawn twice add up, as in the dense gradient); ``rows``
    holds the 2B rows it changed, which are all that :func:`touched_rows_finite` needs to read."""
    sample = pair_sampler(plan.graph)
    gradient = jax.grad(lambda z, z_plus: spectral(z @ z_plus.T, None, 1.0), argnums=(0, 1))

    def step_fn(state, step):
        phi, _ = state
        x, x_plus = sample(jax.random.fold_in(step_key, step), plan.batch)
        dz, dz_plus = gradient(phi[x], phi[x_plus])
        phi = phi.at[x].add(-plan.lr * dz).at[x_plus].add(-plan.lr * dz_plus)
        return phi, jnp.concatenate([x, x_plus])

    return step_fn


def touched_rows_finite(state) -> jax.Array:
    """Whether the rows the last sparse step changed are finite (the others were already)."""
    phi, rows = state
    return jnp.all(jnp.isfinite(phi[rows]))


def make_step(plan: Plan, inputs: Inputs, step_key: jax.Array):
    """``step_fn(state, step)`` for state ``(params, opt_state)``: one optimizer step on :func:`make_loss`."""
    loss, opt = make_loss(plan, inputs, step_key), optimizer(plan)

    def step_fn(state, step):
        params, opt_state = state
        grads = jax.grad(loss)(params, step)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step_fn


def _start(key: jax.Array, inputs: Inputs, plan: Plan):
    """One seed's initial state, step function and finiteness check: the sparse SGD step
    (:func:`sparse`) or the optimizer step, from the seed's keys (:func:`split_seed_key`)."""
    init_key, step_key = split_seed_key(key)
    params = initial_params(init_key, plan)
    if sparse(plan):
        return (params, jnp.zeros(2 * plan.batch, jnp.int32)), make_sparse_step(plan, step_key), touched_rows_finite
    return (params, optimizer(plan).init(params)), make_step(plan, inputs, step_key), all_finite


def simulate_seed(key: jax.Array, inputs: Inputs, plan: Plan):
    """One seed's run: the observables of every record, and the divergence step (``scan_run``)."""

    def observe_fn(state, step):
        phi = embedding(state[0], inputs.features)
        return observe(phi if plan.loss is None else unit(phi), inputs.arrays)

    state, step_fn, finite_fn = _start(key, inputs, plan)
    return scan_run(state, step_fn, observe_fn, plan.steps, plan.record_every, finite_fn)


def final_params(key: jax.Array, inputs: Inputs, plan: Plan) -> jax.Array:
    """One seed's parameters after its ``plan.steps`` steps: the steps of :func:`simulate_seed`,
    without its records."""
    state, step_fn, _ = _start(key, inputs, plan)
    return jax.lax.fori_loop(0, plan.steps, lambda step, state: step_fn(state, step), state)[0]
