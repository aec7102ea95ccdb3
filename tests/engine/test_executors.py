"""Executors: a sweep's parts as local processes and in-process submitit jobs (no scheduler needed).

The same parts give the same bits whichever executor runs them; a part that raises is recorded
and the others finish; a worker killed mid-part leaves only its part missing, which the next run
submits alone; a preempted job is requeued and resumes from its finished parts; at most ``jobs``
jobs run at once; a job's environment carries the platform settings. The toy system
(tests/toy.py) makes parts slow or failing through the environment, which jobs inherit.
"""

import os
import re
import signal
import threading
from datetime import datetime
from pathlib import Path

import pytest
from helpers import check_preemption, run_log, run_main, same_bits, wait_until
from toy import ToyConfig

import dynsim
from dynsim import registry
from dynsim.engine import executors  # noqa: F401 (submitit sets up its logging at import: not in run_main)
from dynsim.engine.config import ConfigError, with_overrides
from dynsim.engine.results import failure, fingerprint, job_of
from dynsim.engine.sweep import PartsUnfinished, run_sweep


def _toy(tmp_path, **executor):
    return with_overrides(ToyConfig(), {"run": {"out": str(tmp_path / "run"), "seeds": 2, "executor": executor}})


def test_local_and_inline_runs_give_the_same_bits_and_jobs_get_the_platform(tmp_path):
    system = registry.get("two_tower")
    base = with_overrides(dynsim.load_config(), system.tiny)
    base = with_overrides(base, {"run": {"seeds": 2, "seed_chunk": 1, "out": str(tmp_path / "inline")}})
    inline = run_sweep(system, base)
    local = with_overrides(base, {"run": {"out": str(tmp_path / "local"), "executor": {"kind": "local", "jobs": 2}}})
    same_bits(run_sweep(system, local), inline)
    assert fingerprint(local) == fingerprint(base)  # the executor is not part of the results
    log = run_log(local)
    assert log.count("JAX_PLATFORMS=cpu, devices [CpuDevice(id=0)]") == 4  # one job per part
    assert "start: 4 of 4 parts to run as local jobs" in log


def _intervals(log: str) -> list[tuple[float, float]]:
    """(start, end) of each job running one part, from run.log: its first line to its part's end."""
    stamp = r"(\S+) "
    started = {job: t for t, job in re.findall(stamp + r"job (\S+) on ", log)}
    ended = re.findall(stamp + r"(?:done|failed): \S+ \(job (\d+)", log)
    seconds = lambda text: datetime.fromisoformat(text).timestamp()  # noqa: E731
    return [(seconds(started[job]), seconds(t)) for t, job in ended]


def test_a_failing_part_is_recorded_the_others_finish_and_at_most_jobs_run_at_once(tmp_path, toy, monkeypatch):
    monkeypatch.setenv("DYNSIM_TOY_FAIL_LR", "0.05")
    monkeypatch.setenv("DYNSIM_TOY_HOLD_S", "3")
    config = _toy(tmp_path, kind="local", jobs=2)
    config = with_overrides(config, {"run": {"seed_chunk": 1}})  # 3 rates x 2 chunks = 6 parts
    with pytest.raises(PartsUnfinished, match=r"2 part\(s\) failed .*the toy fails at lr 0.05") as raised:
        run_sweep(toy, config)
    assert raised.value.failed == ["lr_0.05_seeds_0-0", "lr_0.05_seeds_1-1"] and raised.value.lost == []
    run_dir = Path(config.run.out)
    record = failure(run_dir, "lr_0.05_seeds_0-0")
    assert record["job"] == job_of(run_dir, "lr_0.05_seeds_0-0")["job_id"] and record["host"]
    assert record["error"].splitlines()[-1] == "ValueError: the toy fails at lr 0.05, as DYNSIM_TOY_FAIL_LR asks"
    assert sorted(p.stem for p in (run_dir / "parts").glob("*.done")) == [
        "lr_0.025_seeds_0-0",
        "lr_0.025_seeds_1-1",
        "lr_0.1_seeds_0-0",
        "lr_0.1_seeds_1-1",
    ]
    # the cap: never more than two jobs running, and two at some time (each part holds 3 s)
    intervals = _intervals(run_log(config))
    assert len(intervals) == 6
    overlap = max(sum(s <= t < e for s, e in intervals) for t, _ in intervals)
    assert overlap == 2, intervals
    status = run_main("status", str(run_dir))
    assert status.returncode == 0 and "4 done, 2 failed" in status.stdout and "ValueError" in status.stdout
    # a rerun skips the failed parts: nothing is submitted, and it still says so
    again = run_main("sweep", "--system", "toy", "--out", str(run_dir), "--seeds", "2", "--set", "run.seed_chunk=1")
    assert again.returncode == 1 and "--retry-failed" in again.stderr
    assert run_log(config).count("submitted") == 6
    monkeypatch.delenv("DYNSIM_TOY_FAIL_LR")
    monkeypatch.setenv("DYNSIM_TOY_HOLD_S", "0")
    dataset = run_sweep(toy, config, retry_failed=True)
    assert dataset.sizes["lr"] == 3 and failure(run_dir, "lr_0.05_seeds_0-0") is None


