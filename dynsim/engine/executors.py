"""Where a sweep's parts run when not inline: local processes, SLURM job arrays, or in this process
through submitit (``debug``), all driven by submitit (facebookincubator/submitit).

The run directory stays the only record of truth. A part is finished when its ``.done`` marker
exists, whichever job wrote it; ``parts/<name>.job`` names the job submitted for it (written at
submission; read by ``dynsim status`` and ``dynsim cancel``, and by a rerun, which re-attaches to
a SLURM job still queued or running instead of submitting it twice); ``parts/<name>.failed``
holds the error of a part that raised. Jobs are disposable: one that vanishes (killed, cancelled,
out of memory, node lost) leaves its parts missing, and the next run submits them again.

A job runs :class:`PartsJob`: it builds the configuration from its tables, skips the parts done
already (so a job that is requeued after a preemption or a timeout resumes), and runs the rest one
after another, recording a part that raises and going on. dynsim reads back from a job only the
run directory and, for a lost job, its state and the tail of its log; the results travel as
netCDF. (submitit itself carries the callable to the job as a cloudpickle file in
``RUN/.submitit/``, which this user wrote at submission, in a directory only this user can read.)

Each job sets its JAX environment before Python starts (submitit's ``setup`` lines):
``JAX_PLATFORMS=cpu`` for a job without GPUs, ``JAX_ENABLE_X64`` as in this process (results
do not depend on the executor), ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` when local jobs share a
GPU. The first job of each compiled program (one point of the axis and chunk size) runs before
the others, so that they load the program from the compile cache instead of all compiling it.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import jax
import submitit
from submitit.core.utils import FailedJobError, FailedSubmissionError

from .config import ConfigError, build_config, fail, with_overrides
from .results import FLOOR_PREFIX, failure, failure_line, job_of, log, part_done, write_failure, write_job
from .sweep import parts, run_part
from .system import System

POLL_S = 0.5  # how often a waiting sweep looks for finished parts and jobs
SUBMITIT_DIR = ".submitit"


GPU_ARGS = frozenset({"gres", "gpus", "gpus-per-node", "gpus-per-task", "gpus_per_node", "gpus_per_task"})


def site_gpus(config) -> bool:
    """Whether a SLURM job's ``run.executor.slurm_args`` ask for GPUs themselves (``gres=gpu:a100:1``,
    for sites that want ``--gres``): dynsim then adds no GPU request of its own."""
    executor = config.run.executor
    return executor.kind == "slurm" and any(arg.split("=", 1)[0].strip() in GPU_ARGS for arg in executor.slurm_args)


def gpus_per_job(config) -> int:
    """The GPUs each job asks for: ``run.executor.gpus_per_job``, by default 1 for ``run.device =
    "gpu"``; 0 when the site's own ``slurm_args`` ask for them."""
    chosen = config.run.executor.gpus_per_job
    if site_gpus(config):
        return 0
    return (1 if config.run.device == "gpu" else 0) if chosen is None else chosen


def has_gpus(config) -> bool:
    """Whether each job is given GPUs (by ``gpus_per_job`` or by the site's ``slurm_args``)."""
    return gpus_per_job(config) > 0 or site_gpus(config)


def check_executor(config, detach: bool = False) -> None:
    """Refuse, before anything runs, executor options that cannot work here.

    Raises:
        ConfigError: ``detach`` without ``slurm``; ``slurm`` without ``sbatch`` on PATH; a GPU
            device with jobs that get no GPU.
    """
    executor = config.run.executor
    if detach and executor.kind != "slurm":
        fail(
            "run.executor.kind",
            executor.kind,
            "--detach needs 'slurm' (local jobs are throttled by the process that waits for them)",
        )
    if executor.kind == "slurm" and shutil.which("sbatch") is None:
        fail("run.executor.kind", "slurm", "no sbatch on PATH: run dynsim on a SLURM login node, or use 'local'")
    if executor.kind in ("local", "slurm") and config.run.device == "gpu" and not has_gpus(config):
        fail("run.executor.gpus_per_job", 0, "must be >= 1 with run.device = 'gpu' (each job is given its own GPUs)")


