"""Finite-width SGD throughput: the ``param`` and ``gram`` backends side by side, against this
machine's matmul throughput, measured in one run.

Setting (issues 2 and 4): r + n = 64 (r = 16, n = 48, d = 64), batch B = 1024, float32, InfoNCE,
population normalization. Each backend runs its real single-seed program (``simulate_seed``:
``lax.scan`` over steps, divergence check, a record at the start and the end), compiled once
and timed as a whole; every figure is the median (min..max) of several timed runs after a
warm-up, divided by the step count, with compile time reported separately. Repetitions are
interleaved across widths (round robin), so a slow spell of the machine does not bias one
width against another. ``param`` runs up
to width 65536, ``gram`` (Bartlett ``K_0``) also at 10^6.

FLOP-counting rules (a multiply-add counts 2; element-wise work and reductions are not counted).

``param`` step, with q = r + n:
    similarity forward  s = f_A f_B^T                         2 B^2 m
    similarity backward df_A = ds f_B, df_B = ds^T f_A         2 * 2 B^2 m
    embeddings forward  x W^T, both towers                     2 * 2 B d m
    weight gradient     dW = draw^T x, both towers             2 * 2 B d m
    population norm     W P forward and backward, both towers  2 * 2 * 2 m d q
    inputs              x = u P^T, both towers                 2 * 2 B q d

``gram`` step, its irreducible work: the B × B similarity in latent space and the matching
contraction of its gradient,
    s = (u_A Q_AB) u_B^T                                       2 B^2 q
    dQ_AB = u_A^T (ds u_B)                                     2 B^2 q
(the remaining 2q × 2q products and B q^2 terms add under 10% at these sizes and are not counted).
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp
from _common import timed, write_record

import dynsim
from dynsim import _gram, _param
from dynsim._finite import plan_and_inputs

R, N, BATCH = 16, 48, 1024
PARAM_WIDTHS = (256, 1024, 4096, 16384, 65536)
GRAM_WIDTHS = (*PARAM_WIDTHS, 10**6)
PARAM_TARGET_WIDTH, RATIO_TARGET_WIDTH = 4096, 65536
SYSTEMS = {"param": _param, "gram": _gram}


def param_step_flops(width: int, batch: int = BATCH, d: int = R + N, q: int = R + N) -> float:
    """FLOPs of one ``param`` step by the rule in the module docstring."""
    return 3 * 2 * batch**2 * width + 2 * 2 * 2 * batch * d * width + 2 * 2 * 2 * width * d * q + 2 * 2 * batch * q * d


def gram_step_flops(batch: int = BATCH, q: int = R + N) -> float:
    """Irreducible FLOPs of one ``gram`` step by the rule in the module docstring."""
    return 2 * 2 * batch**2 * q


def matmul_gflops(n: int, k: int, repeats: int = 7) -> float:
    """Median float32 GFLOP/s of an ``n × k`` by ``k × n`` matmul."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, k), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (k, n), jnp.float32)
    seconds = statistics.median(timed(jax.jit(jnp.dot), a, b, repeats=repeats))
    return 2 * n * n * k / seconds / 1e9


def compiled_run(backend: str, width: int, steps: int):
    """One seed's compiled run of ``steps`` steps: ``(run, compile seconds)``, ``run()`` blocks."""
    lr = 0.01
    config = dynsim.load_config(
        {
            "data": {"r": R, "n": N},
            "train": {"batch": BATCH, "lr": lr},
            "loss": {"stages": [[1.0, steps * lr]]},
            "run": {"record_every": steps * lr},
        }
    )
    system = SYSTEMS[backend]
    plan, inputs = plan_and_inputs(config, width, jax.random.PRNGKey(0), system.resolve_init(config, width, "auto"))
    key = jax.random.PRNGKey(1)
    start = time.perf_counter()
    compiled = jax.jit(lambda k, i: system.simulate_seed(k, i, plan)).lower(key, inputs).compile()
    compile_seconds = time.perf_counter() - start
    jax.block_until_ready(compiled(key, inputs))  # warm-up
    return (lambda: jax.block_until_ready(compiled(key, inputs))), compile_seconds


