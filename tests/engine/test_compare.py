"""The comparison of a finite process with its limit: error definitions, the slope fit, the floor."""

import numpy as np
import pytest

from dynsim.engine.compare import comparison_of, fit_slope, relative_errors
from dynsim.engine.results import Record
from dynsim.engine.system import Axis

QUANTITIES = ("a", "b", "p", "nu_a", "nu_b")


def _record(rng, shape_lead, r=2, n=3, times=None):
    times = np.linspace(0, 1, 5) if times is None else times

    def block(k):
        return rng.normal(size=(*shape_lead, times.size, k))

    sizes = {"a": r, "b": r, "p": r, "nu_a": n, "nu_b": n}
    return Record(times=times, coordinates={name: block(k) for name, k in sizes.items()}, metrics={})


def test_relative_errors_match_an_explicit_loop():
    rng = np.random.default_rng(0)
    finite, ode = _record(rng, (4,)), _record(rng, ())
    sup, final = relative_errors(finite, ode)
    for name in ("a", "b", "p", "nu_a", "nu_b"):
        reference, values = ode.coordinates[name], finite.coordinates[name]
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
        values = {n: np.stack([ode.coordinates[n] + offset] * seeds) for n in QUANTITIES}
        return Record(times=ode.times, coordinates=values, metrics={})

    axis = Axis("width", (100, 400, 1600), slope=-0.5, label="width m", symbol="m")
    comparison = comparison_of(axis, [shifted(s) for s in (0.4, 0.2, 0.1)], ode, (10**12, shifted(0.01)))
    # Offsets halve with each 4x in width: slope log(1/2) / log(4) = -1/2 exactly.
    assert comparison.slope == pytest.approx(-0.5, abs=1e-12)
    scale = min(np.abs(ode.coordinates[n]).max() for n in QUANTITIES)  # "all" takes the worst-scaled quantity
    assert comparison.floor == pytest.approx(0.01 / scale, rel=1e-12) and comparison.floor_sd == 0
    assert comparison.floor_value == 10**12
    assert [row["width"] for row in comparison.rows()] == [100, 400, 1600]


def test_a_limit_per_seed_is_compared_seed_by_seed_and_no_floor_gives_nan():
    rng = np.random.default_rng(4)
    limit = _record(rng, (3,))  # a limit that depends on the seed, as the spectral flow does
    finite = Record(
        limit.times, {n: v + 0.1 * (1 + np.arange(3))[:, None, None] for n, v in limit.coordinates.items()}, {}
    )
    axis = Axis("lr", (0.1, 0.2), slope=1.0, label="learning rate", symbol="η")
    comparison = comparison_of(axis, [finite, finite], limit)
    for name in QUANTITIES:
        scale = np.abs(limit.coordinates[name]).max()
        np.testing.assert_allclose(comparison.sup_error[name][0], 0.1 * (1 + np.arange(3)) / scale, rtol=1e-12)
    assert np.isnan(comparison.floor) and comparison.floor_value is None and comparison.floor_sup_error == {}
