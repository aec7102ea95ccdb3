"""The comparison of finite widths with the ODE: error definitions, the slope fit, the width law."""

import numpy as np
import pytest

import dynsim
from dynsim.engine.compare import QUANTITIES, comparison_of, fit_slope, relative_errors
from dynsim.engine.runner import seed_keys
from dynsim.two_tower.trajectory import Record


def _record(rng, shape_lead, r=2, n=3, times=None):
    times = np.linspace(0, 1, 5) if times is None else times

    def block(k):
        return rng.normal(size=(*shape_lead, times.size, k))

    return Record(times=times, a=block(r), b=block(r), p=block(r), nu_a=block(n), nu_b=block(n), metrics={})


def test_relative_errors_match_an_explicit_loop():
    rng = np.random.default_rng(0)
    finite, ode = _record(rng, (4,)), _record(rng, ())
    sup, final = relative_errors(finite, ode)
    for name in ("a", "b", "p", "nu_a", "nu_b"):
        reference, values = getattr(ode, name), getattr(finite, name)
        scale = max(abs(x) for x in reference.ravel())
        for seed in range(4):
            errors = [
                max(abs(values[seed, t, k] - reference[t, k]) for k in range(reference.shape[1])) / scale
                for t in range(reference.shape[0])
            ]
            assert sup[name][seed] == pytest.approx(max(errors), rel=1e-14)
            assert final[name][seed] == pytest.approx(errors[-1], rel=1e-14)
    assert np.array_equal(sup["all"], np.max([sup[n] for n in ("a", "b", "p", "nu_a", "nu_b")], axis=0))


def test_relative_errors_skip_empty_noise_and_refuse_other_grids():
    rng = np.random.default_rng(1)
    sup, _ = relative_errors(_record(rng, (2,), n=0), _record(rng, (), n=0))
    assert set(sup) == {"a", "b", "p", "all"}
    with pytest.raises(ValueError, match="same time grid"):
        relative_errors(_record(rng, (2,)), _record(rng, (), times=np.linspace(0, 2, 5)))


def test_slope_fit_agrees_with_polyfit_and_covers_the_true_exponent():
    rng = np.random.default_rng(2)
    widths = np.array([100, 400, 1600, 6400])
    errors = 3.0 * widths[:, None] ** -0.5 * np.exp(0.3 * rng.normal(size=(4, 8)))
    slope, (low, high) = fit_slope(widths, errors)
    assert slope == pytest.approx(np.polyfit(np.repeat(np.log(widths), 8), np.log(errors).ravel(), 1)[0], rel=1e-12)
    assert low < -0.5 < high and low < slope < high
    exact_slope, exact_ci = fit_slope(widths, np.tile(widths[:, None] ** -0.5, (1, 3)))
    assert exact_slope == pytest.approx(-0.5, abs=1e-12) and exact_ci[1] - exact_ci[0] < 1e-10


def test_comparison_floor_and_slope_come_from_the_records():
    rng = np.random.default_rng(3)
    ode = _record(rng, ())

    def shifted(offset, seeds=2):  # every coordinate of every seed off by the same amount
        values = {n: np.stack([getattr(ode, n) + offset] * seeds) for n in QUANTITIES}
        return Record(times=ode.times, **values, metrics={})

    comparison = comparison_of([100, 400, 1600], [shifted(s) for s in (0.4, 0.2, 0.1)], ode, shifted(0.01))
    # Offsets halve with each 4x in width: slope log(1/2) / log(4) = -1/2 exactly.
    assert comparison.slope == pytest.approx(-0.5, abs=1e-12)
    scale = min(np.abs(getattr(ode, n)).max() for n in QUANTITIES)  # "all" takes the worst-scaled quantity
    assert comparison.floor == pytest.approx(0.01 / scale, rel=1e-12) and comparison.floor_sd == 0
    assert [row["width"] for row in comparison.rows()] == [100, 400, 1600]


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
