"""Typed, validated, immutable configuration (shared/SPEC.md §1–3).

A :class:`Config` has four sections, ``data``, ``loss``, ``train`` and ``run``; every
field has a small meaningful default. Validation happens at construction, so an
invalid configuration never reaches the simulator: the error names the field, the bad
value and the allowed range or choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._schedule import stage_steps

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


def _fail(field: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{field} = {value!r} is invalid: {allowed}")


def _check_number(field, value, *, low=None, strict=False, high=None, integer=False):
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        _fail(field, value, f"must be {'an integer' if integer else 'a number'}")
    if low is not None and (value <= low if strict else value < low):
        _fail(field, value, f"must be {'>' if strict else '>='} {low}")
    if high is not None and value >= high:
        _fail(field, value, f"must be < {high}")


def check_choice(field, value, choices):
    if value not in choices:
        _fail(field, value, f"must be one of {', '.join(map(repr, choices))}")


def _check_list(field, values, length, *, low, strict):
    if values is None:
        return
    if length is not None and len(values) != length:
        _fail(field, list(values), f"must have length {length}")
    for i, v in enumerate(values):
        _check_number(f"{field}[{i}]", v, low=low, strict=strict)


def _tuple(values):
    return None if values is None else tuple(values)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Data model, SPEC §1: ``x = M z + H xi`` with ``M = U diag(sigma)``, ``H = V diag(eta)``.

    Attributes:
        r: number of signal coordinates, ``r >= 1``.
        n: number of noise coordinates per modality, ``n >= 0``.
        d: ambient dimension, ``d >= r + n``; ``None`` means ``r + n``.
        spectrum: signal spectrum profile, one of ``geometric``, ``linear``, ``spike``,
            ``list`` (then ``sigma`` gives it).
        kappa: ``sigma_max / sigma_min`` of modality A, ``>= 1``.
        kappa_b: the same for modality B; ``None`` means ``kappa``.
        sigma, sigma_b: explicit spectra (length r, > 0) for ``spectrum = "list"``;
            ``sigma_b`` defaults to ``sigma``.
        noise: constant noise level ``eta_j``, ``>= 0``.
        eta: explicit noise spectrum (length n, >= 0); when given it overrides ``noise``.
        basis: ``canonical`` (first r + n coordinates) or ``random`` (Haar, from the run's key).
    """

    r: int = 8
    n: int = 24
    d: int | None = None
    spectrum: str = "geometric"
    kappa: float = 4.0
    kappa_b: float | None = None
    sigma: tuple[float, ...] | None = None
    sigma_b: tuple[float, ...] | None = None
    noise: float = 0.3
    eta: tuple[float, ...] | None = None
    basis: str = "canonical"

    def __post_init__(self):
        object.__setattr__(self, "sigma", _tuple(self.sigma))
        object.__setattr__(self, "sigma_b", _tuple(self.sigma_b))
        object.__setattr__(self, "eta", _tuple(self.eta))
        _check_number("data.r", self.r, low=1, integer=True)
        _check_number("data.n", self.n, low=0, integer=True)
        if self.d is not None:
            _check_number("data.d", self.d, low=self.r + self.n, integer=True)
        check_choice("data.spectrum", self.spectrum, SPECTRA)
        _check_number("data.kappa", self.kappa, low=1)
        if self.kappa_b is not None:
            _check_number("data.kappa_b", self.kappa_b, low=1)
        _check_list("data.sigma", self.sigma, self.r, low=0, strict=True)
        _check_list("data.sigma_b", self.sigma_b, self.r, low=0, strict=True)
        if self.spectrum == "list" and self.sigma is None:
            _fail("data.sigma", None, 'a list of r positive values is required when spectrum = "list"')
        if self.spectrum != "list" and (self.sigma, self.sigma_b) != (None, None):
            _fail("data.spectrum", self.spectrum, 'must be "list" when data.sigma or data.sigma_b is given')
        _check_number("data.noise", self.noise, low=0)
        _check_list("data.eta", self.eta, self.n, low=0, strict=False)
        check_choice("data.basis", self.basis, BASES)

    @property
    def dim(self) -> int:
        """The ambient dimension ``d`` with its default resolved."""
        return self.r + self.n if self.d is None else self.d


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Loss and temperature schedule, SPEC §3.

    Attributes:
        kind: ``infonce`` (contrastive), ``positive`` (non-contrastive) or ``spectral``.
        lam: weight of the negative pairs, ``> 0``.
        stages: ``((tau_1, T_1), (tau_2, T_2), ...)``: inverse temperature ``tau_k > 0``
            held for a training-time duration ``T_k > 0``.
        rescale: multiply the gradient by ``gamma = 1 / tau`` (seed §5.1).
    """

    kind: str = "infonce"
    lam: float = 1.0
    stages: tuple[tuple[float, float], ...] = ((0.05, 60.0), (3.0, 1600.0))
    rescale: bool = True

    def __post_init__(self):
        try:
            stages = tuple((tau, duration) for tau, duration in self.stages)
        except (TypeError, ValueError):
            _fail("loss.stages", self.stages, "must be a list of [tau, duration] pairs")
        object.__setattr__(self, "stages", stages)
        check_choice("loss.kind", self.kind, LOSSES)
        _check_number("loss.lam", self.lam, low=0, strict=True)
        if not stages:
            _fail("loss.stages", list(stages), "must hold at least one [tau, duration] pair")
        for k, (tau, duration) in enumerate(stages):
            _check_number(f"loss.stages[{k}].tau", tau, low=0, strict=True)
            _check_number(f"loss.stages[{k}].duration", duration, low=0, strict=True)
        if not isinstance(self.rescale, bool):
            _fail("loss.rescale", self.rescale, "must be true or false")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Online SGD, SPEC §3: training time ``t = lr * step``.

    Attributes:
        lr: learning rate ``eta > 0``.
        batch: pairs per step ``B`` (``>= 2`` for contrastive losses, ``>= 1`` otherwise).
        normalization: ``population`` (``Z^2 = E||W x||^2``) or ``batch`` (batch mean).
        optimizer: ``sgd``, ``momentum`` (heavy ball, coefficient ``momentum``) or ``adam``.
        momentum: momentum coefficient in ``[0, 1)``, used by ``optimizer = "momentum"``.
        precision: ``float32`` or ``float64``.
    """

    lr: float = 0.2
    batch: int = 64
    normalization: str = "population"
    optimizer: str = "sgd"
    momentum: float = 0.9
    precision: str = "float32"

    def __post_init__(self):
        _check_number("train.lr", self.lr, low=0, strict=True)
        _check_number("train.batch", self.batch, low=1, integer=True)
        check_choice("train.normalization", self.normalization, NORMALIZATIONS)
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _check_number("train.momentum", self.momentum, low=0, high=1)
        check_choice("train.precision", self.precision, PRECISIONS)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What to run and where.

    Attributes:
        widths: network widths ``m >= 1`` to simulate.
        seeds: independent runs per width, ``>= 1``.
        seed: base PRNG seed, ``>= 0``.
        record_every: training time between recorded points, ``> 0``.
        backend: ``param`` (literal parameter-space model, the reference) or ``gram`` (exact
            Gram-space recursion, SPEC §6, whose cost does not depend on the width).
        init: initial Gram matrix of the ``gram`` backend: ``bartlett`` (``K_0 ~ Wishart``,
            needs ``m >= 2(r + n)``), ``exact`` (from the ``W_0`` the ``param`` backend draws with
            the same key) or ``auto`` (``bartlett`` when it applies, else ``exact``).
        device: ``auto``, ``cpu`` or ``gpu``.
        alignment_samples: fresh pairs for the Monte-Carlo alignment score and loss, ``>= 2``.
        seed_chunk: seeds simulated (and saved) together by ``dynsim sweep``, ``>= 1``; a run
            that is interrupted loses at most one chunk.
        out: output directory of ``dynsim sweep``.
    """

    widths: tuple[int, ...] = (256, 1024)
    seeds: int = 4
    seed: int = 0
    record_every: float = 20.0
    backend: str = "param"
    init: str = "auto"
    device: str = "auto"
    alignment_samples: int = 1024
    seed_chunk: int = 4
    out: str = "runs/default"

    def __post_init__(self):
        if isinstance(self.widths, int):
            object.__setattr__(self, "widths", (self.widths,))
        object.__setattr__(self, "widths", tuple(self.widths))
        if not self.widths:
            _fail("run.widths", [], "must hold at least one width")
        for i, width in enumerate(self.widths):
            _check_number(f"run.widths[{i}]", width, low=1, integer=True)
        _check_number("run.seeds", self.seeds, low=1, integer=True)
        _check_number("run.seed", self.seed, low=0, integer=True)
        _check_number("run.record_every", self.record_every, low=0, strict=True)
        check_choice("run.backend", self.backend, BACKENDS)
        check_choice("run.init", self.init, INITS)
        check_choice("run.device", self.device, DEVICES)
        _check_number("run.alignment_samples", self.alignment_samples, low=2, integer=True)
        _check_number("run.seed_chunk", self.seed_chunk, low=1, integer=True)
        if not isinstance(self.out, str) or not self.out:
            _fail("run.out", self.out, "must be a non-empty path")


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
