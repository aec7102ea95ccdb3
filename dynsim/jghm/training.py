r"""CLIP training of two towers on fresh JGHM draws, held against the exact references at every
record (spec §1, §2, §3, §7, §10).

One seed's run (:func:`run`) is one compiled program: the towers built from the seed's key,
optax's AdamW on a cosine schedule with gradient-norm clipping, an outer ``lax.scan`` over the
records with a ``fori_loop`` of steps in between, each step on B fresh pairs, and at every
record the evaluation on the seed's fixed evaluation set (BP posteriors computed once):

- ``loss``: the mean training loss since the previous record (the symmetric in-batch loss,
  directions summed); ``clip_risk``: the same loss of the current towers on the evaluation
  pairs in batches of B, ``bayes_clip`` the Bayes score's on the same batches (:math:`R^*_B`),
  ``excess_clip`` their difference and ``excess_clip_se`` its standard error (per-anchor terms);
- ``suff_image``, ``suff_text``, ``suff`` (their sum) and ``suff_se``: the estimator of
  :func:`dynsim.jghm.bayes.sufficiency_terms` with N fresh draws of the other modality;
- per prompt count M: ``zsc_ce_M``, ``zsc_gap_M`` (minus the Bayes cross-entropy of the same
  images), ``zsc_acc_M`` for the first-text-leaf label, ``control_gap_M`` for the root label (the
  negative control); ``bayes_zsc_ce``, ``bayes_zsc_acc``; ``mutual_information`` (mean S*);
- ``score_error``: the root-mean-square of :math:`(S - S^*)` on a P × P probe grid after removing
  its mean (S is defined up to a constant); coordinate ``score``: S − mean(S) on that grid.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from . import bayes, contrast
from .bp import pmi, root_posterior, upward_beliefs
from .encoders import embed, tower
from .tree import Tree, sample


class Problem(NamedTuple):
    """What one compiled program runs (hashable): the towers, the optimizer, the records and
    the evaluation sizes."""

    architecture: str
    width: int
    layers: int
    heads: int
    out: int
    batch: int
    lr: float
    lr_final: float
    weight_decay: float
    clip: float
    guidance: float
    records: tuple[int, ...]
    pairs: int
    marginal: int
    prompts: tuple[int, ...]
    probe: int


def metric_names(prompts: tuple[int, ...]) -> tuple[str, ...]:
    """The recorded metrics, in order."""
    names = ["loss", "clip_risk", "bayes_clip", "excess_clip", "excess_clip_se", "suff_image", "suff_text"]
    names += ["suff", "suff_se", "mutual_information", "score_error", "bayes_zsc_ce", "bayes_zsc_acc"]
    for kind in ("zsc_ce", "zsc_gap", "zsc_acc", "control_gap"):
        names += [f"{kind}_{m}" for m in prompts]
    return tuple(names)


def towers(problem: Problem, model: Tree, key):
    """(image tower, text tower) from one key."""
    image_key, text_key = jax.random.split(key)
    kwargs = dict(width=problem.width, layers=problem.layers, heads=problem.heads, out=problem.out)
    return (
        tower(problem.architecture, model.leaves("image"), model.states, key=image_key, **kwargs),
        tower(problem.architecture, model.leaves("text"), model.states, key=text_key, **kwargs),
    )


def optimizer(problem: Problem) -> optax.GradientTransformation:
    """Gradient-norm clipping, then AdamW on a cosine schedule lr -> lr_final over the run."""
    steps = max(problem.records[-1], 1)
    schedule = optax.cosine_decay_schedule(problem.lr, steps, alpha=problem.lr_final / problem.lr)
    return optax.chain(
        optax.clip_by_global_norm(problem.clip), optax.adamw(schedule, weight_decay=problem.weight_decay)
    )


def guidance_targets(model: Tree, leaves, modality: str, layers: int) -> list[jax.Array]:
    """For layers ℓ = 1..L, the upward BP belief of depth L − ℓ broadcast to the leaves it covers,
    (n, T, V): what channels (ℓ−1)V .. ℓV of hidden state ℓ are pulled toward."""
    levels = upward_beliefs(model, leaves, modality)
    depth, branching = model.depth(modality), model.branching(modality)
    return [jnp.repeat(levels[depth - layer], branching**layer, axis=1) for layer in range(1, min(depth, layers) + 1)]


def guidance_penalty(hidden: list[jax.Array], targets: list[jax.Array]) -> jax.Array:
    r""":math:`\sum_ℓ E_n \|H_ℓ[:, :, (ℓ-1)V:ℓV] - \text{target}_ℓ\|_F^2` (the slice advances with ℓ)."""
    total = 0.0
    for layer, target in enumerate(targets):
        states = target.shape[-1]
        block = hidden[layer][..., layer * states : (layer + 1) * states]
        total = total + jnp.mean(jnp.sum((block - target) ** 2, axis=(1, 2)))
    return total


def clip_loss(params, static, batch, targets, guidance: float):
    """The mean in-batch CLIP loss of a batch (and the guided penalty when ``guidance`` > 0)."""
    image_tower, text_tower = eqx.combine(params, static)
    u, image_hidden = embed(image_tower, batch[0])
    v, text_hidden = embed(text_tower, batch[1])
    loss = jnp.mean(contrast.in_batch(u @ v.T))
    if guidance:
        penalty = guidance_penalty(image_hidden, targets[0]) + guidance_penalty(text_hidden, targets[1])
        return loss + guidance * penalty, loss
    return loss, loss


class Evaluation(NamedTuple):
    """A seed's fixed evaluation set and its exact references."""

    pairs: tuple  # image, text leaves of the joint pairs
    marginal: tuple  # image, text leaves of independent draws
    prompts: jax.Array  # (V * M_max,) first-leaf prompt texts, class-major
    control: jax.Array  # (V * M_max,) root prompt texts
    labels: jax.Array  # first text leaf of each pair
    roots: jax.Array
    bayes_pairs: jax.Array  # S* of each pair
    bayes_probe: jax.Array  # S* on the probe grid
    bayes: dict  # constants: bayes_clip, mutual_information, bayes_zsc_*, control Bayes ce


