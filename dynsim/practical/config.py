"""The practical system's configuration (seed 001 §6): ``data``, ``model``, ``loss``, ``train``,
``eval``, ``run``. A sweep runs the losses of ``run.values`` (contrastive ``infonce`` and
non-contrastive ``positive``), everything else equal.

Fields are declared with the engine's rules (:func:`dynsim.engine.config.field`); rules that tie
fields together are the sections' own.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ..engine import config as engine_config
from ..engine.config import SystemConfig, as_stages, as_tuple, check_fields, fail, field
from ..engine.optimizers import OPTIMIZERS
from .data import VIEWS

SOURCES = ("multifeature", "files")
LOSS_KINDS = ("infonce", "positive")
PRECISIONS = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The paired features: two views of the packaged multiple-features digits (``source =
    "multifeature"``), or a user's ``.npy``/``.npz`` files (``source = "files"``); ``rows`` pairs
    drawn from them once (key ``seed``); per run seed a split into training pairs, a held-out
    prompt pool (fraction ``prompts``) and test pairs (fraction ``test``)."""

    name: ClassVar[str] = "data"
    source: str = field("multifeature", "where the features come from", "choice", choices=SOURCES)
    view_a: str = field("pix", "multiple-features view of modality A", "choice", choices=tuple(VIEWS))
    view_b: str = field("fou", "multiple-features view of modality B", "choice", choices=tuple(VIEWS))
    features_a: str | None = field(
        None, "modality-A features, .npy/.npz (n, d_A) (source files)", "path", optional=True
    )
    features_b: str | None = field(
        None, "modality-B features, .npy/.npz (n, d_B) (source files)", "path", optional=True
    )
    labels: str | None = field(
        None, "labels, .npy/.npz: class ids (n,) or a 0/1 matrix (n, C) (source files)", "path", optional=True
    )
    rows: int | None = field(None, "pairs drawn from the data once (unset: all)", "integer", low=8, optional=True)
    seed: int = field(0, "key of the rows drawn", "integer", low=0)
    test: float = field(0.2, "fraction of pairs held out for testing", "number", low=0, strict=True, high=1)
    prompts: float = field(
        0.2, "fraction of pairs held out as the zero-shot prompt pool", "number", low=0, strict=True, high=1
    )

    def __post_init__(self):
        check_fields(self)
        files = {"data.features_a": self.features_a, "data.features_b": self.features_b, "data.labels": self.labels}
        for name, value in files.items():
            if self.source == "files" and value is None:
                fail(name, value, 'must be set when data.source = "files"')
            if self.source != "files" and value is not None:
                fail(name, value, 'is read only when data.source = "files"')
        if self.test + self.prompts >= 0.9:
            fail("data.prompts", self.prompts, f"with data.test = {self.test} must leave at least 10% for training")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The two heads (seed 001 §6): ``layers`` linear maps with batch norm and ReLU between them,
    ``width`` hidden units, embedding dimension ``out``; the embedding is normalized."""

    name: ClassVar[str] = "model"
    width: int = field(256, "hidden units of each head", "integer", low=1)
    out: int = field(64, "embedding dimension q", "integer", low=2)
    layers: int = field(3, "linear layers of each head (batch norm between them)", "integer", low=2)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The two-tower system's losses on cosine similarities: symmetric in-batch InfoNCE with
    negative weight ``lam``, or the positive-pair loss; the inverse temperature follows
    ``stages`` (``[tau, steps]``), the gradient multiplied by 1/tau when ``rescale``."""

    name: ClassVar[str] = "loss"
    lam: float = field(1.0, "weight of the negative pairs (infonce)", "number", low=0, strict=True)
    stages: tuple[tuple[float, float], ...] = field(
        ((2.0, 200.0), (10.0, 800.0)),
        "[tau, steps] pairs: inverse temperature tau held for a number of training steps",
        "stages",
        low=0,
        strict=True,
    )
    rescale: bool = field(True, "multiply the gradient by gamma = 1 / tau (seed §5.1)", "bool")

    def __post_init__(self):
        object.__setattr__(self, "stages", as_stages(self.stages, "loss.stages"))
        check_fields(self)
        for i, (_, steps) in enumerate(self.stages):
            if steps != int(steps):
                fail(f"loss.stages[{i}].duration", steps, "must be a whole number of steps")

    @property
    def steps_per_stage(self) -> tuple[int, ...]:
        """Training steps of each stage."""
        return tuple(int(steps) for _, steps in self.stages)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Minibatch training of both heads on the training pairs (an epoch is a fresh permutation)."""

    name: ClassVar[str] = "train"
    batch: int = field(256, "pairs per step B (the in-batch contrast size)", "integer", low=2)
    lr: float = field(1e-3, "learning rate", "number", low=0, strict=True)
    optimizer: str = field("adam", "optax optimizer; momentum is heavy ball", "choice", choices=OPTIMIZERS)
    momentum: float = field(0.9, 'momentum coefficient of optimizer = "momentum"', "number", low=0, high=1)
    precision: str = field("float32", "floating-point precision of the run", "choice", choices=PRECISIONS)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What every record measures on the seed's test pairs: zero-shot accuracy for prompts of M
    = ``prompts`` pool examples (mean over ``draws`` draws of them), the linear probe (ridge
    ``ridge``, trained on at most ``probe_rows`` training pairs), balance with kappa at ``rank``."""

    name: ClassVar[str] = "eval"
    prompts: tuple[int, ...] = field(
        (1, 4, 16), "zero-shot prompt sizes M (pool examples per class)", "integers", low=1
    )
    draws: int = field(8, "draws of the prompt examples averaged per M", "integer", low=1)
    rank: int | None = field(
        None,
        "k of the condition number sqrt(lambda_1 / lambda_k) (unset: the number of classes), at most model.out",
        "integer",
        low=2,
        optional=True,
    )
    ridge: float = field(1e-3, "ridge lambda of the linear probe", "number", low=0, strict=True)
    probe_rows: int = field(4096, "training pairs the linear probe is fitted on (at most)", "integer", low=2)

    def __post_init__(self):
        object.__setattr__(self, "prompts", as_tuple(self.prompts))
        check_fields(self)
        if list(self.prompts) != sorted(set(self.prompts)):
            fail("eval.prompts", list(self.prompts), "must be strictly increasing")


@dataclasses.dataclass(frozen=True)
class RunConfig(engine_config.RunConfig):
    """What to run and where: the engine's fields, the losses of a sweep (``values``), and the
    steps between records."""

    record_every: int = field(50, "training steps between records", "integer", low=1)
    out: str = field("runs/practical", "output directory of dynsim sweep", "path")
    values: tuple[str, ...] = field(LOSS_KINDS, "the losses of dynsim sweep", "choices", choices=LOSS_KINDS)

    def __post_init__(self):
        object.__setattr__(self, "values", as_tuple(self.values))
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class PracticalConfig(SystemConfig):
    """A whole configuration of the practical system.

    Example:
        >>> import dynsim
        >>> config = dynsim.load_config({"system": "practical", "model": {"out": 32}})
        >>> config.run.values, config.model.out, config.loss.steps_per_stage
        (('infonce', 'positive'), 32, (200, 800))
    """

    system: ClassVar[str] = "practical"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    run: RunConfig = RunConfig()

    def __post_init__(self):
        if self.eval.rank is not None and self.eval.rank > self.model.out:
            fail("eval.rank", self.eval.rank, f"must be <= model.out = {self.model.out}")

    @property
    def steps(self) -> int:
        """Training steps of one run (all stages)."""
        return sum(self.loss.steps_per_stage)
