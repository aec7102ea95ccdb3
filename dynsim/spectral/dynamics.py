"""``dynsim.spectral.simulate`` and ``dynsim.spectral.solve``: a configuration in, the observables of
every seed out, finite (SGD or gradient descent) or exact (the population gradient flow).

Seeds are a ``vmap`` of one seed's run, sharded over the devices of ``run.device``; seed ``i``
uses the key ``fold_in(fold_in(run_key, 0), i)`` at every learning rate and batch size, so the
points of a sweep start from the same initialization, and the flow of seed ``i`` starts from the
very Φ_0 its finite runs start from.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import ConfigError, check_count
from ..engine.infinite import check_solved
from ..engine.runner import check_finite, map_seeds, record_steps, seed_keys, select_devices
from ..engine.schedule import steps_per_record
from .config import SpectralConfig, load_config, load_features, loss_plan
from .finite import Inputs, Plan, embedding, initial_params, simulate_seed, split_seed_key
from .flow import flow
from .graph import Graph
from .memory import check_memory
from .observables import GraphArrays, graph_arrays, observe

COORDINATE_DIMS = {"eig": "component", "mass": "mode"}
METRICS = ("loss", "gap", "sine", "probe_aug", "probe_ens", "probe_few", "class_sine")


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """The observables of every seed at every record (spec §6), finite or exact.

    Attributes:
        times: training times ``t = lr × step`` of the records, (T,).
        eig: eigenvalues of FᵀF, F = D^{1/2}Φ, descending, (seeds, T, k); → γ_1..γ_k at the optimum.
        mass: ‖Fᵀu_i‖², the squared norm of F along the i-th eigenvector of Ā, (seeds, T, modes).
        metrics: ``loss`` (population loss L(Φ)), ``gap`` (L − L*), ``sine`` (largest principal-angle
            sine between span F and span U_k), ``probe_aug`` and ``probe_ens`` (errors of the
            least-squares probe on augmented points and ensembled on natural data), ``probe_few``
            (ensembled error of the probe fit to ``run.probe_shots`` labeled points per class),
            ``class_sine`` (distance of span F to the class directions), each (seeds, T). The
            InfoNCE losses (``loss.kind``) observe their unit-norm embedding f(x)/‖f(x)‖.
    """

    times: np.ndarray
    eig: np.ndarray
    mass: np.ndarray
    metrics: dict[str, np.ndarray]


def point(config: SpectralConfig) -> str:
    """The run's point, for messages: ``"lr 0.5, batch 64"``, or ``"lr 0.5 (gradient descent)"``."""
    train = config.train
    return f"lr {train.lr}" + (f", batch {train.batch}" if train.method == "sgd" else " (gradient descent)")


def plan_of(config: SpectralConfig) -> Plan:
    """The static :class:`Plan` of a configuration."""
    graph, encoder, train = config.graph_object, config.encoder, config.train
    return Plan(
        graph=graph,
        encoder=encoder.kind,
        k=encoder.k,
        dim=graph.num_nodes if encoder.kind == "tabular" else _feature_dim(config, graph),
        method=train.method,
        batch=train.batch,
        lr=train.lr,
        optimizer=train.optimizer,
        momentum=train.momentum,
        steps=config.steps,
        record_every=steps_per_record(config.run.record_every, train.lr),
        init_scale=encoder.init_scale,
        dtype=train.precision,
        loss=loss_plan(config),
    )


def _feature_dim(config: SpectralConfig, graph: Graph) -> int:
    """The dimension d of the linear encoder's features."""
    if config.encoder.features == "onehot":
        return graph.num_nodes
    if config.encoder.features == "gaussian":
        return config.encoder.dim
    return load_features(config.encoder.path).shape[1]