def step_rates(backend: str, widths, steps_of, repeats: int) -> dict[int, dict]:
    """Steps/s per width (median, min, max over ``repeats``) and compile seconds.

    The repetitions are interleaved across widths (one run of every width per round), so
    that a slow spell of the machine touches every width alike and the ratios between
    widths stay fair.
    """
    runs = {m: compiled_run(backend, m, steps_of(m)) for m in widths}
    seconds: dict[int, list[float]] = {m: [] for m in widths}
    for _ in range(repeats):
        for m, (run, _) in runs.items():
            start = time.perf_counter()
            run()
            seconds[m].append(time.perf_counter() - start)
    return {
        m: {
            "backend": backend,
            "width": m,
            "steps_per_s": steps_of(m) / statistics.median(seconds[m]),
            "steps_per_s_min": steps_of(m) / max(seconds[m]),
            "steps_per_s_max": steps_of(m) / min(seconds[m]),
            "compile_s": runs[m][1],
        }
        for m in widths
    }


def _rate(row: dict | None) -> str:
    if row is None:
        return f"{'-':>24}"
    return f"{row['steps_per_s']:>9.2f} ({row['steps_per_s_min']:.2f}..{row['steps_per_s_max']:.2f})".rjust(24)


def main() -> int:
    ceiling = max(matmul_gflops(BATCH, 4096), matmul_gflops(2048, 2048))
    latent_matmul = matmul_gflops(BATCH, R + N)
    print(f"matmul throughput (float32, best of 1024x4096x1024 and 2048^3): {ceiling:.1f} GFLOP/s")
    print(f"matmul of the gram step's shape (1024x64x1024): {latent_matmul:.1f} GFLOP/s")
    param = step_rates("param", PARAM_WIDTHS, lambda m: max(2, 40960 // m), repeats=3)
    gram = step_rates("gram", GRAM_WIDTHS, lambda m: 200, repeats=7)
    for row in param.values():
        row["gflops"] = row["steps_per_s"] * param_step_flops(row["width"]) / 1e9
        row["fraction_of_matmul"] = row["gflops"] / ceiling
    for row in gram.values():
        row["gflops"] = row["steps_per_s"] * gram_step_flops() / 1e9
        row["fraction_of_matmul"] = row["gflops"] / ceiling
        row["fraction_of_latent_matmul"] = row["gflops"] / latent_matmul

    print(
        f"{'width':>8} {'param steps/s (min..max)':>24} {'GFLOP/s':>8} {'of mm':>6}"
        f" {'gram steps/s (min..max)':>24} {'GFLOP/s':>8} {'of mm':>6} {'gram/param':>10} {'compile p/g s':>14}"
    )
    for m in GRAM_WIDTHS:
        p, g = param.get(m), gram[m]
        p_figures = f"{p['gflops']:>8.1f} {p['fraction_of_matmul']:>6.0%}" if p else f"{'-':>8} {'-':>6}"
        ratio = f"{g['steps_per_s'] / p['steps_per_s']:>10.1f}" if p else f"{'-':>10}"
        compile_s = f"{p['compile_s']:.2f}/{g['compile_s']:.2f}" if p else f"-/{g['compile_s']:.2f}"
        print(
            f"{m:>8} {_rate(p)} {p_figures} {_rate(g)} {g['gflops']:>8.1f} {g['fraction_of_matmul']:>6.0%}"
            f" {ratio} {compile_s:>14}"
        )

    gram_rates = [row["steps_per_s"] for row in gram.values()]
    spread = max(gram_rates) / min(gram_rates)
    ratio = gram[RATIO_TARGET_WIDTH]["steps_per_s"] / param[RATIO_TARGET_WIDTH]["steps_per_s"]
    fraction = param[PARAM_TARGET_WIDTH]["fraction_of_matmul"]
    targets = {
        f"param step at width {PARAM_TARGET_WIDTH} >= 50% of matmul throughput": (fraction, fraction >= 0.5, "%"),
        "gram cost flat in width (fastest / slowest, 256..1e6) <= 1.2": (spread, spread <= 1.2, "x"),
        f"gram >= 100x param at width {RATIO_TARGET_WIDTH}": (ratio, ratio >= 100, "x"),
    }
    for name, (value, holds, unit) in targets.items():
        shown = f"{value:.0%}" if unit == "%" else f"{value:.2f}x"
        print(f"target: {name}: {shown} -> {'holds' if holds else 'NOT MET'}")
    median_gram = statistics.median(row["gflops"] for row in gram.values())
    print(
        f"gram irreducible work (4 B^2 q): {median_gram:.1f} GFLOP/s = {median_gram / ceiling:.0%} of the matmul"
        f" ceiling, {median_gram / latent_matmul:.0%} of a matmul of its own shape"
    )
    record = {
        "matmul_gflops": ceiling,
        "latent_matmul_gflops": latent_matmul,
        "param": list(param.values()),
        "gram": list(gram.values()),
        "targets": {name: {"value": value, "holds": holds} for name, (value, holds, _) in targets.items()},
    }
    print(f"written {write_record('steps', record)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
