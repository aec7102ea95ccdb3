"""The two-tower system's configuration (shared/SPEC.md §1–3): ``data``, ``loss``, ``train``, ``run``.

Every field is declared with :func:`dynsim.engine.config.field`, so validation, the error
messages and docs/config-reference.md come from the engine's rules; the cross-section rules of
the model (contrastive losses need two pairs, stages last at least half a step, the backend
must support the optimizer) are :class:`Config`'s own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from ..engine import config as engine_config
from ..engine.config import (
    SystemConfig,
    as_stages,
    as_tuple,
    build_config,
    check_choice,
    check_fields,
    fail,
    field,
    read_toml,
)
from ..engine.optimizers import OPTIMIZERS
from ..engine.schedule import stage_steps

SPECTRA = ("geometric", "linear", "spike", "list")
BASES = ("canonical", "random")
LOSSES = ("infonce", "positive", "spectral")
CONTRASTIVE = ("infonce", "spectral")
NORMALIZATIONS = ("population", "batch")
PRECISIONS = ("float32", "float64")
BACKENDS = ("param", "gram")
INITS = ("auto", "bartlett", "exact")
GRAM_OPTIMIZERS = ("sgd", "momentum")  # linear in the gradient, so that W_t = W_0 Phi_t


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Data model, SPEC §1: ``x = M z + H xi`` with ``M = U diag(sigma)``, ``H = V diag(eta)``.

    Profiles of ``spectrum``: ``geometric`` ``sigma_k = kappa^((r-k)/(r-1))``, ``linear`` evenly
    spaced from ``kappa`` down to 1, ``spike`` ``sigma_1 = kappa`` and all others 1 (with
    ``r = 1`` every profile gives ``[kappa]``); ``list`` takes ``sigma`` and ``sigma_b``, which
    are refused with any other profile.
    """

    name: ClassVar[str] = "data"
    r: int = field(8, "signal coordinates", "integer", low=1)
    n: int = field(24, "noise coordinates per modality", "integer", low=0)
    d: int | None = field(None, "ambient dimension; unset means r + n", "integer", low="r + n", optional=True)
    spectrum: str = field("geometric", "profile of the signal spectrum sigma", "choice", choices=SPECTRA)
    kappa: float = field(4.0, "sigma_max / sigma_min of modality A", "number", low=1)
    kappa_b: float | None = field(
        None, "sigma_max / sigma_min of modality B; unset means kappa", "number", low=1, optional=True
    )
    sigma: tuple[float, ...] | None = field(
        None,
        'explicit signal spectrum of modality A; required by, and only allowed with, spectrum = "list"',
        "numbers",
        low=0,
        strict=True,
        length="r",
        optional=True,
    )
    sigma_b: tuple[float, ...] | None = field(
        None,
        'explicit signal spectrum of modality B (spectrum = "list"); unset means sigma',
        "numbers",
        low=0,
        strict=True,
        length="r",
        optional=True,
    )
    noise: float = field(0.3, "constant noise level eta_j of both modalities", "number", low=0)
    eta: tuple[float, ...] | None = field(
        None, "explicit noise spectrum of both modalities; overrides noise", "numbers", low=0, length="n", optional=True
    )
    basis: str = field(
        "canonical",
        "[U V]: the first r + n coordinates, or Haar-random columns drawn from the run's key",
        "choice",
        choices=BASES,
    )

    def __post_init__(self):
        object.__setattr__(self, "sigma", as_tuple(self.sigma))
        object.__setattr__(self, "sigma_b", as_tuple(self.sigma_b))
        object.__setattr__(self, "eta", as_tuple(self.eta))
        check_fields(self)
        if self.spectrum == "list" and self.sigma is None:
            fail("data.sigma", None, 'a list of r positive values is required when spectrum = "list"')
        if self.spectrum != "list" and (self.sigma, self.sigma_b) != (None, None):
            fail("data.spectrum", self.spectrum, 'must be "list" when data.sigma or data.sigma_b is given')

    @property
    def dim(self) -> int:
        """The ambient dimension ``d`` with its default resolved."""
        return self.r + self.n if self.d is None else self.d


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Loss and temperature schedule, SPEC §3.

    Each stage lasts ``round(duration / train.lr)`` SGD steps, which must be at least 1.
    """

    name: ClassVar[str] = "loss"
    kind: str = field(
        "infonce", "the loss: contrastive infonce, non-contrastive positive, or spectral", "choice", choices=LOSSES
    )
    lam: float = field(1.0, "weight of the negative pairs (infonce, spectral)", "number", low=0, strict=True)
    stages: tuple[tuple[float, float], ...] = field(
        ((0.05, 60.0), (3.0, 1600.0)),
        "[tau, duration] pairs: inverse temperature tau held for a training-time duration",
        "stages",
        low=0,
        strict=True,
    )
    rescale: bool = field(True, "multiply the gradient by gamma = 1 / tau (seed §5.1)", "bool")

    def __post_init__(self):
        object.__setattr__(self, "stages", as_stages(self.stages, "loss.stages"))
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Online SGD, SPEC §3: training time ``t = lr * step``."""

    name: ClassVar[str] = "train"
    lr: float = field(0.2, "learning rate eta; training time is t = lr * step", "number", low=0, strict=True)
    batch: int = field(64, "fresh pairs per step B; contrastive losses need at least 2", "integer", low=1)
    normalization: str = field(
        "population", "Z^2 = E||W x||^2 (population) or its batch mean", "choice", choices=NORMALIZATIONS
    )
    optimizer: str = field("sgd", "optax optimizer; momentum is heavy ball", "choice", choices=OPTIMIZERS)
    momentum: float = field(0.9, 'momentum coefficient of optimizer = "momentum"', "number", low=0, high=1)
    precision: str = field("float32", "floating-point precision of the whole run", "choice", choices=PRECISIONS)

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class RunConfig(engine_config.RunConfig):
    """What to run and where: the engine's fields (seeds, records, device, chunks, output), the
    widths a sweep runs, and the finite-width backend."""

    widths: tuple[int, ...] = field(
        (256, 1024), "widths m swept by dynsim sweep; dynsim.simulate defaults to the first", "integers", low=1
    )
    backend: str = field(
        "param",
        "param: literal SGD on the weights (the reference); gram: the exact Gram-space recursion, "
        "whose cost does not grow with the width (docs/gram.md)",
        "choice",
        choices=BACKENDS,
    )
    init: str = field(
        "auto",
        "initial Gram matrix of the gram backend: bartlett samples K_0 ~ Wishart(m, I/m) (needs m >= 2(r + n)), "
        "exact forms it from the W_0 that param draws with the same key, auto is bartlett when it applies; "
        "param accepts auto and exact",
        "choice",
        choices=INITS,
    )
    alignment_samples: int = field(1024, "fresh pairs for the Monte-Carlo alignment score and loss", "integer", low=2)

    def __post_init__(self):
        widths = (self.widths,) if isinstance(self.widths, int) else self.widths
        object.__setattr__(self, "widths", tuple(widths))
        check_fields(self)


