"""Finite-width SGD throughput: dynsim's ``param`` and ``gram`` backends beside a PyTorch eager
loop of the same step, against this machine's matmul throughput, measured in one run.

Setting (issues 2, 4 and 6): r + n = 64 (r = 16, n = 48, d = 64), float32, InfoNCE, population
normalization; batch B = 1024 for the width table, width 4096 for the batch table. Each dynsim
backend runs its real single-seed program (``simulate_seed``: ``lax.scan`` over steps,
divergence check, a record at the start and the end), compiled once and timed as a whole; the
PyTorch peer (``torch_peer.py``, optional) runs the same number of steps in a Python loop.
Every figure is the median (min..max) of several timed runs after a warm-up, divided by the
step count, with compile time reported separately. Repetitions are interleaved (one run of
every backend and width per round), so a slow spell of the machine touches every column
alike. Before timing, the PyTorch step is checked to compute dynsim's loss and gradient. The
gram backend's flatness in width is judged on each width's best run (noise only slows a run).

FLOP-counting rules (a multiply-add counts 2; element-wise work and reductions are not counted).

``param`` step (and the PyTorch step, which does the same products), with q = r + n:
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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch_peer
from _common import markdown_table, ratio_text, target, timed, write_record

import dynsim
from dynsim.two_tower import gram as _gram
from dynsim.two_tower import param as _param
from dynsim.two_tower.data import sample_latents
from dynsim.two_tower.finite import plan_and_inputs
from dynsim.two_tower.model import init_weights

R, N, BATCH, LR = 16, 48, 1024, 0.01
WIDTHS = (256, 1024, 4096, 16384, 65536)
GRAM_ONLY_WIDTHS = (10**6,)
BATCHES, BATCH_TABLE_WIDTH = (256, 1024, 4096), 4096
PARAM_TARGET_WIDTH, RATIO_TARGET_WIDTH = 4096, 65536
REPEATS = 5
SYSTEMS = {"param": _param, "gram": _gram}


class Run(NamedTuple):
    """A compiled, warmed-up run of ``steps`` steps: ``run()`` blocks until done."""

    run: object
    steps: int
    compile_s: float


def param_step_flops(width: int, batch: int = BATCH, d: int = R + N, q: int = R + N) -> float:
    """FLOPs of one ``param`` (or PyTorch) step by the rule in the module docstring."""
    return 3 * 2 * batch**2 * width + 2 * 2 * 2 * batch * d * width + 2 * 2 * 2 * width * d * q + 2 * 2 * batch * q * d


def gram_step_flops(batch: int = BATCH, q: int = R + N) -> float:
    """Irreducible FLOPs of one ``gram`` step by the rule in the module docstring."""
    return 2 * 2 * batch**2 * q


def param_steps(width: int, batch: int) -> int:
    """Steps per timed ``param``/PyTorch run: about the same work at every shape, at least 2."""
    return max(2, round(40960 * (BATCH / batch) ** 2 / width))


def gram_steps(batch: int) -> int:
    """Steps per timed ``gram`` run (its cost does not depend on the width)."""
    return max(20, round(200 * (BATCH / batch) ** 2))


def matmul_gflops(n: int, k: int, repeats: int = 7) -> float:
    """Median float32 GFLOP/s of an ``n × k`` by ``k × n`` matmul."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, k), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (k, n), jnp.float32)
    seconds = statistics.median(timed(jax.jit(jnp.dot), a, b, repeats=repeats))
    return 2 * n * n * k / seconds / 1e9


def bench_config(batch: int, steps: int, precision: str = "float32"):
    """The benchmark's configuration: one stage of ``steps`` steps, records at start and end."""
    return dynsim.load_config(
        {
            "data": {"r": R, "n": N},
            "train": {"batch": batch, "lr": LR, "precision": precision},
            "loss": {"stages": [[1.0, steps * LR]]},
            "run": {"record_every": steps * LR},
        }
    )


def jax_run(backend: str, width: int, batch: int, steps: int) -> Run:
    """One seed's compiled dynsim program of ``steps`` steps on ``backend``."""
    config = bench_config(batch, steps)
    system = SYSTEMS[backend]
    plan, inputs = plan_and_inputs(config, width, jax.random.PRNGKey(0), system.resolve_init(config, width, "auto"))
    key = jax.random.PRNGKey(1)
    start = time.perf_counter()
    compiled = jax.jit(lambda k, i: system.simulate_seed(k, i, plan)).lower(key, inputs).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(key, inputs))  # warm-up
    return Run(lambda: jax.block_until_ready(compiled(key, inputs)), steps, compile_s)


