"""Throughput of the literal parameter-space SGD step, beside this machine's matmul throughput.

Setting (issue 2): r + n = 64 (r = 16, n = 48, d = 64), batch B = 1024, float32, InfoNCE,
population normalization, widths m = 256, 1024, 4096. Every figure is the median of several
timed repetitions after a warm-up (compile time excluded); the matmul ceiling is measured in
the same run.

FLOP-counting rule (a multiply-add counts 2; element-wise work and reductions are not counted):
per step, with q = r + n,
    similarity forward  s = f_A f_B^T                         2 B^2 m
    similarity backward df_A = ds f_B, df_B = ds^T f_A         2 * 2 B^2 m
    embeddings forward  x W^T, both towers                     2 * 2 B d m
    weight gradient     dW = draw^T x, both towers             2 * 2 B d m
    population norm     W P forward and backward, both towers  2 * 2 * 2 m d q
    inputs              x = u P^T, both towers                 2 * 2 B q d
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp
from _common import timed, write_record

import dynsim
from dynsim._finite import latent_maps, plan_and_inputs
from dynsim._param import init_state, make_step

R, N, BATCH, WIDTHS, TARGET_WIDTH = 16, 48, 1024, (256, 1024, 4096), 4096


def step_flops(width: int, batch: int = BATCH, d: int = R + N, q: int = R + N) -> float:
    """FLOPs of one param step by the rule in the module docstring."""
    return 3 * 2 * batch**2 * width + 2 * 2 * 2 * batch * d * width + 2 * 2 * 2 * width * d * q + 2 * 2 * batch * q * d


def matmul_gflops(n: int, k: int, repeats: int = 7) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, k), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (k, n), jnp.float32)
    seconds = statistics.median(timed(jax.jit(jnp.dot), a, b, repeats=repeats))
    return 2 * n * n * k / seconds / 1e9


def param_step_rate(width: int, steps: int, repeats: int) -> dict:
    config = dynsim.load_config(
        {"data": {"r": R, "n": N}, "train": {"batch": BATCH, "lr": 0.01}, "loss": {"stages": [[1.0, steps * 0.01]]}}
    )
    plan, inputs = plan_and_inputs(config, width, jax.random.PRNGKey(0))
    step_fn = make_step(plan, inputs, latent_maps(inputs), jax.random.PRNGKey(1))

    @jax.jit
    def run(state):
        return jax.lax.scan(lambda s, i: (step_fn(s, i), None), state, jnp.arange(steps))[0]

    state = init_state(plan, jax.random.PRNGKey(2))
    start = time.perf_counter()
    compiled = run.lower(state).compile()
    compile_seconds = time.perf_counter() - start
    seconds = timed(compiled, state, repeats=repeats)
    rate = steps / statistics.median(seconds)
    return {
        "width": width,
        "steps_per_s": rate,
        "steps_per_s_min": steps / max(seconds),
        "steps_per_s_max": steps / min(seconds),
        "gflops": rate * step_flops(width) / 1e9,
        "compile_s": compile_seconds,
    }


def main() -> int:
    ceiling = max(matmul_gflops(BATCH, 4096), matmul_gflops(2048, 2048))
    print(f"matmul throughput (float32, median of 7, best of 1024x4096x1024, 2048^3): {ceiling:.1f} GFLOP/s")
    rows = [param_step_rate(m, steps=max(4, 40960 // m), repeats=5) for m in WIDTHS]
    print(f"{'width':>6} {'steps/s':>10} {'(min..max)':>16} {'GFLOP/s':>9} {'of matmul':>10} {'compile s':>10}")
    for row in rows:
        row["fraction_of_matmul"] = row["gflops"] / ceiling
        print(
            f"{row['width']:>6} {row['steps_per_s']:>10.2f}"
            f" {row['steps_per_s_min']:>7.2f}..{row['steps_per_s_max']:<7.2f} {row['gflops']:>9.1f}"
            f" {row['fraction_of_matmul']:>9.0%} {row['compile_s']:>10.2f}"
        )
    target = next(row for row in rows if row["width"] == TARGET_WIDTH)
    holds = target["fraction_of_matmul"] >= 0.5
    print(
        f"target: param step at width {TARGET_WIDTH} >= 50% of matmul throughput: "
        f"{target['fraction_of_matmul']:.0%} -> {'holds' if holds else 'NOT MET'}"
    )
    path = write_record("param_step", {"matmul_gflops": ceiling, "rows": rows})
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
