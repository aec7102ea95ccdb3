"""The spectral system's configuration (shared/specs/spectral.md): ``graph``, ``encoder``, ``train``, ``loss``, ``run``.

Fields are declared with the engine's rules (:func:`dynsim.engine.config.field`), so validation,
the one-line errors and docs/config-reference.md come from the same declarations; the rules
that tie sections together (a sweep's step sizes must put every record on one time grid, the
minibatch estimator needs two pairs) are :class:`SpectralConfig`'s own.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np

from ..engine import config as engine_config
from ..engine.config import (
    ConfigError,
    SystemConfig,
    as_tuple,
    build_config,
    check_fields,
    fail,
    field,
    read_toml,
    require_whole_steps,
)
from ..engine.optimizers import OPTIMIZERS
from ..engine.schedule import stage_steps
from .graph import FAMILIES, TASKS, Graph, hsbm, load_graph, ring

ENCODERS = ("tabular", "linear")
FEATURES = ("onehot", "gaussian", "file")
METHODS = ("sgd", "gd")
PRECISIONS = ("float32", "float64")
AXES = ("lr", "batch")
LOSS_KINDS = ("spectral", "infonce", "unbiased", "debiased")
POSITIVES = ("class", "datum")
FORMS = ("general", "in_batch")


@dataclasses.dataclass(frozen=True)
class GraphConfig:
    """The augmentation graph (spec §1): the hierarchical block family ``hsbm`` (``classes`` ×
    ``subclasses`` × ``nodes``, overlaps ``theta`` = (θ0, θ1, θs, θ2)), the ``ring`` (``nodes`` on
    a cycle, ``theta0`` on the node itself, ``classes`` contiguous arcs), or a user's ``file``
    (an ``.npz`` with a symmetric non-negative ``W`` and integer ``labels``)."""

    name: ClassVar[str] = "graph"
    family: str = field("hsbm", "graph family", "choice", choices=FAMILIES)
    classes: int = field(3, "classes r (hsbm, ring)", "integer", low=1)
    subclasses: int = field(2, "subclasses S per class (hsbm)", "integer", low=1)
    nodes: int = field(4, "hsbm: nodes n per subclass (N = r S n); ring: nodes N on the cycle", "integer", low=1)
    theta: tuple[float, ...] = field(
        (0.5, 0.3, 0.15, 0.05),
        "hsbm overlaps (theta0, theta1, theta_s, theta2), summing to 1; theta2 is the cross-class overlap",
        "numbers",
        low=0,
    )
    theta0: float = field(
        0.6, "ring: augmentation mass on the node itself; >= 1/2 keeps the spectrum ordered", "number", low=0
    )
    task: str = field("class", "hsbm labels: by class or by subclass", "choice", choices=TASKS)
    path: str | None = field(None, 'the .npz of family = "file" (W and labels)', "path", optional=True)

    def __post_init__(self):
        object.__setattr__(self, "theta", as_tuple(self.theta))
        check_fields(self)
        if (self.family == "file") != (self.path is not None):
            fail("graph.path", self.path, 'a file is required by, and only allowed with, family = "file"')
        try:
            build_graph(self)
        except ConfigError as err:  # the builders name their argument; here it is a field of [graph]
            raise ConfigError(f"graph.{err}" if self.family != "file" else f"graph.path: {err}") from None


@functools.lru_cache(maxsize=16)
def build_graph(config: GraphConfig) -> Graph:
    """The graph of a ``[graph]`` section, built once per section (the same object every time, so
    compiled programs keyed on it are reused)."""
    if config.family == "hsbm":
        return hsbm(config.classes, config.subclasses, config.nodes, config.theta, task=config.task)
    if config.family == "ring":
        return ring(config.nodes, config.theta0, config.classes)
    return load_graph(config.path)


@functools.lru_cache(maxsize=16)
def load_features(path: str) -> np.ndarray:
    """A user's node features: an ``.npy`` matrix (N × d) of finite numbers, read once.

    Raises:
        ConfigError: a missing or unreadable file, another shape, or a non-finite entry.
    """
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ConfigError(f"encoder.path = {path!r} is invalid: cannot read it ({str(err).splitlines()[0]})") from None
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.number):
        raise ConfigError(f"encoder.path = {path!r} is invalid: must hold a numeric N × d matrix, got {features.shape}")
    if not np.all(np.isfinite(features)):
        row = int(np.argwhere(~np.isfinite(features))[0, 0])
        raise ConfigError(f"encoder.path = {path!r} is invalid: row {row} is not finite (NaN or Inf)")
    return features.astype(float)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The encoder f: X → R^k (spec §5): a free embedding per node (``tabular``, Φ ∈ R^{N×k}), or
    ``linear`` in fixed node features ψ(x), f(x) = Vᵀψ(x): one-hot (the tabular model again), a
    user's ``.npy`` matrix (N × d), or ``gaussian`` features ψ(x) = μ_{y(x)} + noise·ξ_x with
    μ_c, ξ_x iid N(0, I_d/d) (with little noise the encoder cannot tell apart the nodes of a
    class: a capacity-limited f). Initial entries are iid N(0, init_scale²)."""

    name: ClassVar[str] = "encoder"
    kind: str = field("tabular", "tabular (a row per node) or linear in node features", "choice", choices=ENCODERS)
    k: int = field(3, "embedding dimension k", "integer", low=1)
    features: str = field("onehot", "node features of the linear encoder", "choice", choices=FEATURES)
    dim: int = field(16, "dimension d of gaussian features", "integer", low=1)
    noise: float = field(0.5, "per-node noise of gaussian features", "number", low=0)
    path: str | None = field(None, 'the .npy feature matrix of features = "file" (N × d)', "path", optional=True)
    init_scale: float = field(
        0.1,
        "standard deviation of the initial entries; small scales show stepwise learning",
        "number",
        low=0,
        strict=True,
    )

    def __post_init__(self):
        check_fields(self)
        if (self.features == "file") != (self.path is not None):
            fail("encoder.path", self.path, 'a file is required by, and only allowed with, features = "file"')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training: online SGD on the minibatch estimator of the spectral contrastive loss (spec §2:
    B positive pairs, each an edge drawn with probability w_{xx'}, the cross-view pairs i ≠ j as
    negatives), or full-batch gradient descent (``gd``) on the population loss. Training time
    is ``t = lr × step``; the run lasts ``duration``."""

    name: ClassVar[str] = "train"
    method: str = field("sgd", "sgd on minibatches, or gd on the population loss", "choice", choices=METHODS)
    lr: float = field(1.0, "learning rate eta; training time is t = lr * step", "number", low=0, strict=True)
    batch: int = field(64, "positive pairs per step B (sgd); the estimator needs at least 2", "integer", low=2)
    duration: float = field(200.0, "training time T; the run takes round(T / lr) steps", "number", low=0, strict=True)
    optimizer: str = field("sgd", "optax optimizer; momentum is heavy ball", "choice", choices=OPTIMIZERS)
    momentum: float = field(0.9, 'momentum coefficient of optimizer = "momentum"', "number", low=0, high=1)
    precision: str = field("float64", "floating-point precision of the whole run", "choice", choices=PRECISIONS)

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The training loss: the spectral contrastive loss (spec §2), or InfoNCE on unit-norm
    embeddings (spec §4): ``infonce`` with negatives drawn from the data (biased), ``unbiased``
    with negatives from other classes only (the oracle, by true labels), ``debiased`` with Chuang
    et al.'s estimator. A step draws B natural points and two augmentations of each; in the
    ``general`` form every anchor gets N fresh negatives (and M samples v), in the ``in_batch``
    form the official code's (N = 2B − 2, the positive reused as v). The InfoNCE losses train by
    SGD and have no exact flow."""

    name: ClassVar[str] = "loss"
    kind: str = field(
        "spectral", "spectral, or InfoNCE: infonce (biased), unbiased, debiased", "choice", choices=LOSS_KINDS
    )
    temperature: float = field(0.5, "temperature t of the InfoNCE losses", "number", low=0.01)
    tau_plus: float | None = field(
        None, "class prior tau+ of the debiased loss; default 1/r", "number", low=0, high=1, optional=True
    )
    negatives: int | None = field(
        None, "negatives N per anchor of the general form; default 2B - 2", "integer", low=1, optional=True
    )
    same_class: int = field(1, "samples v per anchor (M) of the debiased loss's general form", "integer", low=1)
    positives: str = field(
        "class",
        "the debiased loss's v: a same-class sample (its assumption) or another augmentation of the anchor's datum",
        "choice",
        choices=POSITIVES,
    )
    form: str = field(
        "general", "general (N, M fresh draws) or in_batch (the official code's)", "choice", choices=FORMS
    )

    def __post_init__(self):
        check_fields(self)
        if self.form == "in_batch" and self.kind not in ("infonce", "debiased"):
            fail("loss.form", self.form, "the in-batch form exists for loss.kind = 'infonce' and 'debiased' only")


@dataclasses.dataclass(frozen=True)
class RunConfig(engine_config.RunConfig):
    """What to run and where: the engine's fields, the quantity a sweep varies (``axis``: the
    learning rate or the batch size, at the points ``values``) and how many eigenvectors' mass
    is recorded."""

    record_every: float = field(
        5.0,
        "training time between records; a whole number of steps at every learning rate",
        "number",
        low=0,
        strict=True,
    )
    out: str = field("runs/spectral", "output directory of dynsim sweep", "path")
    axis: str = field("lr", "what dynsim sweep and compare vary: train.lr or train.batch", "choice", choices=AXES)
    values: tuple[float, ...] = field(
        (1.0, 0.5, 0.25), "the points of the axis (learning rates, or batch sizes >= 2)", "numbers", low=0, strict=True
    )
    modes: int = field(
        8, "leading eigenvectors of the normalized adjacency whose captured mass is recorded", "integer", low=1
    )
    probe_shots: int = field(2, "labeled natural points per class of the few-label probe (probe_few)", "integer", low=1)

    def __post_init__(self):
        object.__setattr__(self, "values", as_tuple(self.values))
        check_fields(self)
        if self.axis == "batch":
            for i, value in enumerate(self.values):
                if value != int(value) or value < 2:
                    fail(f"run.values[{i}]", value, "must be a whole batch size >= 2 when run.axis = 'batch'")
            object.__setattr__(self, "values", tuple(int(v) for v in self.values))


@dataclasses.dataclass(frozen=True)
class SpectralConfig(SystemConfig):
    """A whole configuration of the spectral system: ``graph``, ``encoder``, ``train``, ``loss`` and ``run``.

    Cross-section rules: every learning rate the run uses (``train.lr``, and ``run.values`` when
    ``run.axis = "lr"``) must make ``train.duration`` and ``run.record_every`` whole numbers of
    steps, so that every point of a sweep and the exact flow share one time grid; a sweep over
    the batch size needs ``train.method = "sgd"``.

    Example:
        >>> import dynsim
        >>> config = dynsim.load_config({"system": "spectral", "encoder": {"k": 6}})
        >>> config.graph.family, config.encoder.k, config.steps
        ('hsbm', 6, 200)
    """

    system: ClassVar[str] = "spectral"
    graph: GraphConfig = GraphConfig()
    encoder: EncoderConfig = EncoderConfig()
    train: TrainConfig = TrainConfig()
    loss: LossConfig = LossConfig()
    run: RunConfig = RunConfig()

    def __post_init__(self):
        rates = (self.train.lr, *(self.run.values if self.run.axis == "lr" else ()))
        times = {"train.duration": self.train.duration, "run.record_every": self.run.record_every}
        require_whole_steps(rates, times, "learning rate")
        if self.run.axis == "batch" and self.train.method != "sgd":
            fail("run.axis", self.run.axis, "a sweep over the batch size needs train.method = 'sgd'")
        if self.loss.kind != "spectral":
            if self.train.method != "sgd":
                fail("train.method", self.train.method, f"loss.kind = {self.loss.kind!r} trains by sgd only")
            if self.graph.family == "file":
                fail(
                    "graph.family", "file", f"loss.kind = {self.loss.kind!r} augments natural points: use hsbm or ring"
                )
        nodes = self.graph_object.num_nodes
        if self.encoder.k > nodes:
            fail("encoder.k", self.encoder.k, f"must be <= N = {nodes}, the graph's number of nodes")
        if self.encoder.kind == "linear" and self.encoder.features == "file":
            rows = load_features(self.encoder.path).shape[0]
            if rows != nodes:
                fail("encoder.path", self.encoder.path, f"has {rows} rows: must have one per node, N = {nodes}")

    @property
    def graph_object(self) -> Graph:
        """The augmentation graph of the ``[graph]`` section (:func:`build_graph`)."""
        return build_graph(self.graph)

    @property
    def steps(self) -> int:
        """Training steps of one seed, ``round(duration / lr)``."""
        return stage_steps([self.train.duration], self.train.lr)[0]


class LossPlan(NamedTuple):
    """An InfoNCE loss of ``[loss]`` with its defaults resolved (static: it keys compiled programs)."""

    kind: str
    temperature: float
    tau_plus: float
    negatives: int
    same_class: int
    positives: str
    form: str


def loss_plan(config: SpectralConfig) -> LossPlan | None:
    """``Plan.loss``: ``None`` for the spectral loss, else the InfoNCE loss with τ⁺ = 1/r and
    N = 2B − 2 where unset."""
    loss = config.loss
    if loss.kind == "spectral":
        return None
    tau_plus = 1.0 / config.graph_object.num_classes if loss.tau_plus is None else loss.tau_plus
    negatives = 2 * config.train.batch - 2 if loss.negatives is None else loss.negatives
    return LossPlan(loss.kind, loss.temperature, tau_plus, negatives, loss.same_class, loss.positives, loss.form)


def load_config(source=None) -> SpectralConfig:
    """A :class:`SpectralConfig` from a TOML file, nested tables, an existing one, or ``None`` (the default)."""
    if source is None:
        return SpectralConfig()
    if isinstance(source, SpectralConfig):
        return source
    return build_config(SpectralConfig, read_toml(source) if isinstance(source, (str, Path)) else source)
