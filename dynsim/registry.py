"""The systems dynsim knows, by name, and what turns a name into one.

This module and the command line are the only places that know the systems by name: the
engine takes a :class:`~dynsim.engine.system.System`. A configuration names its system in its
top-level ``system`` key (``"two_tower"`` when absent, which is what every configuration
written before there were several systems means); a run directory's ``config.toml`` does the
same, so :func:`load` finds the system of a run by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from .engine.config import ConfigError, SystemConfig, build_config, read_toml
from .engine.results import load_run
from .engine.system import System
from .jghm.system import SYSTEM as JGHM
from .large_step.system import SYSTEM as LARGE_STEP
from .practical.system import SYSTEM as PRACTICAL
from .spectral.system import SYSTEM as SPECTRAL
from .two_tower.system import SYSTEM as TWO_TOWER

SYSTEMS: dict[str, System] = {system.name: system for system in (TWO_TOWER, SPECTRAL, LARGE_STEP, JGHM, PRACTICAL)}
DEFAULT = TWO_TOWER.name


def get(name: str) -> System:
    """The system called ``name``.

    Raises:
        ConfigError: no such system (the message lists the known ones).
    """
    if name not in SYSTEMS:
        raise ConfigError(f"system = {name!r} is invalid: must be one of {', '.join(map(repr, SYSTEMS))}")
    return SYSTEMS[name]


def load_config(source: str | Path | Mapping[str, Any] | SystemConfig | None = None, system: str | None = None):
    """Build a validated configuration of any system from a TOML file, nested tables, or nothing.

    Args:
        source: path to a TOML file, a nested mapping ``{"system": ..., "<section>": {...}}``, an
            existing configuration (returned as is), or ``None`` for the built-in default.
        system: the system when ``source`` does not name one (default ``"two_tower"``); a
            ``source`` that names another is refused.

    Returns:
        The validated configuration of the system's class (``dynsim.Config`` for two_tower).

    Raises:
        ConfigError: an unknown system, unknown sections or keys (with a did-you-mean hint), a
            missing file, malformed TOML, or any invalid value.

    Example:
        >>> import dynsim
        >>> dynsim.load_config({"system": "spectral", "graph": {"classes": 2}}).graph.classes
        2
    """
    if isinstance(source, SystemConfig):
        return source
    tables = {} if source is None else read_toml(source) if isinstance(source, (str, Path)) else dict(source)
    named = tables.get("system", system or DEFAULT)
    if system is not None and named != system:
        raise ConfigError(f"--system {system} conflicts with system = {named!r} in the configuration")
    return build_config(get(named).config, tables)


def system_of(config: SystemConfig) -> System:
    """The system a configuration belongs to."""
    return get(config.system)


def load(run_dir: str | Path) -> xr.Dataset:
    """The labeled dataset of a run directory of any system (:func:`dynsim.engine.results.load_run`).

    For the two-tower system: dims ``width, seed, time, signal, noise``; the finite-width
    variables ``a, b, p, nu_a, nu_b`` and metrics, the infinite-width overlay ``ode_*`` (dims
    without width and seed) when the run has one, and the SGD floor run ``floor_*`` (dims seed,
    time, ...) of ``dynsim compare``. Attributes: ``config`` (the resolved TOML), ``system``,
    ``axis``, ``loss_kind``, ``backend``, ``stage_boundaries``, ...

    Raises:
        FileNotFoundError: ``run_dir`` is not a run directory or has no finished part.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "fingerprint").exists():
        raise FileNotFoundError(f"{run_dir} is not a dynsim run directory (no fingerprint file)")
    return load_run(run_dir, get(read_toml(run_dir / "config.toml").get("system", DEFAULT)))


def reproduce_targets() -> dict[str, tuple[System, Any]]:
    """Every ``dynsim reproduce`` target: name -> (its system, the target)."""
    return {name: (system, target) for system in SYSTEMS.values() for name, target in system.reproduce.items()}
