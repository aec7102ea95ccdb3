"""Typed, validated, immutable configuration: the rules every system's sections are declared with.

A configuration is a frozen dataclass of *sections* (each a frozen dataclass with a ``name``);
its class belongs to a system and says so in ``system``. Every field is declared with
:func:`field`: its default, a one-line description and an :class:`Allowed` rule. Validation
reads the rules when a section is built, so an invalid configuration never reaches a simulator:
the error names the field, the bad value and the allowed range or choices. The configuration
reference (docs/config-reference.md) is rendered from the same declarations.

The ``run`` section of every system extends :class:`RunConfig`: how many seeds, which PRNG seed,
the record cadence, the device, the chunking and the output directory are the engine's.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

DEVICES = ("auto", "cpu", "gpu")
EXECUTORS = ("inline", "local", "slurm", "debug")


class ConfigError(ValueError):
    """An invalid configuration: the message names the field and what is allowed."""


@dataclasses.dataclass(frozen=True)
class Allowed:
    """What validation accepts for one field; the configuration reference is rendered from it.

    Attributes:
        kind: ``integer``, ``number``, ``choice``, ``bool``, ``path``, ``text`` (a non-empty
            string), ``section`` (a nested table, the field's default's class), ``strings`` (a list,
            possibly empty, of non-empty strings), or a list (non-empty unless ``length`` is given):
            ``integers``, ``numbers``, ``stages`` (``[tau, duration]`` pairs), ``choices`` (distinct
            strings, each one of ``choices``).
        low: lower bound of a number or of every list element: a number, or sibling fields
            joined by ``" + "`` (``"r + n"``).
        strict: ``low`` itself is excluded.
        high: exclusive upper bound.
        choices: the allowed strings of a ``choice`` or ``choices``.
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


def field(default: Any, doc: str, kind: str, **allowed: Any) -> Any:
    """A configuration field: its default, a one-line description and its :class:`Allowed` rule."""
    return dataclasses.field(default=default, metadata={"doc": doc, "allowed": Allowed(kind, **allowed)})


def fail(field: str, value: Any, allowed: str) -> None:
    """Raise the :class:`ConfigError` of ``field = value``, saying what is ``allowed``."""
    raise ConfigError(f"{field} = {value!r} is invalid: {allowed}")