def node_features(config: SpectralConfig, key: jax.Array) -> jax.Array | None:
    r"""Ψ (N × d) of the linear encoder (None for the tabular one): the identity (``onehot``), the
    user's matrix (``file``), or ``gaussian``: ψ(x) = μ_{y(x)} + noise·ξ_x, μ_c and ξ_x iid
    N(0, I_d/d), drawn from ``key``."""
    encoder, graph = config.encoder, config.graph_object
    if encoder.kind == "tabular":
        return None
    if encoder.features == "onehot":
        return jnp.eye(graph.num_nodes)
    if encoder.features == "file":
        return jnp.asarray(load_features(encoder.path))
    means_key, noise_key = jax.random.split(key)
    means = jax.random.normal(means_key, (graph.num_classes, encoder.dim)) / np.sqrt(encoder.dim)
    noise = jax.random.normal(noise_key, (graph.num_nodes, encoder.dim)) / np.sqrt(encoder.dim)
    return means[jnp.asarray(graph.labels)] + encoder.noise * noise


@functools.lru_cache(maxsize=8)
def _arrays(graph: Graph, k: int, modes: int, shots: int, x64: bool) -> GraphArrays:
    del x64  # part of the key: the arrays take the precision of the context they are made in
    return graph_arrays(graph, k, modes, shots)


def inputs_of(config: SpectralConfig, data_key: jax.Array, dtype: str) -> Inputs:
    """The traced :class:`Inputs` in ``dtype``: the graph's arrays (``run.modes`` capped at N) and the features."""
    graph = config.graph_object
    modes = min(config.run.modes, graph.num_nodes)
    arrays = _arrays(graph, config.encoder.k, modes, config.run.probe_shots, jax.config.jax_enable_x64)
    features = node_features(config, data_key)
    return Inputs(arrays, None if features is None else features.astype(jnp.dtype(dtype)))


def record_times(config: SpectralConfig) -> np.ndarray:
    """The training times of the records: every ``run.record_every`` up to ``train.duration``."""
    return record_steps(config.steps, steps_per_record(config.run.record_every, config.train.lr)) * config.train.lr


def _trajectory(times: np.ndarray, records: dict) -> Trajectory:
    return Trajectory(
        times=times,
        eig=np.asarray(records["eig"]),
        mass=np.asarray(records["mass"]),
        metrics={name: np.asarray(records[name]) for name in METRICS},
    )


def simulate(config: SpectralConfig | dict | str | None = None, seeds: int | None = None, first_seed: int = 0):
    r"""Train the encoder of ``config`` for ``seeds`` independent seeds and observe it at every record.

    ``train.method = "sgd"``: online SGD on the minibatch estimator of the spectral contrastive
    loss, B positive pairs per step; ``"gd"``: gradient descent on the population loss. Both through
    the optax optimizer of ``train.optimizer``, inside ``lax.scan``; seeds are a ``vmap``, sharded
    over the devices of ``run.device``. A second call that changes only values (``init_scale``,
    the graph's overlaps ``theta`` at the same sizes) reuses the compiled program.

    Args:
        config: a :class:`~dynsim.spectral.config.SpectralConfig`, nested tables or a TOML path
            (``None``: the default).
        seeds: number of seeds; default ``run.seeds``.
        first_seed: index of the first seed (a chunk of a larger set), default 0.

    Returns:
        The :class:`Trajectory`.

    Raises:
        ConfigError: an invalid configuration or argument, or a run whose estimated peak memory
            exceeds the memory free (:func:`dynsim.spectral.memory.check_memory`), refused before
            anything is allocated.
        DeviceUnavailable: ``run.device`` names a device kind JAX does not see.
        SimulationDiverged: a seed's state became NaN/Inf (names the seed, step and time).

    Example:
        >>> from dynsim import spectral
        >>> config = {"system": "spectral", "train": {"duration": 20.0}, "run": {"record_every": 10.0}}
        >>> trajectory = spectral.simulate(config, seeds=2)
        >>> trajectory.eig.shape, trajectory.metrics["sine"].shape
        ((2, 3, 3), (2, 3))
    """
    config = load_config(config)
    seeds = check_count("seeds", config.run.seeds if seeds is None else seeds, 1)
    first_seed = check_count("first_seed", first_seed, 0)
    plan = plan_of(config)
    devices = select_devices(config.run.device)
    check_memory(config, seeds, devices, point(config))
    with jax.enable_x64(config.train.precision == "float64"):
        data_key, keys = seed_keys(config.run.seed, 0, seeds, first_seed)
        records, diverged_at = map_seeds(simulate_seed, keys, inputs_of(config, data_key, plan.dtype), plan, devices)
        steps = record_steps(plan.steps, plan.record_every)
        check_finite(
            diverged_at,
            records,
            steps,
            lr=plan.lr,
            first_seed=first_seed,
            where=point(config),
            hint="lower train.lr (gradient descent on L is stable only for lr < 1 / (4 max_x w_x))",
        )
    return _trajectory(steps * plan.lr, records)


