"""Augmentation graphs (specs/spectral.md §1) and their exact spectral quantities, in NumPy float64.

A :class:`Graph` holds a family name, its parameters and the labels. Everything dense (the
augmentation kernel, W, the eigensystem) is computed on first use and cached on the graph, so
building a family graph of 10^5 nodes is cheap: :func:`pair_sampler` draws its edges from the
augmentation mixture without ever forming W.

Families (X̄ = X, one natural point per node, P uniform):

- ``hsbm`` (Family A): r classes × S subclasses × n nodes, node index (c·S + s)·n + j.
- ``ring`` (Family B): N nodes on a cycle, classes are r contiguous arcs.

A user graph (``file``, :func:`load_graph`) has no natural data: each node is its own natural
point, with A = I and P = w. Then α* = 0, ŷ = y, and the ensembled probe equals the augmented one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import ConfigError, fail

FAMILIES = ("hsbm", "ring", "file")
TASKS = ("class", "subclass")
MAX_BRUTE_FORCE_NODES = 12  # Bell(12) = 4.2 million partitions in all; Bell(13) = 27.6 million


@dataclasses.dataclass(frozen=True, eq=False)
class Graph:
    """A finite augmentation graph on N augmented points: W = Augᵀ diag(P) Aug for the families.

    For a user graph W is given, and (A, P) = (I, w) only define the downstream task (q, α*, the
    ensembled probe); Augᵀ diag(P) Aug = diag(w) is not W there. Build a graph with :func:`hsbm`,
    :func:`ring` or :func:`load_graph`. Dense arrays are cached on first use and read-only.
    Equality and hashing are by identity.

    Attributes:
        family: ``"hsbm"``, ``"ring"`` or ``"file"``.
        params: the family's parameters (keyword arguments of :func:`hsbm` or :func:`ring`;
            ``{"path": ...}`` for a file).
        labels: (N̄,) class label y(x̄) of each natural point, in ``0..r-1``.
        matrix: (N, N) the normalized W of a user graph; ``None`` for the families.
    """

    family: str
    params: dict[str, Any]
    labels: np.ndarray
    matrix: np.ndarray | None = dataclasses.field(default=None, repr=False)

    @property
    def num_nodes(self) -> int:
        """N, the number of augmented points (= N̄ for every family)."""
        return self.labels.shape[0]

    @property
    def num_classes(self) -> int:
        """r, the number of classes of the downstream task."""
        return int(self.labels.max()) + 1

    @functools.cached_property
    def aug(self) -> np.ndarray:
        """(N̄, N) row-stochastic augmentation kernel A(x|x̄); the identity for a user graph."""
        if self.family == "file":
            return _read_only(np.eye(self.num_nodes))
        return _read_only(_AUGMENTATIONS[self.family](**self.params))

    @functools.cached_property
    def prior(self) -> np.ndarray:
        """(N̄,) P(x̄): uniform for the families, w for a user graph."""
        if self.family == "file":
            return self.degrees
        return _read_only(np.full(self.num_nodes, 1.0 / self.num_nodes))

    @functools.cached_property
    def W(self) -> np.ndarray:
        """(N, N) edge weights w_{xx'} = Σ_x̄ P(x̄) A(x|x̄) A(x'|x̄), summing to 1."""
        if self.matrix is not None:
            return self.matrix
        return _read_only(self.aug.T @ (self.prior[:, None] * self.aug))

    @functools.cached_property
    def degrees(self) -> np.ndarray:
        """(N,) degrees w_x = Σ_x' w_{xx'}, the marginal of an augmented point."""
        if self.matrix is not None:
            return _read_only(self.matrix.sum(axis=1))
        # Both families are regular: Aug is symmetric and row-stochastic, hence doubly
        # stochastic, and P is uniform; this keeps a large family graph free of dense work.
        return _read_only(np.full(self.num_nodes, 1.0 / self.num_nodes))

    @functools.cached_property
    def _eigensystem(self) -> tuple[np.ndarray, np.ndarray]:
        gammas, vectors = np.linalg.eigh(normalized_adjacency(self))
        return _read_only(gammas[::-1].copy()), _read_only(vectors[:, ::-1].copy())


def _read_only(array: np.ndarray) -> np.ndarray:
    # Cached arrays are shared by every caller: a stray in-place edit must fail, not corrupt the cache.
    array.flags.writeable = False
    return array


# --- validation -------------------------------------------------------------------------------


def _check_integer(field: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        fail(field, value, "must be an integer")
    if value < low or (high is not None and value > high):
        fail(field, value, f"must be an integer in [{low}, {high}]" if high is not None else f"must be >= {low}")


def _check_theta(theta: Any, classes: int, subclasses: int) -> tuple[float, ...]:
    allowed = "must be 4 non-negative numbers (theta0, theta1, theta_s, theta2) summing to 1"
    try:
        values = tuple(float(v) for v in theta)
    except (TypeError, ValueError):
        fail("theta", theta, allowed)
    if len(values) != 4 or not all(math.isfinite(v) and v >= 0 for v in values) or abs(sum(values) - 1) > 1e-9:
        fail("theta", theta, allowed)
    if subclasses == 1 and values[2] != 0:
        fail("theta", theta, "theta_s (third entry) must be 0 when subclasses = 1")
    if classes == 1 and values[3] != 0:
        fail("theta", theta, "theta2 (fourth entry) must be 0 when classes = 1")
    return values


# --- families ---------------------------------------------------------------------------------


def hsbm(classes: int, subclasses: int, nodes: int, theta, task: str = "class") -> Graph:
    r"""Family A, the hierarchical block augmentation graph (HSBM-aug).

    A(·|x̄) puts θ0 on x̄, θ1 uniformly on the n nodes of its subclass (itself included), θs
    uniformly on the n(S−1) nodes of the other subclasses of its class and θ2 uniformly on the
    nS(r−1) nodes of the other classes. The spectrum of Ā = Aug² is 1, γ_cls = (1 − rθ2/(r−1))²
    (×(r−1)), γ_sub = (θ0 + θ1 − θs/(S−1))² (×r(S−1)), γ_node = θ0² (×rS(n−1)). With
    γ_cls > γ_sub > γ_node the top-k eigenspace is unique for k ∈ {1, r, rS} only; the class task
    has α* = θ2 when θ2 < (r−1)/r.

    Args:
        classes: r ≥ 1.
        subclasses: S ≥ 1 per class.
        nodes: n ≥ 1 per subclass; N = rSn ≥ 2.
        theta: (θ0, θ1, θs, θ2), non-negative, summing to 1; θs = 0 when S = 1, θ2 = 0 when r = 1.
        task: ``"class"`` labels node (c·S + s)·n + j by c, ``"subclass"`` by c·S + s.

    Returns:
        The :class:`Graph`.

    Raises:
        ConfigError: an argument out of range, named with the allowed range.
    """
    _check_integer("classes", classes, 1)
    _check_integer("subclasses", subclasses, 1)
    _check_integer("nodes", nodes, 1)
    if classes * subclasses * nodes < 2:
        fail("nodes", nodes, "the graph needs N = classes × subclasses × nodes >= 2")
    theta = _check_theta(theta, classes, subclasses)
    if task not in TASKS:
        fail("task", task, f"must be one of {', '.join(map(repr, TASKS))}")
    block = subclasses * nodes if task == "class" else nodes
    labels = np.arange(classes * subclasses * nodes) // block
    params = {"classes": int(classes), "subclasses": int(subclasses), "nodes": int(nodes), "theta": theta, "task": task}
    return Graph("hsbm", params, _read_only(labels))


def ring(nodes: int, theta0: float, classes: int) -> Graph:
    r"""Family B, the ring: A(·|i) puts θ0 on i and (1 − θ0)/2 on each of i ± 1 (mod N).

    Spectrum γ_j = (θ0 + (1 − θ0) cos(2πj/N))², j = 0..N−1; classes are r contiguous arcs,
    label of node i = ⌊i r / N⌋. Take θ0 ≥ ½, else high-frequency modes re-enter the top.

    Args:
        nodes: N ≥ 3.
        theta0: θ0 in [0, 1].
        classes: r in [1, N].

    Returns:
        The :class:`Graph`.

    Raises:
        ConfigError: an argument out of range, named with the allowed range.
    """
    _check_integer("nodes", nodes, 3)
    if isinstance(theta0, bool) or not isinstance(theta0, numbers.Real) or not 0 <= theta0 <= 1:
        fail("theta0", theta0, "must be a number in [0, 1]")
    _check_integer("classes", classes, 1, nodes)
    labels = np.arange(nodes) * classes // nodes
    return Graph("ring", {"nodes": int(nodes), "theta0": float(theta0), "classes": int(classes)}, _read_only(labels))


def _hsbm_aug(classes: int, subclasses: int, nodes: int, theta: tuple[float, ...], task: str) -> np.ndarray:
    del task
    theta0, theta1, theta_s, theta2 = theta
    index = np.arange(classes * subclasses * nodes)
    same_sub = (index // nodes)[:, None] == (index // nodes)[None, :]
    same_class = (index // (subclasses * nodes))[:, None] == (index // (subclasses * nodes))[None, :]
    # max(·, 1): an empty block (S = 1 or r = 1) carries weight 0 by validation.
    aug = theta0 * np.eye(index.size) + theta1 / nodes * same_sub
    aug += theta_s / (nodes * max(subclasses - 1, 1)) * (same_class & ~same_sub)
    return aug + theta2 / (nodes * subclasses * max(classes - 1, 1)) * ~same_class


def _ring_aug(nodes: int, theta0: float, classes: int) -> np.ndarray:
    del classes
    eye = np.eye(nodes)
    return theta0 * eye + (1 - theta0) / 2 * (np.roll(eye, 1, axis=1) + np.roll(eye, -1, axis=1))


_AUGMENTATIONS = {"hsbm": _hsbm_aug, "ring": _ring_aug}


# --- user graphs ------------------------------------------------------------------------------


def load_graph(path: str | Path) -> Graph:
    """A user graph from an ``.npz`` archive holding ``W`` and ``labels``.

    ``W`` must be square, finite, non-negative and symmetric with no isolated node; it is
    normalized to sum to 1. ``labels`` must be N integers with at least 2 distinct values; they
    are renumbered ``0..r-1`` in sorted order. Each node is its own natural point (A = I, P = w).

    Args:
        path: the ``.npz`` file.

    Returns:
        The :class:`Graph` (family ``"file"``).

    Raises:
        ConfigError: one line naming the file and the problem.
    """
    path = Path(path)
    weights, labels = _read_arrays(path)
    try:
        weights = _checked_weights(weights)
        labels = _checked_labels(labels, weights.shape[0])
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None
    return Graph("file", {"path": str(path)}, _read_only(labels), _read_only(weights))


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ConfigError(f"{path}: cannot read the graph ({str(error).splitlines()[0]})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ConfigError(f"{path}: not an .npz archive (save W and labels with numpy.savez)")
    with archive:
        for name in ("W", "labels"):
            if name not in archive.files:
                raise ConfigError(f"{path}: missing array {name!r} (the archive needs 'W' and 'labels')")
        try:
            return archive["W"], archive["labels"]
        except ValueError as error:  # object arrays, which need pickle
            raise ConfigError(f"{path}: cannot read W or labels ({str(error).splitlines()[0]})") from None


def _checked_weights(weights: np.ndarray) -> np.ndarray:
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or weights.size == 0:
        raise ValueError(f"W has shape {weights.shape}, must be a non-empty square N × N matrix")
    if weights.dtype.kind not in "biuf":
        raise ValueError(f"W has dtype {weights.dtype}, must hold real numbers")
    weights = weights.astype(np.float64)
    if not np.isfinite(weights).all():
        i, j = np.argwhere(~np.isfinite(weights))[0]
        raise ValueError(f"W has a non-finite entry ({weights[i, j]}) at [{i}, {j}]")
    if (weights < 0).any():
        i, j = np.unravel_index(np.argmin(weights), weights.shape)
        raise ValueError(f"W has negative entries (smallest {weights[i, j]:.6g} at [{i}, {j}])")
    asymmetry = np.abs(weights - weights.T)
    if asymmetry.max() > 1e-12 * weights.max():
        i, j = np.unravel_index(np.argmax(asymmetry), weights.shape)
        raise ValueError(f"W is not symmetric: max |W - W^T| = {asymmetry[i, j]:.6g} at [{i}, {j}]")
    isolated = np.flatnonzero(weights.sum(axis=1) == 0)
    if isolated.size:
        raise ValueError(f"node {isolated[0]} is isolated (zero degree; {isolated.size} in all): remove or connect it")
    weights = (weights + weights.T) / 2
    return weights / weights.sum()


def _checked_labels(labels: np.ndarray, num_nodes: int) -> np.ndarray:
    if labels.shape != (num_nodes,):
        raise ValueError(f"labels has shape {labels.shape}, must have length N = {num_nodes} (the size of W)")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels has dtype {labels.dtype}, must be integers")
    classes, labels = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"labels hold a single class ({classes[0]}), need at least 2")
    return labels


# --- spectrum ---------------------------------------------------------------------------------


def normalized_adjacency(graph: Graph) -> np.ndarray:
    r"""Ā = D^{-1/2} W D^{-1/2}, PSD with spectrum in [0, 1] (W is a Gram matrix).

    Args:
        graph: the graph.

    Returns:
        (N, N) Ā.
    """
    scale = 1.0 / np.sqrt(graph.degrees)
    return scale[:, None] * graph.W * scale[None, :]


def laplacian(graph: Graph) -> np.ndarray:
    r"""The normalized Laplacian L = I − Ā, eigenvalues λ_i = 1 − γ_i.

    Args:
        graph: the graph.

    Returns:
        (N, N) L.
    """
    return np.eye(graph.num_nodes) - normalized_adjacency(graph)


def eigensystem(graph: Graph) -> tuple[np.ndarray, np.ndarray]:
    r"""Eigendecomposition Ā = U diag(γ) Uᵀ, γ descending; computed once per graph.

    Within a degenerate eigenvalue the basis is whatever LAPACK returns.

    Args:
        graph: the graph.

    Returns:
        (γ (N,) descending, U (N, N) with unit eigenvectors as columns), read-only.
    """
    return graph._eigensystem


def spectrum(graph: Graph) -> np.ndarray:
    r"""γ_1 ≥ γ_2 ≥ … ≥ γ_N, the eigenvalues of Ā.

    Args:
        graph: the graph.

    Returns:
        (N,) γ, read-only.
    """
    return eigensystem(graph)[0]


def _check_dimension(k: int, high: int, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= high:
        raise ValueError(f"{name} = {k!r} is invalid: must be an integer in [1, {high}]")


def minimum(graph: Graph, k: int) -> float:
    r"""The minimum of the population loss over k-dimensional embeddings, L* = −Σ_{i≤k} max(γ_i, 0)².

    Eckart–Young for the best FFᵀ of rank ≤ k: on an augmentation graph Ā is PSD and this is
    −Σ_{i≤k} γ_i²; a user graph can have negative γ (always, without self-loops: tr Ā = 0),
    and a PSD FFᵀ gains nothing from those.

    Args:
        graph: the graph.
        k: embedding dimension, 1 ≤ k ≤ N.

    Returns:
        L*.
    """
    _check_dimension(k, graph.num_nodes)
    return -float(np.sum(np.maximum(spectrum(graph)[:k], 0.0) ** 2))


def minimizer(graph: Graph, k: int) -> np.ndarray:
    r"""A minimizer of the population loss at dimension k, the table
    :math:`Φ^* = D^{-1/2} U_k Γ_k^{1/2}` (row x: :math:`f^*(x) = (\max(γ_i, 0)^{1/2} u_i(x) / w_x^{1/2})_{i≤k}`),
    unique up to Φ* → Φ*R for an orthogonal R where γ_k > γ_{k+1}; it attains :func:`minimum`."""
    _check_dimension(k, graph.num_nodes)
    gammas, vectors = eigensystem(graph)
    return vectors[:, :k] * np.sqrt(np.maximum(gammas[:k], 0.0)) / np.sqrt(graph.degrees)[:, None]


# --- labels, Bayes error, cuts ----------------------------------------------------------------


def class_mass(graph: Graph) -> np.ndarray:
    r"""q(x, c) = Σ_{x̄: y(x̄) = c} P(x̄) A(x|x̄), the joint probability of augmented point x and class c.

    Args:
        graph: the graph.

    Returns:
        (N, r) q; it sums to 1.
    """
    one_hot = np.eye(graph.num_classes)[graph.labels]
    return graph.aug.T @ (graph.prior[:, None] * one_hot)


def bayes_labels(graph: Graph) -> np.ndarray:
    r"""The Bayes labelling ŷ(x) = argmax_c q(x, c) of augmented points (ties to the smallest c).

    Args:
        graph: the graph.

    Returns:
        (N,) int ŷ.
    """
    return np.argmax(class_mass(graph), axis=1)


def alpha(graph: Graph) -> float:
    r"""The Bayes error on augmented points, α* = 1 − Σ_x max_c q(x, c) (Asm 3.5 at its smallest α).

    Args:
        graph: the graph.

    Returns:
        α*.
    """
    # Clipped at 0: with α* = 0 the sum is 1 only up to round-off.
    return max(0.0, float(1.0 - class_mass(graph).max(axis=1).sum()))


def cut_weight(graph: Graph, node_labels: np.ndarray) -> float:
    r"""φ^ℓ = Σ_{x,x'} w_{xx'} 1[ℓ(x) ≠ ℓ(x')], the edge mass cut by a labelling.

    Args:
        graph: the graph.
        node_labels: (N,) int labelling ℓ of augmented points.

    Returns:
        φ^ℓ.
    """
    node_labels = np.asarray(node_labels)
    one_hot = np.eye(node_labels.max() + 1)[node_labels]
    return float(graph.W.sum() - np.sum(one_hot * (graph.W @ one_hot)))


def _conductances(weights: np.ndarray, degrees: np.ndarray, members: np.ndarray) -> np.ndarray:
    # members: (M, N) 0/1 rows, each a non-empty subset; cut(S) = vol(S) − Σ_{x,x' ∈ S} w_{xx'}.
    volume = members @ degrees
    inside = np.sum((members @ weights) * members, axis=1)
    return (volume - inside) / volume


def conductance(graph: Graph, subset) -> float:
    r"""Dirichlet conductance φ_G(S) = Σ_{x∈S, x'∉S} w_{xx'} / Σ_{x∈S} w_x (Def 3.3).

    A singleton has φ = 1 − w_{xx}/w_x, so 1 only without a self-loop.

    Args:
        graph: the graph.
        subset: node indices or an (N,) boolean mask of a non-empty S.

    Returns:
        φ_G(S).
    """
    members = np.zeros(graph.num_nodes)
    members[np.asarray(subset)] = 1.0
    if not members.any():
        raise ValueError("conductance: the subset is empty")
    return float(_conductances(graph.W, graph.degrees, members[None])[0])


def sparsest_partition(graph: Graph, m: int) -> float:
    r"""Sparsest m-partition ρ_m = min over partitions S_1..S_m of max_i φ_G(S_i) (Def 3.4), by brute force.

    Every subset's conductance is tabulated once (2^N of them), every partition into m
    non-empty blocks is enumerated as m block bitmasks, and the min-max is a table lookup.

    Args:
        graph: the graph, N ≤ 12 (N = 12 takes about a second).
        m: number of blocks, 1 ≤ m ≤ N.

    Returns:
        ρ_m.

    Raises:
        ValueError: N > 12 (ρ_m is NP-hard; the enumeration grows like the Bell numbers).
    """
    n = graph.num_nodes
    if n > MAX_BRUTE_FORCE_NODES:
        raise ValueError(
            f"sparsest_partition: N = {n} nodes is too many for the brute force "
            f"(at most {MAX_BRUTE_FORCE_NODES}: Bell(13) = 27.6 million partitions)"
        )
    _check_dimension(m, n, "m")
    members = (np.arange(1, 1 << n)[:, None] >> np.arange(n)) & 1
    table = np.concatenate([[np.inf], _conductances(graph.W, graph.degrees, members.astype(np.float64))])
    return float(table[_partition_masks(n, m)].max(axis=1).min())


def _partition_masks(n: int, m: int) -> np.ndarray:
    """Every partition of ``range(n)`` into ``m`` non-empty blocks, as (P, m) block bitmasks.

    Restricted growth strings: node 0 opens block 0, each later node joins an open block or
    opens the next one; branches that can no longer open all m blocks are pruned as they grow.
    """
    masks = np.zeros((1, m), np.int16)  # n ≤ 12 bits fit
    masks[0, 0] = 1
    top = np.zeros(1, np.int64)  # highest block opened so far
    for node in range(1, n):
        left = n - 1 - node
        grown, tops = [], []
        for block in range(m):
            new_top = np.maximum(top, block)
            keep = (block <= top + 1) & (new_top + 1 + left >= m)
            child = masks[keep]
            child[:, block] |= 1 << node
            grown.append(child)
            tops.append(new_top[keep])
        masks, top = np.concatenate(grown), np.concatenate(tops)
    return masks


# --- probe bounds -----------------------------------------------------------------------------


def probe_bounds(graph: Graph, k: int) -> dict[str, float]:
    r"""The eigenvalue-form probe bounds of §3 at embedding dimension k.

    With λ_{k+1} = 1 − γ_{k+1}, α = α* and φ^ŷ the cut weight of the Bayes labelling:

    - ``bound_aug_cut`` = 2φ^ŷ/λ_{k+1} + α ≥ augmented-point error [D];
    - ``bound_aug`` = 4α/λ_{k+1} + α ≥ ``bound_aug_cut`` (φ^ŷ ≤ 2α) [D];
    - ``bound_ens`` = 8α/λ_{k+1} + 2α ≥ ensembled error E [D];
    - ``bound_zhang`` = 4α/λ_{k+1} + 8α, the secondary-source form, logged only [S].

    A bound is ``inf`` where λ_{k+1} = 0 (it then says nothing). On a user graph the three α
    forms are NaN: φ^ŷ ≤ 2α* rests on W = Augᵀ diag(P) Aug, which fails for (A, P) = (I, w),
    where α* = 0 < φ^ŷ. There the ensembled error equals the augmented one and
    ``bound_aug_cut`` bounds both.

    Args:
        graph: the graph.
        k: embedding dimension, 1 ≤ k ≤ N − 1.

    Returns:
        dict of floats: ``alpha``, ``lambda_next``, ``cut`` and the four bounds.
    """
    _check_dimension(k, graph.num_nodes - 1)
    a = alpha(graph)
    lam = 1.0 - float(spectrum(graph)[k])
    cut = cut_weight(graph, bayes_labels(graph))

    def over(x: float) -> float:
        return x / lam if lam > 0 else math.inf

    alpha_forms = graph.family != "file"
    return {
        "alpha": a,
        "lambda_next": lam,
        "cut": cut,
        "bound_aug_cut": 2 * over(cut) + a,
        "bound_aug": 4 * over(a) + a if alpha_forms else math.nan,
        "bound_ens": 8 * over(a) + 2 * a if alpha_forms else math.nan,
        "bound_zhang": 4 * over(a) + 8 * a if alpha_forms else math.nan,
    }


# --- pair sampling ----------------------------------------------------------------------------


def pair_sampler(graph: Graph) -> Callable:
    r"""A jitted sampler of positive pairs: each pair is an edge (x, x⁺) drawn with probability w_{xx⁺}.

    Families: x̄ uniform, then two independent augmentations from the mixture of §1, O(batch)
    without forming W. A user graph: inverse CDF over the flattened W (float64 needs x64).

    Args:
        graph: the graph.

    Returns:
        ``sample(key, batch) -> (x, x_plus)``, two (batch,) int32 arrays of node indices;
        ``batch`` is static.
    """
    if graph.family == "file":
        sample = _edge_sampler(graph.W)
    else:
        augment, draws = _AUGMENTERS[graph.family](**graph.params)
        sample = _augmentation_sampler(augment, draws, graph.num_nodes)
    return jax.jit(sample, static_argnames="batch")


def augmenter(graph: Graph) -> Callable:
    """``augment(key, xbar)``: one augmentation x ∼ A(·|x̄) of every natural point in ``xbar`` (any
    shape), for a family graph (the same mixture :func:`pair_sampler` draws from)."""
    augment, draws = _AUGMENTERS[graph.family](**graph.params)

    def sample(key, xbar):
        return augment(jax.random.uniform(key, (draws, *xbar.shape)), xbar)

    return sample


def _edge_sampler(weights: np.ndarray) -> Callable:
    num_nodes = weights.shape[0]
    cdf = jnp.asarray(np.cumsum(weights.ravel()))

    def sample(key, batch):
        u = jax.random.uniform(key, (batch,), cdf.dtype) * cdf[-1]
        # side="right" skips zero-weight cells: their CDF step is empty.
        flat = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), cdf.size - 1)
        return (flat // num_nodes).astype(jnp.int32), (flat % num_nodes).astype(jnp.int32)

    return sample


def _uniform_index(u, size: int):
    # ⌊u·size⌋ for u ∈ [0, 1), clipped against u·size rounding up to size.
    return jnp.minimum((u * size).astype(jnp.int32), size - 1)


def _augmentation_sampler(augment: Callable, draws: int, num_nodes: int) -> Callable:
    # One uniform array feeds every choice: each random call inlines its own threefry kernel,
    # and compile time grows with their number.
    def sample(key, batch):
        u = jax.random.uniform(key, (1 + 2 * draws, batch))
        xbar = _uniform_index(u[0], num_nodes)
        return augment(u[1 : 1 + draws], xbar), augment(u[1 + draws :], xbar)

    return sample


def _hsbm_augmenter(classes: int, subclasses: int, nodes: int, theta: tuple[float, ...], task: str):
    del task
    thresholds = jnp.asarray(np.cumsum(theta)[:3])

    def augment(u, xbar):
        component = jnp.searchsorted(thresholds, u[0], side="right")  # 0..3 with probabilities θ
        cls, sub = xbar // (subclasses * nodes), xbar // nodes % subclasses
        # A uniform other subclass (class) is a uniform non-zero offset modulo S (r).
        other_sub = (sub + 1 + _uniform_index(u[1], max(subclasses - 1, 1))) % subclasses
        other_cls = (cls + 1 + _uniform_index(u[2], max(classes - 1, 1))) % classes
        block = jnp.select(
            [component == 1, component == 2],
            [cls * subclasses + sub, cls * subclasses + other_sub],
            other_cls * subclasses + _uniform_index(u[3], subclasses),
        )
        return jnp.where(component == 0, xbar, block * nodes + _uniform_index(u[4], nodes))

    return augment, 5


def _ring_augmenter(nodes: int, theta0: float, classes: int):
    del classes

    def augment(u, xbar):
        step = jnp.where(u[0] < theta0, 0, jnp.where(u[0] < (1 + theta0) / 2, 1, -1))
        return (xbar + step) % nodes

    return augment, 1


_AUGMENTERS = {"hsbm": _hsbm_augmenter, "ring": _ring_augmenter}
