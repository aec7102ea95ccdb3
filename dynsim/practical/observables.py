r"""What is measured of the learned embeddings: zero-shot classification as CLIP does it, a linear
probe, balance (seed 001 Def. 4.2) and alignment (Def. 4.1).

Embeddings are unit vectors (rows); labels a 0/1 matrix ``(n, C)``. A prediction counts as correct
when it is one of the example's labels (seed 001 §6 on multi-label MSCOCO; for single-label data
that is plain accuracy); examples without any label are left out of accuracies.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..engine import lapack


def class_prompts(b, labels, count: int, key) -> tuple[jax.Array, jax.Array]:
    r"""Per class c the prompt :math:`w_c = \mathrm{mean}_{j \in J_c} f_B(x^j_B)`, J_c ``count``
    examples of class c drawn without replacement from the rows of ``b`` (all of them when the
    class has fewer).

    Args:
        b: modality-B embeddings of the held-out prompt pool (P, q).
        labels: their labels (P, C).
        count: M, examples per prompt.
        key: the draw.

    Returns:
        ``(prompts (C, q), present (C,))``: ``present[c]`` is False for a class with no example
        in the pool (its prompt is zero and it is never predicted).
    """
    noise = jax.random.uniform(key, labels.shape[:1])
    ranked = jnp.where(labels.T > 0, noise[None, :], jnp.inf)  # (C, P): a class's examples get a random rank
    threshold = jnp.sort(ranked, axis=1)[:, min(count, ranked.shape[1]) - 1]
    chosen = (ranked <= threshold[:, None]) & (labels.T > 0)
    sizes = jnp.sum(chosen, axis=1)
    prompts = (chosen.astype(b.dtype) @ b) / jnp.maximum(sizes, 1)[:, None]
    return prompts, sizes > 0


def zero_shot_correct(a, prompts, present, labels) -> jax.Array:
    r"""Whether :math:`\hat c_i = \arg\max_c \cos(f_A(x^i_A), w_c)` is one of example i's labels, (n,)."""
    norms = jnp.linalg.norm(prompts, axis=1)
    cosine = (a @ prompts.T) / jnp.where(present, norms, 1.0)
    return hits(jnp.argmax(jnp.where(present, cosine, -jnp.inf), axis=1), labels)


def hits(predicted, labels) -> jax.Array:
    """Whether each predicted class (n,) is one of its example's labels (n, C)."""
    return jnp.take_along_axis(labels, predicted[:, None], axis=1)[:, 0] > 0


def accuracy(correct, labels) -> jax.Array:
    """The fraction of ``correct`` over the examples that have at least one label."""
    labelled = jnp.any(labels > 0, axis=1)
    return jnp.sum(correct & labelled) / jnp.maximum(jnp.sum(labelled), 1)


def linear_probe(train, train_labels, test, ridge: float) -> jax.Array:
    r"""Predicted classes of ``test`` by ridge regression of the labels on the embeddings (and a
    constant): :math:`\hat W = (X^\top X + \lambda n I)^{-1} X^\top Y`, :math:`\hat c = \arg\max_c (x \hat W)_c`.

    A least-squares classifier in closed form: no inner optimization loop, the same answer for
    the same embeddings. (n_test,) class indices.
    """
    design = jnp.concatenate([train, jnp.ones((train.shape[0], 1), train.dtype)], axis=1)
    gram = design.T @ design + ridge * train.shape[0] * jnp.eye(design.shape[1], dtype=train.dtype)
    weights = lapack.solve(gram, design.T @ train_labels)
    return jnp.argmax(test @ weights[:-1] + weights[-1], axis=1)


def covariance_spectrum(x) -> jax.Array:
    r"""Eigenvalues :math:`\lambda_1 \ge \dots \ge \lambda_q \ge 0` of the output covariance
    :math:`\Sigma = \mathrm{Cov}(f(x))` over the rows of ``x`` (n, q)."""
    centered = x - jnp.mean(x, axis=0)
    eigenvalues = lapack.eigvalsh(centered.T @ centered / (x.shape[0] - 1))
    return jnp.maximum(eigenvalues[::-1], 0.0)


def balance(spectrum, rank: int) -> dict[str, jax.Array]:
    r"""Balance of a covariance spectrum :math:`\lambda` (descending):

    - ``condition``: :math:`\kappa_k = \sqrt{\lambda_1/\lambda_k}` with k = ``rank``, the ratio of
      the first and k-th singular values of the centered embeddings (the seed's
      :math:`\kappa(S_A) = s_1/s_r` with r = k);
    - ``stable_rank``: :math:`\|\Sigma\|_F^2 / \|\Sigma\|_2^2 = \sum_i \lambda_i^2 / \lambda_1^2`
      (Def. 4.2's balance score);
    - ``effective_rank``: :math:`\exp H(\lambda / \sum \lambda)` (Roy & Vetterli 2007).
    """
    weights = spectrum / jnp.sum(spectrum)
    entropy = -jnp.sum(jnp.where(weights > 0, weights * jnp.log(jnp.where(weights > 0, weights, 1.0)), 0.0))
    return {
        "condition": jnp.sqrt(spectrum[0] / spectrum[rank - 1]),
        "stable_rank": jnp.sum(spectrum**2) / spectrum[0] ** 2,
        "effective_rank": jnp.exp(entropy),
    }


def alignment(a, b) -> dict[str, jax.Array]:
    r"""Alignment of positive pairs (rows of unit embeddings ``a``, ``b``):

    - ``cosine``: :math:`\mathrm{mean}_i \langle f_A(x^i_A), f_B(x^i_B)\rangle`;
    - ``score``: Def. 4.1, :math:`\Pr[\|f_A - f_B\| < \|f_A - f_B'\|]` with :math:`x_B'` the next
      row's (a derangement of the rows); for unit vectors the same as comparing cosines.
    """
    positive = jnp.sum(a * b, axis=1)
    negative = jnp.sum(a * jnp.roll(b, 1, axis=0), axis=1)
    return {"cosine": jnp.mean(positive), "score": jnp.mean(positive > negative)}
