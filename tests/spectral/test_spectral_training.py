"""Training the spectral system: gradient descent and SGD against the exact spectrum, the flow and
the predicted rates (shared/specs/spectral.md §6, checks 3 to 9 and 14), on the spec's
illustration graph: r = 3, S = 2, n = 4, θ = (0.5, 0.3, 0.15, 0.05), so N = 24 and
γ = 1, 0.855625 (×2), 0.4225 (×3), 0.25 (×18).

The tabular encoder trains Φ, and on this regular graph (D = I/N) its flow is the F-flow of the
spec slowed down N times: rates divide by N, times multiply by N.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynsim import spectral
from dynsim.engine.compare import compare_runs
from dynsim.engine.runner import scan_run
from dynsim.spectral import SYSTEM, finite
from dynsim.spectral.config import load_config
from dynsim.spectral.dynamics import plan_of
from dynsim.spectral.figures import predicted_exits
from dynsim.spectral.system import plateau_exits

N = 24
GAMMAS = np.array([1.0] + [0.855625] * 2 + [0.4225] * 3 + [0.25] * 18)
THETA2 = 0.05


def _config(encoder=None, train=None, run=None):
    return load_config({"system": "spectral", "encoder": encoder or {}, "train": train or {}, "run": run or {}})


@pytest.fixture(scope="module")
def gd_k3():
    """Gradient descent at a small step, k = r = 3 (a unique top-k eigenspace), from scale 0.1."""
    config = _config(train={"method": "gd", "lr": 0.25, "duration": 500.0}, run={"record_every": 5.0})
    return config, spectral.simulate(config, seeds=2)


@pytest.fixture(scope="module")
def gd_stepwise():
    """Gradient descent from scale 1e-6, k = rS = 6: three plateaus, then convergence."""
    config = _config(
        encoder={"k": 6, "init_scale": 1e-6},
        train={"method": "gd", "lr": 0.5, "duration": 800.0},
        run={"record_every": 1.0},
    )
    return config, spectral.simulate(config, seeds=4)


def test_gradient_descent_reaches_the_minimum_and_the_top_eigenvalues(gd_k3, gd_stepwise):
    # Check 3: L -> L* = -sum_{i<=k} gamma_i^2 (relative error < 1e-6) and eig(F^T F) -> gamma_1..gamma_k.
    for config, trajectory in (gd_k3, gd_stepwise):
        k = config.encoder.k
        minimum = -np.sum(GAMMAS[:k] ** 2)
        np.testing.assert_allclose(trajectory.metrics["loss"][:, -1], minimum, rtol=1e-6)
        np.testing.assert_allclose(trajectory.eig[:, -1], np.tile(GAMMAS[:k], (trajectory.eig.shape[0], 1)), atol=1e-6)
        assert np.all(trajectory.metrics["sine"][:, -1] < 1e-5)


def test_the_subspace_error_decays_at_the_eigengap_rate(gd_k3):
    # Check 4: the late log-slope of the largest principal-angle sine is -4(gamma_k - gamma_k+1), / N in
    # Phi-space time, within 2%. (Gradient descent at step 0.25 is slower than the flow by ~1%.)
    _, trajectory = gd_k3
    sine, times = trajectory.metrics["sine"].mean(axis=0), trajectory.times
    late = (sine > 1e-10) & (sine < 1e-3)
    assert late.sum() >= 10
    rate = np.polyfit(times[late], np.log(sine[late]), 1)[0]
    assert rate == pytest.approx(-4 * (GAMMAS[2] - GAMMAS[3]) / N, rel=0.02)


def test_the_trained_probe_is_exact_once_k_reaches_r(gd_k3):
    # Check 9 on a trained encoder: span F contains the class indicators, so the ensembled error is 0 and
    # the augmented-point error is the Bayes error theta2.
    _, trajectory = gd_k3
    np.testing.assert_array_equal(trajectory.metrics["probe_ens"][:, -1], 0.0)
    np.testing.assert_allclose(trajectory.metrics["probe_aug"][:, -1], THETA2, rtol=1e-9)


def test_stepwise_plateaus_and_exits_from_a_small_initialization(gd_stepwise):
    # Check 6: the loss rests at 0, then at -(1 + 2 * 0.855625^2), before reaching L*; each group of modes
    # is learned (its mass reaches half its limit) within 10% of N ln(gamma / s0) / (8 gamma), s0 = k
    # sigma^2 / N, in the order of gamma. Measured: 1.03 to 1.08 of the prediction (the later groups start
    # a little late: the modes learned first take directions of R^k that their random start also used).
    config, trajectory = gd_stepwise
    predicted = predicted_exits(config)
    exits = plateau_exits(config, trajectory.times, {"mass": trajectory.mass})
    measured = np.array([exits[f"t_exit_{g}"].mean() for g in (1, 2, 3)])
    np.testing.assert_allclose(measured / predicted, 1.0, atol=0.1)
    assert np.all(np.diff(measured) > 0)
    loss = trajectory.metrics["loss"].mean(axis=0)
    at = np.searchsorted(trajectory.times, [0.5 * predicted[0], 0.5 * (predicted[1] + predicted[2])])
    assert abs(loss[at[0]]) < 1e-3
    assert loss[at[1]] == pytest.approx(-(1 + 2 * GAMMAS[1] ** 2), rel=0.01)


def test_inside_a_degenerate_block_the_loss_is_minimal_but_the_subspace_is_not_unique():
    # Check 8: r < k = 4 < rS. L -> L*, span F holds the top r eigenvectors (all their mass), one direction of
    # the gamma = 0.4225 block (its total mass is 0.4225), and no fixed choice of U_k: the sine stays large.
    config = _config(encoder={"k": 4}, train={"method": "gd", "lr": 1.0, "duration": 600.0}, run={"record_every": 20.0})
    trajectory = spectral.simulate(config, seeds=2)
    np.testing.assert_allclose(trajectory.metrics["gap"][:, -1], 0.0, atol=1e-9)
    np.testing.assert_allclose(trajectory.mass[:, -1, :3], np.tile(GAMMAS[:3], (2, 1)), atol=1e-6)
    np.testing.assert_allclose(trajectory.mass[:, -1, 3:6].sum(axis=1), GAMMAS[3], atol=1e-6)
    assert np.all(trajectory.metrics["sine"][:, -1] > 0.1)


def test_gradient_descent_approaches_the_flow_linearly_in_the_step():
    # Check 5: gradient descent is the Euler discretization of the flow; its error falls like lr (slope 1).
    config = _config(
        train={"method": "gd", "lr": 0.5, "duration": 50.0},
        run={"values": [0.5, 0.25, 0.125], "record_every": 2.5, "seeds": 2},
    )
    comparison = compare_runs(SYSTEM, config)
    assert comparison.axis.slope == 1.0
    assert comparison.slope == pytest.approx(1.0, abs=0.1), comparison.slope
    assert np.all(np.diff(comparison.sup_error["all"].mean(axis=1)) < 0)


@pytest.fixture(scope="module")
def sgd_runs():
    """SGD from scale 0.1 to stationarity at lr 0.5 and 0.25 and batch 16 and 64."""
    runs = {}
    for lr in (0.5, 0.25):
        for batch in (16, 64):
            config = _config(train={"lr": lr, "batch": batch, "duration": 300.0}, run={"record_every": 5.0})
            runs[lr, batch] = spectral.simulate(config, seeds=6)
    return runs


def _stationary(values):
    """The mean over seeds and over the second half of the run (the leading axes are seeds, time)."""
    return values[:, values.shape[1] // 2 :].mean(axis=(0, 1))


def test_sgd_settles_at_a_gap_linear_in_lr_and_shrinking_with_the_batch(sgd_runs):
    # Check 7: the estimator is unbiased, so SGD hovers at L* + O(lr / B). Measured: halving lr halves the
    # stationary gap (0.498 at B = 16); a 4x batch divides it by 6 (0.168 at lr 0.5): faster than 1/B, the
    # estimator's variance having a 1/B^2 part from its B(B - 1) negative pairs. The subspace error shrinks too.
    gap = {key: _stationary(run.metrics["gap"]) for key, run in sgd_runs.items()}
    sine = {key: _stationary(run.metrics["sine"]) for key, run in sgd_runs.items()}
    for batch in (16, 64):
        assert gap[0.25, batch] / gap[0.5, batch] == pytest.approx(0.5, abs=0.12)
        assert sine[0.25, batch] < sine[0.5, batch]
    for lr in (0.5, 0.25):
        assert gap[lr, 64] / gap[lr, 16] < 0.3  # at least the 1/4 of O(lr / B)
        assert sine[lr, 64] < sine[lr, 16]


def test_the_spectral_optimum_does_not_depend_on_the_batch_size(sgd_runs):
    # Check 14: at every batch size SGD hovers around the same optimum: the top eigenvalue of F^T F (a simple
    # one) is off gamma_1 = 1 by an amount that halves with lr, at B = 16 and at B = 64 alike, so both go to
    # the same limit; B sets the size of the noise only (the estimator is unbiased for every B >= 2:
    # tests/spectral/test_spectral_observables.py). (Inside the degenerate pair gamma_2 = gamma_3 the noise
    # splits the two eigenvalues at first order: their offsets fall like lr^(1/2) instead.)
    for batch in (16, 64):
        offsets = [_stationary(sgd_runs[lr, batch].eig)[0] - GAMMAS[0] for lr in (0.5, 0.25)]
        assert offsets[0] > 0 and offsets[1] / offsets[0] == pytest.approx(0.5, abs=0.2), offsets


def test_the_sparse_sgd_step_is_the_dense_optax_step_and_finds_divergence_at_the_same_step():
    # Plain SGD on the tabular encoder updates only the 2B rows its pairs touch and checks only those for
    # NaN/Inf; the dense path differentiates L-hat with respect to all of Phi and applies optax.sgd.
    config = _config(train={"lr": 30.0, "duration": 30.0 * 40}, run={"record_every": 30.0 * 40})
    plan = plan_of(config)
    key = jax.random.PRNGKey(7)
    phi = finite.initial_params(key, plan)
    dense_step = finite.make_step(plan, finite.Inputs(None, None), key)
    sparse_step = finite.make_sparse_step(plan, key)
    dense, rows = (phi, finite.optimizer(plan).init(phi)), (phi, jnp.zeros(2 * plan.batch, jnp.int32))
    for step in range(5):
        dense, rows = dense_step(dense, step), sparse_step(rows, step)
    np.testing.assert_allclose(rows[0], dense[0], rtol=1e-12, atol=1e-14)

    def norm(state, step):
        return jnp.sum(state[0] ** 2)

    _, dense_at = scan_run((phi, finite.optimizer(plan).init(phi)), dense_step, norm, plan.steps, plan.steps)
    _, sparse_at = scan_run(
        (phi, jnp.zeros(2 * plan.batch, jnp.int32)),
        sparse_step,
        norm,
        plan.steps,
        plan.steps,
        finite.touched_rows_finite,
    )
    assert int(dense_at) > 0 and int(sparse_at) == int(dense_at)  # lr 30 diverges, at the same step on both paths
