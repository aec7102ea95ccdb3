"""``dynsim.ode``: the two-tower system's infinite-width ODE, under the name it has always had.

The code lives in :mod:`dynsim.two_tower.ode` and, for :func:`fluctuations` (the predicted
finite-width covariance, SGD noise and mean shift), :mod:`dynsim.two_tower.fluctuations`; this
module only re-exports their public names.
"""

from ._lazy import lazy_attributes
from .two_tower.ode import DEFAULT_MAX_STEPS as DEFAULT_MAX_STEPS
from .two_tower.ode import ODESolution as ODESolution
from .two_tower.ode import SolverError as SolverError
from .two_tower.ode import solve as solve
from .two_tower.ode import solve_batch as solve_batch

__all__ = ["Fluctuations", "ODESolution", "SOLVERS", "SolverError", "fluctuations", "solve", "solve_batch"]  # noqa: F822 (__getattr__)


# SOLVERS on first use: it imports diffrax, which a solve run from the cache does not need; the
# fluctuation prediction (docs/fluctuations.md) on first use too.
__getattr__ = lazy_attributes(
    __name__,
    {
        "SOLVERS": ("dynsim.engine.integrate", "SOLVERS"),
        "fluctuations": ("dynsim.two_tower.fluctuations", "fluctuations"),
        "Fluctuations": ("dynsim.two_tower.fluctuations", "Fluctuations"),
    },
)