def torch_run(width: int, batch: int, steps: int) -> Run:
    """The PyTorch eager loop of ``steps`` steps (no compilation; one warm-up run)."""
    run = torch_peer.EagerRun(width, R, N, batch, LR, tau=1.0, lam=1.0, steps=steps)
    run()  # warm-up
    return Run(run, steps, 0.0)


def interleaved_rates(runs: dict, repeats: int) -> dict:
    """Steps/s of every run (median, min, max over ``repeats``), interleaved round by round."""
    seconds = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            run.run()
            seconds[key].append(time.perf_counter() - start)
    return {
        key: {
            "steps_per_s": run.steps / statistics.median(seconds[key]),
            "steps_per_s_min": run.steps / max(seconds[key]),
            "steps_per_s_max": run.steps / min(seconds[key]),
            "compile_s": run.compile_s,
        }
        for key, run in runs.items()
    }


def torch_agreement() -> float:
    """Max relative difference of the PyTorch step's loss and gradients from dynsim's (float64)."""
    width, batch = 96, 32
    config = bench_config(batch, 1, precision="float64")
    with jax.enable_x64(True):
        plan, inputs = plan_and_inputs(config, width, jax.random.PRNGKey(0))
        maps = _param.latent_maps(inputs)
        weights = init_weights(jax.random.PRNGKey(2), width, plan.d, jnp.float64)
        latents = sample_latents(jax.random.PRNGKey(3), batch, R, N, jnp.float64)
        loss, grads = jax.value_and_grad(_param.batch_loss)(weights, maps, latents, 1.3, 0.7, plan)
    peer = torch_peer.loss_and_grads(*(tuple(np.asarray(x) for x in pair) for pair in (weights, maps, latents)),
                                     tau=1.3, lam=0.7)  # fmt: skip
    ours = (float(loss), *(np.asarray(g) for g in grads))
    return max(float(np.max(np.abs(p - o)) / np.max(np.abs(o))) for p, o in zip(peer, ours, strict=True))


