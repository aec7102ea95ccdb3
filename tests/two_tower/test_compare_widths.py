"""The two-tower comparison: the error against the infinite-width ODE falls like the inverse square
root of the width, above the SGD floor; widths key their seeds apart."""

import numpy as np

import dynsim
from dynsim.engine.runner import seed_keys


def test_error_falls_like_inverse_sqrt_width_above_the_sgd_floor():
    # A moderate configuration (r = 2, n = 2, batch 256, lr 0.05, 8 seeds). The widths are
    # chosen so that the width error (measured 0.21 at m = 100 down to 0.033 at m = 6400) stays
    # above the SGD floor (0.0145, width 1e12): the floor then bends the fitted slope by only a
    # few hundredths, inside the -0.5 +- 0.15 the issue asks for.
    config = {
        "data": {"r": 2, "n": 2, "kappa": 4.0, "noise": 0.3},
        "loss": {"stages": [[1.0, 1.0], [2.0, 1.0]]},
        "train": {"lr": 0.05, "batch": 256, "precision": "float64"},
        "run": {"record_every": 0.5, "alignment_samples": 16},
    }
    comparison = dynsim.compare(config, widths=[100, 400, 1600, 6400], seeds=8)
    assert -0.65 < comparison.slope < -0.35, comparison.slope
    assert comparison.slope_ci[0] < comparison.slope < comparison.slope_ci[1]
    smallest = np.mean(comparison.sup_error["all"][0])
    assert comparison.floor < smallest / 5, (comparison.floor, smallest)


def test_widths_beyond_32_bits_get_their_own_keys():
    _, low = seed_keys(0, 7, 1)
    _, high = seed_keys(0, 2**32 + 7, 1)
    assert not np.array_equal(np.asarray(low), np.asarray(high))
