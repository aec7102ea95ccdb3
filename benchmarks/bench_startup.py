"""First results: whole-process wall time of what a researcher runs, with a cold and a warm cache.

(a) a script that calls ``dynsim.ode.solve`` once (r = 64, n = 192, rtol 1e-8, atol 1e-10)
    against the same solve written with SciPy (``ode/reference.py``, ``solve_ivp`` DOP853, the
    same tolerances and save times), each a whole new Python process;
(b) ``dynsim sweep --ode`` on the built-in default configuration;
(c) ``python -c "import dynsim"``.

"cold" runs each process with a new, empty ``DYNSIM_CACHE_DIR``; "warm" with one that a previous
process filled; "off" with ``DYNSIM_CACHE=off`` (what every process paid before the cache).
Targets (issue 14): (a) warm at most 2.5 × the SciPy script; (b) warm at least 2 × faster than
cold. Medians (min..max) of the repeats; the runs of a row alternate with the other rows'.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import markdown_table, ratio_text, target, write_record

ROOT = Path(__file__).resolve().parents[1]
R, N, RTOL, ATOL = 64, 192, 1e-8, 1e-10

DYNSIM_SOLVE = f"""
import dynsim.ode
dynsim.ode.solve({{"data": {{"r": {R}, "n": {N}}}}}, rtol={RTOL}, atol={ATOL})
"""
# The default configuration's spectra (geometric, kappa 4), noise (0.3), stages and InfoNCE, as
# in benchmarks/bench_ode.py; the save times are dynsim's default grid, passed in a file.
SCIPY_SOLVE = f"""
import sys
import numpy as np
sys.path.insert(0, {str(ROOT / "ode")!r})
import reference
sigma, eta = reference.spectrum("geometric", 4.0, {R}), np.full({N}, 0.3)
times = np.load(sys.argv[1])
reference.solve(sigma, sigma, eta, eta, [(0.05, 60.0), (3.0, 1600.0)], 1.0, "infonce", True, times,
                rtol={RTOL}, atol={ATOL}, method="DOP853")
"""


def wall_time(command: list[str], env: dict) -> float:
    """Seconds from starting ``command`` to its exit (which must be 0)."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")
    return seconds


def environment(cache: str | Path | None) -> dict:
    """This process's environment with the cache at ``cache`` (``None``: ``DYNSIM_CACHE=off``)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DYNSIM_CACHE")}
    return env | ({"DYNSIM_CACHE": "off"} if cache is None else {"DYNSIM_CACHE_DIR": str(cache)})


def measure(rows: dict[str, tuple[list[str], str]], repeats: int, scratch: Path) -> dict[str, list[float]]:
    """``rows``: name -> (command, cache mode in cold | warm | off | none); interleaved repeats."""
    warm_dir = scratch / "warm"
    for command, mode in rows.values():  # fill the warm cache
        if mode == "warm":
            wall_time(command(scratch / "prime"), environment(warm_dir))
    seconds = {name: [] for name in rows}
    for repeat in range(repeats):
        for name, (command, mode) in rows.items():
            run = scratch / f"{name.split()[0]}-{mode}-{repeat}"
            cache = {"cold": run / "cache", "warm": warm_dir, "off": None, "none": None}[mode]
            seconds[name].append(wall_time(command(run / "out"), environment(cache)))
    return seconds


def shown(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}..{max(values):.2f})"


def main() -> int:
    python = sys.executable
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        import dynsim.ode  # the default save times, for the SciPy script

        times_file = scratch / "times.npy"
        np.save(times_file, dynsim.ode.solve({"data": {"r": 2, "n": 2}}).times)
        solve_rows = {
            f"(a) dynsim.ode.solve script, {mode}": (lambda out: [python, "-c", DYNSIM_SOLVE], mode)
            for mode in ("cold", "warm", "off")
        }
        solve_rows["(a) SciPy solve_ivp script"] = (lambda out: [python, "-c", SCIPY_SOLVE, str(times_file)], "none")
        import_rows = {
            "(c) import dynsim": (lambda out: [python, "-c", "import dynsim"], "warm"),
            "(c) import scipy.integrate (for scale)": (lambda out: [python, "-c", "import scipy.integrate"], "none"),
        }
        sweep_rows = {
            f"(b) dynsim sweep --ode, {mode}": (
                lambda out: [python, "-m", "dynsim", "sweep", "--ode", "--quiet", "--out", str(out)],
                mode,
            )
            for mode in ("cold", "warm")
        }
        seconds = measure(solve_rows, repeats=5, scratch=scratch)
        seconds |= measure(import_rows, repeats=5, scratch=scratch)
        seconds |= measure(sweep_rows, repeats=3, scratch=scratch)

    median = {name: statistics.median(values) for name, values in seconds.items()}
    scipy = median["(a) SciPy solve_ivp script"]
    warm_solve = median["(a) dynsim.ode.solve script, warm"]
    sweep_ratio = median["(b) dynsim sweep --ode, cold"] / median["(b) dynsim sweep --ode, warm"]
    targets = [
        target("(a) warm solve script / SciPy script", warm_solve / scipy, 2.5, above=False),
        target("(b) sweep --ode cold / warm", sweep_ratio, 2.0),
    ]
    table = markdown_table(
        ["process", "wall s, median (min..max)", "/ SciPy script"],
        [[name, shown(values), ratio_text(median[name] / scipy)] for name, values in seconds.items()],
    )
    text = "\n".join(["Whole-process wall time:", "", table, "", *(t["line"] for t in targets), ""])
    print(text)
    path = write_record("startup", {"seconds": seconds, "targets": targets}, text)
    print(f"record: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
