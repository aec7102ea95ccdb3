"""Observables of an embedding table on an augmentation graph (specs/spectral.md §2, §3, §5), in JAX.

An embedding is the table Φ (N × k) whose row x is f(x); F = D^{1/2}Φ is its
matrix-factorization form (rows u_x = w_x^{1/2} f(x)). What the observables need from the graph
travels in a :class:`GraphArrays`, built once on the host by :func:`graph_arrays`; :func:`observe`
is pure and jittable, and vmaps over a leading seed axis of Φ:
``jax.vmap(observe, in_axes=(0, None))(phis, arrays)``. Its dtype follows Φ.

Every observable is invariant under Φ → ΦR for an orthogonal R, so the rotation that the closed
form of the flow leaves open (flow.py) never shows.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..engine import lapack
from ..engine.types import Array, Float, Int
from .graph import Graph, bayes_labels, class_mass, eigensystem, minimum


class GraphArrays(NamedTuple):
    """The graph as JAX arrays, for :func:`observe` at embedding dimension k.

    Attributes:
        gammas: (N,) γ, descending.
        modes: (N, modes) U[:, :modes], the eigenvectors whose captured mass is tracked.
        top: (N, k) U_k, the reference top-k eigenvectors (one basis within a degenerate block).
        degrees: (N,) w_x.
        W: (N, N) edge weights.
        aug: (N̄, N) A(x|x̄).
        prior: (N̄,) P(x̄).
        labels: (N̄,) int y(x̄).
        q: (N, r) q(x, c) = Σ_{x̄: y(x̄)=c} P(x̄) A(x|x̄).
        bayes: (N, r) one-hot Bayes labels ŷ(x).
        minimum: () L* = −Σ_{i≤k} γ_i².
        classes: (N, c) orthonormal basis of the class contrasts in F-space, c ≤ r − 1 (:func:`_class_basis`).
        shot_weights: (N,) ω_x = Σ_{x̄ ∈ S} A(x|x̄) over the labeled natural points S.
        shot_targets: (N, r) Σ_{x̄ ∈ S} A(x|x̄) e_{y(x̄)} / ω_x^{1/2} (0 where ω_x = 0).
    """

    gammas: Float[Array, " N"]
    modes: Float[Array, "N modes"]
    top: Float[Array, "N k"]
    degrees: Float[Array, " N"]
    W: Float[Array, "N N"]
    aug: Float[Array, "Nbar N"]
    prior: Float[Array, " Nbar"]
    labels: Int[Array, " Nbar"]
    q: Float[Array, "N r"]
    bayes: Float[Array, "N r"]
    minimum: Float[Array, ""]
    classes: Float[Array, "N c"]
    shot_weights: Float[Array, " N"]
    shot_targets: Float[Array, "N r"]


def labeled_points(graph: Graph, shots: int) -> np.ndarray:
    """The few-label probe's labeled natural points S: per class, the first ``shots`` of a fixed
    random order (``default_rng(0)``; every class's own points if it has fewer), sorted."""
    order = np.random.default_rng(0).permutation(graph.labels.size)
    chosen = [order[graph.labels[order] == c][:shots] for c in range(graph.num_classes)]
    return np.sort(np.concatenate(chosen))


def _class_basis(graph: Graph) -> np.ndarray:
    """Orthonormal columns spanning the class contrasts in F-space: D^{1/2} times the Bayes-label
    indicators, less their component along u_1 ∝ D^{1/2} 1 (r − 1 columns; on the hierarchical
    block graph, the eigenvectors u_2..u_r)."""
    root = np.sqrt(graph.degrees)
    indicators = root[:, None] * np.eye(graph.num_classes)[bayes_labels(graph)]
    top = root / np.linalg.norm(root)
    contrasts = indicators - np.outer(top, top @ indicators)
    left, singular, _ = np.linalg.svd(contrasts, full_matrices=False)
    return left[:, singular > 1e-9 * max(singular.max(), 1e-300)]


def graph_arrays(graph: Graph, k: int, modes: int, shots: int = 2) -> GraphArrays:
    """The :class:`GraphArrays` of a graph at embedding dimension k (float64; forms W).

    Args:
        graph: the graph.
        k: embedding dimension, 1 ≤ k ≤ N.
        modes: how many leading eigenvectors :func:`observe` reports the mass on, 1 ≤ modes ≤ N.
        shots: labeled natural points per class of the few-label probe (:func:`labeled_points`).

    Returns:
        The arrays.
    """
    gammas, vectors = eigensystem(graph)
    labeled = labeled_points(graph, shots)
    aug = graph.aug[labeled]  # (|S|, N)
    weights = aug.sum(axis=0)
    targets = aug.T @ np.eye(graph.num_classes)[graph.labels[labeled]]
    if not 1 <= modes <= graph.num_nodes:
        raise ValueError(f"modes = {modes!r} is invalid: must be an integer in [1, {graph.num_nodes}]")
    return GraphArrays(
        gammas=jnp.asarray(gammas),
        modes=jnp.asarray(vectors[:, :modes]),
        top=jnp.asarray(vectors[:, :k]),
        degrees=jnp.asarray(graph.degrees),
        W=jnp.asarray(graph.W),
        aug=jnp.asarray(graph.aug),
        prior=jnp.asarray(graph.prior),
        labels=jnp.asarray(graph.labels, dtype=jnp.int32),
        q=jnp.asarray(class_mass(graph)),
        bayes=jnp.asarray(np.eye(graph.num_classes)[bayes_labels(graph)]),
        minimum=jnp.asarray(minimum(graph, k)),
        classes=jnp.asarray(_class_basis(graph)),
        shot_weights=jnp.asarray(weights),
        shot_targets=jnp.asarray(targets / np.sqrt(np.where(weights > 0, weights, 1.0))[:, None]),
    )


def population_loss(phi: Float[Array, "N k"], W: Float[Array, "N N"], degrees: Float[Array, " N"]) -> Float[Array, ""]:
    r"""The population spectral contrastive loss of a tabular embedding (§2 Eq. 6, §5).

    .. math::
        L(Φ) = -2\,\mathrm{tr}(Φ^T W Φ) + \|Φ^T D Φ\|_F^2
        = -2\,\mathbb{E}_{x,x^+}[f(x)^T f(x^+)] + \mathbb{E}_{x,x'}[(f(x)^T f(x'))^2].

    Args:
        phi: (N, k) Φ, row x is f(x).
        W: (N, N) edge weights.
        degrees: (N,) w_x, the diagonal of D.

    Returns:
        () L(Φ).
    """
    return -2 * jnp.sum(phi * (W @ phi)) + jnp.sum((phi.T @ (degrees[:, None] * phi)) ** 2)


def column_space(F: Float[Array, "N k"]) -> Float[Array, "N k"]:
    """The left singular vectors of F, those below a relative cutoff zeroed: an orthonormal basis of
    span F, padded with zero columns where F is rank-deficient (F = 0 gives none)."""
    left, singular, _ = lapack.svd(F)
    cutoff = max(F.shape) * jnp.finfo(F.dtype).eps * singular[0]
    return jnp.where(singular > cutoff, left, 0.0)


def sine_to(columns: Float[Array, "N k"], basis: Float[Array, "N m"]) -> Float[Array, ""]:
    r"""\|(I − P_F) B\|_2 for ``columns`` from :func:`column_space`, capped at 1."""
    residual = basis - columns @ (columns.T @ basis)
    return jnp.minimum(lapack.singular_values(residual)[0], 1.0)


def subspace_sine(F: Float[Array, "N k"], basis: Float[Array, "N m"]) -> Float[Array, ""]:
    r"""Largest principal-angle sine from span(basis) to span F: \|(I − P_F) B\|_2.

    For m = rank F it is sin θ_max(span F, span B); for m < rank F it is 0 exactly when span F
    contains span B. Robust to a rank-deficient or tiny F: directions of F below a relative
    cutoff do not count, so F = 0 (or any F of rank below m) gives 1.

    Args:
        F: (N, k) spanning vectors.
        basis: (N, m) orthonormal columns B.

    Returns:
        () the sine, in [0, 1].
    """
    return sine_to(column_space(F), basis)


def _first_max(scores: Float[Array, "n r"]) -> Int[Array, " n"]:
    # Scores here are O(1) (least-squares fits of one-hot targets, or vote shares): gaps below
    # √eps are round-off, and ties in exact arithmetic (symmetric graphs) go to the smallest index.
    tolerance = jnp.sqrt(jnp.finfo(scores.dtype).eps)
    return jnp.argmax(scores >= jnp.max(scores, axis=1, keepdims=True) - tolerance, axis=1)


def _errors_of(phi: Float[Array, "N k"], head: Float[Array, "k r"], arrays: GraphArrays):
    """(augmented, ensembled) errors of the linear classifier g(x) = argmax_c (Hᵀf(x))_c."""
    predicted = jax.nn.one_hot(_first_max(phi @ head), arrays.q.shape[1], dtype=phi.dtype)
    augmented = 1.0 - jnp.sum(arrays.q * predicted)
    vote = _first_max(arrays.aug @ predicted)
    ensembled = jnp.sum(jnp.where(vote != arrays.labels, arrays.prior, 0.0))
    return augmented, ensembled


def probe_errors(phi: Float[Array, "N k"], arrays: GraphArrays) -> tuple[Float[Array, ""], Float[Array, ""]]:
    r"""Errors of the least-squares linear probe fit to the Bayes labels (§3).

    H = argmin_H Σ_x w_x \|e_{ŷ(x)} − Hᵀf(x)\|² = F⁺ D^{1/2} Y_ŷ (no bias; pseudo-inverse, so a
    rank-deficient Φ is fine), g(x) = argmax_c (Hᵀf(x))_c, ḡ(x̄) the plurality vote of g over
    A(·|x̄); ties go to the smallest class index.

    Args:
        phi: (N, k) Φ.
        arrays: the graph's arrays, in Φ's dtype.

    Returns:
        (augmented error 1 − Σ_x q(x, g(x)), ensembled error E = Pr_{x̄∼P}[ḡ(x̄) ≠ y(x̄)]).
    """
    sqrt_w = jnp.sqrt(arrays.degrees)
    head = lapack.pinv(sqrt_w[:, None] * phi) @ (sqrt_w[:, None] * arrays.bayes)
    return _errors_of(phi, head, arrays)


def few_label_error(phi: Float[Array, "N k"], arrays: GraphArrays) -> Float[Array, ""]:
    r"""Ensembled error of the least-squares probe fit to the few labeled natural points S only:
    H = argmin_H Σ_{x̄∈S} Σ_x A(x|x̄) \|e_{y(x̄)} − Hᵀf(x)\|² (no bias, minimum norm), judged like
    :func:`probe_errors` on all the data, Pr_{x̄∼P}[ḡ(x̄) ≠ y(x̄)]."""
    sqrt_w = jnp.sqrt(arrays.shot_weights)
    head = lapack.pinv(sqrt_w[:, None] * phi) @ arrays.shot_targets
    return _errors_of(phi, head, arrays)[1]


def _cast(arrays: GraphArrays, dtype) -> GraphArrays:
    return GraphArrays(*(a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in arrays))


def observe(phi: Float[Array, "N k"], arrays: GraphArrays) -> dict[str, Array]:
    r"""Observables of the embedding table Φ; with F = D^{1/2}Φ:

    - ``loss``: L(Φ) = −2 tr(ΦᵀWΦ) + ‖ΦᵀDΦ‖²_F (:func:`population_loss`);
    - ``gap``: L(Φ) − L*;
    - ``eig``: (k,) eigenvalues of FᵀF, descending (→ γ_1..γ_k at the optimum);
    - ``sine``: sin θ_max(span F, span U_k) (:func:`subspace_sine`);
    - ``mass``: (modes,) ‖Fᵀu_i‖², the squared norm of F along each leading eigenvector u_i;
    - ``probe_aug``, ``probe_ens``: augmented and ensembled errors of the least-squares probe
      (:func:`probe_errors`);
    - ``probe_few``: ensembled error of the probe fit to a few labeled points (:func:`few_label_error`);
    - ``class_sine``: :math:`\|(I - P_F) C\|_2` for C the class contrasts (``arrays.classes``,
      the class indicators less their mean direction u_1): 0 when span F holds every contrast, so
      a linear probe without bias can separate the classes; unit-norm embeddings of InfoNCE
      spread around the origin and need not hold u_1 itself.

    Args:
        phi: (N, k) Φ, row x is f(x).
        arrays: from :func:`graph_arrays` with the same k.

    Returns:
        dict of arrays in Φ's dtype.
    """
    arrays = _cast(arrays, phi.dtype)
    F = jnp.sqrt(arrays.degrees)[:, None] * phi
    loss = population_loss(phi, arrays.W, arrays.degrees)
    probe_aug, probe_ens = probe_errors(phi, arrays)
    columns = column_space(F)  # one SVD for both sines
    return {
        "loss": loss,
        "gap": loss - arrays.minimum,
        "eig": lapack.eigvalsh(F.T @ F)[::-1],
        "sine": sine_to(columns, arrays.top),
        "mass": jnp.sum((arrays.modes.T @ F) ** 2, axis=1),
        "probe_aug": probe_aug,
        "probe_ens": probe_ens,
        "probe_few": few_label_error(phi, arrays),
        "class_sine": sine_to(columns, arrays.classes),
    }