def check_count(name: str, value, low: int) -> int:
    """``value`` as an int, if it is an integer (not a bool) >= ``low``; else the one-line :class:`ConfigError`
    of a function argument called ``name`` (``seeds``, ``width``, ...)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name} = {value!r} is invalid: must be an integer >= {low}")
    return int(value)


def _check_number(field, value, *, low=None, strict=False, high=None, integer=False):
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        fail(field, value, f"must be {'an integer' if integer else 'a number'}")
    if not math.isfinite(value):
        fail(field, value, "must be finite")
    if low is not None and (value <= low if strict else value < low):
        fail(field, value, f"must be {'>' if strict else '>='} {low}")
    if high is not None and value >= high:
        fail(field, value, f"must be < {high}")


def check_choice(field, value, choices):
    """Refuse ``value`` unless it is one of ``choices``."""
    if value not in choices:
        fail(field, value, f"must be one of {', '.join(map(repr, choices))}")


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
        fail(name, value, "must be true or false")
    elif rule.kind == "path" and (not isinstance(value, str) or not value):
        fail(name, value, "must be a non-empty path")
    elif rule.kind == "text" and (not isinstance(value, str) or not value.strip()):
        fail(name, value, "must be a non-empty string")
    elif rule.kind == "section":
        if isinstance(value, Mapping):  # a nested TOML table: built here, so every system gets it
            object.__setattr__(section, field.name, build_section(type(field.default), value, f"{name}."))
        elif not isinstance(value, type(field.default)):
            fail(name, value, "must be a table of key = value pairs")
    elif rule.kind == "strings":
        if isinstance(value, str) or not isinstance(value, list | tuple):
            fail(name, value, "must be a list of strings")
        object.__setattr__(section, field.name, tuple(value))
        for i, element in enumerate(value):
            if not isinstance(element, str) or not element.strip():
                fail(f"{name}[{i}]", element, "must be a non-empty string")
    elif rule.kind == "choices":
        if isinstance(value, str) or not value or len(set(value)) != len(value):
            fail(name, value, "must be a non-empty list of distinct names")
        for i, element in enumerate(value):
            check_choice(f"{name}[{i}]", element, rule.choices)
    elif rule.kind in ("integers", "numbers", "stages"):
        if not value and rule.length is None:  # with a length rule, [] is right for length 0
            fail(name, list(value), "must hold at least one value")
        if rule.length is not None and len(value) != getattr(section, rule.length):
            fail(name, list(value), f"must have length {getattr(section, rule.length)}")
        for i, element in enumerate(value):
            if rule.kind == "stages":
                _check_number(f"{name}[{i}].tau", element[0], **bounds)
                _check_number(f"{name}[{i}].duration", element[1], **bounds)
            else:
                _check_number(f"{name}[{i}]", element, integer=rule.kind == "integers", **bounds)
    elif rule.kind not in ("bool", "path", "text"):
        raise AssertionError(f"{name}: unknown rule kind {rule.kind!r}")


def check_fields(section) -> None:
    """Check every field of a section in declaration order (cross-field rules are the section's own)."""
    for field in dataclasses.fields(section):
        _check_field(section, field)


def as_stages(value, name: str) -> tuple:
    """``value`` as a tuple of ``(tau, duration)`` pairs, or the :class:`ConfigError` of field ``name``."""
    try:
        return tuple((tau, duration) for tau, duration in value)
    except (TypeError, ValueError):
        fail(name, value, "must be a list of [tau, duration] pairs")


def as_tuple(values):
    """``values`` as a tuple (``None`` stays ``None``): list fields are stored as tuples, so hashable."""
    return None if values is None else tuple(values)


@dataclasses.dataclass(frozen=True)
class ExecutorConfig:
    """Where the parts of a sweep run (``[run.executor]``, or ``dynsim sweep --executor ...``):
    ``inline`` in this process, one part after another; ``local`` in up to ``jobs`` processes of
    this machine; ``slurm`` as SLURM job arrays; ``debug`` in this process through submitit (for
    pdb). None of these fields changes results, so none is part of a run's fingerprint
    (docs/cluster.md)."""

    name: ClassVar[str] = "run.executor"
    kind: str = field("inline", "where parts run", "choice", choices=EXECUTORS)
    jobs: int | None = field(
        None,
        "jobs running at once (local: processes, default the CPU count; slurm: the array's %N, default no cap)",
        "integer",
        low=1,
        optional=True,
    )
    parts_per_job: int = field(
        1, "parts of one point of the axis run in one job, one after another, compiling once", "integer", low=1
    )
    partition: str | None = field(None, "slurm: the partition (default: the cluster's)", "text", optional=True)
    gpus_per_job: int | None = field(
        None, "GPUs per job (default: 1 when run.device is gpu, else 0)", "integer", low=0, optional=True
    )
    cpus_per_job: int | None = field(
        None, "slurm: CPU cores per job (default: the cluster's)", "integer", low=1, optional=True
    )
    mem_gb: float | None = field(
        None, "slurm: memory per job in GB (default: the cluster's)", "number", low=0, strict=True, optional=True
    )
    time_min: int = field(
        60, "wall-clock limit of a job in minutes; a job past it is requeued and resumes", "integer", low=1
    )
    max_requeue: int = field(
        3,
        "timeouts after which a job is not requeued (its unfinished parts are lost: the next run resubmits them)",
        "integer",
        low=0,
    )
    slurm_args: tuple[str, ...] = field(
        (), "slurm: extra #SBATCH options as KEY=VALUE (account=abc, qos=high, gres=gpu:a100:1)", "strings"
    )
    setup: tuple[str, ...] = field((), "shell lines each job runs before Python starts (module load cuda)", "strings")

    def __post_init__(self):
        check_fields(self)
        for i, assignment in enumerate(self.slurm_args):
            key, sep, _ = assignment.partition("=")
            if not sep or not key.strip() or key.strip().startswith("-"):
                fail(f"run.executor.slurm_args[{i}]", assignment, "must look like KEY=VALUE, e.g. account=abc")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What to run and where: the engine's part of every system's ``run`` section."""

    name: ClassVar[str] = "run"
    seeds: int = field(4, "independent runs per point of the sweep", "integer", low=1)
    seed: int = field(0, "base PRNG seed", "integer", low=0)
    record_every: float = field(
        20.0, "training time between records (rounded to whole steps, at least 1)", "number", low=0, strict=True
    )
    device: str = field("auto", "device kind; seeds are sharded over every device of it", "choice", choices=DEVICES)
    seed_chunk: int = field(
        4,
        "seeds dynsim sweep simulates and saves together; an interrupted run loses at most one chunk",
        "integer",
        low=1,
    )
    out: str = field("runs/default", "output directory of dynsim sweep", "path")
    executor: ExecutorConfig = field(
        ExecutorConfig(), "where the parts of a sweep run: the [run.executor] table", "section"
    )

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class SystemConfig:
    """Base of every system's configuration class: its sections are its dataclass fields.

    Subclasses set ``system`` (the registry name) and declare one field per section, whose
    default is the section's default instance.
    """

    system: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a nested dict of plain values: ``system`` and one table per section
        (``None`` fields omitted); :func:`build_config` reads it back."""

        def plain(value):
            if dataclasses.is_dataclass(value):  # a nested section, such as run.executor
                return {
                    f.name: plain(v) for f in dataclasses.fields(value) if (v := getattr(value, f.name)) is not None
                }
            return [plain(v) for v in value] if isinstance(value, tuple) else value

        tables = {
            section.name: {
                f.name: plain(getattr(getattr(self, section.name), f.name))
                for f in dataclasses.fields(getattr(self, section.name))
                if getattr(getattr(self, section.name), f.name) is not None
            }
            for section in dataclasses.fields(self)
        }
        return {"system": self.system, **tables}


def _reject_unknown(keys, allowed, where):
    for key in keys:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f"; did you mean {where}{close[0]}?" if close else ""
            raise ConfigError(f"unknown key {where}{key}{hint} (allowed: {', '.join(allowed)})")


def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML configuration file.

    Raises:
        ConfigError: a missing file or malformed TOML.
    """
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None


def build_config(cls: type, source: Mapping[str, Any]):
    """Build and validate a configuration of class ``cls`` from nested tables.

    Args:
        cls: a :class:`SystemConfig` subclass.
        source: ``{"system": ..., "<section>": {...}, ...}``; a missing section or key takes its
            default, ``system`` (optional) must be ``cls.system``.

    Raises:
        ConfigError: unknown sections or keys (with a did-you-mean hint), another system's
            name, or any invalid value.
    """
    if source.get("system", cls.system) != cls.system:
        raise ConfigError(f"system = {source['system']!r} does not match the configuration class of {cls.system!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown([key for key in source if key != "system"], ["system", *fields], "")
    return cls(**{name: build_section(type(f.default), source.get(name, {}), f"{name}.") for name, f in fields.items()})


def build_section(section_type: type, values, where: str):
    """Build and validate one section (``where``: its dotted name and a dot, ``"run."``) from a table.

    Raises:
        ConfigError: not a table, unknown keys (with a did-you-mean hint), or any invalid value.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"section {where[:-1]!r} must be a table of key = value pairs")
    _reject_unknown(values, [s.name for s in dataclasses.fields(section_type)], where)
    try:
        return section_type(**values)
    except TypeError as err:  # e.g. a list where a number belongs, caught by a comparison
        raise ConfigError(f"section {where[:-1]!r}: {err}") from None


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


