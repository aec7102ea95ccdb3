r"""Exact references of the JGHM (spec §6), by belief propagation on fresh draws: the Bayes
score S* (the pointwise mutual information), the Bayes CLIP risk :math:`R^*_K`, the mutual
information :math:`I = E_P[S^*]`, the Bayes zero-shot posterior, and the estimators that hold
any score against them (approximate sufficiency, §2; zero-shot classification, §3).

Monte Carlo estimates come with their standard error (sd / √n over iid terms).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import check_count
from . import contrast
from .bp import pmi, root_posterior
from .tree import Tree, sample, sample_given_first_leaf, sample_given_root

CHUNK = 4096  # anchors per compiled evaluation (bounds memory on deep trees)
LABELS = ("first_leaf", "root")


def pair_pmi(model: Tree, image_posterior, text_posterior) -> jax.Array:
    r""":math:`S^*` of aligned pairs: (..., V) posteriors -> (...)."""
    return jnp.log(jnp.sum(image_posterior * text_posterior / jnp.asarray(model.prior), axis=-1))


def mean_and_error(values) -> tuple[float, float]:
    """Mean of iid terms and its standard error."""
    values = np.asarray(values, dtype=float).ravel()
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def _posteriors(model: Tree, image, text):
    return root_posterior(model, image, "image"), root_posterior(model, text, "text")


@functools.partial(jax.jit, static_argnames=("K", "n"))
def _k_way_terms(model: Tree, key, K: int, n: int) -> jax.Array:
    image, text, _ = sample(model, key, K * n)
    pi_im, pi_tx = (p.reshape(K, n, -1) for p in _posteriors(model, image, text))
    positive = pair_pmi(model, pi_im[0], pi_tx[0])
    text_negatives = pair_pmi(model, pi_im[0][None], pi_tx[1:]).T
    image_negatives = pair_pmi(model, pi_im[1:], pi_tx[0][None]).T
    return contrast.k_way(positive, text_negatives, image_negatives)


@functools.partial(jax.jit, static_argnames=("K", "batches"))
def _in_batch_terms(model: Tree, key, K: int, batches: int) -> jax.Array:
    image, text, _ = sample(model, key, K * batches)
    pi_im, pi_tx = (p.reshape(batches, K, -1) for p in _posteriors(model, image, text))
    scores = jax.vmap(lambda a, b: pmi(model, a, b))(pi_im, pi_tx)
    return jax.vmap(contrast.in_batch)(scores).mean(axis=1)


def bayes_clip_risk(model: Tree, K: int, key, samples: int, *, in_batch: bool = False) -> tuple[float, float]:
    r"""The Bayes CLIP risk :math:`R^*_K = R_K(S^*)` (both directions summed) and its standard error.

    Args:
        K: contrast size: the anchor and K − 1 negatives per direction.
        samples: ``in_batch=False``: anchors, each with its own K − 1 fresh texts and images;
            ``in_batch=True``: batches of K fresh pairs (every pair an anchor, its batch the
            negatives), the error taken over batch means.

    Example:
        >>> import jax
        >>> from dynsim.jghm import bayes_clip_risk, tree
        >>> risk, error = bayes_clip_risk(tree(2, 2, 4, 0.2), 4, jax.random.PRNGKey(0), 2000)
        >>> 0 < risk < 2 * 1.3863
        True
    """
    check_count("K", K, 2), check_count("samples", samples, 2)
    per = max(1, CHUNK // K)
    terms = []
    for index, start in enumerate(range(0, samples, per)):
        count = min(per, samples - start)
        chunk_key = jax.random.fold_in(key, index)
        draw = _in_batch_terms if in_batch else _k_way_terms
        terms.append(np.asarray(draw(model, chunk_key, K, count)))
    return mean_and_error(np.concatenate(terms))


@functools.partial(jax.jit, static_argnames=("n",))
def _pmi_terms(model: Tree, key, n: int) -> jax.Array:
    image, text, _ = sample(model, key, n)
    return pair_pmi(model, *_posteriors(model, image, text))


def mutual_information(model: Tree, key, samples: int) -> tuple[float, float]:
    r""":math:`I(x_{im}; x_{tx}) = E_P[S^*]` and its standard error."""
    check_count("samples", samples, 2)
    terms = [
        np.asarray(_pmi_terms(model, jax.random.fold_in(key, i), min(CHUNK, samples - start)))
        for i, start in enumerate(range(0, samples, CHUNK))
    ]
    return mean_and_error(np.concatenate(terms))


def label_channel(model: Tree, label: str) -> jax.Array:
    r"""(V, V) the law of the zero-shot label given the root: the leftmost text path
    :math:`T_{1,0} \cdots T_{L,0}` for ``"first_leaf"`` (the code's label, a function of the
    text, so :math:`x_{im} ⟂ y \mid x_{tx}`), the identity for ``"root"`` (the negative control)."""
    if label not in LABELS:
        raise ValueError(f"label = {label!r} is invalid: must be one of {', '.join(map(repr, LABELS))}")
    return model.path("text") if label == "first_leaf" else jnp.eye(model.states)


def label_prior(model: Tree, label: str) -> jax.Array:
    """(V,) p(y) of the zero-shot label."""
    return jnp.asarray(model.prior) @ label_channel(model, label)


def bayes_label_posterior(model: Tree, image_posterior, label: str) -> jax.Array:
    r"""(n, V) :math:`p(y \mid x_{im}) = \sum_r π_{im}(r) [\text{channel}]_{r, y}`."""
    return image_posterior @ label_channel(model, label)


def bayes_label_ce(posterior, labels) -> jax.Array:
    r"""(n,) :math:`-\log p(y_i \mid x_{im,i})` from the Bayes label posterior (n, V)."""
    return -jnp.log(jnp.take_along_axis(posterior, labels[:, None], axis=1)[:, 0])


def draw_prompts(model: Tree, key, count: int, label: str) -> jax.Array:
    """``count`` prompt texts per class, class-major (V · count, m^L): drawn from
    P(x_tx | first leaf = y) for ``"first_leaf"``, from P(x_tx | root = y) for ``"root"``."""
    classes = jnp.repeat(jnp.arange(model.states), count)
    if label == "first_leaf":
        return sample_given_first_leaf(model, key, classes)
    return sample_given_root(model, key, classes, "text")


def zero_shot(scores, labels, prior, prompts: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    r"""Zero-shot classification with M prompts per class (spec §3, Prop. 2), for each M of
    ``prompts``: :math:`\hat p(y \mid x) \propto p(y) \frac1M \sum_{j \le M} e^{S(x, x^{(y,j)})}`
    from the first M prompts of each class.

    Args:
        scores: (n, V, M_max) S(image i, prompt j of class y).
        labels: (n,) the true labels; prior: (V,) p(y).

    Returns:
        ``(cross_entropy, correct)``, each (len(prompts), n): −log p̂(y_i | x_i) and whether the
        arg max is y_i.
    """
    out_ce, out_ok = [], []
    for count in prompts:
        logits = jnp.log(prior) + jax.nn.logsumexp(scores[..., :count], axis=-1) - jnp.log(count)
        log_p = jax.nn.log_softmax(logits, axis=-1)
        out_ce.append(-jnp.take_along_axis(log_p, labels[:, None], axis=1)[:, 0])
        out_ok.append(jnp.argmax(logits, axis=-1) == labels)
    return jnp.stack(out_ce), jnp.stack(out_ok)


def sufficiency_terms(paired, bayes_paired, marginal) -> jax.Array:
    r"""Per anchor, the terms of :math:`\mathrm{Suff}_{im}(S) = E_P[S^* - S] + E_{x_{im}} \log
    E_{x' \sim P_{tx}} e^{S(x_{im}, x')}` (spec §2): ``paired`` (n,) S of the anchors' pairs,
    ``bayes_paired`` (n,) S* of the same pairs, ``marginal`` (n, N) S of each anchor against N
    fresh draws of the other modality (the log of their mean is biased low by O(1/N)).
    The text side is the same with the roles of the modalities exchanged."""
    count = marginal.shape[1]
    return bayes_paired - paired + jax.nn.logsumexp(marginal, axis=1) - jnp.log(count)


def _zero_shot_once(model: Tree, key, images: int, prompts: tuple[int, ...], label: str):
    """One draw of images and prompts: per M the mean gap and accuracy, and the Bayes accuracy."""
    image_key, prompt_key = jax.random.split(key)
    image, text, roots = sample(model, image_key, images)
    labels = text[:, 0] if label == "first_leaf" else roots
    pi_im = root_posterior(model, image, "image")
    pi_prompts = root_posterior(model, draw_prompts(model, prompt_key, prompts[-1], label), "text")
    scores = pmi(model, pi_im, pi_prompts).reshape(images, model.states, -1)
    ce, correct = zero_shot(scores, labels, label_prior(model, label), tuple(prompts))
    posterior = bayes_label_posterior(model, pi_im, label)
    gap = np.asarray(ce - bayes_label_ce(posterior, labels)).mean(axis=1)
    return gap, np.asarray(correct).mean(axis=1), float(np.mean(np.asarray(jnp.argmax(posterior, axis=1) == labels)))


def bayes_zero_shot(
    model: Tree, key, images: int, prompts: tuple[int, ...], label: str = "first_leaf", repeats: int = 8
) -> dict:
    r"""Zero-shot classification with the Bayes score S* as the classifier's score, against the
    Bayes posterior of the same images: for each M of ``prompts``, the mean excess cross-entropy
    (``gap``, (len(prompts),)) and its standard error (``gap_se``), and the accuracy
    (``accuracy``) beside the Bayes accuracy (``bayes_accuracy``). Prompts are drawn from
    P(x_tx | y) independently of the scored images (the first text leaf, or the root for the
    negative control ``label = "root"``).

    The gap depends on the prompt set drawn as much as on the images (at M = 1 mostly on the
    prompts), so the estimate is the mean over ``repeats`` independent draws of ``images`` images
    and their prompts, and ``gap_se`` the standard error over those draws.
    """
    check_count("images", images, 1), check_count("repeats", repeats, 2)
    label_channel(model, label)  # refuse an unknown label before drawing
    draws = [_zero_shot_once(model, jax.random.fold_in(key, r), images, tuple(prompts), label) for r in range(repeats)]
    gaps = np.stack([gap for gap, _, _ in draws])
    return {
        "gap": gaps.mean(axis=0),
        "gap_se": gaps.std(axis=0, ddof=1) / np.sqrt(repeats),
        "accuracy": np.mean([accuracy for _, accuracy, _ in draws], axis=0),
        "bayes_accuracy": float(np.mean([bayes for _, _, bayes in draws])),
    }
