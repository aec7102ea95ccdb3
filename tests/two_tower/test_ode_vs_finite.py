"""The finite-width simulators approach the infinite-width ODE as the width grows."""

import numpy as np

import dynsim
from dynsim.engine.config import with_overrides

NAMES = ("a", "b", "p", "nu_a", "nu_b")
# Population normalization, float64, a batch large enough and steps small enough that the SGD
# noise (~ sqrt(lr / B)) and the Euler error (~ lr) stay below the width error at the widths
# compared (~ m^-1/2, from the Wishart fluctuations of W^T W around I).
CONFIG = dynsim.load_config(
    {
        "data": {"r": 2, "n": 2, "kappa": 2.0, "noise": 0.5},
        "loss": {"stages": [[1.0, 1.0], [2.0, 1.0]]},
        "train": {"lr": 0.05, "batch": 256, "precision": "float64"},
        "run": {"record_every": 0.5, "alignment_samples": 16},
    }
)


def final_error(trajectory, solution) -> float:
    """Per seed, the largest per-coordinate error at the final time relative to the coordinate's
    ODE scale; then the root mean square over seeds."""
    np.testing.assert_allclose(trajectory.times, solution.times)
    final = [
        np.abs(getattr(trajectory, n)[:, -1] - getattr(solution, n)[-1]).max(-1) / np.abs(getattr(solution, n)).max()
        for n in NAMES
    ]
    return float(np.sqrt(np.mean(np.max(final, axis=0) ** 2)))


def test_finite_width_error_to_the_ode_shrinks_like_inverse_sqrt_width():
    solution = dynsim.ode.solve(CONFIG)
    errors = {width: final_error(dynsim.simulate(CONFIG, width=width, seeds=4), solution) for width in (2048, 8192)}
    # 4x the width should halve the error; a ratio of 1.5 leaves room for the seed sampling
    # of a 4-seed RMS and the SGD floor, while a width-independent error would give ~1.
    assert errors[2048] / errors[8192] > 1.5
    assert errors[8192] < 3 * np.sqrt(2 / 8192)  # the relative sd of a diagonal Wishart entry is sqrt(2/m)


def test_gram_at_width_one_million_leaves_only_the_euler_floor_of_sgd():
    # At m = 1e3 the width error (~ sqrt(2/m) = 0.045 per Wishart entry) dominates. At m = 1e6
    # (~1e-3) what is left is the discretization floor of SGD as an Euler scheme of the ODE,
    # O(lr): halving lr should halve it (measured 1.88-1.99 over base seeds 0-2), whereas SGD
    # noise (~ sqrt(lr / B)) would give 1.41 and a width error 1.
    def error(width, lr):
        config = with_overrides(CONFIG, {"train": {"lr": lr}})
        return final_error(dynsim.simulate(config, width=width, seeds=4, backend="gram"), dynsim.ode.solve(config))

    narrow, wide, wide_half_lr = error(1000, 0.05), error(10**6, 0.05), error(10**6, 0.025)
    assert wide < narrow / 3, (narrow, wide)
    assert wide / wide_half_lr > 1.6, (wide, wide_half_lr)
