"""Shared benchmark helpers: timing with warm-up, the machine description, result records."""

from __future__ import annotations

import json
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


def machine() -> dict:
    """CPU, Python, jax/jaxlib versions and JAX's devices."""
    import jaxlib

    return {
        "cpu": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "devices": [str(d) for d in jax.devices()],
    }


def write_record(name: str, record: dict) -> Path:
    """Write ``record`` (plus time and machine) to ``results/<name>_<timestamp>.json``; returns the path."""
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    full = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), **record}
    path = RESULTS / f"{name}_{stamp}.json"
    path.write_text(json.dumps(full, indent=2))
    return path
