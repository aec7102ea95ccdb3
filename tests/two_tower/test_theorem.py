"""Seed 001's Theorem 4.3 in miniature: without negatives training aligns but stays unbalanced;
the contrastive two-stage schedule aligns and balances. At infinite width (ODE) and at one finite
width (the exact gram backend).

The configuration (r = 4, n = 12, geometric spectrum with kappa = 4, noise 0.3) is the small
variant of SPEC's example (r = 8, n = 24), chosen so that one finite-width run costs well under a
second after compilation. The schedule [(0.05, 60), (3.0, 400)] is SPEC's with a shorter stage 2:
tau_1 = 0.05 is small enough that stage 1 acts like the positive-pair loss (align, kappa grows to
about 8), and 400 time units at tau_2 = 3 bring kappa_A to about 1.13 at infinite width, with room
below the 1.5 bound for finite-width fluctuations. The non-contrastive run uses the same schedule:
with loss.kind = "positive" tau only rescales time and gamma = 1/tau undoes it, so the only
difference between the two runs is the negative pairs. Width 4096 keeps the finite-width
deviation from the ODE small (order m^{-1/2}) at no extra cost on the gram backend.
"""

import numpy as np
import pytest

import dynsim

CONFIG = {
    "data": {"r": 4, "n": 12, "kappa": 4.0, "noise": 0.3},
    "loss": {"stages": [[0.05, 60.0], [3.0, 400.0]]},
    "train": {"batch": 32, "lr": 0.2, "precision": "float64"},
    "run": {"backend": "gram", "record_every": 230.0, "alignment_samples": 16},
}
WIDTH, SEEDS = 4096, 2


def _config(kind):
    return dynsim.load_config({**CONFIG, "loss": {**CONFIG["loss"], "kind": kind}})


@pytest.fixture(scope="module", params=["ode", "finite"])
def runs(request):
    """The metrics of both losses, (seeds, T) each: the ODE's as one seed."""

    def metrics(kind):
        if request.param == "ode":
            return {name: values[None] for name, values in dynsim.ode.solve(_config(kind)).metrics.items()}
        return dynsim.simulate(_config(kind), width=WIDTH, seeds=SEEDS).metrics

    return {kind: metrics(kind) for kind in ("infonce", "positive")}


def test_without_negatives_training_aligns_but_stays_unbalanced(runs):
    metrics = runs["positive"]
    assert np.all(metrics["rho_min"][:, -1] >= 0.99)
    assert np.all(metrics["kappa_a"][:, -1] >= 2 * metrics["kappa_a"][:, 0])


def test_contrastive_two_stage_training_aligns_and_balances(runs):
    metrics, r = runs["infonce"], CONFIG["data"]["r"]
    assert np.all(metrics["rho_min"][:, -1] >= 0.99)
    assert np.all(metrics["kappa_a"][:, -1] <= 1.5)
    assert np.all(metrics["balance"][:, -1] >= r / 2)