def check_backend(backend: str, init: str, optimizer: str) -> None:
    """The width-independent rules of the backends (the ``gram`` width rule is in ``_gram``).

    ``gram`` needs an optimizer linear in the gradient; ``param`` draws ``W_0`` itself, so a
    Bartlett ``K_0`` means nothing to it.
    """
    check_choice("run.backend", backend, BACKENDS)
    check_choice("run.init", init, INITS)
    if backend == "gram" and optimizer not in GRAM_OPTIMIZERS:
        fail(
            "train.optimizer",
            optimizer,
            f"backend 'gram' needs an optimizer linear in the gradient ({', '.join(map(repr, GRAM_OPTIMIZERS))}): "
            f"its update W_t = W_0 Phi_t holds only for those; {optimizer!r} runs on backend 'param'",
        )
    if backend == "param" and init == "bartlett":
        fail(
            "run.init",
            init,
            "backend 'param' draws W_0 itself; 'bartlett' samples K_0 in Gram space, which only backend 'gram' "
            "does (use 'auto' or 'exact')",
        )


@dataclasses.dataclass(frozen=True)
class Config(SystemConfig):
    """A whole configuration of the two-tower system: ``data``, ``loss``, ``train`` and ``run`` sections.

    Cross-section rules are checked here: contrastive losses need ``train.batch >= 2``,
    every stage must last at least half a step (``round(T_k / lr) >= 1``), and the backend
    must support the optimizer and initialization (:func:`check_backend`).

    Example:
        >>> import dynsim
        >>> config = dynsim.load_config({"data": {"r": 2, "n": 3}, "run": {"widths": [64]}})
        >>> config.data.dim
        5
    """

    system: ClassVar[str] = "two_tower"
    data: DataConfig = DataConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    run: RunConfig = RunConfig()

    def __post_init__(self):
        check_backend(self.run.backend, self.run.init, self.train.optimizer)
        if self.loss.kind in CONTRASTIVE and self.train.batch < 2:
            fail("train.batch", self.train.batch, f"must be >= 2 for the contrastive loss {self.loss.kind!r}")
        for k, (_, duration) in enumerate(self.loss.stages):
            if round(duration / self.train.lr) < 1:
                fail(
                    f"loss.stages[{k}].duration",
                    duration,
                    f"must last at least half a step: >= {self.train.lr / 2} (train.lr / 2)",
                )

    @property
    def steps_per_stage(self) -> tuple[int, ...]:
        """SGD steps of each temperature stage, ``round(T_k / lr)``."""
        return stage_steps([duration for _, duration in self.loss.stages], self.train.lr)


def load_config(source=None) -> Config:
    """A two-tower :class:`Config` from a TOML file, nested tables, an existing ``Config``, or ``None``.

    Raises:
        ConfigError: as :func:`dynsim.engine.config.build_config`, and for another system's configuration.
    """
    if source is None:
        return Config()
    if isinstance(source, Config):
        return source
    return build_config(Config, read_toml(source) if isinstance(source, (str, Path)) else source)
