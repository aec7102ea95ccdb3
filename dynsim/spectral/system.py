"""The spectral system (seed 003) as the engine sees it: :data:`SYSTEM`.

Its sweeps vary the learning rate or the batch size (``run.axis``, at ``run.values``); its limit
is the exact population gradient flow of every seed, from the same initialization
(:func:`dynsim.spectral.solve`). What the comparison expects: gradient descent is the Euler
discretization of the flow, so its error falls like ``lr`` (slope 1); SGD adds a noise whose
size over a fixed training time is ``∝ (lr / B)^{1/2}``, so in the learning rate its error falls
like ``lr^{1/2}`` and in the batch size like ``B^{-1/2}``, down to the floor of gradient descent
at the same step size (the run at ``B = ∞``).
"""

from __future__ import annotations

import math

import numpy as np

from ..engine.config import with_overrides
from ..engine.events import first_crossing
from ..engine.runner import select_devices
from ..engine.system import Axis, Events, System
from ..engine.tables import Report
from .config import SpectralConfig
from .dynamics import COORDINATE_DIMS, point, simulate, solve
from .figures import METRIC_PANELS, figures, predicted_exits
from .graph import eigensystem, probe_bounds
from .memory import check_memory
from .reproduce import reproduce_spectral
from .study import reproduce_debiased

SUMMARY_METRICS = ("gap", "sine", "probe_aug", "probe_ens", "probe_few", "class_sine", "loss")
EIGENVALUE_TOLERANCE = 1e-9  # eigenvalues closer than this form one degenerate group


def axis(config: SpectralConfig) -> Axis:
    """The learning-rate or batch-size axis of ``run.axis``, with the slope its error law expects."""
    if config.run.axis == "lr":
        gd = config.train.method == "gd"
        return Axis(
            name="lr",
            values=config.run.values,
            slope=1.0 if gd else 0.5,
            label="learning rate η",
            symbol="η",
            limit_row="flow",
            limit_label="0 (exact flow)",
        )
    return Axis(
        name="batch",
        values=config.run.values,
        slope=-0.5,
        label="batch size B",
        symbol="B",
        limit_row="flow",
        limit_label="∞, η → 0 (exact flow)",
        floor_label="gradient-descent floor (step size)",
    )


def at(config: SpectralConfig, value) -> SpectralConfig:
    """``config`` at one point of its axis (``B = ∞`` is full-batch gradient descent: unchanged)."""
    if math.isinf(value):
        return config
    return with_overrides(config, {"train": {config.run.axis: value}})


def floor(config: SpectralConfig) -> tuple[SpectralConfig, float] | None:
    """A batch-size sweep's floor: gradient descent on the population loss at the same step size."""
    if config.run.axis != "batch":
        return None
    full_batch = {"train": {"method": "gd"}, "run": {"axis": "lr", "values": [config.train.lr]}}
    return with_overrides(config, full_batch), math.inf


def check(config: SpectralConfig, value) -> None:
    """Refuse a point whose seed chunk will not fit in memory (:func:`~dynsim.spectral.memory.check_memory`)."""
    point_config = at(config, value)
    seeds = min(config.run.seed_chunk, config.run.seeds)
    check_memory(point_config, seeds, select_devices(config.run.device), point(point_config))


def groups(config: SpectralConfig) -> list[np.ndarray]:
    """The indices of the top ``min(k, modes)`` eigenvalues, grouped where they are equal (a
    degenerate block's mass is basis-free; a single eigenvector's is not)."""
    gammas = eigensystem(config.graph_object)[0][: min(config.encoder.k, config.run.modes)]
    starts = np.flatnonzero(np.diff(gammas, prepend=np.inf) < -EIGENVALUE_TOLERANCE)
    return np.split(np.arange(gammas.size), starts[1:])


def plateau_exits(config: SpectralConfig, times, values) -> dict:
    r"""When each group of modes is learned: the first time the mass of F along group g reaches
    half its limit, :math:`\sum_{i \in g} s_i(t) \ge \frac12 \sum_{i \in g} \gamma_i` (``t_exit_g``).

    From a small initialization the loss sits on a plateau until then (spec §5, stepwise picture).
    None for the InfoNCE losses, whose unit-norm embeddings have no such plateaus.
    """
    if config.loss.kind != "spectral":
        return {}
    gammas = eigensystem(config.graph_object)[0]
    mass = np.asarray(values["mass"])
    exits = {}
    for g, members in enumerate(groups(config), start=1):
        total = mass[..., members].sum(axis=-1)
        target = gammas[members].sum() / 2
        found = np.empty(total.shape[:-1])
        for index in np.ndindex(found.shape):
            found[index] = first_crossing(times, total[index], target, rising=True)
        exits[f"t_exit_{g}"] = found
    return exits


def attrs(config: SpectralConfig) -> dict:
    """Dataset attributes: the top eigenvalues γ, L*, the probe bounds at k and α*
    (:func:`dynsim.spectral.graph.probe_bounds`; none at k = N), the predicted plateau exits (the
    figures' marks, where the stepwise prediction applies) and a title."""
    graph, k = config.graph_object, config.encoder.k
    gammas = eigensystem(graph)[0]
    bounds = probe_bounds(graph, k) if k < graph.num_nodes else {}
    exits = predicted_exits(config)
    title = (
        f"{config.graph.family} graph, N = {gammas.size}, k = {k}, {config.encoder.kind} encoder, {config.train.method}"
    )
    marks = {"marks": exits, "marks_label": "predicted plateau exit"} if exits.size else {}
    spectrum = {"gammas": gammas[:k], "minimum": -float(np.sum(gammas[:k] ** 2))}
    return spectrum | bounds | marks | {"title": title}


def reproduce(out, quick: bool, sweep) -> Report:
    """``dynsim reproduce spectral``: :func:`~dynsim.spectral.reproduce.reproduce_spectral` and its table."""
    return reproduce_spectral(out, "quick" if quick else "full", sweep, SYSTEM)


def debiased_study(out, quick: bool, sweep) -> Report:
    """``dynsim reproduce debiased``: :func:`~dynsim.spectral.study.reproduce_debiased` and its table."""
    return reproduce_debiased(out, "quick" if quick else "full", sweep, SYSTEM)


SYSTEM = System(
    name="spectral",
    summary="seed 003: spectral contrastive learning on an augmentation graph, SGD or gradient descent "
    "against the exact population gradient flow, with the linear probe and its bounds",
    config=SpectralConfig,
    axis=axis,
    simulate=lambda config, value, seeds, first_seed: simulate(at(config, value), seeds, first_seed),
    steps=lambda config, value: at(config, value).steps,
    coordinates=COORDINATE_DIMS,
    table=SUMMARY_METRICS,
    panels=METRIC_PANELS,
    tiny={"train": {"duration": 10.0}, "run": {"values": [1.0, 0.5], "record_every": 5.0}},
    check=check,
    limit=solve,
    limit_name="flow",
    floor=floor,
    events=Events(name="exits", title="plateau exits: group mass reaches half its limit", detect=plateau_exits),
    attrs=attrs,
    figures=figures,
    reproduce={"spectral": reproduce, "debiased": debiased_study},
)
