"""Executors: one sweep of 16 parts run inline, as local processes (``--jobs 2``) and, where a SLURM
answers, as a SLURM array (``--jobs 2``), each a whole ``dynsim sweep`` process, as a user runs it.

The sweep: the two-tower system at r = n = 2, widths 8 and 16, batch 8, one stage of training
time 200, 16 seeds in chunks of 2 (two programs, eight parts each). The compile cache is warmed
first by one inline run, so that every row loads its programs instead of compiling them (jobs
share the cache with the process that submits them).

Rows: inline; local and SLURM jobs with one part each (16 jobs) and with eight parts of one width
each (2 jobs, each tracing and loading its program once). Reported per row: wall time (median of
the repeats, min..max), the ratio to inline, the seconds the parts themselves ran (sum of
run.log's ``done: ... in X s``), the overhead per job (``jobs × wall − part seconds``, spread over
the jobs: the slot time a job spends outside its parts, process start and import included), and
the latency from the first submission to the first finished part (file times of
``parts/*.job`` and ``parts/*.done``).
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import markdown_table, ratio_text, write_record

WIDTHS, SEEDS, CHUNK, JOBS = "8,16", 16, 2, 2


def command(out: Path, executor: str, per_job: int) -> list[str]:
    sweep = [sys.executable, "-m", "dynsim", "sweep", "--quiet", "--out", str(out), "--width", WIDTHS]
    sweep += ["--seeds", str(SEEDS), "--set", f"run.seed_chunk={CHUNK}", "--set", "loss.stages=[[0.5, 200.0]]"]
    sweep += ["--set", "data.r=2", "--set", "data.n=2", "--set", "train.batch=8", "--set", "run.record_every=4"]
    jobs = [] if executor == "inline" else ["--jobs", str(JOBS), "--parts-per-job", str(per_job)]
    return sweep + ["--executor", executor] + jobs


def run(out: Path, executor: str, per_job: int = 1) -> dict:
    start = time.perf_counter()
    result = subprocess.run(command(out, executor, per_job), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{executor} sweep failed:\n{result.stderr}")
    log = (out / "run.log").read_text()
    part_seconds = sum(float(s) for s in re.findall(r"done: \S+.* in ([0-9.]+) s", log))
    jobs = len({job for job in re.findall(r"job (\S+) on ", log)})
    record = {"wall": wall, "part_seconds": part_seconds, "jobs": jobs}
    submitted = [p.stat().st_mtime for p in (out / "parts").glob("*.job")]
    if submitted:
        first_done = min(p.stat().st_mtime for p in (out / "parts").glob("*.done"))
        record["first_result_s"] = first_done - min(submitted)
    return record


def slurm_reachable() -> bool:
    if shutil.which("sbatch") is None:
        return False
    nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return nodes.returncode == 0 and bool({"idle", "mixed"} & set(nodes.stdout.split()))


def main() -> int:
    rows_of = {"inline": ("inline", 1), "local, 1 part per job": ("local", 1), "local, 8 parts per job": ("local", 8)}
    if slurm_reachable():
        rows_of |= {"slurm, 1 part per job": ("slurm", 1), "slurm, 8 parts per job": ("slurm", 8)}
    repeats = 2
    records: dict[str, list[dict]] = {name: [] for name in rows_of}
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        run(scratch / "warm", "inline")  # fills the compile cache
        for repeat in range(repeats):
            for i, (name, (executor, per_job)) in enumerate(rows_of.items()):
                records[name].append(run(scratch / f"{i}-{repeat}", executor, per_job))
    inline = statistics.median(r["wall"] for r in records["inline"])
    rows = []
    for name, runs in records.items():
        walls = [r["wall"] for r in runs]
        wall = statistics.median(walls)
        parts = statistics.median(r["part_seconds"] for r in runs)
        jobs = runs[0]["jobs"]
        overhead = (JOBS * wall - parts) / jobs if jobs else float("nan")
        first = [r["first_result_s"] for r in runs if "first_result_s" in r]
        rows.append(
            [
                name,
                f"{wall:.1f} ({min(walls):.1f}..{max(walls):.1f})",
                ratio_text(wall / inline),
                f"{parts:.1f}",
                str(jobs) if jobs else "-",
                f"{overhead:.2f}" if jobs else "-",
                f"{statistics.median(first):.1f}" if first else "-",
            ]
        )
    header = ["executor", "wall s, median (min..max)", "/ inline", "part s", "jobs", "overhead s/job", "first result s"]
    table = markdown_table(header, rows)
    note = "" if len(rows_of) > 3 else "No SLURM answered here: its rows are missing (ci/slurm-up.sh starts one)."
    text = "\n".join([f"A sweep of 16 parts (widths {WIDTHS}, {SEEDS} seeds in chunks of {CHUNK}):", "", table, note])
    print(text)
    path = write_record("executors", {"records": records}, text)
    print(f"record: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
