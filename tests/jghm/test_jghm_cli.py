"""The jghm system through the engine and the command line: ``sweep`` (a run directory with the
Bayes references in every record), ``show``, one-line errors, and ``dynsim reproduce jghm``."""

import csv

import pytest
from helpers import reproduce_quick, run_main
from matplotlib import image

import dynsim
from dynsim.jghm import study

# The smallest runs of the study, in the shape of study.SIZES: this checks the plumbing (files, the
# summary, resuming); tests/jghm/test_training.py checks the science at a size where it holds.
TINY = {
    "flips": (0.2, 0.3),
    "seeds": 2,
    "tree": {"depth": 2, "branching": 2, "states": 3},
    "model": {"architecture": "mlp", "width": 16, "layers": 2, "out": 4},
    "train": {"steps": 20, "batch": 32, "lr": 1e-3, "lr_final": 1e-5},
    "eval": {"pairs": 64, "marginal": 64},
    "record_every": 10,
    "bayes_samples": 4,
    "grid": 3,
    "images": 256,
    "limit_anchors": 2000,
}
FIGURES = ("flips", "training", "prompts")


def test_sweep_writes_a_run_with_its_references_and_show_reads_it(tmp_path):
    out = tmp_path / "run"
    settings = ["--set", "train.steps=20", "--set", "train.batch=32", "--set", "eval.pairs=64"]
    settings += ["--set", "eval.marginal=64", "--set", "eval.prompts=[1, 4]", "--set", "run.values=[0.1, 0.3]"]
    result = run_main("sweep", "--system", "jghm", "--quiet", "--seeds", "2", "--out", str(out), *settings)
    assert result.returncode == 0, result.stderr
    run = dynsim.load(out)
    assert run.attrs["system"] == "jghm" and list(run.flip.values) == [0.1, 0.3]
    assert run.score.dims == ("flip", "seed", "time", "pair") and run.sizes["pair"] == 16**2
    assert {"excess_clip", "bayes_clip", "suff", "zsc_gap_4", "control_gap_4"} <= set(run.data_vars)
    shown = run_main("show", str(out))
    assert shown.returncode == 0 and "excess_clip" in shown.stdout
    refused = run_main("compare", "--system", "jghm", "--out", str(tmp_path / "c"))
    assert refused.returncode == 2 and "the jghm system declares no limit" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_bad_settings_get_one_line_errors(tmp_path):
    result = run_main("sweep", "--system", "jghm", "--out", str(tmp_path / "x"), "--set", "run.values=[0.1, 1.2]")
    assert result.returncode == 2 and "run.values[1] = 1.2 is invalid: must be < 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def _check_outputs(out):
    for name in FIGURES:
        pixels = image.imread(out / "figures" / f"jghm_{name}.png")
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100, name
    with open(out / "figures" / "jghm_summary.csv") as f:
        rows = {row["quantity"]: row for row in csv.DictReader(f)}
    assert "Bin(3, 1/V)" in rows["R*_4 at p = 1e-7 (Monte Carlo)"]["expected"]
    assert rows["records with excess CLIP risk < −3 SE"]["measured"].startswith("0 of")


def test_reproduce_writes_figures_and_summary_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setitem(study.SIZES, "quick", TINY)
    out = tmp_path / "jghm"
    result = run_main("reproduce", "jghm", "--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "root-label control" in result.stdout
    _check_outputs(out)
    parts = sorted(p.stat().st_mtime for p in (out / "flips" / "parts").glob("*.nc"))
    again = run_main("reproduce", "jghm", "--quick", "--quiet", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert sorted(p.stat().st_mtime for p in (out / "flips" / "parts").glob("*.nc")) == parts  # resumed, not rerun


@pytest.mark.slow
def test_reproduce_jghm_quick_for_real(tmp_path):
    out = tmp_path / "jghm"
    reproduce_quick("jghm", out)
    _check_outputs(out)