def require_whole_steps(rates, times, rate_name: str) -> None:
    """Refuse a time that is not a whole number of steps at every step size of ``rates``.

    Args:
        rates: the step sizes a run uses (training time is step size × step).
        times: ``{field: time}``, e.g. ``{"train.duration": 100.0, "run.record_every": 5.0}``.
        rate_name: what the step size is called in the message (``"learning rate"``).
    """
    for rate in rates:
        for name, time in times.items():
            if not math.isclose(round(time / rate) * rate, time, rel_tol=1e-9):
                fail(name, time, f"must be a whole number of steps at {rate_name} {rate} (a multiple of it)")


def _merged(table: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``table`` with ``overrides`` applied: a dotted key (``executor.kind``) or a table value
    reaches into a nested table, keeping its other keys."""
    merged = dict(table)
    for key, value in overrides.items():
        head, dot, rest = key.partition(".")
        if dot:
            value, key = {rest: value}, head
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            value = _merged(merged[key], value)
        merged[key] = value
    return merged


def with_overrides(config, assignments: Mapping[str, Mapping[str, Any]]):
    """Return ``config`` with ``{section: {key: value}}`` overrides applied and revalidated (a key
    ``executor.kind`` of section ``run`` sets the nested ``[run.executor]`` table's ``kind``)."""
    merged = config.to_dict()
    for section, values in assignments.items():
        merged[section] = _merged(merged.get(section, {}), values)
    return build_config(type(config), merged)
