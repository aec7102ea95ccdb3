"""dynsim: training dynamics of contrastive multimodal learning at finite and infinite width."""

from . import ode as ode
from ._compare import Comparison as Comparison
from ._compare import compare as compare
from ._config import Config as Config
from ._config import ConfigError as ConfigError
from ._config import DataConfig as DataConfig
from ._config import LossConfig as LossConfig
from ._config import RunConfig as RunConfig
from ._config import TrainConfig as TrainConfig
from ._config import load_config as load_config
from ._phase import phase_diagram as phase_diagram
from ._results import RunMismatch as RunMismatch
from ._results import load as load
from ._runner import DeviceUnavailable as DeviceUnavailable
from ._runner import SimulationDiverged as SimulationDiverged
from ._simulate import simulate as simulate
from ._stages import stage_times as stage_times
from ._trajectory import Trajectory as Trajectory
