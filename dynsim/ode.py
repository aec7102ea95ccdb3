"""``dynsim.ode``: the two-tower system's infinite-width ODE, under the name it has always had.

The code lives in :mod:`dynsim.two_tower.ode`; this module only re-exports its public names.
"""

from .two_tower.ode import DEFAULT_MAX_STEPS as DEFAULT_MAX_STEPS
from .two_tower.ode import ODESolution as ODESolution
from .two_tower.ode import SolverError as SolverError
from .two_tower.ode import solve as solve
from .two_tower.ode import solve_batch as solve_batch

__all__ = ["ODESolution", "SOLVERS", "SolverError", "solve", "solve_batch"]  # noqa: F822 (SOLVERS: __getattr__)


def __getattr__(name: str):
    # SOLVERS on first use: it imports diffrax, which a solve run from the cache does not need.
    if name == "SOLVERS":
        from .two_tower.ode import SOLVERS

        return SOLVERS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