def job_environment(config, shared_gpu: bool) -> dict[str, str]:
    """Environment variables a job sets before Python (and JAX) start."""
    environment = {"JAX_ENABLE_X64": "1" if jax.config.jax_enable_x64 else "0"}
    if not has_gpus(config):
        environment["JAX_PLATFORMS"] = "cpu"  # else JAX initialises every GPU the node shows
    if shared_gpu:
        environment["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return environment


def _setup_lines(config, shared_gpu: bool) -> list[str]:
    exports = [f"export {key}={shlex.quote(value)}" for key, value in job_environment(config, shared_gpu).items()]
    return exports + list(config.run.executor.setup)


def _this_job() -> str:
    """The id of the submitit job this process runs (``""`` outside one)."""
    try:
        return str(submitit.JobEnvironment().job_id)
    except RuntimeError:
        return ""


class PartsJob(submitit.helpers.Checkpointable):
    """One job: run the named parts of a configuration that are not done yet, one after another.

    Requeued as it is after a preemption or a timeout (submitit's checkpoint), it then skips the
    parts finished before. A part that raises is recorded (``parts/<name>.failed``: job id, host,
    the error's last lines) and the next one runs; with ``record_failures=False`` (``debug``) the
    error propagates, so that pdb can open it.
    """

    def __init__(self, system: System, tables: dict, names: list[str], floor: bool, record_failures: bool = True):
        self.system, self.tables, self.names, self.floor = system, tables, names, floor
        self.record_failures = record_failures

    def __call__(self) -> None:
        config = build_config(self.system.config, self.tables)
        run_dir = Path(config.run.out)
        todo = {part.name: part for part in parts(self.system, config, self.floor)}
        axis = self.system.axis(config).name
        job, host = _this_job(), socket.gethostname()
        log(
            run_dir,
            f"job {job} on {host}: JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS', 'unset')}, devices {jax.devices()}",
        )
        for name in self.names:
            if part_done(run_dir, name):
                continue
            try:
                run_part(self.system, run_dir, todo[name], axis, job=f" (job {job})")
            except Exception as err:  # noqa: BLE001 (recorded with its traceback; the next part runs)
                if not self.record_failures:
                    raise
                tail = "".join(traceback.format_exception(err)).strip().splitlines()[-12:]
                write_failure(run_dir, name, job=job, host=host, error="\n".join(tail))
                log(run_dir, f"failed: {name} (job {job} on {host}): {tail[-1]}")


def program_groups(todo: list, per_job: int) -> tuple[list[list], list[list]]:
    """The jobs of ``todo`` in two waves: first one job per compiled program, then the rest.

    A program is a point of the axis and a chunk size (of the sweep or of the floor run); a job
    holds up to ``per_job`` parts of one program. The first wave warms the compile cache.
    """
    programs: dict[tuple, list] = {}
    for part in todo:
        key = (part.name.startswith(FLOOR_PREFIX), repr(part.value), part.count)
        programs.setdefault(key, []).append(part)
    jobs = [[group[i : i + per_job] for i in range(0, len(group), per_job)] for group in programs.values()]
    return [first for first, *_ in jobs], [job for _, *rest in jobs for job in rest]


@dataclasses.dataclass
class _Watch:
    """What a waiting sweep knows of its jobs: job -> its parts, and the parts already reported done."""

    jobs: dict = dataclasses.field(default_factory=dict)
    reported: set = dataclasses.field(default_factory=set)


def _submitter(kind: str, folder: Path, config, shared_gpu: bool):
    """A submitit executor for ``kind``, its parameters set from ``config.run.executor``."""
    options = config.run.executor
    if kind == "debug":
        return submitit.DebugExecutor(folder)
    setup = _setup_lines(config, shared_gpu)
    if kind == "local":
        executor = submitit.LocalExecutor(folder, max_num_timeout=options.max_requeue)
        executor.update_parameters(timeout_min=options.time_min, gpus_per_node=gpus_per_job(config), setup=setup)
        return executor
    executor = submitit.SlurmExecutor(folder, max_num_timeout=options.max_requeue)
    parameters = {
        "job_name": f"dynsim-{Path(config.run.out).name}",
        "time": options.time_min,
        "setup": setup,
        "array_parallelism": options.jobs or 256,
        "partition": options.partition,
        "cpus_per_task": options.cpus_per_job,
        "mem": options.mem_gb,
        "gpus_per_node": gpus_per_job(config) or None,
        "additional_parameters": dict(arg.split("=", 1) for arg in options.slurm_args),
    }
    executor.update_parameters(**{key: value for key, value in parameters.items() if value is not None})
    return executor


def _submit(executor, jobs: list[list], system: System, config, floor: bool, record: bool, **extra) -> dict:
    """Submit one job per list of parts (a SLURM array when there are several); record each part's job."""
    if extra:
        executor.update_parameters(**extra)
    tables = config.to_dict()
    calls = [PartsJob(system, tables, [part.name for part in job], floor, record) for job in jobs]
    try:
        if len(calls) == 1:
            submitted = [executor.submit(calls[0])]
        else:
            with executor.batch():
                submitted = [executor.submit(call) for call in calls]
    except (FailedSubmissionError, FailedJobError, subprocess.CalledProcessError) as err:  # sbatch said no
        raise SubmissionRefused(
            f"SLURM refused the jobs: {_refusal(err)} (check the executor options: --partition, --gpus-per-job, "
            "--cpus-per-job, --mem-gb, --time-min, --slurm-arg)"
        ) from None
    run_dir = Path(config.run.out)
    kind = config.run.executor.kind
    for job, held in zip(submitted, jobs, strict=True):
        for part in held:
            write_job(run_dir, part.name, executor=kind, job_id=str(job.job_id), host=socket.gethostname())
    log(run_dir, f"submitted {len(submitted)} {kind} job(s): {', '.join(str(job.job_id) for job in submitted)}")
    return dict(zip(submitted, jobs, strict=True))


class SubmissionRefused(ConfigError):
    """The scheduler refused the jobs (``sbatch``'s own message says why)."""


def _refusal(err: Exception) -> str:
    """The scheduler's message in a submission error, without submitit's wrapping."""
    text = str(getattr(err, "output", b"") or b"")
    text = text.decode() if isinstance(text, bytes) else str(err)
    lines = [line.strip() for line in text.splitlines() if "error" in line.lower()]
    return " ".join(lines[-2:]) if lines else " ".join(str(err).split())[-400:]


def _state(job) -> str:
    try:
        return str(job.state).split()[0].upper()
    except Exception:  # noqa: BLE001 (no accounting: the state is unknown, not an error of the sweep)
        return "UNKNOWN"


def _log_tail(job, lines: int = 6) -> str:
    path = job.paths.stderr
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return f"no log at {path}"


def _settle(watch: _Watch, run_dir: Path, on_part: Callable, block: bool) -> None:
    """Report parts newly done; forget jobs that ended, logging the parts they left missing."""
    while True:
        for job, held in list(watch.jobs.items()):
            ended = job.done()  # first: a part written just before the job ended is seen below
            for part in held:
                if part.name not in watch.reported and part_done(run_dir, part.name):
                    watch.reported.add(part.name)
                    on_part(part)
            if ended:
                missing = [part.name for part in held if not part_done(run_dir, part.name)]
                if missing:
                    log(run_dir, f"job {job.job_id} ended ({_state(job)}) without {missing}: {_log_tail(job)}")
                del watch.jobs[job]
        if not block or not watch.jobs:
            return
        time.sleep(POLL_S)


def queued() -> dict[str, str]:
    """This user's SLURM jobs still queued or running, by job id (array tasks one by one): their
    state. From ``squeue``, which knows a job the moment it is submitted (accounting lags)."""
    listing = subprocess.run(["squeue", "-h", "-r", "--me", "-o", "%i %T"], capture_output=True, text=True)
    if listing.returncode != 0:
        raise SubmissionRefused(f"squeue failed, so the run's jobs cannot be checked: {listing.stderr.strip()}")
    jobs = dict(line.split() for line in listing.stdout.splitlines() if line.strip())
    return {job: state for job, state in jobs.items() if state != "COMPLETING"}  # (ending: runs no more parts)


def attached_jobs(run_dir: Path, todo: list) -> dict:
    """SLURM jobs of an earlier run still queued or running, with the parts of ``todo`` they hold."""
    live = queued()
    jobs: dict = {}
    by_id: dict[str, object] = {}
    for part in todo:
        record = job_of(run_dir, part.name)
        if record is None or record.get("executor") != "slurm" or record["job_id"] not in live:
            continue
        job_id = record["job_id"]
        if job_id not in by_id:
            by_id[job_id] = submitit.SlurmJob(folder=run_dir / SUBMITIT_DIR, job_id=job_id)
        jobs.setdefault(by_id[job_id], []).append(part)
    return jobs


def run_elsewhere(system: System, config, todo: list, *, floor: bool, detach: bool, on_part: Callable) -> bool:
    """Run the parts ``todo`` of ``config`` as jobs of ``config.run.executor`` and wait for them.

    Returns:
        ``True`` when detached (submitted, not waited for), else ``False`` once every job ended.

    Raises:
        SubmissionRefused: the scheduler refused the jobs (say, GPUs the partition has not).
    """
    options = config.run.executor
    run_dir = Path(config.run.out).absolute()
    config = with_overrides(config, {"run": {"out": str(run_dir)}})  # jobs may start elsewhere
    folder = run_dir / SUBMITIT_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    watch = _Watch()
    if options.kind == "slurm":
        watch.jobs = attached_jobs(run_dir, todo)
        if watch.jobs:
            ids = sorted({str(job.job_id) for job in watch.jobs})
            log(run_dir, f"re-attached to {len(ids)} job(s) still queued or running: {', '.join(ids)}")
        held = {part.name for group in watch.jobs.values() for part in group}
        todo = [part for part in todo if part.name not in held]
    cap = options.jobs or (1 if options.kind == "debug" else (os.cpu_count() or 1))
    shared_gpu = options.kind == "local" and has_gpus(config) and cap > 1
    executor = _submitter(options.kind, folder, config, shared_gpu)
    record = options.kind != "debug"
    first, rest = program_groups(todo, options.parts_per_job)
    if not first and not watch.jobs:
        return False
    if options.kind == "slurm":  # the rest waits for the first wave in SLURM's queue
        if first:
            warm = _submit(executor, first, system, config, floor, record)
            watch.jobs.update(warm)
            if rest:
                after = "afterany:" + str(next(iter(warm)).job_id).split("_")[0]  # the whole first array
                watch.jobs.update(_submit(executor, rest, system, config, floor, record, dependency=after))
        if detach:
            return True
        _settle(watch, run_dir, on_part, block=True)
        return False
    try:
        for wave in (first, rest):
            queue = list(wave)
            while queue or watch.jobs:
                while queue and len(watch.jobs) < cap:
                    watch.jobs.update(_submit(executor, [queue.pop(0)], system, config, floor, record))
                _settle(watch, run_dir, on_part, block=False)
                if watch.jobs:
                    time.sleep(POLL_S)
    except KeyboardInterrupt:  # local jobs would outlive this process: stop them with it
        for job in watch.jobs:
            job.cancel(check=False)
        raise
    return False


def _local_alive(record: dict) -> bool:
    """Whether the local job of ``record`` (its controller's process id) still runs on this host."""
    if record.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(record["job_id"]), 0)
    except (OSError, ValueError):
        return False
    return True


