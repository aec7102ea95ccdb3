"""Shared benchmark helpers: timing with warm-up, the machine description, result records.

Every benchmark writes two files per run under ``benchmarks/results/``: a JSON record
(``<name>_<timestamp>.json``: every figure, the machine, the time) and the same run as a
markdown page (``<name>_<timestamp>.md``: the machine and the tables it printed).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax

RESULTS = Path(__file__).parent / "results"


def timed(fn, *args, repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn(*args)`` after one warm-up call (outputs blocked on)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return times


def summary(seconds: list[float]) -> dict:
    """Median, min and max of a list of timings, in seconds."""
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds)}


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """CPU model and cores, Python, jax/jaxlib (and torch, if installed) versions, JAX's devices."""
    import jaxlib

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "torch": torch_version,
        "device_kind": jax.devices()[0].device_kind,
        "devices": [str(d) for d in jax.devices()],
    }


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table; the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ratio_text(value: float) -> str:
    """A ratio for a table: three significant digits, without an exponent."""
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def target(name: str, value: float, bound: float, shown: str | None = None, above: bool = True) -> dict:
    """A performance target: ``value`` against ``bound`` (at least, or with ``above=False`` at most)."""
    holds = value >= bound if above else value <= bound
    shown = shown or f"{ratio_text(value)}x"
    return {
        "name": name,
        "value": value,
        "holds": holds,
        "line": f"- target: {name}: {shown} -> {'holds' if holds else 'NOT MET'}",
    }


def write_record(name: str, record: dict, markdown: str) -> Path:
    """Write ``record`` (plus time and machine) as JSON and ``markdown`` (plus the machine) as a page.

    Returns the JSON path; the page sits beside it with the suffix ``.md``.
    """
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    about = machine()
    full = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": about, **record}
    path = RESULTS / f"{name}_{stamp}.json"
    path.write_text(json.dumps(full, indent=2))
    described = ", ".join(f"{key} {value}" for key, value in about.items() if key != "devices")
    path.with_suffix(".md").write_text(f"# {name}, {full['time']}\n\nMachine: {described}.\n\n{markdown}\n")
    return path
