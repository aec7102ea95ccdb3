"""The large-step system's configuration (shared/specs/large_step.md §8): ``data``, ``model``, ``train``, ``run``.

Fields are declared with the engine's rules (:func:`dynsim.engine.config.field`); the rule that
ties sections together (every stepsize of a sweep puts the records on one gradient-flow time
grid) is :class:`LargeStepConfig`'s own.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

from ..engine import config as engine_config
from ..engine.config import SystemConfig, as_tuple, check_fields, fail, field, require_whole_steps
from .activations import ACTIVATIONS
from .datasets import DATASETS, Data, load_data
from .model import MODELS, Model, make_model


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The training set (spec §3): the COLT toy (``colt_toy``, and ``colt_toy_rescaled`` with
    ‖x‖ ≤ 1), Fig. 4's five points (``fig4_toy``), ``separable`` random data with a margin along
    e_1, dynsim's ``xor``, two ``digits`` of scikit-learn's bundled set, or a user's ``file``
    (an ``.npz`` with ``x`` and ``y``)."""

    name: ClassVar[str] = "data"
    set: str = field("colt_toy_rescaled", "data set", "choice", choices=DATASETS)
    pair: tuple[int, ...] = field((3, 8), "digits: the two digits (+1, -1)", "integers", low=0, high=10)
    n: int = field(50, "points of separable and xor", "integer", low=4)
    d: int = field(10, "dimension of separable", "integer", low=2)
    margin: float = field(0.1, "margin of separable along e_1", "number", low=0, strict=True, high=1)
    noise: float = field(0.1, "noise around the corners of xor", "number", low=0)
    seed: int = field(0, "seed of the random sets (separable, xor)", "integer", low=0)
    path: str | None = field(None, 'the .npz of set = "file" (x, y)', "path", optional=True)

    def __post_init__(self):
        object.__setattr__(self, "pair", as_tuple(self.pair))
        check_fields(self)
        if (self.set == "file") != (self.path is not None):
            fail("data.path", self.path, 'a file is required by, and only allowed with, set = "file"')
        if len(self.pair) != 2 or self.pair[0] == self.pair[1]:
            fail("data.pair", list(self.pair), "must be two different digits 0..9")
        training_set(self)  # a bad file fails here, naming data.path


@functools.lru_cache(maxsize=16)
def training_set(config: DataConfig) -> Data:
    """The data of a ``[data]`` section (the whole set; read once)."""
    return load_data(
        config.set,
        pair=config.pair,
        n=config.n,
        d=config.d,
        margin=config.margin,
        noise=config.noise,
        seed=config.seed,
        path=config.path,
    )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The predictor (spec §1): ``linear``, or the ``two_layer`` net of ``width`` m with
    activation φ (``activation``, its parameters ``c`` and ``h``); w_0 has iid N(0, init_scale²)
    entries (0: w_0 = 0)."""

    name: ClassVar[str] = "model"
    kind: str = field("linear", "predictor", "choice", choices=MODELS)
    width: int = field(32, "neurons m of the two-layer net", "integer", low=1)
    activation: str = field("leaky_softplus", "activation phi of the two-layer net", "choice", choices=ACTIVATIONS)
    c: float = field(0.5, "leak c of leaky_softplus and leaky_huber, in (0, 1)", "number", low=0, strict=True, high=1)
    h: float = field(1.0, "width h of the Huberized ReLU", "number", low=0, strict=True)
    init_scale: float = field(0.0, "standard deviation of w_0's entries (0: start at zero)", "number", low=0)

    def __post_init__(self):
        check_fields(self)

    @property
    def predictor(self) -> Model:
        """The :class:`~dynsim.large_step.model.Model` of this section."""
        width = None if self.kind == "linear" else self.width
        return make_model(self.kind, width, self.activation, self.c, self.h)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Gradient descent w ← w − η∇L(w) at stepsize ``eta`` for a gradient-flow time
    τ = η × step of ``duration``."""

    name: ClassVar[str] = "train"
    eta: float = field(1.0, "stepsize eta; gradient-flow time is tau = eta * step", "number", low=0, strict=True)
    duration: float = field(
        100.0, "gradient-flow time tau of the run; round(tau / eta) steps", "number", low=0, strict=True
    )
    power_iterations: int = field(16, "Hessian-vector products per sharpness estimate (0: none)", "integer", low=0)

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class RunConfig(engine_config.RunConfig):
    """What to run and where: the engine's fields and the stepsizes of a sweep (``values``)."""

    record_every: float = field(
        4.0, "gradient-flow time between records; whole steps at every stepsize", "number", low=0, strict=True
    )
    out: str = field("runs/large_step", "output directory of dynsim sweep", "path")
    values: tuple[float, ...] = field(
        (0.4, 0.2, 0.1), "the stepsizes eta of dynsim sweep", "numbers", low=0, strict=True
    )

    def __post_init__(self):
        object.__setattr__(self, "values", as_tuple(self.values))
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class LargeStepConfig(SystemConfig):
    """A whole configuration of the large-step system: ``data``, ``model``, ``train`` and ``run``.

    Every stepsize the run uses (``train.eta`` and ``run.values``) must make ``train.duration``
    and ``run.record_every`` whole numbers of steps, so that every point of a sweep and the
    gradient flow share one time grid τ = η × step.

    Example:
        >>> import dynsim
        >>> config = dynsim.load_config({"system": "large_step", "train": {"eta": 0.5}})
        >>> config.data.set, config.model.kind, config.steps
        ('colt_toy_rescaled', 'linear', 200)
    """

    system: ClassVar[str] = "large_step"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    run: RunConfig = RunConfig()

    def __post_init__(self):
        times = {"train.duration": self.train.duration, "run.record_every": self.run.record_every}
        require_whole_steps((self.train.eta, *self.run.values), times, "stepsize")

    @property
    def steps(self) -> int:
        """Steps of one run, ``round(duration / eta)``."""
        return round(self.train.duration / self.train.eta)
