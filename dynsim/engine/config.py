"""Typed, validated, immutable configuration (shared/SPEC.md §1–3).

A :class:`Config` has four sections, ``data``, ``loss``, ``train`` and ``run``; every
field has a small meaningful default. Each field is declared with its description and an
:class:`Allowed` rule; validation reads the rules at construction, so an invalid
configuration never reaches the simulator: the error names the field, the bad value and
the allowed range or choices. docs/config-reference.md is generated from the same
declarations (``python -m dynsim._docgen``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from .schedule import stage_steps

SPECTRA = ("geometric", "linear", "spike", "list")
BASES = ("canonical", "random")
LOSSES = ("infonce", "positive", "spectral")
CONTRASTIVE = ("infonce", "spectral")
NORMALIZATIONS = ("population", "batch")
OPTIMIZERS = ("sgd", "momentum", "adam")
PRECISIONS = ("float32", "float64")
BACKENDS = ("param", "gram")
INITS = ("auto", "bartlett", "exact")
GRAM_OPTIMIZERS = ("sgd", "momentum")  # linear in the gradient, so that W_t = W_0 Phi_t
DEVICES = ("auto", "cpu", "gpu")


class ConfigError(ValueError):
    """An invalid configuration: the message names the field and what is allowed."""


@dataclasses.dataclass(frozen=True)
class Allowed:
    """What validation accepts for one field; the configuration reference is rendered from it.

    Attributes:
        kind: ``integer``, ``number``, ``choice``, ``bool``, ``path``, or a list (non-empty
            unless ``length`` is given): ``integers``, ``numbers``, ``stages`` (``[tau, duration]`` pairs).
        low: lower bound of a number or of every list element: a number, or sibling fields
            joined by ``" + "`` (``"r + n"``).
        strict: ``low`` itself is excluded.
        high: exclusive upper bound.
        choices: the allowed strings of a ``choice``.
        length: the sibling field a list's length must equal.
        optional: ``None`` (unset) is accepted; the field's description says what it means.
    """

    kind: str
    low: float | str | None = None
    strict: bool = False
    high: float | None = None
    choices: tuple[str, ...] = ()
    length: str | None = None
    optional: bool = False


def _field(default: Any, doc: str, kind: str, **allowed: Any) -> Any:
    """A configuration field: its default, a one-line description and its :class:`Allowed` rule."""
    return dataclasses.field(default=default, metadata={"doc": doc, "allowed": Allowed(kind, **allowed)})


def _fail(field: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{field} = {value!r} is invalid: {allowed}")


def _check_number(field, value, *, low=None, strict=False, high=None, integer=False):
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        _fail(field, value, f"must be {'an integer' if integer else 'a number'}")
    if not math.isfinite(value):
        _fail(field, value, "must be finite")
    if low is not None and (value <= low if strict else value < low):
        _fail(field, value, f"must be {'>' if strict else '>='} {low}")
    if high is not None and value >= high:
        _fail(field, value, f"must be < {high}")


def check_choice(field, value, choices):
    if value not in choices:
        _fail(field, value, f"must be one of {', '.join(map(repr, choices))}")


def _check_field(section, field: dataclasses.Field) -> None:
    """Check one field of a section against its :class:`Allowed` rule."""
    name, value, rule = f"{section.name}.{field.name}", getattr(section, field.name), field.metadata["allowed"]
    if value is None and rule.optional:
        return
    low = rule.low
    if isinstance(low, str):
        low = sum(getattr(section, sibling) for sibling in low.split(" + "))
    bounds = {"low": low, "strict": rule.strict, "high": rule.high}
    if rule.kind in ("integer", "number"):
        _check_number(name, value, integer=rule.kind == "integer", **bounds)
    elif rule.kind == "choice":
        check_choice(name, value, rule.choices)
    elif rule.kind == "bool" and not isinstance(value, bool):
        _fail(name, value, "must be true or false")
    elif rule.kind == "path" and (not isinstance(value, str) or not value):
        _fail(name, value, "must be a non-empty path")
    elif rule.kind in ("integers", "numbers", "stages"):
        if not value and rule.length is None:  # with a length rule, [] is right for length 0
            _fail(name, list(value), "must hold at least one value")
        if rule.length is not None and len(value) != getattr(section, rule.length):
            _fail(name, list(value), f"must have length {getattr(section, rule.length)}")
        for i, element in enumerate(value):
            if rule.kind == "stages":
                _check_number(f"{name}[{i}].tau", element[0], **bounds)
                _check_number(f"{name}[{i}].duration", element[1], **bounds)
            else:
                _check_number(f"{name}[{i}]", element, integer=rule.kind == "integers", **bounds)
    elif rule.kind not in ("bool", "path"):
        raise AssertionError(f"{name}: unknown rule kind {rule.kind!r}")


def _check_fields(section) -> None:
    """Check every field of a section in declaration order (cross-field rules are the section's own)."""
    for field in dataclasses.fields(section):
        _check_field(section, field)


def _tuple(values):
    return None if values is None else tuple(values)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Data model, SPEC §1: ``x = M z + H xi`` with ``M = U diag(sigma)``, ``H = V diag(eta)``.

    Profiles of ``spectrum``: ``geometric`` ``sigma_k = kappa^((r-k)/(r-1))``, ``linear`` evenly
    spaced from ``kappa`` down to 1, ``spike`` ``sigma_1 = kappa`` and all others 1 (with
    ``r = 1`` every profile gives ``[kappa]``); ``list`` takes ``sigma`` and ``sigma_b``, which
    are refused with any other profile.
    """

    name: ClassVar[str] = "data"
    r: int = _field(8, "signal coordinates", "integer", low=1)
    n: int = _field(24, "noise coordinates per modality", "integer", low=0)
    d: int | None = _field(None, "ambient dimension; unset means r + n", "integer", low="r + n", optional=True)
    spectrum: str = _field("geometric", "profile of the signal spectrum sigma", "choice", choices=SPECTRA)
    kappa: float = _field(4.0, "sigma_max / sigma_min of modality A", "number", low=1)
    kappa_b: float | None = _field(
        None, "sigma_max / sigma_min of modality B; unset means kappa", "number", low=1, optional=True
    )
    sigma: tuple[float, ...] | None = _field(
        None,
        'explicit signal spectrum of modality A; required by, and only allowed with, spectrum = "list"',
        "numbers",
        low=0,
        strict=True,
        length="r",
        optional=True,
    )
    sigma_b: tuple[float, ...] | None = _field(
        None,
        'explicit signal spectrum of modality B (spectrum = "list"); unset means sigma',
        "numbers",
        low=0,
        strict=True,
        length="r",
        optional=True,
    )
    noise: float = _field(0.3, "constant noise level eta_j of both modalities", "number", low=0)
    eta: tuple[float, ...] | None = _field(
        None, "explicit noise spectrum of both modalities; overrides noise", "numbers", low=0, length="n", optional=True
    )
    basis: str = _field(
        "canonical",
        "[U V]: the first r + n coordinates, or Haar-random columns drawn from the run's key",
        "choice",
        choices=BASES,
    )

    def __post_init__(self):
        object.__setattr__(self, "sigma", _tuple(self.sigma))
        object.__setattr__(self, "sigma_b", _tuple(self.sigma_b))
        object.__setattr__(self, "eta", _tuple(self.eta))
        _check_fields(self)
        if self.spectrum == "list" and self.sigma is None:
            _fail("data.sigma", None, 'a list of r positive values is required when spectrum = "list"')
        if self.spectrum != "list" and (self.sigma, self.sigma_b) != (None, None):
            _fail("data.spectrum", self.spectrum, 'must be "list" when data.sigma or data.sigma_b is given')

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
    kind: str = _field(
        "infonce", "the loss: contrastive infonce, non-contrastive positive, or spectral", "choice", choices=LOSSES
    )
    lam: float = _field(1.0, "weight of the negative pairs (infonce, spectral)", "number", low=0, strict=True)
    stages: tuple[tuple[float, float], ...] = _field(
        ((0.05, 60.0), (3.0, 1600.0)),
        "[tau, duration] pairs: inverse temperature tau held for a training-time duration",
        "stages",
        low=0,
        strict=True,
    )
    rescale: bool = _field(True, "multiply the gradient by gamma = 1 / tau (seed §5.1)", "bool")

    def __post_init__(self):
        try:
            stages = tuple((tau, duration) for tau, duration in self.stages)
        except (TypeError, ValueError):
            _fail("loss.stages", self.stages, "must be a list of [tau, duration] pairs")
        object.__setattr__(self, "stages", stages)
        _check_fields(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Online SGD, SPEC §3: training time ``t = lr * step``."""

    name: ClassVar[str] = "train"
    lr: float = _field(0.2, "learning rate eta; training time is t = lr * step", "number", low=0, strict=True)
    batch: int = _field(64, "fresh pairs per step B; contrastive losses need at least 2", "integer", low=1)
    normalization: str = _field(
        "population", "Z^2 = E||W x||^2 (population) or its batch mean", "choice", choices=NORMALIZATIONS
    )
    optimizer: str = _field("sgd", "optax optimizer; momentum is heavy ball", "choice", choices=OPTIMIZERS)
    momentum: float = _field(0.9, 'momentum coefficient of optimizer = "momentum"', "number", low=0, high=1)
    precision: str = _field("float32", "floating-point precision of the whole run", "choice", choices=PRECISIONS)

    def __post_init__(self):
        _check_fields(self)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What to run and where."""

    name: ClassVar[str] = "run"
    widths: tuple[int, ...] = _field(
        (256, 1024), "widths m swept by dynsim sweep; dynsim.simulate defaults to the first", "integers", low=1
    )
    seeds: int = _field(4, "independent runs per width", "integer", low=1)
    seed: int = _field(0, "base PRNG seed", "integer", low=0)
    record_every: float = _field(
        20.0, "training time between records (rounded to whole steps, at least 1)", "number", low=0, strict=True
    )
    backend: str = _field(
        "param",
        "param: literal SGD on the weights (the reference); gram: the exact Gram-space recursion, "
        "whose cost does not grow with the width (docs/gram.md)",
        "choice",
        choices=BACKENDS,
    )
    init: str = _field(
        "auto",
        "initial Gram matrix of the gram backend: bartlett samples K_0 ~ Wishart(m, I/m) (needs m >= 2(r + n)), "
        "exact forms it from the W_0 that param draws with the same key, auto is bartlett when it applies; "
        "param accepts auto and exact",
        "choice",
        choices=INITS,
    )
    device: str = _field("auto", "device kind; seeds are sharded over every device of it", "choice", choices=DEVICES)
    alignment_samples: int = _field(1024, "fresh pairs for the Monte-Carlo alignment score and loss", "integer", low=2)
    seed_chunk: int = _field(
        4,
        "seeds dynsim sweep simulates and saves together; an interrupted run loses at most one chunk",
        "integer",
        low=1,
    )
    out: str = _field("runs/default", "output directory of dynsim sweep", "path")

    def __post_init__(self):
        widths = (self.widths,) if isinstance(self.widths, int) else self.widths
        object.__setattr__(self, "widths", tuple(widths))
        _check_fields(self)


def check_backend(backend: str, init: str, optimizer: str) -> None:
    """The width-independent rules of the backends (the ``gram`` width rule is in ``_gram``).

    ``gram`` needs an optimizer linear in the gradient; ``param`` draws ``W_0`` itself, so a
    Bartlett ``K_0`` means nothing to it.
    """
    check_choice("run.backend", backend, BACKENDS)
    check_choice("run.init", init, INITS)
    if backend == "gram" and optimizer not in GRAM_OPTIMIZERS:
        _fail(
            "train.optimizer",
            optimizer,
            f"backend 'gram' needs an optimizer linear in the gradient ({', '.join(map(repr, GRAM_OPTIMIZERS))}): "
            f"its update W_t = W_0 Phi_t holds only for those; {optimizer!r} runs on backend 'param'",
        )
    if backend == "param" and init == "bartlett":
        _fail(
            "run.init",
            init,
            "backend 'param' draws W_0 itself; 'bartlett' samples K_0 in Gram space, which only backend 'gram' "
            "does (use 'auto' or 'exact')",
        )


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole dynsim configuration: ``data``, ``loss``, ``train`` and ``run`` sections.

    Cross-section rules are checked here: contrastive losses need ``train.batch >= 2``,
    every stage must last at least half a step (``round(T_k / lr) >= 1``), and the backend
    must support the optimizer and initialization (:func:`check_backend`).

    Example:
        >>> import dynsim
        >>> config = dynsim.load_config({"data": {"r": 2, "n": 3}, "run": {"widths": [64]}})
        >>> config.data.dim
        5
    """

    data: DataConfig = DataConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    run: RunConfig = RunConfig()

    def __post_init__(self):
        check_backend(self.run.backend, self.run.init, self.train.optimizer)
        if self.loss.kind in CONTRASTIVE and self.train.batch < 2:
            _fail("train.batch", self.train.batch, f"must be >= 2 for the contrastive loss {self.loss.kind!r}")
        for k, (_, duration) in enumerate(self.loss.stages):
            if round(duration / self.train.lr) < 1:
                _fail(
                    f"loss.stages[{k}].duration",
                    duration,
                    f"must last at least half a step: >= {self.train.lr / 2} (train.lr / 2)",
                )

    @property
    def steps_per_stage(self) -> tuple[int, ...]:
        """SGD steps of each temperature stage, ``round(T_k / lr)``."""
        return stage_steps([duration for _, duration in self.loss.stages], self.train.lr)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The configuration as a nested dict of plain values (``None`` fields omitted)."""

        def plain(value):
            return [plain(v) for v in value] if isinstance(value, tuple) else value

        return {
            section.name: {
                f.name: plain(getattr(getattr(self, section.name), f.name))
                for f in dataclasses.fields(getattr(self, section.name))
                if getattr(getattr(self, section.name), f.name) is not None
            }
            for section in dataclasses.fields(self)
        }


_SECTION_TYPES = {"data": DataConfig, "loss": LossConfig, "train": TrainConfig, "run": RunConfig}


def _reject_unknown(keys, allowed, where):
    for key in keys:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f"; did you mean {where}{close[0]}?" if close else ""
            raise ConfigError(f"unknown key {where}{key}{hint} (allowed: {', '.join(allowed)})")


def load_config(source: str | Path | Mapping[str, Any] | Config | None = None) -> Config:
    """Build a validated :class:`Config` from a TOML file, a nested dict, or nothing.

    Args:
        source: path to a TOML file, a nested mapping ``{"data": {...}, "loss": {...}}``,
            an existing ``Config`` (returned as is), or ``None`` for the built-in default.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: for unknown sections or keys (with a did-you-mean hint), a missing
            file, malformed TOML, or any invalid value.
    """
    if source is None:
        return Config()
    if isinstance(source, Config):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            source = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    _reject_unknown(source, _SECTION_TYPES, "")
    sections = {}
    for name, cls in _SECTION_TYPES.items():
        values = source.get(name, {})
        if not isinstance(values, Mapping):
            raise ConfigError(f"section {name!r} must be a table of key = value pairs")
        _reject_unknown(values, [f.name for f in dataclasses.fields(cls)], f"{name}.")
        try:
            sections[name] = cls(**values)
        except TypeError as err:  # e.g. a list where a number belongs, caught by a comparison
            raise ConfigError(f"section {name!r}: {err}") from None
    return Config(**sections)


def parse_assignment(assignment: str) -> tuple[str, str, Any]:
    """Parse ``section.key=value`` (value in TOML syntax, bare words as strings).

    Returns:
        ``(section, key, value)``.
    """
    path, sep, text = assignment.partition("=")
    section, dot, key = path.strip().partition(".")
    if not sep or not dot or not key:
        raise ConfigError(f"--set {assignment!r} must look like section.key=value, e.g. loss.lam=2")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return section, key.strip(), value


def with_overrides(config: Config, assignments: Mapping[str, Mapping[str, Any]]) -> Config:
    """Return ``config`` with ``{section: {key: value}}`` overrides applied and revalidated."""
    merged = config.to_dict()
    for section, values in assignments.items():
        merged[section] = {**merged.get(section, {}), **values}
    return load_config(merged)
