"""The finite-width simulator approaches the infinite-width ODE as the width grows."""

import numpy as np

import dynsim

NAMES = ("a", "b", "p", "nu_a", "nu_b")


def test_finite_width_error_to_the_ode_shrinks_like_inverse_sqrt_width():
    # Population normalization, float64, a batch large enough and steps small enough that
    # the SGD noise (~ sqrt(lr / B)) and the Euler error (~ lr) stay below the width error
    # (~ m^-1/2, from the Wishart fluctuations of W^T W around I).
    config = dynsim.load_config(
        {
            "data": {"r": 2, "n": 2, "kappa": 2.0, "noise": 0.5},
            "loss": {"stages": [[1.0, 1.0], [2.0, 1.0]]},
            "train": {"lr": 0.05, "batch": 256, "precision": "float64"},
            "run": {"record_every": 0.5, "alignment_samples": 16},
        }
    )
    solution = dynsim.ode.solve(config)
    scale = {name: np.abs(getattr(solution, name)).max() for name in NAMES}
    errors = {}
    for width in (2048, 8192):
        trajectory = dynsim.simulate(config, width=width, seeds=4)
        np.testing.assert_allclose(trajectory.times, solution.times)
        # Per seed: the largest per-coordinate error at the final time, relative to the
        # coordinate's ODE scale; then the root mean square over seeds.
        final = [np.abs(getattr(trajectory, n)[:, -1] - getattr(solution, n)[-1]).max(-1) / scale[n] for n in NAMES]
        errors[width] = np.sqrt(np.mean(np.max(final, axis=0) ** 2))
    # 4x the width should halve the error; a ratio of 1.5 leaves room for the seed sampling
    # of a 4-seed RMS and the SGD floor, while a width-independent error would give ~1.
    assert errors[2048] / errors[8192] > 1.5
    assert errors[8192] < 3 * np.sqrt(2 / 8192)  # the relative sd of a diagonal Wishart entry is sqrt(2/m)
