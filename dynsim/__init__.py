"""dynsim: training dynamics of models from ML theory, at finite size and in their exact limits.

One engine (``dynsim.engine``: sweeps, run directories, comparison, figures) drives several
systems (``dynsim.registry.SYSTEMS``). The flat names below are the two-tower system's (seed
001), as they have always been, and the engine's shared ones. Each is imported on first use,
so that ``import dynsim`` and ``dynsim.ode.solve`` load neither xarray, nor SciPy's statistics,
nor matplotlib.

Importing dynsim turns on JAX's persistent compilation cache (:mod:`dynsim.engine.cache`:
where it lives, ``DYNSIM_CACHE_DIR``, ``DYNSIM_CACHE=off``).
"""

import warnings

from ._lazy import lazy_attributes
from .engine import cache as _cache

try:
    _cache.enable()
except _cache.ConfigError as _error:
    warnings.warn(f"{_error}; dynsim runs without the compilation cache", stacklevel=2)

# name -> (module, attribute); attribute None: the module itself.
_LAZY = {
    "ode": ("dynsim.ode", None),
    "Comparison": ("dynsim.engine.compare", "Comparison"),
    "ConfigError": ("dynsim.engine.config", "ConfigError"),
    "RunMismatch": ("dynsim.engine.results", "RunMismatch"),
    "DeviceUnavailable": ("dynsim.engine.runner", "DeviceUnavailable"),
    "SimulationDiverged": ("dynsim.engine.runner", "SimulationDiverged"),
    "SYSTEMS": ("dynsim.registry", "SYSTEMS"),
    "load": ("dynsim.registry", "load"),
    "load_config": ("dynsim.registry", "load_config"),
    "compare": ("dynsim.two_tower.compare", "compare"),
    "Config": ("dynsim.two_tower.config", "Config"),
    "DataConfig": ("dynsim.two_tower.config", "DataConfig"),
    "LossConfig": ("dynsim.two_tower.config", "LossConfig"),
    "RunConfig": ("dynsim.two_tower.config", "RunConfig"),
    "TrainConfig": ("dynsim.two_tower.config", "TrainConfig"),
    "phase_diagram": ("dynsim.two_tower.phase", "phase_diagram"),
    "simulate": ("dynsim.two_tower.simulate", "simulate"),
    "stage_times": ("dynsim.two_tower.stages", "stage_times"),
    "Trajectory": ("dynsim.two_tower.trajectory", "Trajectory"),
}
__all__ = sorted(_LAZY)


__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
