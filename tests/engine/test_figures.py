"""Figures of a finished run, on a small synthetic two-tower dataset."""

import types

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from dynsim.engine import figures as _figures
from dynsim.engine.system import Axis
from dynsim.two_tower import SYSTEM
from dynsim.two_tower.figures import METRIC_PANELS

METRICS = ("loss", "rho_min", "rho_mean", "kappa_a", "kappa_b", "balance", "alignment", "nsr", "offdiag")


def make_dataset(*, ode=True, n=2, boundaries=(2.0, 5.0), W=2, S=3, T=20, r=3):
    """A synthetic run: smooth trajectories plus per-seed noise; ``ode_alignment`` is never present."""
    rng = np.random.default_rng(0)
    time = np.linspace(0.0, 10.0, T)
    widths = np.array([64, 256], dtype=np.int64)[:W]

    def finite(limit, *extra):
        shape = (W, S, T, *extra)
        return limit + rng.normal(scale=0.05, size=shape) / np.sqrt(widths).reshape(-1, 1, 1, *(1,) * len(extra))

    curve = 1.0 - np.exp(-time)
    coords = {"width": widths, "seed": np.arange(S), "time": time, "signal": np.arange(1, r + 1)}
    coords["noise"] = np.arange(1, n + 1)
    state = {
        "a": (curve[:, None] * np.arange(1, r + 1)),
        "b": (curve[:, None] * np.arange(1, r + 1)),
        "p": (curve[:, None] * np.arange(1, r + 1) * 0.9),
        "nu_a": np.broadcast_to(np.exp(-time)[:, None], (T, n)),
        "nu_b": np.broadcast_to(np.exp(-time)[:, None], (T, n)),
    }
    variables = {}
    for name, limit in state.items():
        dim = "signal" if name in ("a", "b", "p") else "noise"
        variables[name] = (("width", "seed", "time", dim), finite(limit, limit.shape[1]))
        if ode:
            variables[f"ode_{name}"] = (("time", dim), limit)
    for i, name in enumerate(METRICS):
        limit = curve * (i + 1)
        variables[name] = (("width", "seed", "time"), finite(limit))
        if ode and name != "alignment":
            variables[f"ode_{name}"] = (("time",), limit)
    attrs = {"axis": "width", "axis_symbol": "m", "limit": "ode", "limit_label": "∞ (ODE)", "title": "infonce"}
    attrs |= {"marks": np.asarray(boundaries, dtype=float), "marks_label": "temperature stage change"}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def make_comparison(slope=-0.4812, ci=(-0.5549, -0.4111)):
    rng = np.random.default_rng(1)
    widths = np.array([64, 256, 1024])
    errors = 0.8 * widths[:, None] ** slope * np.exp(rng.normal(scale=0.3, size=(3, 4)))
    axis = Axis("width", tuple(widths), -0.5, "width m", "m", floor_label="SGD floor (batch, step size)")
    return types.SimpleNamespace(
        axis=axis, sup_error={"all": errors}, slope=slope, slope_ci=ci, floor=0.01, floor_sd=0.004, prediction=None
    )


def assert_png(path):
    assert path.exists() and path.suffix == ".png"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.size > 0


def legend_texts(fig):
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


CASES = {
    "ode": dict(ode=True, n=2),
    "no-ode": dict(ode=False, n=2),
    "no-noise": dict(ode=True, n=0),
    "no-stages": dict(ode=False, n=0, boundaries=()),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_metric_and_coordinate_figures_are_written(tmp_path, case):
    ds = make_dataset(**case)
    assert_png(_figures.metric_trajectories(ds, METRIC_PANELS, tmp_path / "metrics.png"))
    assert_png(_figures.coordinate_trajectories(ds, "a", "a_k", tmp_path / "coordinates.png"))


@pytest.mark.parametrize("ode", [True, False])
def test_ode_overlay_is_in_the_legend_only_when_solved(ode):
    ds = make_dataset(ode=ode)
    for fig in (_figures._metrics_figure(ds, METRIC_PANELS), _figures._coordinates_figure(ds, "a", "a_k", 8)):
        texts = legend_texts(fig)
        assert {"m = 64", "m = 256"} <= set(texts)
        assert ("m = ∞ (ODE)" in texts) == ode
        plt.close(fig)


def test_a_partial_ode_overlay_is_drawn(tmp_path):
    ds = make_dataset().drop_vars(["ode_rho_min", "ode_a"])
    fig = _figures._metrics_figure(ds, METRIC_PANELS)
    assert "m = ∞ (ODE)" in legend_texts(fig)
    plt.close(fig)
    assert_png(_figures.coordinate_trajectories(ds, "a", "a_k", tmp_path / "coordinates.png"))


def test_coordinate_panels_stop_at_max_coordinates():
    fig = _figures._coordinates_figure(make_dataset(r=3), "a", "a_k", max_coordinates=2)
    assert sum(ax.get_visible() and ax.axison for ax in fig.axes) == 2
    plt.close(fig)


def test_error_vs_width_legend_gives_the_slope_and_its_interval(tmp_path):
    comparison = make_comparison()
    fig = _figures._error_figure(comparison)
    texts = legend_texts(fig)
    assert "fit: slope −0.48 [−0.55, −0.41]" in texts
    assert "SGD floor (batch, step size)" in texts
    assert fig.axes[0].get_xscale() == fig.axes[0].get_yscale() == "log"
    plt.close(fig)
    assert_png(_figures.error_vs_axis(comparison, tmp_path / "error.png"))


@pytest.mark.parametrize("with_comparison", [True, False])
def test_draw_writes_every_figure(tmp_path, with_comparison):
    comparison = make_comparison() if with_comparison else None
    paths = _figures.draw(make_dataset(), comparison, tmp_path / "figures" / "run", SYSTEM)
    expected = ["metrics.png", "coordinates.png"] + (["error_vs_width.png"] if with_comparison else [])
    assert [path.name for path in paths] == expected
    for path in paths:
        assert path.parent == tmp_path / "figures" / "run"
        assert_png(path)
    assert plt.get_fignums() == []
