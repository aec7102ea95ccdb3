"""The infinite-width ODE: one dynsim solve beside SciPy, and batched solves per second.

Setting (issue 3): r = 64, n = 192 (a 576-dimensional state), the default two-stage InfoNCE
schedule [(0.05, 60), (3.0, 1600)], rtol = 1e-8, atol = 1e-10, saved on the default grid
(84 points). Both sides integrate the same field to the same tolerances:

- dynsim: ``dynsim.ode.solve`` (the whole public call: states, metrics, host overhead),
  Tsit5 and Dopri8, after compilation (compile time reported on its own);
- SciPy: ``ode/reference.py`` (``solve_ivp``, restarted at the stage boundary; states only),
  with RK45 (the same order as Tsit5) and DOP853 (the same method as Dopri8).

Scaling: one solve at r = 8 ... 128 with n = 3r, Tsit5 against RK45.

Batched throughput: ``dynsim.ode.solve_batch`` on a 32 × 32 grid of (kappa, stage-2 tau)
at the default r = 8, n = 24. Every figure is the median of several timed repetitions after
a warm-up, with min and max.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _common import markdown_table, ratio_text, summary, target, timed, write_record

import dynsim

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ode"))
import reference  # noqa: E402  (ode/reference.py, the independent SciPy implementation)

R, N, RTOL, ATOL = 64, 192, 1e-8, 1e-10
GRID = 32  # the batch is GRID × GRID configurations
SCALING_R = (8, 16, 32, 64, 128)


def single_solve(solver: str, repeats: int, r: int = R, n: int = N) -> dict:
    config = dynsim.load_config({"data": {"r": r, "n": n}})
    start = time.perf_counter()
    solution = dynsim.ode.solve(config, rtol=RTOL, atol=ATOL, solver=solver)
    first = time.perf_counter() - start
    seconds = timed(lambda: dynsim.ode.solve(config, rtol=RTOL, atol=ATOL, solver=solver), repeats=repeats)
    return {
        "name": f"dynsim.ode.solve ({solver})",
        **summary(seconds),
        "compile_s": first - statistics.median(seconds),
        "steps": solution.num_steps,
        "times": solution.times,
    }


def scipy_solve(method: str, times: np.ndarray, repeats: int, r: int = R, n: int = N) -> dict:
    sigma = reference.spectrum("geometric", 4.0, r)
    eta = np.full(n, 0.3)

    def run():
        return reference.solve(sigma, sigma, eta, eta, [(0.05, 60.0), (3.0, 1600.0)], 1.0, "infonce", True, times,
                               rtol=RTOL, atol=ATOL, method=method)  # fmt: skip

    return {"name": f"scipy solve_ivp ({method})", **summary(timed(run, repeats=repeats))}


def batch_configs() -> list:
    return [
        dynsim.load_config({"data": {"kappa": float(kappa)}, "loss": {"stages": [[0.05, 60.0], [float(tau), 1600.0]]}})
        for kappa in np.geomspace(1.5, 8.0, GRID)
        for tau in np.geomspace(0.5, 8.0, GRID)
    ]


def batch_solve(repeats: int) -> dict:
    configs = batch_configs()
    start = time.perf_counter()
    solution = dynsim.ode.solve_batch(configs)
    first = time.perf_counter() - start
    seconds = timed(lambda: dynsim.ode.solve_batch(configs), repeats=repeats)
    return {
        "configs": len(configs),
        **summary(seconds),
        "compile_s": first - statistics.median(seconds),
        "configs_per_s": len(configs) / statistics.median(seconds),
        "steps_min": int(solution.num_steps.min()),
        "steps_max": int(solution.num_steps.max()),
    }


def _ms(row: dict) -> str:
    return f"{row['median_s'] * 1e3:.3g} ms ({row['min_s'] * 1e3:.3g}..{row['max_s'] * 1e3:.3g})"


def main() -> int:
    tsit5, dopri8 = single_solve("tsit5", repeats=50), single_solve("dopri8", repeats=50)
    rk45 = scipy_solve("RK45", tsit5["times"], repeats=5)
    dop853 = scipy_solve("DOP853", tsit5["times"], repeats=5)
    ratios = {
        "RK45 / tsit5": rk45["median_s"] / tsit5["median_s"],
        "DOP853 / dopri8": dop853["median_s"] / dopri8["median_s"],
        "best scipy / best dynsim": min(rk45["median_s"], dop853["median_s"])
        / min(tsit5["median_s"], dopri8["median_s"]),
    }
    lines = [
        f"One solve: r = {R}, n = {N}, two stages, rtol = {RTOL:g}, atol = {ATOL:g} (median (min..max) after warm-up):",
        "",
        markdown_table(
            ["solver", "time", "steps", "compile s"],
            [[row["name"], _ms(row), row["steps"], f"{row['compile_s']:.2f}"] for row in (tsit5, dopri8)]
            + [[row["name"], _ms(row), "", ""] for row in (rk45, dop853)],
        ),
        "",
        *(f"speed-up {name}: {ratio_text(ratio)}x" for name, ratio in ratios.items()),
        "",
    ]

    scaling = []
    for r in SCALING_R:
        ours = single_solve("tsit5", repeats=20, r=r, n=3 * r)
        theirs = scipy_solve("RK45", ours.pop("times"), repeats=3, r=r, n=3 * r)
        scaling.append({"r": r, "n": 3 * r, "dynsim": ours, "scipy": theirs})
    lines += [
        "ODE cost versus r (n = 3r, Tsit5 against RK45, same tolerances):",
        "",
        markdown_table(
            ["r", "state size", "dynsim", "steps", "scipy", "scipy / dynsim"],
            [
                [
                    row["r"],
                    3 * row["r"] + 2 * row["n"],
                    _ms(row["dynsim"]),
                    row["dynsim"]["steps"],
                    _ms(row["scipy"]),
                    ratio_text(row["scipy"]["median_s"] / row["dynsim"]["median_s"]),
                ]
                for row in scaling
            ],
        ),  # fmt: skip
        "",
    ]

    batch = batch_solve(repeats=3)
    lines.append(
        f"solve_batch: {batch['configs']} configurations (r = 8, n = 24) in {_ms(batch)}, "
        f"{batch['configs_per_s']:.0f} configurations/s, steps {batch['steps_min']}..{batch['steps_max']}, "
        f"compile {batch['compile_s']:.2f} s"
    )
    best = ratios["best scipy / best dynsim"]
    targets = [
        target("one dynsim solve >= 10x faster than scipy", best, 10),
        target(
            f"{batch['configs']} configurations in < 2 s after compilation",
            batch["median_s"],
            2.0,
            f"{batch['median_s']:.2f} s",
            above=False,
        ),  # fmt: skip
    ]
    lines += ["", *(t["line"] for t in targets)]
    markdown = "\n".join(lines)
    print(markdown)
    for row in (tsit5, dopri8):
        row.pop("times")
    record = {"single": [tsit5, dopri8, rk45, dop853], "ratios": ratios, "scaling_r": scaling, "batch": batch,
              "targets": targets}  # fmt: skip
    print(f"written {write_record('ode', record, markdown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
