"""The practical system (seed 001 §6) as the engine sees it: :data:`SYSTEM`.

Its sweeps run the losses of ``run.values`` (contrastive ``infonce``, non-contrastive
``positive``) with everything else equal: the same seeds give the same splits, initial heads and
batches. There is no limit or exact reference: ``dynsim sweep``, ``show`` and ``plot`` hold the
two losses side by side, and ``dynsim compare`` refuses in one line.
"""

from __future__ import annotations

from ..engine.system import Axis, System
from .config import PracticalConfig
from .simulate import COORDINATE_DIMS, check, simulate

PANELS = {
    "zsc_acc": ("zero-shot accuracy (the largest prompt size M)", "accuracy"),
    "probe_acc": ("linear probe accuracy (modality A)", "accuracy"),
    "condition_a": ("condition number of head A's output covariance", "sqrt(λ_1 / λ_k)", "log"),
    "stable_rank_a": ("stable rank of head A's output covariance", "||Σ||_F² / ||Σ||_2²"),
    "alignment": ("mean cosine of positive pairs", "cosine"),
    "train_loss": ("training loss (mean since the last record)", "L"),
}


def axis(config: PracticalConfig) -> Axis:
    """The loss axis (no error law along it: slope NaN)."""
    return Axis(name="loss", values=config.run.values, slope=float("nan"), label="loss", symbol="loss")


def attrs(config: PracticalConfig) -> dict:
    """Dataset attributes: a title naming the data and the heads."""
    data, model = config.data, config.model
    source = f"digits {data.view_a} / {data.view_b}" if data.source == "multifeature" else "feature files"
    return {
        "title": f"{source}; heads {model.layers} layers, width {model.width}, q = {model.out}, "
        f"B = {config.train.batch}, {config.train.optimizer}"
    }


def _study(out, quick: bool, sweep):
    from .study import reproduce_practical

    return reproduce_practical(out, "quick" if quick else "full", sweep)


SYSTEM = System(
    name="practical",
    summary="seed 001 §6: frozen features, MLP heads with batch norm, contrastive against "
    "non-contrastive, judged by zero-shot accuracy and balance (multiple-features digits or your features)",
    config=PracticalConfig,
    axis=axis,
    simulate=lambda config, value, seeds, first_seed: simulate(config, value, seeds, first_seed),
    steps=lambda config, value: config.steps,
    coordinates=COORDINATE_DIMS,
    table=("zsc_acc", "probe_acc", "condition_a", "stable_rank_a", "alignment"),
    panels=PANELS,
    tiny={
        "data": {"rows": 200},
        "model": {"width": 16, "out": 8},
        "loss": {"stages": [[2.0, 10], [10.0, 10]]},
        # float64 and SGD: Adam's g/√v magnifies the last bits that another batch shape rounds
        # differently (1e4 × eps in 10 steps), beyond the seam test's chunk tolerance
        "train": {"batch": 32, "precision": "float64", "optimizer": "sgd", "lr": 0.1},
        "eval": {"prompts": [1, 4], "draws": 2},
        "run": {"record_every": 10, "seeds": 2},
    },
    check=check,
    attrs=attrs,
    reproduce={"practical": _study},
)