def evaluation_set(problem: Problem, model: Tree, key) -> Evaluation:
    """Draw the evaluation set of one seed and compute its Bayes values by BP."""
    pair_key, marginal_key, prompt_key, control_key = jax.random.split(key, 4)
    image, text, roots = sample(model, pair_key, problem.pairs)
    marginal_image, marginal_text, _ = sample(model, marginal_key, problem.marginal)
    count = problem.prompts[-1]
    prompts = bayes.draw_prompts(model, prompt_key, count, "first_leaf")
    control = bayes.draw_prompts(model, control_key, count, "root")
    pi_im, pi_tx = root_posterior(model, image, "image"), root_posterior(model, text, "text")
    labels = text[:, 0]
    bayes_pairs = bayes.pair_pmi(model, pi_im, pi_tx)
    blocks = pmi(model, pi_im, pi_tx)
    first_leaf = bayes.bayes_label_posterior(model, pi_im, "first_leaf")
    clip_terms = _batched_terms(blocks, problem.batch)
    references = {
        "bayes_clip": jnp.mean(clip_terms),
        "mutual_information": jnp.mean(bayes_pairs),
        "bayes_zsc_ce": jnp.mean(bayes.bayes_label_ce(first_leaf, labels)),
        "bayes_zsc_acc": jnp.mean(jnp.argmax(first_leaf, axis=1) == labels),
        "bayes_control_ce": jnp.mean(bayes.bayes_label_ce(pi_im, roots)),
        "bayes_clip_terms": clip_terms,
    }
    probe = blocks[: problem.probe, : problem.probe]
    return Evaluation(
        (image, text), (marginal_image, marginal_text), prompts, control, labels, roots, bayes_pairs, probe, references
    )


