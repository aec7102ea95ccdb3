"""Run directories: fingerprints, atomic writes, chunked parts that load back as one dataset."""

import numpy as np
import pytest
import tomli_w

import dynsim
from dynsim.engine.config import with_overrides
from dynsim.engine.results import (
    as_record,
    final_summary,
    fingerprint,
    open_run,
    record_dataset,
    record_from,
    seed_chunks,
    write_atomic,
    write_part,
)
from dynsim.two_tower import SYSTEM

CONFIG = dynsim.load_config(
    {
        "data": {"r": 2, "n": 1},
        "loss": {"stages": [[0.5, 0.6]]},
        "train": {"batch": 8, "lr": 0.1, "precision": "float64"},
        "run": {"record_every": 0.3, "alignment_samples": 16},
    }
)


def _dataset(trajectory, width, first_seed=0):
    """A two-tower trajectory as the part dataset ``dynsim sweep`` writes."""
    record = as_record(trajectory, SYSTEM)
    return record_dataset(record, SYSTEM.coordinates, axis="width", value=width, first_seed=first_seed)


def test_fingerprint_ignores_where_and_on_what_device_but_not_what():
    moved = with_overrides(CONFIG, {"run": {"out": "elsewhere", "device": "cpu"}})
    assert fingerprint(moved) == fingerprint(CONFIG)
    for change in ({"run": {"seeds": 5}}, {"loss": {"lam": 2.0}}, {"run": {"seed_chunk": 1}}):
        assert fingerprint(with_overrides(CONFIG, change)) != fingerprint(CONFIG), change


def test_open_run_refuses_another_configuration_and_names_the_field(tmp_path):
    open_run(tmp_path, CONFIG)
    open_run(tmp_path, with_overrides(CONFIG, {"run": {"out": "x"}}))  # same results: accepted
    with pytest.raises(dynsim.RunMismatch, match=r"loss.lam: 1.0 -> 3.0"):
        open_run(tmp_path, with_overrides(CONFIG, {"loss": {"lam": 3.0}}))


def test_a_run_directory_from_before_systems_is_resumed_and_a_changed_one_still_refused(tmp_path):
    # What dynsim wrote before configurations named their system: no "system" key, the run
    # fields in another order, and a fingerprint over that text.
    old = CONFIG.to_dict()
    del old["system"]
    old["run"] = dict(reversed(old["run"].items()))
    (tmp_path / "parts").mkdir()
    (tmp_path / "config.toml").write_text(tomli_w.dumps(old))
    (tmp_path / "fingerprint").write_text("0" * 64 + "\n")
    open_run(tmp_path, CONFIG)
    assert (tmp_path / "fingerprint").read_text().strip() == fingerprint(CONFIG)
    (tmp_path / "fingerprint").write_text("0" * 64 + "\n")
    with pytest.raises(dynsim.RunMismatch, match=r"run.seeds: 4 -> 5"):
        open_run(tmp_path, with_overrides(CONFIG, {"run": {"seeds": 5}}))


def test_write_atomic_leaves_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "data.txt"
    write_atomic(target, lambda p: p.write_text("old"))

    def broken(path):
        path.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(target, broken)
    assert target.read_text() == "old"


def test_seed_chunks_cover_every_seed_once():
    assert seed_chunks(7, 3) == [(0, 3), (3, 3), (6, 1)]
    assert seed_chunks(2, 4) == [(0, 2)]


def test_chunks_load_back_as_the_whole_run(tmp_path):
    # Seeds 0-2 in two chunks equal one run of three seeds (per-seed keys do not depend on
    # the chunk), and the dataset round-trips to the same Record.
    run_dir = open_run(tmp_path, CONFIG)
    for first, count in seed_chunks(3, 2):
        chunk = dynsim.simulate(CONFIG, width=12, seeds=count, first_seed=first)
        write_part(run_dir, f"width_12_seeds_{first}", _dataset(chunk, 12, first))
    whole = dynsim.simulate(CONFIG, width=12, seeds=3)
    dataset = dynsim.load(run_dir)
    assert list(dataset.seed.values) == [0, 1, 2] and list(dataset.width.values) == [12]
    loaded = record_from(dataset, SYSTEM.coordinates, value=12)
    for name in ("a", "b", "p", "nu_a", "nu_b"):
        np.testing.assert_allclose(loaded.coordinates[name], getattr(whole, name), rtol=1e-12, err_msg=name)
    for name, values in whole.metrics.items():
        np.testing.assert_allclose(loaded.metrics[name], values, rtol=1e-10, err_msg=name)
    np.testing.assert_allclose(dataset.attrs["stage_boundaries"], [])
    assert dataset.attrs["loss_kind"] == "infonce"


def test_load_refuses_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a dynsim run directory"):
        dynsim.load(tmp_path)
    open_run(tmp_path, CONFIG)
    with pytest.raises(FileNotFoundError, match="no finished part"):
        dynsim.load(tmp_path)


def test_an_interrupted_run_loads_what_it_has(tmp_path):
    run_dir = open_run(tmp_path, CONFIG)
    for width, seeds in ((12, 2), (24, 1)):
        trajectory = dynsim.simulate(CONFIG, width=width, seeds=seeds)
        write_part(run_dir, f"width_{width}", _dataset(trajectory, width))
    dataset = dynsim.load(run_dir)
    assert dict(dataset.sizes)["seed"] == 2
    assert np.isnan(dataset.a.sel(width=24, seed=1)).all() and not np.isnan(dataset.a.sel(width=24, seed=0)).any()
    rows = final_summary(dataset, SYSTEM)
    assert [(row["width"], row["seeds"]) for row in rows] == [(12, 2), (24, 1)]
    assert rows[1]["kappa_a_mean"] == pytest.approx(float(dataset.kappa_a.sel(width=24, seed=0)[-1]))