def solve(config: SpectralConfig | dict | str | None = None, seeds: int | None = None, first_seed: int = 0):
    r"""The exact population gradient flow of every seed, from the Φ_0 (or V_0) its finite runs start
    from, observed on the records' time grid (spec §5), in float64.

    The tabular encoder on a regular graph takes the Riccati closed form; every other case the
    same vector field solved with diffrax (:func:`dynsim.spectral.flow.flow`). Gradient descent
    with step ``lr`` is the Euler discretization of this flow, and SGD adds noise of variance
    ``∝ lr / B`` per unit time; both approach it as ``lr → 0``.

    Args:
        config, seeds, first_seed: as :func:`simulate`.

    Returns:
        A :class:`Trajectory` with the same fields as the finite runs'.

    Raises:
        ConfigError: an optimizer other than ``sgd`` (momentum and Adam have other limits), or an
            InfoNCE loss (``loss.kind``), which has no flow here.
        SolverError: the diffrax solve failed for some seed.

    Example:
        >>> from dynsim import spectral
        >>> config = {"system": "spectral", "encoder": {"init_scale": 0.01}, "train": {"duration": 400.0}}
        >>> exact = spectral.solve(config, seeds=1)
        >>> bool(abs(exact.metrics["gap"][0, -1]) < 1e-9), bool(exact.metrics["sine"][0, -1] < 1e-3)
        (True, True)
    """
    config = load_config(config)
    if config.loss.kind != "spectral":
        raise ConfigError(
            f"loss.kind = {config.loss.kind!r} has no exact flow here: the flow is the spectral loss's; "
            "run without the limit (no --limit / compare), or use loss.kind = 'spectral'"
        )
    if config.train.optimizer != "sgd":
        raise ConfigError(
            f"train.optimizer = {config.train.optimizer!r} has no gradient-flow limit here: the exact flow is the "
            "limit of plain gradient steps; use train.optimizer = 'sgd'"
        )
    seeds = check_count("seeds", config.run.seeds if seeds is None else seeds, 1)
    first_seed = check_count("first_seed", first_seed, 0)
    plan = plan_of(config)._replace(dtype="float64")
    times = record_times(config)
    with jax.enable_x64(True):
        data_key, keys = seed_keys(config.run.seed, 0, seeds, first_seed)
        inputs = inputs_of(config, data_key, plan.dtype)
        start = jax.vmap(lambda key: initial_params(split_seed_key(key)[0], plan))(keys)
        encoder = config.encoder.kind
        states = jax.vmap(lambda s: flow(plan.graph, s, times, encoder=encoder, features=inputs.features))(start)
        records = jax.vmap(jax.vmap(lambda s: observe(embedding(s, inputs.features), inputs.arrays)))(states)
        records = jax.tree.map(np.asarray, records)
    check_solved(records["loss"], times, first_seed, "the exact flow")
    return _trajectory(times, records)
