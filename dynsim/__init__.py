"""dynsim: training dynamics of models from ML theory, at finite size and in their exact limits.

One engine (``dynsim.engine``: sweeps, run directories, comparison, figures) drives several
systems (``dynsim.registry.SYSTEMS``). The flat names below are the two-tower system's (seed
001), as they have always been, and the engine's shared ones.
"""

from . import ode as ode
from .engine.compare import Comparison as Comparison
from .engine.config import ConfigError as ConfigError
from .engine.results import RunMismatch as RunMismatch
from .engine.runner import DeviceUnavailable as DeviceUnavailable
from .engine.runner import SimulationDiverged as SimulationDiverged
from .registry import SYSTEMS as SYSTEMS
from .registry import load as load
from .registry import load_config as load_config
from .two_tower.compare import compare as compare
from .two_tower.config import Config as Config
from .two_tower.config import DataConfig as DataConfig
from .two_tower.config import LossConfig as LossConfig
from .two_tower.config import RunConfig as RunConfig
from .two_tower.config import TrainConfig as TrainConfig
from .two_tower.phase import phase_diagram as phase_diagram
from .two_tower.simulate import simulate as simulate
from .two_tower.stages import stage_times as stage_times
from .two_tower.trajectory import Trajectory as Trajectory
