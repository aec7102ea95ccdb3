"""A system of forty lines, defined outside dynsim: ``x <- x - lr a x`` against ``x0 exp(-a t)``.

The seam tests run it through every engine path; the executor tests run it as jobs, where two
knobs that change no result make parts slow or failing: ``DYNSIM_TOY_HOLD_S`` (seconds each part
sleeps) and ``DYNSIM_TOY_FAIL_LR`` (the learning rate whose parts raise). Jobs inherit both from
the environment of the process that submits them.
"""

import dataclasses
import os
import sys
import time
from typing import ClassVar

import cloudpickle
import numpy as np

from dynsim.engine import config as engine_config
from dynsim.engine.config import SystemConfig, field
from dynsim.engine.system import Axis, System


@dataclasses.dataclass(frozen=True)
class DecayConfig:
    name: ClassVar[str] = "decay"
    rate: float = field(1.0, "a", "number", low=0, strict=True)
    duration: float = field(2.0, "T", "number", low=0, strict=True)

    def __post_init__(self):
        engine_config.check_fields(self)


@dataclasses.dataclass(frozen=True)
class ToyRun(engine_config.RunConfig):
    record_every: float = field(0.5, "record cadence", "number", low=0, strict=True)
    values: tuple[float, ...] = field((0.1, 0.05, 0.025), "learning rates", "numbers", low=0, strict=True)

    def __post_init__(self):
        object.__setattr__(self, "values", tuple(self.values))
        engine_config.check_fields(self)


@dataclasses.dataclass(frozen=True)
class ToyConfig(SystemConfig):
    system: ClassVar[str] = "toy"
    decay: DecayConfig = DecayConfig()
    run: ToyRun = ToyRun()


@dataclasses.dataclass(frozen=True)
class ToyRecord:
    times: np.ndarray
    x: np.ndarray
    metrics: dict


def _times(config, lr):
    every = round(config.run.record_every / lr)
    return np.arange(0, round(config.decay.duration / lr) + 1, every) * lr


def _simulate(config, lr, seeds, first_seed):
    time.sleep(float(os.environ.get("DYNSIM_TOY_HOLD_S", "0")))
    if os.environ.get("DYNSIM_TOY_FAIL_LR") == str(lr):
        raise ValueError(f"the toy fails at lr {lr}, as DYNSIM_TOY_FAIL_LR asks")
    times = _times(config, lr)
    x = (1 - lr * config.decay.rate) ** np.round(times / lr)
    x = np.broadcast_to(x[None, :, None], (seeds, times.size, 1)).copy()
    return ToyRecord(times, x, {"energy": x[..., 0] ** 2})


def _limit(config):
    times = _times(config, config.run.values[0])
    x = np.exp(-config.decay.rate * times)[:, None]
    return ToyRecord(times, x, {"energy": x[:, 0] ** 2})


TOY = System(
    name="toy",
    summary="x <- x - lr a x against x0 exp(-a t)",
    config=ToyConfig,
    axis=lambda config: Axis("lr", config.run.values, slope=1.0, label="learning rate", symbol="η"),
    simulate=_simulate,
    steps=lambda config, lr: round(config.decay.duration / lr),
    coordinates={"x": "component"},
    table=("energy",),
    panels={"energy": ("energy", "x²")},
    limit=_limit,
)

# Jobs of the local and SLURM executors are other processes, which cannot import tests/: they get
# this module's system by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
