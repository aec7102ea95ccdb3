"""The large-step system (seed 002, second abstract) as the engine sees it: :data:`SYSTEM`.

Its sweeps vary the stepsize η (``run.values``) at a fixed gradient-flow time τ = η × step; its
limit is gradient flow from each seed's w_0 (:func:`dynsim.large_step.simulate.solve`). What
the comparison expects: gradient descent is the Euler discretization of the flow, so at fixed
τ its error falls like η (slope 1) while the run stays in the monotone regime. Large stepsizes,
where gradient descent leaves the flow and wins, are the study's (``dynsim reproduce large-step``).
"""

from __future__ import annotations

from ..engine.config import with_overrides
from ..engine.system import Axis, System
from .config import LargeStepConfig, training_set
from .simulate import COORDINATE_DIMS, METRICS, simulate, solve

PANELS = {
    "risk": ("risk L", "L", "log"),
    "margin": ("normalized margin", "min_i y_i f(x_i) / ‖w‖"),
    "smoothed_margin": ("smoothed margin", "γ_s"),
    "norm": ("weight norm", "‖w‖"),
    "gradient_scale": ("gradient scale G", "G", "log"),
    "sharpness": ("sharpness", "‖∇²L‖", "log"),
}


def axis(config: LargeStepConfig) -> Axis:
    """The stepsize axis, slope 1 (the Euler error at fixed τ)."""
    return Axis(
        name="eta",
        values=config.run.values,
        slope=1.0,
        label="stepsize η",
        symbol="η",
        limit_row="flow",
        limit_label="0 (gradient flow)",
    )


def at(config: LargeStepConfig, value) -> LargeStepConfig:
    """``config`` at stepsize ``value``."""
    return with_overrides(config, {"train": {"eta": value}})


def attrs(config: LargeStepConfig) -> dict:
    """Dataset attributes: a title naming the data and the model."""
    data, model = training_set(config.data), config.model
    what = "linear" if model.kind == "linear" else f"two-layer, m = {model.width}, {model.activation}"
    return {"title": f"{data.name} (n = {data.x.shape[0]}, d = {data.x.shape[1]}), {what}, gradient descent"}


def _study(out, quick: bool, sweep):
    from .study import reproduce_large_step

    return reproduce_large_step(out, "quick" if quick else "full", sweep)


SYSTEM = System(
    name="large_step",
    summary="seed 002: gradient descent at any stepsize on the logistic risk (linear and two-layer "
    "near-homogeneous nets), two phases, margins, acceleration, against gradient flow",
    config=LargeStepConfig,
    axis=axis,
    simulate=lambda config, value, seeds, first_seed: simulate(at(config, value), seeds, first_seed),
    steps=lambda config, value: at(config, value).steps,
    coordinates=COORDINATE_DIMS,
    table=METRICS,
    panels=PANELS,
    tiny={
        "model": {"init_scale": 0.1},
        "train": {"duration": 8.0},
        "run": {"values": [0.4, 0.2], "record_every": 2.0, "seeds": 2},
    },
    limit=solve,
    limit_name="flow",
    attrs=attrs,
    reproduce={"large-step": _study},
)
