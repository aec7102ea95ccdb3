"""What a system tells the engine: one frozen record of functions and names, no base class.

A *system* is a finite, stochastic training process from a source document together with its
limit or exact reference (the two-tower model and its infinite-width ODE, spectral contrastive
learning and its population gradient flow, ...). The engine (sweeps, run directories, resume,
comparison, figures, the command line) drives every system through this record alone; it never
imports a system or tests a system's name. A system lives in its own folder,
``dynsim/<name>/``, and declares its :class:`System` in that folder's ``__init__.py``; the
registry (``dynsim/registry.py``) lists the systems by name. Adding one touches no engine file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Axis:
    """What a sweep varies: one dimension of a run's datasets, and what the comparison expects of it.

    Attributes:
        name: the dimension's name in datasets, tables and part files (``"width"``, ``"lr"``).
        values: the points of the sweep, in the order they run.
        slope: the expected slope of ``log error`` on ``log value`` against the limit (the
            theory the comparison tests: ``-1/2`` in the width, ``1`` in the step size).
        label: the axis label of figures (``"width m"``).
        symbol: the quantity's symbol in legends (``"m"`` gives ``m = 256``).
        limit_row: the limit's label in the axis column of ``summary.csv`` (``"inf"``).
        limit_label: the limit's label in tables; legends show ``<symbol> = <limit_label>``.
        floor_label: what the floor run measures, for figures (``"SGD floor (batch, step size)"``).
    """

    name: str
    values: tuple
    slope: float
    label: str
    symbol: str
    limit_row: str = "limit"
    limit_label: str = "limit"
    floor_label: str = "floor"


@dataclasses.dataclass(frozen=True)
class Events:
    """Times read off recorded metrics (the two stages of a schedule, the plateau exits of a run).

    Attributes:
        name: what the times are called as a whole: the file ``<name>.csv`` of a run directory
            holds them per seed.
        title: one line saying what the times are, for tables.
        detect: ``detect(config, times, values) -> {name: array}``: ``times`` (T,), ``values`` the
            recorded metrics (..., T) and coordinates (..., T, k) by name; each result has the
            shape ``(...)`` and is ``NaN`` where the event never happens. The names, in order, are
            the columns of ``summary.csv`` and ``<name>.csv``.
    """

    name: str
    title: str
    detect: Callable[[Any, Any, Mapping[str, Any]], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class System:
    """A system as the engine sees it.

    Attributes:
        name: the registry key and the ``system`` value of a configuration.
        summary: one line for ``dynsim systems``.
        config: the system's configuration class, a frozen dataclass of sections built by
            :func:`dynsim.engine.config.build_config`, whose ``run`` section extends
            :class:`dynsim.engine.config.RunConfig`.
        axis: ``axis(config) -> Axis``: what a sweep of ``config`` varies.
        simulate: ``simulate(config, value, seeds, first_seed) -> record``: the finite process at
            one point of the axis for seeds ``first_seed .. first_seed + seeds - 1``. A record has
            ``times`` (T,), ``metrics`` (name -> (seeds, T)) and one attribute per coordinate,
            (seeds, T, k).
        steps: ``steps(config, value) -> int``: training steps of one seed at one point (progress).
        coordinates: the record's coordinate attributes and the name of each one's last
            dimension; the comparison measures these.
        table: the metrics shown in summary tables (every recorded metric goes to ``summary.csv``).
        panels: metric name -> (panel title, y-axis label[, y scale such as ``"log"``]) of the
            metrics figure.
        tiny: ``{section: {key: value}}`` overrides of the default configuration that make a run of
            a few seconds: what tests, examples and smoke checks of every system use.
        check: ``check(config, value)``: refuse, before anything runs, a point the system cannot
            simulate (raise ``ConfigError``); ``None``: every point of a valid config runs.
        limit: ``limit(config) -> record``: the limit or exact reference on the records' time grid,
            without a seed axis when it does not depend on the seed, with one (all ``run.seeds``
            seeds) when it does; ``None``: the system has none.
        limit_name: file stem and variable prefix of the limit in a run directory (``ode`` gives
            ``ode.nc`` and ``ode_loss``).
        floor: ``floor(config) -> (config, value) | None``: the run that measures the error the
            axis cannot remove (the SGD noise of a width sweep), or ``None`` where there is none.
        predict: ``predict(config, values, limit) -> Prediction``: the system's theory of the
            comparison's errors at the points ``values`` (:class:`dynsim.engine.compare.Prediction`),
            ``limit`` the limit's record; ``None``: the system predicts nothing.
        compare_defaults: ``{section: {key: value}}`` that ``dynsim compare`` applies over the
            configuration (its options still win), e.g. the exact backend a comparison wants.
        events: times detected on every trajectory, or ``None``.
        attrs: ``attrs(config) -> dict``: extra dataset attributes (titles, stage boundaries).
        figures: ``figures(dataset, directory) -> [paths]``: figures beyond the metrics figure.
        reproduce: target name -> ``target(out, quick, sweep) -> Report`` of ``dynsim reproduce``
            (:class:`dynsim.engine.tables.Report`; ``sweep(config, floor=False)`` runs or resumes one
            run directory with the limit and returns its dataset).
    """

    name: str
    summary: str
    config: type
    axis: Callable[[Any], Axis]
    simulate: Callable[..., Any]
    steps: Callable[[Any, Any], int]
    coordinates: Mapping[str, str]
    table: tuple[str, ...]
    panels: Mapping[str, tuple[str, str]]
    tiny: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    check: Callable[[Any, Any], None] | None = None
    limit: Callable[[Any], Any] | None = None
    limit_name: str = "limit"
    floor: Callable[[Any], tuple[Any, Any] | None] | None = None
    predict: Callable[[Any, Any, Any], Any] | None = None
    compare_defaults: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    events: Events | None = None
    attrs: Callable[[Any], dict] | None = None
    figures: Callable[[Any, Path], list[Path]] | None = None
    reproduce: Mapping[str, Callable[..., Any]] = dataclasses.field(default_factory=dict)
