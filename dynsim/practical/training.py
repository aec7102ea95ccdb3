r"""Training two heads on frozen paired features with a contrastive or non-contrastive loss, and
measuring them at every record (seed 001 §6).

One seed's run (:func:`run`) is one compiled program: the seed's split of the pairs (training,
prompt pool, test), the features standardized with the training pairs' mean and standard
deviation, both heads from the seed's key, an outer ``lax.scan`` over the records with a
``fori_loop`` of steps in between. A step takes the next B training pairs of the epoch's
permutation (drawn at the epoch's first step), computes the cosine similarities
:math:`s_{ij} = \langle f_A(x^i_A), f_B(x^j_B)\rangle`
in training mode (batch statistics), the loss ``loss(s, tau, lam)`` of :mod:`dynsim.losses` at
the stage's inverse temperature :math:`\tau_k`, and the optimizer's update of
:math:`\gamma_k \nabla L` (:math:`\gamma_k = 1/\tau_k` with gradient rescaling, else 1).

At every record, in evaluation mode (running statistics), on the seed's test pairs:

- ``train_loss``: the mean training loss since the previous record (at step 0: of the first batch);
- ``zsc_acc_M`` per prompt size M: zero-shot accuracy of modality A against prompts of M pool
  examples of modality B per class, averaged over ``draws`` fixed draws of them; ``zsc_acc``
  the same at the largest M;
- ``probe_acc``: the ridge linear probe on modality-A embeddings of the training pairs;
- ``condition_a``, ``stable_rank_a``, ``effective_rank_a`` (and ``_b``): balance of each
  head's output covariance on the test pairs; coordinates ``spectrum_a``, ``spectrum_b``: its
  eigenvalues;
- ``alignment``: the mean cosine of positive pairs; ``alignment_score``: Def. 4.1.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ..engine.optimizers import optimizer
from ..engine.schedule import stage_index
from ..losses import LOSSES
from . import observables
from .heads import embed, head


class Problem(NamedTuple):
    """What one compiled program runs (hashable): sizes, loss, optimizer, records, evaluation."""

    loss: str
    width: int
    out: int
    layers: int
    batch: int
    lr: float
    optimizer: str
    momentum: float
    steps_per_stage: tuple[int, ...]
    records: tuple[int, ...]
    train: int  # pairs of each split
    pool: int
    test: int
    prompts: tuple[int, ...]
    draws: int
    rank: int
    ridge: float
    probe_rows: int


def metric_names(prompts: tuple[int, ...]) -> tuple[str, ...]:
    """The recorded metrics, in order."""
    names = ["train_loss", "zsc_acc", *(f"zsc_acc_{m}" for m in prompts), "probe_acc"]
    for side in ("a", "b"):
        names += [f"condition_{side}", f"stable_rank_{side}", f"effective_rank_{side}"]
    return (*names, "alignment", "alignment_score")


class Split(NamedTuple):
    """One seed's pairs: standardized training features, and the fixed evaluation sets."""

    train_a: jax.Array
    train_b: jax.Array
    probe_a: jax.Array  # the first probe_rows training pairs, for the linear probe
    probe_labels: jax.Array
    pool_b: jax.Array
    pool_labels: jax.Array
    test_a: jax.Array
    test_b: jax.Array
    test_labels: jax.Array


def split(problem: Problem, pairs: dict, key) -> Split:
    """A random split of the pairs into training, prompt pool and test, each modality standardized
    by the training pairs' per-feature mean and standard deviation (a constant feature by 1)."""
    order = jax.random.permutation(key, problem.train + problem.pool + problem.test)
    train, pool, test = jnp.split(order, [problem.train, problem.train + problem.pool])
    standardized = {}
    for side in ("a", "b"):
        x = pairs[side]
        mean, deviation = jnp.mean(x[train], axis=0), jnp.std(x[train], axis=0)
        standardized[side] = (x - mean) / jnp.where(deviation > 0, deviation, 1.0)
    a, b, labels = standardized["a"], standardized["b"], pairs["labels"]
    probe = train[: problem.probe_rows]
    return Split(a[train], b[train], a[probe], labels[probe], b[pool], labels[pool], a[test], b[test], labels[test])


def heads(problem: Problem, dims: tuple[int, int], key):
    """((head A, head B), (state A, state B)) from one key."""
    keys = jax.random.split(key)
    made = [head(d, problem.width, problem.out, problem.layers, k) for d, k in zip(dims, keys, strict=True)]
    return tuple(m for m, _ in made), tuple(s for _, s in made)


def batch_loss(params, static, states, a, b, tau, lam, kind: str):
    """The loss of one batch in training mode, and the heads' updated batch-norm states."""
    head_a, head_b = eqx.combine(params, static)
    f_a, state_a = embed(head_a, states[0], a, train=True)
    f_b, state_b = embed(head_b, states[1], b, train=True)
    return LOSSES[kind](f_a @ f_b.T, tau, lam), (state_a, state_b)