def _batched_terms(scores, batch: int) -> jax.Array:
    """Per-anchor in-batch losses of the diagonal blocks of size ``batch`` of an (n, n) score matrix."""
    n = scores.shape[0] // batch * batch
    blocks = scores[:n, :n].reshape(n // batch, batch, n // batch, batch)
    diagonal = jnp.diagonal(blocks, axis1=0, axis2=2).transpose(2, 0, 1)  # (blocks, batch, batch)
    return jax.vmap(contrast.in_batch)(diagonal).ravel()


def evaluate(problem: Problem, model: Tree, params, static, evaluation: Evaluation) -> dict:
    """Every metric of :func:`metric_names` but ``loss``, and the probe-grid score."""
    image_tower, text_tower = eqx.combine(params, static)
    image_embed = lambda x: embed(image_tower, x)[0]  # noqa: E731
    text_embed = lambda x: embed(text_tower, x)[0]  # noqa: E731
    u, v = image_embed(evaluation.pairs[0]), text_embed(evaluation.pairs[1])
    u_marginal, v_marginal = image_embed(evaluation.marginal[0]), text_embed(evaluation.marginal[1])
    scores = u @ v.T
    paired = jnp.diagonal(scores)
    references = evaluation.bayes
    terms = _batched_terms(scores, problem.batch)
    excess_terms = terms - references["bayes_clip_terms"]
    suff_image = bayes.sufficiency_terms(paired, evaluation.bayes_pairs, u @ v_marginal.T)
    suff_text = bayes.sufficiency_terms(paired, evaluation.bayes_pairs, v @ u_marginal.T)
    n = suff_image.shape[0]
    out = {
        "clip_risk": jnp.mean(terms),
        "bayes_clip": references["bayes_clip"],
        "excess_clip": jnp.mean(excess_terms),
        "excess_clip_se": jnp.std(excess_terms, ddof=1) / jnp.sqrt(excess_terms.size),
        "suff_image": jnp.mean(suff_image),
        "suff_text": jnp.mean(suff_text),
        "suff": jnp.mean(suff_image + suff_text),
        "suff_se": jnp.std(suff_image + suff_text, ddof=1) / jnp.sqrt(n),
        "mutual_information": references["mutual_information"],
        "bayes_zsc_ce": references["bayes_zsc_ce"],
        "bayes_zsc_acc": references["bayes_zsc_acc"],
    }
    count = problem.prompts[-1]
    for name, prompts, labels, label in (
        ("zsc", evaluation.prompts, evaluation.labels, "first_leaf"),
        ("control", evaluation.control, evaluation.roots, "root"),
    ):
        w = text_embed(prompts).reshape(model.states, count, -1)
        ce, correct = bayes.zero_shot(
            jnp.einsum("nq,ymq->nym", u, w), labels, bayes.label_prior(model, label), problem.prompts
        )
        reference = references["bayes_zsc_ce" if name == "zsc" else "bayes_control_ce"]
        for i, m in enumerate(problem.prompts):
            if name == "zsc":
                out[f"zsc_ce_{m}"] = jnp.mean(ce[i])
                out[f"zsc_gap_{m}"] = jnp.mean(ce[i]) - reference
                out[f"zsc_acc_{m}"] = jnp.mean(correct[i])
            else:
                out[f"control_gap_{m}"] = jnp.mean(ce[i]) - reference
    probe = scores[: problem.probe, : problem.probe]
    difference = probe - evaluation.bayes_probe
    out["score_error"] = jnp.sqrt(jnp.mean((difference - jnp.mean(difference)) ** 2))
    out["score"] = (probe - jnp.mean(probe)).ravel()
    return out


def run(item, shared, problem: Problem) -> dict:
    """One seed: ``item["key"]`` its key, ``shared["model"]`` the JGHM. Returns the metrics (T,)
    and ``score`` (T, P²) at ``problem.records``."""
    model = shared["model"]
    init_key, train_key, eval_key = jax.random.split(item["key"], 3)
    params, static = eqx.partition(towers(problem, model, init_key), eqx.is_array)
    transform = optimizer(problem)
    evaluation = evaluation_set(problem, model, eval_key)
    grad = jax.value_and_grad(clip_loss, has_aux=True)
    layers = problem.layers if problem.guidance else 0

    def step(index, carry):
        params, state, total = carry
        image, text, _ = sample(model, jax.random.fold_in(train_key, index), problem.batch)
        targets = tuple(guidance_targets(model, x, m, layers) for x, m in ((image, "image"), (text, "text")))
        (_, loss), grads = grad(params, static, (image, text), targets, problem.guidance)
        updates, state = transform.update(grads, state, params)
        return optax.apply_updates(params, updates), state, total + loss

    def chunk(carry, bounds):
        start, stop = bounds
        params, state, _ = carry
        params, state, total = jax.lax.fori_loop(start, stop, step, (params, state, jnp.zeros(())))
        record = evaluate(problem, model, params, static, evaluation)
        record["loss"] = total / jnp.maximum(stop - start, 1)
        return (params, state, total), record

    records = jnp.asarray(problem.records)
    starts = jnp.concatenate([records[:1], records[:-1]])
    first_loss = clip_loss(params, static, sample(model, train_key, problem.batch)[:2], ((), ()), 0.0)[1]
    _, out = jax.lax.scan(chunk, (params, transform.init(params), jnp.zeros(())), (starts, records))
    out["loss"] = out["loss"].at[0].set(first_loss)
    return out
