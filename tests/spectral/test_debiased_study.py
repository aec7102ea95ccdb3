"""``dynsim reproduce debiased``: its runs, figures and tables, the embedding it draws against the
run it comes from, and the exact optimum it compares the spectral loss with."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import reproduce_quick, run_main
from matplotlib import image
from typer.testing import CliRunner

import dynsim
from dynsim.cli import app
from dynsim.spectral import study
from dynsim.spectral.observables import graph_arrays, observe

# The smallest study the command accepts (one point, r = 2 and N = 16; two values per bias curve,
# so no slope): the plumbing, not the science (test_bias.py holds the rates, and the slow test
# below runs --quick itself). Two of the four InfoNCE losses.
TINY = {
    "seeds": 2,
    "duration": 10.0,
    "negatives": [16],
    "classes": [2],
    "draws": 1024,
    "bias_negatives": [16, 64],
    "bias_same": [4, 16],
}
TINY_LOSSES = {"biased": study.LOSSES["biased"], "unbiased": study.LOSSES["unbiased"]}
FIGURES = ("debiased_accuracy.png", "debiased_bias.png", "debiased_embeddings.png")


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _check_outputs(out, size, losses=study.LOSSES):
    for name in FIGURES:
        pixels = image.imread(out / "figures" / name)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100, name
    runs = _rows(out / "figures" / "debiased_runs.csv")
    expected = len(losses) * len({(2, n) for n in size["negatives"]} | {(r, 16) for r in size["classes"]})
    assert len(runs) == expected + len(size["classes"])
    assert all(int(row["seeds"]) == size["seeds"] for row in runs)
    summary = {row["quantity"]: row for row in _rows(out / "figures" / "debiased_summary.csv")}
    assert {"slope of deviation in N", "slope of bias in M", "few-label error by r (N = 16)"} <= set(summary)
    bias = _rows(out / "figures" / "debiased_bias.csv")
    assert {row["curve"] for row in bias} == {"negatives", "same", "practical_class", "practical_datum"}


def test_reproduce_debiased_writes_figures_and_tables_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setitem(study.SIZES, "quick", TINY)
    monkeypatch.setattr(study, "LOSSES", TINY_LOSSES)
    out = tmp_path / "debiased"
    result = CliRunner().invoke(app, ["reproduce", "debiased", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "slope of deviation in N" in result.output
    _check_outputs(out, TINY, TINY_LOSSES)
    again = CliRunner().invoke(app, ["reproduce", "debiased", "--quick", "--quiet", "--out", str(out)])
    assert again.exit_code == 0, again.output
    log = (out / "runs" / "unbiased-r2-N16" / "run.log").read_text().splitlines()
    assert log[-2].endswith("start: 0 of 1 parts to run")
    # an InfoNCE run has no plateau exits (the spectral loss's events): show prints its metrics only
    shown = run_main("show", str(out / "runs" / "biased-r2-N16"))
    assert shown.returncode == 0 and "probe_few" in shown.stdout
    assert "t_exit" not in shown.stdout and "reaches" not in shown.stdout  # no exit columns, no empty table
    # the drawn embedding is seed 0's own: observed, it gives the probe error the run recorded
    configs = study.study_configs(out, "quick")
    config = configs["biased", 2, 16]
    run = dynsim.load(out / "runs" / "biased-r2-N16")
    with jax.enable_x64(True):
        values = observe(jnp.asarray(study.final_embedding(config)), graph_arrays(config.graph_object, 2, 8, 1))
    for name in ("probe_few", "class_sine"):
        assert float(values[name]) == pytest.approx(float(run[name].isel(lr=0, seed=0, time=-1)), abs=1e-9)


def test_the_spectral_optimum_separates_the_classes_of_the_study_graphs():
    # θ = (0.35, 0.3, 0.15, 0.2): γ_cls ≥ 0.36 > γ_sub = 0.25, the class contrasts are the top
    # eigenvectors after u_1, so at k = r the optimum holds them exactly and one label per class is
    # enough. (With θ = (0.4, 0.3, 0.1, 0.2), γ_cls = γ_sub = 0.36 at r = 2 and it does not hold.)
    for row in study.optimum_rows([2, 4, 8]):
        assert row["class_sine"] < 1e-10 and row["probe_few"] == 0.0 and row["probe_ens"] == 0.0


def test_a_missing_device_is_one_line(tmp_path):
    result = run_main("reproduce", "debiased", "--device", "tpu", "--out", str(tmp_path))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "tpu" in result.stderr and not any(tmp_path.iterdir())


@pytest.mark.slow
def test_reproduce_debiased_quick_for_real(tmp_path):
    out = tmp_path / "debiased"
    reproduce_quick("debiased", out, timeout=1200)
    _check_outputs(out, study.SIZES["quick"])
    runs = {
        (row["loss"], int(row["classes"]), int(row["negatives"])): row
        for row in _rows(out / "figures" / "debiased_runs.csv")
    }
    assert np.isfinite(float(runs["unbiased", 2, 16]["probe_few_mean"]))