def _worker_of(job_id: str) -> int:
    """The Python process that runs a local job's task: the last of the chain the job's process
    (a shell running its setup lines) starts (submitit's controller, then the task)."""
    pid = int(job_id)
    while children := Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        assert len(children) == 1, children
        pid = int(children[0])
    return pid


def test_a_killed_worker_loses_only_its_part_and_the_rerun_submits_only_that(tmp_path, toy, monkeypatch):
    monkeypatch.setenv("DYNSIM_TOY_HOLD_S", "3")
    config = _toy(tmp_path, kind="local", jobs=3)
    run_dir = Path(config.run.out)
    victim = "lr_0.05_seeds_0-1"

    def kill_mid_part():  # once the victim's job has begun its part (its first log line)
        wait_until(lambda: job_of(run_dir, victim) is not None)
        job = job_of(run_dir, victim)["job_id"]
        wait_until(lambda: f"job {job} on" in run_log(config))
        os.kill(_worker_of(job), signal.SIGKILL)

    killer = threading.Thread(target=kill_mid_part)
    killer.start()
    with pytest.raises(PartsUnfinished, match=r"1 part\(s\) did not finish \(lr_0.05_seeds_0-1\)") as raised:
        run_sweep(toy, config)
    killer.join()
    assert raised.value.lost == [victim] and raised.value.failed == []
    assert f"without ['{victim}']" in run_log(config)  # the job's end is logged with its log's tail
    status = run_main("status", str(run_dir))
    assert "2 done, 1 lost" in status.stdout
    monkeypatch.setenv("DYNSIM_TOY_HOLD_S", "0")
    dataset = run_sweep(toy, config)
    assert "start: 1 of 3 parts to run" in run_log(config) and run_log(config).count("submitted") == 4
    reference = run_sweep(toy, with_overrides(config, {"run": {"out": str(tmp_path / "inline"), "executor": {}}}))
    same_bits(dataset, reference)


def test_a_preempted_local_job_is_requeued_and_resumes_from_its_finished_parts(tmp_path, toy, monkeypatch):
    monkeypatch.setenv("DYNSIM_TOY_HOLD_S", "2")
    config = _toy(tmp_path, kind="local", parts_per_job=3)  # one job runs the three parts in turn
    config = with_overrides(config, {"run": {"values": [0.1], "seeds": 3, "seed_chunk": 1}})
    check_preemption(toy, config, lambda job: os.kill(_worker_of(job), signal.SIGUSR2))
    run_dir = Path(config.run.out)
    logs = "".join(path.read_text() for path in (run_dir / ".submitit").glob("*_0_log.*"))
    assert "this job is preempted" in logs and "Requeued job" in logs


def test_the_debug_executor_runs_jobs_in_this_process(tmp_path, toy):
    config = _toy(tmp_path, kind="debug")
    dataset = run_sweep(toy, config)
    same_bits(dataset, run_sweep(toy, with_overrides(config, {"run": {"out": str(tmp_path / "b"), "executor": {}}})))
    assert "job DEBUG_" in run_log(config) and "JAX_PLATFORMS" in run_log(config)


