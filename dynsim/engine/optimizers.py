"""The optimizers a system's ``train.optimizer`` names, built with optax."""

from __future__ import annotations

import optax

OPTIMIZERS = ("sgd", "momentum", "adam")


def optimizer(name: str, lr: float, momentum: float) -> optax.GradientTransformation:
    """``sgd`` (θ ← θ − lr g), heavy-ball ``momentum`` (coefficient ``momentum``) or ``adam``."""
    if name == "sgd":
        return optax.sgd(lr)
    if name == "momentum":
        return optax.sgd(lr, momentum=momentum)
    return optax.adam(lr)
