"""The finite-width simulators approach the infinite-width ODE as the width grows."""

import numpy as np

import dynsim

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


def test_gram_width_one_million_is_closer_to_the_ode_than_width_one_thousand():
    # At m = 1e3 the width error (~ sqrt(2/m) = 0.045 per Wishart entry) dominates; at m = 1e6
    # (1e-3) what is left is the Euler discretization floor of SGD at lr = 0.05 (about 1e-2;
    # measured to shrink ~ lr, not with m or the batch).
    solution = dynsim.ode.solve(CONFIG)
    errors = {
        width: final_error(dynsim.simulate(CONFIG, width=width, seeds=4, backend="gram"), solution)
        for width in (1000, 10**6)
    }
    assert np.all(np.isfinite(list(errors.values())))
    assert errors[10**6] < errors[1000] / 3, errors