def test_executor_options_are_validated_and_never_change_the_fingerprint(tmp_path, toy, monkeypatch):
    config = _toy(tmp_path)
    slurm = with_overrides(config, {"run": {"executor.kind": "slurm", "executor.slurm_args": ["account=a"]}})
    assert fingerprint(slurm) == fingerprint(config) and slurm.run.executor.slurm_args == ("account=a",)
    for bad, message in [
        ({"kind": "cluster"}, "run.executor.kind = 'cluster' is invalid: must be one of 'inline', 'local'"),
        ({"jobs": 0}, "run.executor.jobs = 0 is invalid: must be >= 1"),
        ({"slurm_args": ["account"]}, r"run.executor.slurm_args\[0\] = 'account' is invalid: must look like KEY=VALUE"),
        ({"setup": "module load cuda"}, "run.executor.setup = 'module load cuda' is invalid: must be a list"),
        ({"gpus_per_jb": 1}, "unknown key run.executor.gpus_per_jb; did you mean run.executor.gpus_per_job"),
    ]:
        with pytest.raises(ConfigError, match=message):
            with_overrides(config, {"run": {"executor": bad}})
    with pytest.raises(ConfigError, match="--detach needs 'slurm'"):
        run_sweep(toy, with_overrides(config, {"run": {"executor.kind": "local"}}), detach=True)
    with pytest.raises(ConfigError, match="gpus_per_job = 0 is invalid: must be >= 1 with run.device = 'gpu'"):
        gpu = {"executor.kind": "local", "executor.gpus_per_job": 0, "device": "gpu"}
        run_sweep(toy, with_overrides(config, {"run": gpu}))
    monkeypatch.setattr("dynsim.engine.executors.shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match="no sbatch on PATH"):
        run_sweep(toy, slurm)
    assert not (tmp_path / "run").exists()  # every refusal comes before anything is written


def test_the_command_line_maps_executor_options_onto_the_config(tmp_path, toy):
    out = tmp_path / "cli"
    args = ["sweep", "--system", "toy", "--seeds", "2", "--out", str(out), "--quiet", "--executor", "debug"]
    args += ["--jobs", "3", "--slurm-arg", "qos=high", "--setup", "module load cuda", "--time-min", "5"]
    assert run_main(*args).returncode == 0
    stored = dynsim.load_config(out / "config.toml").run.executor
    assert (stored.kind, stored.jobs, stored.slurm_args, stored.setup, stored.time_min) == (
        "debug",
        3,
        ("qos=high",),
        ("module load cuda",),
        5,
    )
    status = run_main("status", str(out))
    assert status.returncode == 0 and "3 done" in status.stdout
    assert run_main("cancel", str(out)).stdout.strip() == "cancelled 0 job(s)"


def test_jobs_ask_for_gpus_once_and_cpu_jobs_pin_jax_to_the_cpu(tmp_path):
    from dynsim.engine.executors import gpus_per_job, has_gpus, job_environment

    def config(**run):
        return with_overrides(ToyConfig(), {"run": run})

    cpu = config(**{"executor.kind": "slurm"})
    assert (gpus_per_job(cpu), has_gpus(cpu), job_environment(cpu, False)["JAX_PLATFORMS"]) == (0, False, "cpu")
    gpu = config(device="gpu", **{"executor.kind": "slurm"})
    assert (gpus_per_job(gpu), has_gpus(gpu), "JAX_PLATFORMS" in job_environment(gpu, False)) == (1, True, False)
    site = config(device="gpu", **{"executor.kind": "slurm", "executor.slurm_args": ["gres=gpu:a100:1"]})
    assert (gpus_per_job(site), has_gpus(site)) == (0, True)  # the site's gres replaces --gpus-per-node
    shared = job_environment(config(device="gpu", **{"executor.kind": "local"}), shared_gpu=True)
    assert shared["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert job_environment(cpu, False)["JAX_ENABLE_X64"] == "1"  # as this process (the suite runs in float64)


def test_a_comparison_and_its_floor_run_give_the_inline_bits_as_jobs(tmp_path):
    # spectral over the batch size: the floor run (gradient descent) is a configuration of its own
    args = ["compare", "--system", "spectral", "--quiet", "--set", "train.duration=10.0", "--set", "run.seeds=2"]
    args += ["--set", "run.record_every=5.0", "--set", "run.axis=batch", "--set", "run.values=[4, 16]"]
    for out, executor in [(tmp_path / "inline", "inline"), (tmp_path / "debug", "debug")]:
        assert run_main(*args, "--out", str(out), "--executor", executor).returncode == 0
    assert (tmp_path / "debug" / "parts" / "floor_batch_inf_seeds_0-1.job").is_file()
    same_bits(dynsim.load(tmp_path / "debug"), dynsim.load(tmp_path / "inline"))
    assert (tmp_path / "debug" / "comparison.csv").read_text() == (tmp_path / "inline" / "comparison.csv").read_text()
