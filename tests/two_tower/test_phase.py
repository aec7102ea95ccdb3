"""The phase diagram against individual ODE solves, and its refusals and figure."""

import matplotlib.image
import numpy as np
import pytest

import dynsim
from dynsim.two_tower.figures import PHASE_PANELS, _phase_figure, phase_heatmaps
from dynsim.two_tower.phase import PHASE_METRICS, _grid_config
from dynsim.two_tower.stages import stage_times

BASE = {"data": {"r": 3, "n": 4}, "loss": {"stages": [[0.05, 20.0], [3.0, 60.0]]}, "run": {"record_every": 4.0}}
KAPPAS, TAUS = [1.5, 3.0, 6.0], [0.5, 2.0]
TOLERANCES = {"rtol": 1e-12, "atol": 1e-14}  # tight, so that batched and single solves agree to ~1e-10


@pytest.fixture(scope="module")
def grid():
    return dynsim.phase_diagram(BASE, KAPPAS, TAUS, **TOLERANCES)


@pytest.mark.parametrize(
    ("kind", "kappa", "tau"), [("infonce", 1.5, 0.5), ("infonce", 6.0, 2.0), ("positive", 3.0, 2.0)]
)
def test_grid_points_equal_individual_solves(grid, kind, kappa, tau):
    config = dynsim.load_config(BASE)
    expected = {"data": {**BASE["data"], "kappa": kappa}, "loss": {"kind": kind, "stages": [[0.05, 20.0], [tau, 60.0]]}}
    single = dynsim.ode.solve({**BASE, **expected}, **TOLERANCES)
    assert _grid_config(config, kind, kappa, tau) == dynsim.load_config({**BASE, **expected})
    point = grid.sel(kind=kind, kappa=kappa, tau=tau)
    for name in PHASE_METRICS:
        assert float(point[name]) == pytest.approx(single.metrics[name][-1], rel=1e-10), name
    t_align, t_balance = stage_times(single.times, single.metrics["rho_min"], single.metrics["kappa_a"])
    np.testing.assert_allclose([point.t_align, point.t_balance], [t_align, t_balance], rtol=1e-8)


def test_without_negatives_tau_does_nothing(grid):
    # positive loss: L = -tau S and gamma = 1/tau, so the vector field is the same for every tau.
    positive = grid.kappa_a.sel(kind="positive").values
    np.testing.assert_allclose(positive, positive[:, :1].repeat(len(TAUS), axis=1), rtol=1e-10)
    assert np.all(positive > np.array(KAPPAS)[:, None])  # and the condition number grows


@pytest.mark.parametrize(
    ("base", "field"),
    [
        ({"loss": {"stages": [[1.0, 10.0]]}}, "loss.stages"),
        ({"data": {"spectrum": "list", "sigma": [1.0] * 8}}, "data.spectrum"),
    ],
)
def test_bases_without_the_grid_axes_are_refused(base, field):
    with pytest.raises(dynsim.ConfigError, match=field):
        dynsim.phase_diagram(base, [2.0], [1.0])


def test_bad_grid_values_name_the_field():
    with pytest.raises(dynsim.ConfigError, match=r"data.kappa"):
        dynsim.phase_diagram(BASE, [0.5], [1.0])
    with pytest.raises(dynsim.ConfigError, match=r"loss.stages\[1\].tau"):
        dynsim.phase_diagram(BASE, [2.0], [-1.0])


def test_heatmaps_are_drawn(grid, tmp_path):
    path = phase_heatmaps(grid, tmp_path / "phase.png")
    assert matplotlib.image.imread(path).ndim == 3


def test_heatmaps_share_one_colour_scale_per_metric(grid):
    # Both losses of a metric are read against one colour bar, so their images must share its
    # limits: the metric's range over the whole grid.
    fig = _phase_figure(grid)
    for name, row in zip(
        PHASE_PANELS, np.reshape(fig.axes[: 2 * len(PHASE_PANELS)], (len(PHASE_PANELS), 2)), strict=True
    ):
        limits = {(ax.collections[0].norm.vmin, ax.collections[0].norm.vmax) for ax in row}
        assert limits == {(float(grid[name].min()), float(grid[name].max()))}
