r"""Phase diagram: where training ends, at infinite width, over (initial kappa, stage-2 tau).

For every initial condition number :math:`\kappa = \sigma_{\max}/\sigma_{\min}` (``data.kappa``)
and every stage-2 inverse temperature :math:`\tau_2` (``loss.stages[1]``), one reduced-ODE solve
(SPEC §5) per loss, batched with :func:`dynsim.ode.solve_batch`; everything else comes from a base
configuration. Contrastive (``infonce``) against non-contrastive (``positive``): without
negatives :math:`\tau` only rescales time, and the rescaling :math:`\gamma = 1/\tau` undoes it,
so the ``positive`` rows do not depend on :math:`\tau_2` (with ``loss.rescale = true``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tomli_w
import xarray as xr

from ..engine.config import ConfigError
from . import ode
from .config import Config, load_config
from .stages import STAGES, stage_times

PHASE_METRICS = ("kappa_a", "rho_min", "balance", "nsr")
PHASE_KINDS = ("infonce", "positive")


def _grid_config(base: Config, kind: str, kappa: float, tau: float) -> Config:
    stages = list(base.loss.stages)
    stages[1] = (float(tau), stages[1][1])
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, kappa=float(kappa), kappa_b=None),
        loss=dataclasses.replace(base.loss, kind=kind, stages=tuple(stages)),
    )


def _check_base(base: Config) -> None:
    if len(base.loss.stages) < 2:
        raise ConfigError(
            f"loss.stages = {[list(s) for s in base.loss.stages]} is invalid for a phase diagram: it varies the "
            "stage-2 tau, so the base configuration needs at least two stages"
        )
    if base.data.spectrum == "list":
        raise ConfigError(
            "data.spectrum = 'list' is invalid for a phase diagram: it varies data.kappa, which an explicit "
            "spectrum ignores; use 'geometric', 'linear' or 'spike'"
        )


def phase_diagram(
    config: Config | dict | str | None,
    kappas: Sequence[float],
    taus: Sequence[float],
    *,
    kinds: Sequence[str] = PHASE_KINDS,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = ode.DEFAULT_MAX_STEPS,
) -> xr.Dataset:
    r"""Final metrics and stage times of the reduced ODE over a (kappa, stage-2 tau) grid.

    Grid point ``(kind, kappa, tau)`` is ``config`` with ``loss.kind = kind``,
    ``data.kappa = kappa`` (both modalities: ``data.kappa_b`` is dropped) and the inverse
    temperature of ``loss.stages[1]`` set to ``tau`` (its duration kept).

    Args:
        config: the base configuration (Config, nested dict, TOML path or ``None``); it needs
            at least two temperature stages and a ``data.spectrum`` that ``data.kappa`` shapes.
        kappas: initial condition numbers :math:`\kappa \ge 1`.
        taus: stage-2 inverse temperatures :math:`\tau_2 > 0`.
        kinds: the losses, each solved as one batch.
        rtol, atol, max_steps: as in :func:`dynsim.ode.solve`.

    Returns:
        An ``xarray.Dataset`` with dims ``(kind, kappa, tau)``: the final-time value of each
        metric of :data:`PHASE_METRICS` (``kappa_a`` is :math:`\kappa_A(T)`, ``rho_min`` is
        :math:`\rho_{\min}(T)`, ...), and the stage times ``t_align``, ``t_balance`` of
        :func:`dynsim.stage_times` (NaN if not reached). Attribute ``config``: the base (TOML).

    Raises:
        ConfigError: a base configuration or a grid value that is invalid (names the field).
        SolverError: a solve did not reach its end time.

    Example:
        >>> import dynsim
        >>> grid = dynsim.phase_diagram({"data": {"r": 2, "n": 2}}, kappas=[2.0, 4.0], taus=[1.0, 3.0])
        >>> dict(grid.sizes), bool((grid.kappa_a.sel(kind="positive") > grid.kappa).all())
        ({'kind': 2, 'kappa': 2, 'tau': 2}, True)
    """
    base = load_config(config)
    _check_base(base)
    kappas, taus = np.asarray(kappas, dtype=float), np.asarray(taus, dtype=float)
    shape = (len(kinds), kappas.size, taus.size)
    values = {name: np.empty(shape) for name in (*PHASE_METRICS, *STAGES)}
    for i, kind in enumerate(kinds):
        configs = [_grid_config(base, kind, kappa, tau) for kappa in kappas for tau in taus]
        batch = ode.solve_batch(configs, rtol=rtol, atol=atol, max_steps=max_steps)
        times = batch.times[0]  # the configurations share lr, durations and record_every: one grid
        for name in PHASE_METRICS:
            values[name][i] = batch.metrics[name][:, -1].reshape(shape[1:])
        stage = stage_times(times, batch.metrics["rho_min"], batch.metrics["kappa_a"])
        for name, time in zip(STAGES, stage, strict=True):
            values[name][i] = time.reshape(shape[1:])
    return xr.Dataset(
        {name: (("kind", "kappa", "tau"), array) for name, array in values.items()},
        coords={"kind": list(kinds), "kappa": kappas, "tau": taus},
        attrs={"config": tomli_w.dumps(base.to_dict())},
    )
