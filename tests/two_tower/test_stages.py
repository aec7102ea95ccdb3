"""Stage detection against hand-built trajectories with closed-form crossing times, and on the ODE."""

import numpy as np
import pytest

import dynsim
from dynsim.engine.results import Record, describe, event_rows, final_summary, record_dataset
from dynsim.two_tower import SYSTEM
from dynsim.two_tower.stages import ALIGNED_RHO, BALANCED_KAPPA, first_crossing, stage_times


def test_piecewise_linear_crossings_are_exact():
    # On a piecewise-linear trajectory the interpolant is the trajectory: the crossings are exact.
    times = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    rho = np.array([0.0, 0.5, 0.8, 1.0, 1.0])  # 0.9 is reached half-way through [20, 30]
    kappa = np.array([4.0, 6.0, 8.0, 3.5, 1.0])  # 1.5 is reached 0.8 of the way through [30, 40]
    t1, t2 = stage_times(times, rho, kappa)
    assert float(t1) == pytest.approx(25.0, abs=1e-12)
    assert float(t2) == pytest.approx(38.0, abs=1e-12)


def test_smooth_crossings_within_the_interpolation_bound():
    # rho(t) = 1 - exp(-t/T) reaches 0.9 at T ln 10; kappa(t) = 1 + A exp(-t/S) reaches 1.5 at
    # S ln(2A). Linear interpolation misplaces a crossing by at most h^2 max|f''| / (8 |f'|), which
    # is h^2 / (8 T) (times e^{h/T}) for these exponentials.
    T, S, A, h = 7.0, 30.0, 9.0, 0.5
    times = np.arange(0.0, 200.0 + h, h)
    t1, t2 = stage_times(times, 1 - np.exp(-times / T), 1 + A * np.exp(-times / S))
    assert abs(float(t1) - T * np.log(1 / (1 - ALIGNED_RHO))) < h**2 / (8 * T) * np.exp(h / T)
    assert abs(float(t2) - S * np.log(A / (BALANCED_KAPPA - 1))) < h**2 / (8 * S) * np.exp(h / S)


