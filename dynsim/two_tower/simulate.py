"""``dynsim.simulate``: a configuration in, a :class:`Trajectory` of every seed out."""

from __future__ import annotations

import jax
import numpy as np

from ..engine.config import ConfigError, check_count
from ..engine.runner import check_finite, map_seeds, record_steps, seed_keys, select_devices
from . import gram as _gram
from . import param as _param
from .config import Config, check_backend, load_config
from .finite import observe_records, plan_and_inputs
from .memory import check_memory
from .observables import METRICS
from .trajectory import Trajectory

_BACKENDS = {"param": _param, "gram": _gram}


def backend_and_init(
    config: Config, width: int, backend: str | None = None, init: str | None = None
) -> tuple[str, str]:
    """The backend of a run at ``width`` and its resolved initialization (``run.*`` by default).

    Raises:
        ConfigError: a combination the backend cannot run.
    """
    backend = config.run.backend if backend is None else backend
    init = config.run.init if init is None else init
    check_backend(backend, init, config.train.optimizer)
    return backend, _BACKENDS[backend].resolve_init(config, width, init)


def simulate(
    config: Config | dict | str,
    width: int | None = None,
    seeds: int | None = None,
    backend: str | None = None,
    init: str | None = None,
    first_seed: int = 0,
) -> Trajectory:
    """Simulate the finite-width model for ``seeds`` independent runs at one width.

    Online SGD on the two-tower normalized linear model (SPEC §1–3), recording the
    per-coordinate quantities and metrics of SPEC §4 every ``config.run.record_every`` of
    training time. Seeds are a ``vmap`` of one single-seed run, sharded over every device
    of ``config.run.device``; the step loop runs inside ``lax.scan``. Seed ``i`` uses the key
    ``fold_in(fold_in(run_key, width), i)``, so its result does not depend on ``seeds`` or on
    the device count. Both backends draw the same batches from the same key; with
    ``init="exact"`` the ``gram`` backend also starts from the same ``W_0`` as ``param`` and
    follows the same trajectory up to rounding. A second call that changes only values (tau, lam, kappa, noise,
    spectra) reuses the compiled program.

    Args:
        config: a :class:`Config`, a nested dict or a TOML path.
        width: network width ``m``; default ``config.run.widths[0]``.
        seeds: number of seeds; default ``config.run.seeds``.
        first_seed: index of the first seed: the run holds seeds ``first_seed ..
            first_seed + seeds - 1`` (a chunk of a larger set), default 0.
        backend: ``"param"`` (literal SGD on ``W``, the reference) or ``"gram"`` (exact
            Gram-space recursion, cost independent of width); default ``config.run.backend``.
        init: ``"auto"``, ``"bartlett"`` or ``"exact"``, how the ``gram`` backend draws
            ``K_0`` (``param`` always draws ``W_0``); default ``config.run.init``.

    Returns:
        The :class:`Trajectory`.

    Raises:
        ConfigError: invalid configuration or arguments, one the backend cannot run
            (``gram`` with ``adam``; ``bartlett`` below width ``2(r + n)`` or with ``param``),
            or a run whose estimated peak memory exceeds the memory free
            (:func:`dynsim.two_tower.memory.check_memory`), refused before anything is allocated.
        DeviceUnavailable: ``config.run.device`` names a device kind JAX does not see.
        SimulationDiverged: a seed's state became NaN/Inf (names the seed, step and time).

    Example:
        >>> import dynsim
        >>> config = dynsim.load_config({"data": {"r": 2, "n": 2},
        ...     "loss": {"kind": "positive", "stages": [[1.0, 1.0]]},
        ...     "train": {"batch": 8}, "run": {"record_every": 0.5, "alignment_samples": 64}})
        >>> trajectory = dynsim.simulate(config, width=32, seeds=2)
        >>> trajectory.a.shape, trajectory.metrics["rho_min"].shape
        ((2, 4, 2), (2, 4))
    """
    config = load_config(config)
    width = check_count("width", config.run.widths[0] if width is None else width, 1)
    seeds = check_count("seeds", config.run.seeds if seeds is None else seeds, 1)
    if isinstance(first_seed, bool) or not isinstance(first_seed, (int, np.integer)) or first_seed < 0:
        raise ConfigError(f"first_seed = {first_seed!r} is invalid: must be an integer >= 0")
    backend, init = backend_and_init(config, width, backend, init)
    system = _BACKENDS[backend]
    devices = select_devices(config.run.device)
    check_memory(config, width, seeds, backend, init, devices)
    with jax.enable_x64(config.train.precision == "float64"):
        data_key, keys = seed_keys(config.run.seed, width, seeds, first_seed)
        plan, inputs = plan_and_inputs(config, width, data_key, init)
        records, diverged_at = map_seeds(system.simulate_seed, keys, inputs, plan, devices)
        steps = record_steps(sum(plan.steps_per_stage), plan.record_every)
        check_finite(
            diverged_at,
            records,
            steps,
            lr=config.train.lr,
            first_seed=first_seed,
            where=f"width {width}",
            hint="lower train.lr or the stage temperatures",
        )
        coords, values = observe_records(keys, records, steps, inputs, plan, devices)
    metrics = {name: values[name] for name in METRICS}  # jax returns a dict's keys sorted
    return Trajectory(times=steps * config.train.lr, **coords, metrics=metrics, width=width)
