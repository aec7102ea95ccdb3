"""Helpers shared by test modules (tests/ is on the path: pytest puts conftest.py's folder there)."""

import contextlib
import io
import os
import signal
import subprocess
import sys
import time


def kill_when_parts_are_done(args, out, parts: int, timeout: float = 240) -> int:
    """Start ``python -m dynsim *args --out out``, SIGKILL it once ``parts`` parts are done (or it ends,
    or ``timeout`` passes), and return how many parts were done."""
    process = subprocess.Popen([sys.executable, "-m", "dynsim", *args, "--out", str(out)])
    deadline = time.time() + timeout
    while len(list((out / "parts").glob("*.done"))) < parts and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return len(list((out / "parts").glob("*.done")))


def run_main(*args) -> subprocess.CompletedProcess:
    """``dynsim *args`` run by the console script's entry point in this process (no interpreter to
    start, programs already compiled are reused): its exit status and what it printed."""
    from dynsim.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["dynsim", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exit:
        code = exit.code
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def reproduce_quick(target: str, out, timeout: float = 900) -> None:
    """Run ``python -m dynsim reproduce <target> --quick --out out`` in a fresh process, as a user
    does, and fail with its error output unless it exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "dynsim", "reproduce", target, "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr


def same_bits(a, b) -> None:
    """Fail unless two datasets hold the same variables with the same values, bit for bit."""
    import numpy as np

    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def wait_until(condition, timeout: float = 180.0) -> None:
    """Poll ``condition()`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def run_log(config) -> str:
    """The ``run.log`` of the run directory of ``config``."""
    from pathlib import Path

    return (Path(config.run.out) / "run.log").read_text()


def check_preemption(system, config, preempt) -> None:
    """Run the sweep of ``config`` (three parts in one job) while ``preempt(job_id)`` interrupts
    that job once its first part is done; check that the job was requeued and started again, and
    that no part ran twice."""
    import threading
    from pathlib import Path

    from dynsim.engine.results import job_of
    from dynsim.engine.sweep import parts, run_sweep

    run_dir = Path(config.run.out)
    names = [part.name for part in parts(system, config)]
    assert len(names) == 3

    def preempt_after_first_part():
        wait_until(lambda: (run_dir / "parts" / f"{names[0]}.done").exists())
        preempt(job_of(run_dir, names[0])["job_id"])

    preempter = threading.Thread(target=preempt_after_first_part)
    preempter.start()
    dataset = run_sweep(system, config)
    preempter.join()
    log = run_log(config)
    assert log.count("submitted") == 1 and log.count(" on ") == 2  # one job, started again after its requeue
    assert all(log.count(f"done: {name} ") == 1 for name in names)  # the finished part was not run again
    assert dataset.sizes["seed"] == 3