def test_balance_is_searched_only_after_alignment():
    # kappa starts balanced (1.2 <= 1.5) and dips again at t = 5, before rho aligns at t = 10:
    # neither counts; the balance time is the later fall through 1.5 on [30, 40], at t = 35.
    times = np.arange(0.0, 50.0, 5.0)
    rho = np.array([0.0, 0.5, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    kappa = np.array([1.2, 1.4, 3.0, 5.0, 4.0, 3.0, 2.0, 1.0, 1.0, 1.0])
    t1, t2 = stage_times(times, rho, kappa)
    assert float(t1) == 10.0 and float(t2) == pytest.approx(32.5)


def test_never_reached_is_nan_and_leading_axes_are_kept():
    times = np.linspace(0.0, 1.0, 5)
    rho = np.stack([np.full(5, 0.5), np.linspace(0.0, 1.0, 5)])  # seed 0 never aligns
    kappa = np.stack([np.full(5, 1.0), np.full(5, 2.0)])  # seed 1 aligns but never balances
    t1, t2 = stage_times(times, rho[None], kappa[None])
    assert t1.shape == t2.shape == (1, 2)
    assert np.isnan(t1[0, 0]) and np.isnan(t2[0, 0])  # no alignment: no balance time either
    assert t1[0, 1] == pytest.approx(0.9) and np.isnan(t2[0, 1])


def test_first_crossing_from_a_start_inside_a_segment():
    times, values = np.array([0.0, 10.0, 20.0]), np.array([0.0, 10.0, 0.0])
    assert first_crossing(times, values, 5.0, rising=True, start=7.0) == 7.0  # already above at the start
    assert first_crossing(times, values, 5.0, rising=False, start=7.0) == pytest.approx(15.0)
    assert np.isnan(first_crossing(times, values, 5.0, rising=True, start=16.0))
    assert np.isnan(first_crossing(times, values, 5.0, rising=True, start=np.nan))
    with pytest.raises(ValueError, match="must both be"):
        stage_times(times, values, values[:2])


ODE_CONFIG = {
    "data": {"r": 4, "n": 12},
    "loss": {"stages": [[0.05, 60.0], [3.0, 400.0]]},
    "run": {"record_every": 10.0},
}


def test_ode_stage_times_are_where_the_solution_crosses_the_thresholds():
    # The times read off the coarse record grid, against the ODE evaluated at those very times
    # (an independent solve): rho_min and kappa_a must be at their thresholds there, to the
    # interpolation error of a 10-time-unit grid.
    solution = dynsim.ode.solve(ODE_CONFIG)
    t1, t2 = stage_times(solution.times, solution.metrics["rho_min"], solution.metrics["kappa_a"])
    assert 60.0 < t1 < t2 < 460.0  # aligned during stage 2, then balanced
    at = dynsim.ode.solve(ODE_CONFIG, ts=[float(t1), float(t2)])
    assert at.metrics["rho_min"][0] == pytest.approx(ALIGNED_RHO, abs=5e-3)
    assert at.metrics["kappa_a"][1] == pytest.approx(BALANCED_KAPPA, abs=2e-2)


def _record(rho, kappa, seeds):
    T = rho.shape[-1]
    shape = (seeds, T) if seeds else (T,)
    metrics = {name: np.ones(shape) for name in dynsim.two_tower.observables.METRICS}
    metrics.update(rho_min=rho, kappa_a=kappa)
    lead = (seeds,) if seeds else ()
    ones = np.ones((*lead, T, 1))
    return Record(times=np.arange(T, dtype=float), coordinates=dict.fromkeys(SYSTEM.coordinates, ones), metrics=metrics)


def test_summaries_report_stage_times_per_seed_and_over_the_seeds_that_reached():
    rho = np.array([[0.0, 0.8, 1.0, 1.0], [0.0, 0.2, 0.4, 0.6]])  # seed 1 never aligns
    kappa = np.array([[4.0, 5.0, 2.0, 1.0], [4.0, 5.0, 2.0, 1.0]])
    dataset = record_dataset(_record(rho, kappa, 2), SYSTEM.coordinates, axis="width", value=16)
    ode = record_dataset(_record(rho[0], kappa[0] + 1, 0), SYSTEM.coordinates, prefix="ode_")  # never balances
    merged = dataset.merge(ode).assign_attrs(describe(dynsim.Config(), SYSTEM))
    rows = final_summary(merged, SYSTEM)
    assert rows[0]["t_align_mean"] == pytest.approx(1.5) and rows[0]["t_align_reached"] == 1
    assert rows[0]["t_align_sd"] == 0.0 and rows[0]["t_balance_mean"] == pytest.approx(2 + 0.5 / 1)
    assert rows[1]["width"] == "inf" and rows[1]["t_balance_reached"] == 0 and np.isnan(rows[1]["t_balance_mean"])
    per_seed = event_rows(merged, SYSTEM)
    assert [(row["width"], row["seed"]) for row in per_seed] == [(16, 0), (16, 1), ("inf", "")]
    assert per_seed[0]["t_balance"] == pytest.approx(2.5) and np.isnan(per_seed[1]["t_align"])


def test_non_finite_records_never_count_as_reached_and_no_records_give_nan():
    times = np.array([0.0, 10.0, 20.0, 30.0])
    # +inf at t = 20 is not a crossing: the first finite record at or above 0.9 is at t = 30,
    # reached from the +inf record's segment, so the time is that record's own.
    assert first_crossing(times, np.array([0.0, 0.5, np.inf, 1.0]), 0.9, rising=True) == 30.0
    assert first_crossing(times, np.array([2.0, 2.0, -np.inf, 1.0]), 1.5, rising=False) == 30.0
    assert np.isnan(first_crossing(np.array([]), np.array([]), 0.9, rising=True))
    assert np.isnan(stage_times(np.array([]), np.empty(0), np.empty(0))[0])