def evaluate(problem: Problem, params, static, states, data: Split, prompt_keys) -> dict:
    """Every metric of :func:`metric_names` but ``train_loss``, and the two covariance spectra."""
    head_a, head_b = eqx.combine(params, static)
    f_a, _ = embed(head_a, states[0], data.test_a, train=False)
    f_b, _ = embed(head_b, states[1], data.test_b, train=False)
    pool, _ = embed(head_b, states[1], data.pool_b, train=False)
    probe, _ = embed(head_a, states[0], data.probe_a, train=False)
    out = {}
    for m in problem.prompts:

        def draw(key, m=m):
            prompts, present = observables.class_prompts(pool, data.pool_labels, m, key)
            correct = observables.zero_shot_correct(f_a, prompts, present, data.test_labels)
            return observables.accuracy(correct, data.test_labels)

        out[f"zsc_acc_{m}"] = jnp.mean(jax.vmap(draw)(prompt_keys))
    out["zsc_acc"] = out[f"zsc_acc_{problem.prompts[-1]}"]
    predicted = observables.linear_probe(probe, data.probe_labels, f_a, problem.ridge)
    out["probe_acc"] = observables.accuracy(observables.hits(predicted, data.test_labels), data.test_labels)
    for side, f in (("a", f_a), ("b", f_b)):
        spectrum = observables.covariance_spectrum(f)
        out[f"spectrum_{side}"] = spectrum
        out.update({f"{name}_{side}": value for name, value in observables.balance(spectrum, problem.rank).items()})
    aligned = observables.alignment(f_a, f_b)
    out["alignment"], out["alignment_score"] = aligned["cosine"], aligned["score"]
    return out


def epoch_order(problem: Problem, key, index, order) -> jax.Array:
    """The order of the training pairs at step ``index``: a fresh permutation (key
    ``fold_in(key, epoch)``) at the first step of each epoch of ``train // batch`` steps, else
    ``order`` as it was (drawn once per epoch, not every step)."""
    epoch, position = jnp.divmod(index, problem.train // problem.batch)
    fresh = lambda: jax.random.permutation(jax.random.fold_in(key, epoch), problem.train).astype(order.dtype)  # noqa: E731
    return jax.lax.cond(position == 0, fresh, lambda: order)


def batch_pairs(problem: Problem, data: Split, order, index) -> tuple[jax.Array, jax.Array]:
    """The B training pairs of step ``index``: the next slice of the epoch's ``order``."""
    position = index % (problem.train // problem.batch)
    rows = jax.lax.dynamic_slice(order, (position * problem.batch,), (problem.batch,))
    return data.train_a[rows], data.train_b[rows]


def run(item, shared, problem: Problem) -> dict:
    """One seed: ``item["key"]`` its key; ``shared``: ``a``, ``b``, ``labels`` (the pairs),
    ``taus``, ``gammas`` (per stage), ``lam``. Returns the metrics (T,) and the spectra (T, q)
    at ``problem.records``."""
    split_key, init_key, batch_key, prompt_key = jax.random.split(item["key"], 4)
    data = split(problem, shared, split_key)
    models, states = heads(problem, (data.train_a.shape[1], data.train_b.shape[1]), init_key)
    params, static = eqx.partition(models, eqx.is_array)
    transform = optimizer(problem.optimizer, problem.lr, problem.momentum)
    grad = jax.value_and_grad(batch_loss, has_aux=True)
    prompt_keys = jax.random.split(prompt_key, problem.draws)

    def step(index, carry):
        params, states, opt_state, total, order = carry
        order = epoch_order(problem, batch_key, index, order)
        a, b = batch_pairs(problem, data, order, index)
        stage = stage_index(index, problem.steps_per_stage)
        (loss, states), grads = grad(params, static, states, a, b, shared["taus"][stage], shared["lam"], problem.loss)
        grads = jax.tree.map(lambda g: shared["gammas"][stage] * g, grads)
        updates, opt_state = transform.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), states, opt_state, total + loss, order

    def chunk(carry, bounds):
        start, stop = bounds
        params, states, opt_state, order = carry
        carry = (params, states, opt_state, 0.0, order)
        params, states, opt_state, total, order = jax.lax.fori_loop(start, stop, step, carry)
        record = evaluate(problem, params, static, states, data, prompt_keys)
        record["train_loss"] = total / jnp.maximum(stop - start, 1)
        return (params, states, opt_state, order), record

    records = jnp.asarray(problem.records)
    starts = jnp.concatenate([records[:1], records[:-1]])
    order = epoch_order(problem, batch_key, 0, jnp.zeros(problem.train, jnp.int32))
    first = batch_pairs(problem, data, order, 0)
    first_loss, _ = batch_loss(params, static, states, *first, shared["taus"][0], shared["lam"], problem.loss)
    _, out = jax.lax.scan(chunk, (params, states, transform.init(params), order), (starts, records))
    out["train_loss"] = out["train_loss"].at[0].set(first_loss)
    return out
