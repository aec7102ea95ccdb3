"""Sweeps as SLURM job arrays on a real SLURM (ci/slurm-up.sh starts a single-node one).

Skipped, with the reason, where no SLURM answers; ``.ci/run`` starts one and sets
``DYNSIM_REQUIRE_SLURM=1``, under which an unreachable SLURM fails these tests instead. Every job
runs on this machine's node, so the run directories in pytest's temporary folder are shared.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import submitit
from helpers import check_preemption, run_log, run_main, same_bits, wait_until
from toy import ToyConfig

import dynsim
from dynsim import registry
from dynsim.engine.config import with_overrides
from dynsim.engine.executors import SUBMITIT_DIR, SubmissionRefused
from dynsim.engine.results import failure, job_of
from dynsim.engine.sweep import PartsUnfinished, run_sweep


def _unreachable() -> str | None:
    """Why no SLURM can take jobs here, or ``None``."""
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH (ci/slurm-up.sh starts a single-node SLURM)"
    try:
        nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 30 s"
    if nodes.returncode != 0:
        return f"sinfo failed: {nodes.stderr.strip()}"
    if not {"idle", "mixed", "allocated"} & set(nodes.stdout.split()):
        return f"no SLURM node up (sinfo: {nodes.stdout.split()})"
    return None


REASON = _unreachable()
REQUIRED = os.environ.get("DYNSIM_REQUIRE_SLURM") == "1"
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(REASON is not None and not REQUIRED, reason=str(REASON))]


@pytest.fixture(autouse=True)
def slurm():
    if REASON is not None:  # only when required (CI): the cluster should be there
        pytest.fail(f"DYNSIM_REQUIRE_SLURM=1 but {REASON}")


def _toy(tmp_path, run=None, **executor):
    run = {"out": str(tmp_path / "run"), "seeds": 2, "executor": {"kind": "slurm", **executor}, **(run or {})}
    return with_overrides(ToyConfig(), {"run": run})


def test_an_array_with_a_cap_gives_the_inline_bits(tmp_path):
    system = registry.get("two_tower")
    base = with_overrides(dynsim.load_config(), system.tiny)
    base = with_overrides(base, {"run": {"seeds": 3, "seed_chunk": 1, "out": str(tmp_path / "inline")}})
    slurm = with_overrides(base, {"run": {"out": str(tmp_path / "slurm"), "executor": {"kind": "slurm", "jobs": 2}}})
    same_bits(run_sweep(system, slurm), run_sweep(system, base))
    scripts = sorted((tmp_path / "slurm" / SUBMITIT_DIR).rglob("*_submission.sh"), key=lambda p: p.stat().st_mtime)
    # one job per width first (each compiles its program), then the rest after them
    assert ["#SBATCH --array=0-1%2" in s.read_text() for s in scripts] == [True, False]
    assert "#SBATCH --array=0-3%2" in scripts[1].read_text() and "--dependency=afterany:" in scripts[1].read_text()
    assert "export JAX_PLATFORMS=cpu" in scripts[0].read_text()
    assert run_log(slurm).count("JAX_PLATFORMS=cpu, devices [CpuDevice(id=0)]") == 6


def test_a_failing_part_surfaces_its_error_while_the_others_finish(tmp_path, toy, monkeypatch):
    monkeypatch.setenv("DYNSIM_TOY_FAIL_LR", "0.05")  # sbatch passes the environment on to the jobs
    config = _toy(tmp_path, jobs=2)
    with pytest.raises(PartsUnfinished, match=r"1 part\(s\) failed \(lr_0.05_seeds_0-1: ValueError: the toy fails"):
        run_sweep(toy, config)
    run_dir = Path(config.run.out)
    record = failure(run_dir, "lr_0.05_seeds_0-1")
    assert record["job"] == job_of(run_dir, "lr_0.05_seeds_0-1")["job_id"] and "_" in record["job"]  # array task
    assert len(list((run_dir / "parts").glob("*.done"))) == 2


def test_a_cancelled_job_is_reported_lost_and_resubmitted_on_rerun(tmp_path, toy, monkeypatch):
    monkeypatch.setenv("DYNSIM_TOY_HOLD_S", "120")
    config = _toy(tmp_path, {"values": [0.1]})
    run_dir = Path(config.run.out)
    assert run_sweep(toy, config, detach=True) is None
    job = job_of(run_dir, "lr_0.1_seeds_0-1")["job_id"]
    wait_until(lambda: f"job {job} on" in run_log(config))
    status = run_main("status", str(run_dir))
    assert "1 running" in status.stdout and job in status.stdout
    assert run_main("cancel", str(run_dir)).stdout.strip() == f"cancelled 1 job(s): {job}"
    wait_until(lambda: "1 lost" in run_main("status", str(run_dir)).stdout)
    monkeypatch.setenv("DYNSIM_TOY_HOLD_S", "0")
    dataset = run_sweep(toy, config)
    assert dataset.sizes["seed"] == 2 and run_log(config).count("submitted") == 2
    assert job_of(run_dir, "lr_0.1_seeds_0-1")["job_id"] != job


def test_a_preempted_job_is_requeued_and_completes(tmp_path, toy, monkeypatch):
    monkeypatch.setenv("DYNSIM_TOY_HOLD_S", "3")
    config = _toy(tmp_path, {"values": [0.1], "seeds": 3, "seed_chunk": 1}, parts_per_job=3)
    folder = Path(config.run.out) / SUBMITIT_DIR
    check_preemption(toy, config, lambda job: submitit.SlurmJob(folder=folder, job_id=job)._interrupt())  # TERM, USR2


def test_detach_then_rerun_reattaches_without_duplicates(tmp_path, toy, monkeypatch):
    monkeypatch.setenv("DYNSIM_TOY_HOLD_S", "4")
    config = _toy(tmp_path)
    run_dir = Path(config.run.out)
    started = time.time()
    assert run_sweep(toy, config, detach=True) is None
    assert time.time() - started < 20 and not list((run_dir / "parts").glob("*.done"))
    jobs = {job_of(run_dir, f"lr_{lr}_seeds_0-1")["job_id"] for lr in (0.1, 0.05, 0.025)}
    dataset = run_sweep(toy, config)
    assert "re-attached to 3 job(s) still queued or running" in run_log(config)
    assert run_log(config).count("submitted") == 1  # the detached array, nothing more
    assert {job_of(run_dir, f"lr_{lr}_seeds_0-1")["job_id"] for lr in (0.1, 0.05, 0.025)} == jobs
    monkeypatch.setenv("DYNSIM_TOY_HOLD_S", "0")
    same_bits(dataset, run_sweep(toy, with_overrides(config, {"run": {"out": str(tmp_path / "b"), "executor": {}}})))


def test_a_gpu_request_on_a_node_without_gpus_is_refused_in_one_line(tmp_path, toy):
    config = _toy(tmp_path, gpus_per_job=1)
    with pytest.raises(SubmissionRefused, match="SLURM refused the jobs: .*") as refused:
        run_sweep(toy, config)
    assert "\n" not in str(refused.value)
    result = run_main(
        "sweep", "--system", "toy", "--out", str(tmp_path / "cli"), "--executor", "slurm", "--gpus-per-job", "1"
    )
    # (sbatch's own line comes first: submitit lets it through)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and last.startswith("error: SLURM refused the jobs: sbatch: error: Batch job")
    assert "Requested node configuration is not available (check the executor options" in last
