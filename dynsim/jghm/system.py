"""The jghm system (seed 002, first abstract) as the engine sees it: :data:`SYSTEM`.

Its sweeps vary the flip probability p of both trees (``run.values``), the axis of the paper's
Fig. 2. Its exact reference is not a limit on a separate grid: every record carries the Bayes
values of its own evaluation set (``bayes_clip``, ``bayes_zsc_ce``, ``mutual_information``) and
the trained model's distance to them (``excess_clip``, ``suff``, ``zsc_gap_M``, ``score_error``),
so ``dynsim sweep``, ``show`` and ``plot`` hold the trained towers against the truth, and the
system declares no limit for ``dynsim compare`` (there is no error law along p to fit).
"""

from __future__ import annotations

from ..engine.system import Axis, System
from .config import JGHMConfig
from .simulate import COORDINATE_DIMS, simulate

PANELS = {
    "clip_risk": ("CLIP risk (in-batch, summed)", "R_B(S)"),
    "excess_clip": ("excess CLIP risk over Bayes", "R_B(S) − R*_B", "log"),
    "suff": ("sufficiency estimate", "Suff_im + Suff_tx", "log"),
    "score_error": ("distance to the PMI on the probe grid", "rms(S − S*)"),
}


def axis(config: JGHMConfig) -> Axis:
    """The flip-probability axis (no error law along it: slope NaN)."""
    return Axis(name="flip", values=config.run.values, slope=float("nan"), label="flip probability p", symbol="p")


def attrs(config: JGHMConfig) -> dict:
    """Dataset attributes: a title naming the trees and the towers."""
    t, m = config.tree, config.model
    return {
        "title": f"JGHM L = {t.depth}, m = {t.branching}, V = {t.states}; {m.architecture} towers "
        f"(width {m.width}, {m.layers} layers), B = {config.train.batch}"
    }


def _study(out, quick: bool, sweep):
    from .study import reproduce_jghm

    return reproduce_jghm(out, "quick" if quick else "full", sweep)


SYSTEM = System(
    name="jghm",
    summary="seed 002: CLIP pre-training on the joint generative hierarchical model, held against "
    "exact Bayes references by belief propagation (excess risk, sufficiency, zero-shot)",
    config=JGHMConfig,
    axis=axis,
    simulate=lambda config, value, seeds, first_seed: simulate(config, value, seeds, first_seed),
    steps=lambda config, value: config.train.steps,
    coordinates=COORDINATE_DIMS,
    table=("clip_risk", "bayes_clip", "excess_clip", "suff", "score_error"),
    panels=PANELS,
    tiny={
        "tree": {"depth": 2, "branching": 2, "states": 3},
        "model": {"width": 32},
        "train": {"steps": 20, "batch": 32},
        "eval": {"pairs": 64, "marginal": 64, "prompts": [1, 4], "probe": 4},
        "run": {"values": [0.2, 0.3], "record_every": 10, "seeds": 2},
    },
    attrs=attrs,
    reproduce={"jghm": _study},
)