def part_state(run_dir: Path, name: str, live: dict[str, str] | None) -> tuple[str, str]:
    """``(state, detail)`` of part ``name``: ``done``, ``failed`` (the error's last line),
    ``pending``/``running``/... (the SLURM state, or ``running`` for a local job, with the job id),
    ``lost`` (its job ended without it: a rerun submits it again) or ``missing`` (never submitted).

    ``live``: :func:`queued`, read once for all the parts (``None`` where there is no SLURM).
    """
    if part_done(run_dir, name):
        return "done", ""
    record = failure(run_dir, name)
    if record is not None:
        return "failed", f"job {record.get('job')} on {record.get('host')}: {failure_line(record)}"
    record = job_of(run_dir, name)
    if record is None:
        return "missing", ""
    job_id, executor = record["job_id"], record.get("executor")
    if executor == "slurm" and live is not None and job_id in live:
        return live[job_id].lower(), f"job {job_id}"
    if executor == "local" and _local_alive(record):
        return "running", f"local job {job_id}"
    return "lost", f"{executor} job {job_id} ended without it"


def live_jobs(run_dir: Path, names: list[str]) -> dict[str, str] | None:
    """:func:`queued` when a part of ``names`` was submitted to SLURM, else ``None``."""
    records = [job_of(run_dir, name) for name in names]
    return queued() if any(r is not None and r.get("executor") == "slurm" for r in records) else None


def cancel_run(run_dir: Path, names: list[str]) -> list[str]:
    """Cancel the jobs still queued or running for the parts ``names``; returns their ids.

    SLURM jobs get ``scancel``; a local job (on this host) gets SIGINT, on which submitit stops
    its processes. Their parts then count as lost, and the next run submits them again.
    """
    live = live_jobs(run_dir, names)
    slurm, local = set(), set()
    for name in names:
        state, _ = part_state(run_dir, name, live)
        record = job_of(run_dir, name)
        if state in ("done", "failed", "missing", "lost") or record is None:
            continue
        (slurm if record["executor"] == "slurm" else local).add(record["job_id"])
    if slurm:
        subprocess.run(["scancel", *sorted(slurm)], check=True, capture_output=True)
    for job_id in local:
        os.kill(int(job_id), signal.SIGINT)
    cancelled = sorted(slurm | local)
    if cancelled:
        log(run_dir, f"cancelled job(s) {', '.join(cancelled)}")
    return cancelled
