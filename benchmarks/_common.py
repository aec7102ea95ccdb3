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
import jax.numpy as jnp

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


def clock(fn) -> float:
    """Wall seconds of one call of ``fn`` (it blocks until its work is done)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(programs: dict, rounds: int) -> dict:
    """Seconds of ``rounds`` runs of each program (each call returns its own timed seconds), one of each
    per round."""
    seconds = {name: [] for name in programs}
    for _ in range(rounds):
        for name, call in programs.items():
            seconds[name].append(call())
    return seconds


def matmul_gflops(m: int, inner: int, n: int, dtype=jnp.float32, steps: int = 50) -> float:
    """GFLOP/s of an ``m × inner`` by ``inner × n`` product, ``steps`` of them in one ``lax.scan`` (a scalar
    carried through the smaller operand keeps each product in the loop); the best of 5 runs, as a ceiling
    (a busy machine only ever slows a run)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (m, inner), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (inner, n), dtype)

    def run(a, b):
        def one(c, _):
            product = (a + c) @ b if m * inner <= inner * n else a @ (b + c)
            return c + product[0, 0] * 1e-9, None

        return jax.lax.scan(one, jnp.zeros((), dtype), None, length=steps)[0]

    seconds = min(timed(jax.jit(run), a, b, repeats=5))
    return 2 * m * inner * n * steps / seconds / 1e9


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


def publish(name: str, record: dict, lines: list[str], table: str) -> None:
    """Print ``lines`` and ``table`` as one markdown text and write it with ``record`` (:func:`write_record`)."""
    text = "\n\n".join([*lines, table])
    print(text)
    print(f"record: {write_record(name, record, text)}")
