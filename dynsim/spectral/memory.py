"""The spectral system's peak memory at one point of its axis, estimated from its configuration.

A run of :func:`dynsim.spectral.simulate` first builds the graph's dense arrays on the host in
NumPy float64 (the augmentation kernel ``A`` and ``W``, N × N each, cached on the graph) and the
eigendecomposition of ``Ā``, whose peak holds about seven N × N arrays (``W``, ``A``, ``Ā``,
LAPACK's copy and ``2N²`` workspace, the eigenvectors). Every device then holds ``W`` and ``A``
in the run's precision (and the one-hot features of a linear encoder, N × N). Every seed holds
its parameters (N × k, or d × k for a linear encoder) with their gradient and optimizer slots,
the ``B × B`` similarities of an SGD step, and what an observation takes: N × k temporaries and
the N × N workspace LAPACK takes for the 2-norm of the N × k residual of ``subspace_sine``.

The coefficients were read off XLA's buffer assignment on the CPU (``compiled.memory_analysis()``)
and checked against the measured peak resident memory (tests/engine/test_memory.py).
"""

from __future__ import annotations

import numpy as np

from ..engine.memory import DEVICE, HOST, SEED, Term, check_fits
from ..engine.runner import record_steps
from ..engine.schedule import steps_per_record
from .config import SpectralConfig, load_features, loss_plan

GRAPH, RUN = "graph", "run"  # the graph's arrays are built on the host, then the run uses them
HOST_GRAPH_COPIES = 3  # W, A and the eigenvectors of Ā, kept (cached on the graph)
EIGH_COPIES = 4  # while Ā is decomposed: Ā, LAPACK's copy of it and its 2N² workspace
PARAMETER_COPIES = 3  # parameters in and out of a step, and their gradient
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}
OBSERVATION_COPIES = 8  # N × k (and N × r) arrays of an observation: F, WΦ, the probe, the SVDs
SIMILARITY_COPIES = 2  # B × B similarities of an SGD step and their gradient
# Embeddings of an InfoNCE step's draws (k each; a linear encoder's features, d each, are gathered
# first), their unit-norm versions and gradients. Not checked against a measured peak.
DRAW_COPIES = 4


def graph_fields(config: SpectralConfig) -> tuple[str, ...]:
    """The fields that set the graph's node count N."""
    return {
        "hsbm": ("graph.classes", "graph.subclasses", "graph.nodes"),
        "ring": ("graph.nodes",),
        "file": ("graph.path",),
    }[config.graph.family]


def parameter_rows(config: SpectralConfig) -> tuple[int, tuple[str, ...]]:
    """The rows of the parameters (N, or the feature dimension d of a linear encoder) and their fields."""
    encoder, nodes = config.encoder, config.graph_object.num_nodes
    if encoder.kind == "tabular" or encoder.features == "onehot":
        return nodes, graph_fields(config)
    if encoder.features == "gaussian":
        return encoder.dim, ("encoder.dim",)
    return load_features(encoder.path).shape[1], ("encoder.path",)


def device_graph(config: SpectralConfig) -> tuple[int, tuple[str, ...]]:
    """Entries of the graph arrays every device holds: ``W`` and ``A``, and the features Ψ of a
    linear encoder (N × d; the identity, N × N, for one-hot features)."""
    nodes = config.graph_object.num_nodes
    if config.encoder.kind == "tabular":
        return 2 * nodes**2, graph_fields(config)
    rows, fields = parameter_rows(config)
    return 2 * nodes**2 + nodes * rows, (*graph_fields(config), *fields)


def estimate(config: SpectralConfig) -> list[Term]:
    """The :class:`~dynsim.engine.memory.Term` s of a run of ``config`` (``SEED`` terms for one seed)."""
    graph, encoder, train = config.graph_object, config.encoder, config.train
    itemsize = np.dtype(train.precision).itemsize
    nodes, k, modes = graph.num_nodes, encoder.k, min(config.run.modes, graph.num_nodes)
    sizes = graph_fields(config)
    rows, row_fields = parameter_rows(config)
    entries, device_fields = device_graph(config)
    parameters = (PARAMETER_COPIES + OPTIMIZER_SLOTS[train.optimizer]) * rows * k
    observed = nodes**2 + OBSERVATION_COPIES * nodes * max(k, modes, graph.num_classes)
    records = len(record_steps(config.steps, steps_per_record(config.run.record_every, train.lr)))
    recorded = 2 * records * (k + modes + 5)  # eig, mass and five metrics, in the scan and out of it
    terms = [
        Term("graph W, A, eigenvectors (N × N, float64)", HOST_GRAPH_COPIES * nodes**2 * 8, sizes, HOST),
        Term("eigendecomposition of Ā (N × N, float64)", EIGH_COPIES * nodes**2 * 8, sizes, HOST, GRAPH),
        Term("graph arrays W, A (N × N) and features on each device", entries * itemsize, device_fields, DEVICE, RUN),
        Term(
            "parameters, gradient, optimizer slots (rows × k)",
            parameters * itemsize,
            (*row_fields, "encoder.k", "train.optimizer"),
            SEED,
            RUN,
        ),
        Term("observation (N × N workspace, N × k)", observed * itemsize, (*sizes, "encoder.k"), SEED, RUN),
        Term("records kept", recorded * itemsize, ("train.duration", "run.record_every", "run.modes"), SEED, RUN),
    ]
    if train.method == "sgd":
        similarities = SIMILARITY_COPIES * train.batch**2 * itemsize
        terms.append(Term("step similarities (B × B)", similarities, ("train.batch",), SEED, RUN))
    loss = loss_plan(config)
    if loss is not None and loss.form == "general":
        draws = DRAW_COPIES * train.batch * (loss.negatives + loss.same_class + 2) * (k + rows) * itemsize
        fields = ("train.batch", "loss.negatives", "loss.same_class", "encoder.k")
        terms.append(Term("InfoNCE draws (B × (N + M + 2) embeddings)", draws, fields, SEED, RUN))
    return terms


def check_memory(config: SpectralConfig, seeds: int, devices, where: str) -> None:
    """Refuse a run of ``config`` at ``where`` (``"lr 0.5, batch 64"``) with ``seeds`` seeds on
    ``devices`` that will not fit in memory (:func:`dynsim.engine.memory.check_fits`).

    Raises:
        ConfigError: one line naming the estimate, the memory free and the fields that drive it.
    """
    check_fits(estimate(config), seeds, devices, where)