def _rate(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{row['steps_per_s']:.4g} ({row['steps_per_s_min']:.4g}..{row['steps_per_s_max']:.4g})"


def _ratio(top: dict | None, bottom: dict | None) -> str:
    return ratio_text(top["steps_per_s"] / bottom["steps_per_s"]) if top and bottom else "-"


def _gflops(row: dict | None, flops: float, ceiling: float) -> str:
    if row is None:
        return "- | -"
    gflops = row["steps_per_s"] * flops / 1e9
    return f"{gflops:.1f} | {gflops / ceiling:.0%}"


def main() -> int:
    step_shaped = matmul_gflops(BATCH, 4096)  # the shape of the param step's B x B x m products at m = 4096
    ceiling = max(step_shaped, matmul_gflops(2048, 2048))
    latent_matmul = matmul_gflops(BATCH, R + N)
    lines = [
        f"Matmul ceiling (float32, best of 1024x4096x1024 and 2048^3): {ceiling:.1f} GFLOP/s; 1024x4096x1024"
        f" alone: {step_shaped:.1f} GFLOP/s; a matmul of the gram step's shape (1024x64x1024):"
        f" {latent_matmul:.1f} GFLOP/s.",
    ]
    have_torch = torch_peer.torch is not None
    if have_torch:
        agreement, torch_matmul = torch_agreement(), torch_peer.matmul_gflops(BATCH, 4096)
        lines.append(f"PyTorch {torch_peer.torch.__version__} eager peer (its own 1024x4096x1024 matmul:"
                     f" {torch_matmul:.1f} GFLOP/s): loss and gradients agree with dynsim's"
                     f" to {agreement:.1e} (float64, max relative difference).")  # fmt: skip
        if agreement > 1e-10:
            print("\n".join(lines))
            raise SystemExit("the PyTorch peer does not compute dynsim's step; refusing to compare speeds")
    else:
        agreement = torch_matmul = None
        lines.append("PyTorch is not installed (pip install -e .[bench]): its columns are skipped.")

    shapes = {(m, BATCH) for m in WIDTHS} | {(BATCH_TABLE_WIDTH, b) for b in BATCHES}
    runs = {}
    for m, b in sorted(shapes):
        runs["param", m, b] = jax_run("param", m, b, param_steps(m, b))
        if have_torch:
            runs["torch", m, b] = torch_run(m, b, param_steps(m, b))
        runs["gram", m, b] = jax_run("gram", m, b, gram_steps(b))
    for m in GRAM_ONLY_WIDTHS:
        runs["gram", m, BATCH] = jax_run("gram", m, BATCH, gram_steps(BATCH))
    rates = interleaved_rates(runs, REPEATS)

    def row(backend, m, b):
        return rates.get((backend, m, b))

    def table(label: str, shapes: list[tuple[int, int]], value_of) -> str:
        rows = []
        for m, b in shapes:
            p, t, g = row("param", m, b), row("torch", m, b), row("gram", m, b)
            rows.append([
                value_of(m, b), _rate(p), _gflops(p, param_step_flops(m, b), ceiling), _rate(t),
                _gflops(t, param_step_flops(m, b), ceiling), _rate(g), _gflops(g, gram_step_flops(b), ceiling),
                _ratio(p, t), _ratio(g, p), _ratio(g, t),
                f"{p['compile_s']:.2f} / {g['compile_s']:.2f}" if p else f"- / {g['compile_s']:.2f}",
            ])  # fmt: skip
        header = [label, "param steps/s", "GFLOP/s", "of matmul", "torch steps/s", "GFLOP/s", "of matmul",
                  "gram steps/s", "GFLOP/s", "of matmul", "param/torch", "gram/param", "gram/torch",
                  "compile param/gram s"]  # fmt: skip
        return markdown_table(header, rows)

    lines += [
        "",
        f"Cost versus width (batch {BATCH}; steps/s, median (min..max) of {REPEATS} interleaved runs):",
        "",
        table("width", [(m, BATCH) for m in (*WIDTHS, *GRAM_ONLY_WIDTHS)], lambda m, b: m),
        "",
        f"Cost versus batch (width {BATCH_TABLE_WIDTH}):",
        "",
        table("batch", [(BATCH_TABLE_WIDTH, b) for b in BATCHES], lambda m, b: b),
        "",
    ]

    def rate(backend, m, statistic="steps_per_s"):
        return rates[backend, m, BATCH][statistic]

    gram_widths = (*WIDTHS, *GRAM_ONLY_WIDTHS)
    # Flatness is judged on each width's best run: machine noise only ever slows a run, so the
    # best run is the estimate of the cost itself; the spread of the medians is shown beside it.
    spread = max(rate("gram", m, "steps_per_s_max") for m in gram_widths) / min(
        rate("gram", m, "steps_per_s_max") for m in gram_widths
    )
    median_spread = max(rate("gram", m) for m in gram_widths) / min(rate("gram", m) for m in gram_widths)
    fraction = rate("param", PARAM_TARGET_WIDTH) * param_step_flops(PARAM_TARGET_WIDTH) / 1e9 / ceiling
    gram_over_param = rate("gram", RATIO_TARGET_WIDTH) / rate("param", RATIO_TARGET_WIDTH)
    targets = [
        target(
            f"param step at width {PARAM_TARGET_WIDTH} >= 50% of matmul throughput", fraction, 0.5, f"{fraction:.0%}"
        ),
        target(f"gram >= 100x param at width {RATIO_TARGET_WIDTH}", gram_over_param, 100),
        target(
            "gram cost flat in width (fastest / slowest best run, 256..1e6) <= 1.2",
            spread,
            1.2,
            f"{spread:.3g}x (of the medians: {median_spread:.3g}x)",
            above=False,
        ),
    ]
    if have_torch:
        param_over_torch = rate("param", PARAM_TARGET_WIDTH) / rate("torch", PARAM_TARGET_WIDTH)
        gram_over_torch = rate("gram", RATIO_TARGET_WIDTH) / rate("torch", RATIO_TARGET_WIDTH)
        targets += [
            target(f"param >= 1.5x PyTorch eager at width {PARAM_TARGET_WIDTH}", param_over_torch, 1.5),
            target(f"gram >= 100x PyTorch eager at width {RATIO_TARGET_WIDTH}", gram_over_torch, 100),
        ]
    else:
        lines.append("- targets against PyTorch: not measured (PyTorch is not installed)")
    lines += [t["line"] for t in targets]
    markdown = "\n".join(lines)
    print(markdown)
    record = {
        "matmul_gflops": ceiling,
        "step_shaped_matmul_gflops": step_shaped,
        "latent_matmul_gflops": latent_matmul,
        "torch_agreement": agreement,
        "torch_matmul_gflops": torch_matmul,
        "rates": [
            {"backend": k[0], "width": k[1], "batch": k[2], "steps": runs[k].steps, **v} for k, v in rates.items()
        ],
        "targets": targets,
    }
    print(f"written {write_record('steps', record, markdown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
