"""dynsim: training dynamics of contrastive multimodal learning at finite and infinite width."""

from . import ode as ode
from .engine.compare import Comparison as Comparison
from .engine.compare import compare as compare
from .engine.config import Config as Config
from .engine.config import ConfigError as ConfigError
from .engine.config import DataConfig as DataConfig
from .engine.config import LossConfig as LossConfig
from .engine.config import RunConfig as RunConfig
from .engine.config import TrainConfig as TrainConfig
from .engine.config import load_config as load_config
from .engine.results import RunMismatch as RunMismatch
from .engine.results import load as load
from .engine.runner import DeviceUnavailable as DeviceUnavailable
from .engine.runner import SimulationDiverged as SimulationDiverged
from .two_tower.phase import phase_diagram as phase_diagram
from .two_tower.simulate import simulate as simulate
from .two_tower.stages import stage_times as stage_times
from .two_tower.trajectory import Trajectory as Trajectory
