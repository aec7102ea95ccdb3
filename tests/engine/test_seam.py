"""The seam between the engine and its systems.

A tiny system defined in the tests (tests/toy.py), and nowhere in dynsim, runs through ``sweep``, ``compare``, the run
directory, the figures and the command line: adding a system touches no engine file. The engine
imports no system, and names none. Every registered system honours the same contract at a tiny size.
"""

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from toy import ToyConfig
from typer.testing import CliRunner

import dynsim
from dynsim import registry
from dynsim.cli import app
from dynsim.engine.compare import compare_runs
from dynsim.engine.config import with_overrides
from dynsim.engine.results import config_of
from dynsim.engine.sweep import run_sweep

ENGINE = Path(dynsim.__file__).parent / "engine"


def _toy_config(tmp_path):
    return with_overrides(ToyConfig(), {"run": {"out": str(tmp_path / "run"), "seeds": 2}})


def test_a_system_defined_outside_dynsim_sweeps_resumes_and_compares(tmp_path, toy):
    config = _toy_config(tmp_path)
    dataset = run_sweep(toy, config, with_limit=True)
    assert dict(dataset.sizes) == {"lr": 3, "seed": 2, "time": 5, "component": 1}
    np.testing.assert_allclose(dataset.x.sel(lr=0.1).values[0, :, 0], 0.9 ** np.arange(0, 21, 5))
    np.testing.assert_allclose(dataset.limit_x.values[:, 0], np.exp(-np.arange(5) / 2))
    assert (tmp_path / "run" / "summary.csv").is_file() and (tmp_path / "run" / "limit.nc").is_file()
    assert config_of(dataset, toy) == config
    run_sweep(toy, config, with_limit=True)
    assert (tmp_path / "run" / "run.log").read_text().splitlines()[-2].endswith("start: 0 of 3 parts to run")
    # Euler's global error is first order: the fitted slope of the error in lr is 1.
    comparison = compare_runs(toy, config)
    assert comparison.slope == pytest.approx(1.0, abs=0.05) and comparison.floor_value is None


def test_the_command_line_runs_a_system_it_was_not_written_for(tmp_path, toy):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["compare", "--system", "toy", "--seeds", "2", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert (out / "comparison.csv").is_file() and (out / "figures" / "error_vs_lr.png").is_file()
    assert (out / "figures" / "metrics.png").is_file()
    shown = runner.invoke(app, ["show", str(out)])
    assert shown.exit_code == 0 and "slope of log error vs log lr" in shown.output and "energy" in shown.output
    assert "toy:" in runner.invoke(app, ["systems"]).output


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


@pytest.mark.parametrize("path", sorted(ENGINE.glob("*.py")), ids=lambda p: p.name)
def test_the_engine_imports_no_system_and_names_none(path):
    systems = ("two_tower", "spectral", "registry", "cli")
    for name in _imports(path):
        assert not (name.startswith("..") or name.startswith("dynsim.")), f"{path.name} imports {name}"
        assert not any(system in name for system in systems), f"{path.name} imports {name}"
    source = path.read_text()
    for name in registry.SYSTEMS:
        assert f'"{name}"' not in source and f"'{name}'" not in source, f"{path.name} names the system {name}"


@pytest.mark.parametrize("name", sorted(registry.SYSTEMS))
def test_every_system_honours_the_contract_at_a_tiny_size(name, tmp_path):
    system = registry.SYSTEMS[name]
    config = with_overrides(
        system.config(), system.tiny | {"run": {**system.tiny.get("run", {}), "out": str(tmp_path)}}
    )
    assert registry.load_config(config.to_dict()) == config  # round trip through plain tables
    axis = system.axis(config)
    first = system.simulate(config, axis.values[0], 2, 0)
    repeated = system.simulate(config, axis.values[0], 2, 0)  # what a resumed run recomputes: the same bits
    alone = system.simulate(config, axis.values[0], 1, 1)  # seed 1 alone: the same key, another batch shape
    for coordinate in system.coordinates:
        values = np.asarray(getattr(first, coordinate))
        assert np.all(np.isfinite(values)) and values.shape[:2] == (2, first.times.size)
        np.testing.assert_array_equal(values, np.asarray(getattr(repeated, coordinate)))
        tolerance = 1e3 * np.finfo(values.dtype).eps  # another batch shape may sum in another order
        np.testing.assert_allclose(values[1:], np.asarray(getattr(alone, coordinate)), rtol=tolerance, atol=tolerance)
    if system.limit is not None:  # a system may carry its exact reference in its records instead (jghm)
        limit = system.limit(config)
        np.testing.assert_allclose(limit.times, first.times, rtol=1e-12)
        assert all(math.isfinite(float(np.max(np.abs(v)))) for v in limit.metrics.values())
    assert set(system.table) <= set(first.metrics) and set(system.panels) <= set(first.metrics)
