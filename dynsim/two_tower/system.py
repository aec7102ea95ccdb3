"""The two-tower system (seed 001) as the engine sees it: :data:`SYSTEM`.

Its sweeps vary the width ``m``; its limit is the infinite-width reduced ODE
(:func:`dynsim.ode.solve`); the comparison expects the error to fall like ``m^{-1/2}`` until the
floor set by SGD itself, measured by the same batches and step size at width ``10^12`` on the
exact Gram-space backend, whose width error (``~ sqrt(2/m) = 1.4e-6``) is negligible there.
"""

from __future__ import annotations

import numpy as np

from ..engine.config import with_overrides
from ..engine.runner import select_devices
from ..engine.system import Axis, Events, System
from ..engine.tables import Report
from . import ode
from .config import Config
from .figures import METRIC_PANELS, figures
from .memory import check_memory
from .observables import COORDINATE_DIMS
from .predict import predict
from .reproduce import fig1_report, reproduce_fig1
from .simulate import backend_and_init, simulate
from .stages import ALIGNED_RHO, BALANCED_KAPPA, STAGES, stage_times

FLOOR_WIDTH = 10**12
SUMMARY_METRICS = ("rho_min", "kappa_a", "balance", "nsr", "alignment", "loss")


def axis(config: Config) -> Axis:
    """The width axis: ``run.widths``; error expected to fall like ``m^{-1/2}``."""
    return Axis(
        name="width",
        values=config.run.widths,
        slope=-0.5,
        label="width m",
        symbol="m",
        limit_row="inf",
        limit_label="∞ (ODE)",
        floor_label="SGD floor (batch, step size)",
    )


def floor(config: Config) -> tuple[Config, int]:
    """The SGD-floor run: the same configuration at width ``10^12`` on the Gram backend (Bartlett ``K_0``)."""
    return with_overrides(config, {"run": {"backend": "gram", "init": "bartlett"}}), FLOOR_WIDTH


def attrs(config: Config) -> dict:
    """Dataset attributes: ``loss_kind``, ``backend``, ``stage_boundaries`` (training times of the
    temperature changes, also the figures' marks) and a title."""
    boundaries = np.cumsum(config.steps_per_stage)[:-1] * config.train.lr
    return {
        "loss_kind": config.loss.kind,
        "backend": config.run.backend,
        "stage_boundaries": boundaries,
        "marks": boundaries,
        "marks_label": "temperature stage change",
        "title": f"loss: {config.loss.kind}, backend: {config.run.backend}",
    }


def check(config: Config, width: int) -> None:
    """Refuse a width the configured backend cannot run (``gram`` with a Bartlett ``K_0`` below
    ``2(r + n)``), or whose seed chunk will not fit in memory (:func:`~dynsim.two_tower.memory.check_memory`)."""
    backend, init = backend_and_init(config, width)
    seeds = min(config.run.seed_chunk, config.run.seeds)
    check_memory(config, width, seeds, backend, init, select_devices(config.run.device))


def fig1(out, quick: bool, sweep) -> Report:
    """``dynsim reproduce fig1``: :func:`~dynsim.two_tower.reproduce.reproduce_fig1` and its table."""
    return fig1_report(reproduce_fig1(out, "quick" if quick else "full", sweep, SYSTEM))


def _stage_events(config: Config, times, values) -> dict:
    return dict(zip(STAGES, stage_times(times, values["rho_min"], values["kappa_a"]), strict=True))


SYSTEM = System(
    name="two_tower",
    summary="seed 001: CLIP-style two-tower normalized linear model, InfoNCE or without negatives, "
    "finite width against the infinite-width ODE",
    config=Config,
    axis=axis,
    simulate=lambda config, width, seeds, first_seed: simulate(config, width=width, seeds=seeds, first_seed=first_seed),
    steps=lambda config, width: sum(config.steps_per_stage),
    coordinates=COORDINATE_DIMS,
    table=SUMMARY_METRICS,
    panels=METRIC_PANELS,
    tiny={
        "data": {"r": 2, "n": 2},
        "loss": {"stages": [[0.5, 1.0], [2.0, 1.0]]},
        "train": {"batch": 8},
        "run": {"widths": [8, 16], "record_every": 1.0, "alignment_samples": 16},
    },
    check=check,
    limit=ode.solve,
    limit_name="ode",
    floor=floor,
    predict=predict,
    compare_defaults={"run": {"backend": "gram"}},  # exact at every width, at a cost that does not grow with it
    events=Events(
        name="stages",
        title=f"stage times: rho_min >= {ALIGNED_RHO}, then kappa_a <= {BALANCED_KAPPA}",
        detect=_stage_events,
    ),
    attrs=attrs,
    figures=figures,
    reproduce={"fig1": fig1},
)
