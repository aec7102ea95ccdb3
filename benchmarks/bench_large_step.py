"""Large-stepsize gradient descent: a grid of stepsizes and seeds in ``dynsim.large_step.gd``'s one
compiled program, beside a PyTorch eager loop over the same stepsizes.

The issue's setting: the digits subset (``load_data("digits", pair=(3, 8))``, n = 357, d = 64), the
two-layer net of width m = 256 (leaky softplus, c = 0.5, fixed outer signs ±1), logistic risk,
float64, 64 stepsizes log-spaced from η = 1 to 2.56·10^4 (η/m from 1/256 to 100) × 4 seeds, w_0 iid
N(0, 0.1²). ``--full``: 10^5 steps (meant for a GPU); the CPU default runs ``--steps`` (50).

- dynsim: ``gd(x, y, etas=..., steps=..., model="two_layer", width=256, init_scale=0.1, seeds=4,
  power_iterations=0)``, the 256 runs a ``vmap`` in one program, timed warm (a first call with the
  same shapes and record grid compiles it). It records at every step up to 100 (then 50 a decade),
  so at ``steps <= 100`` every step is also a record (the observables: a forward pass, the margins
  per neuron, norms). The row "records at 0 and T only" runs the same program with the record grid
  (0, T) (internal API: ``dynamics.run`` through ``map_seeds``, as ``gd`` calls it), the cost per
  step of ``gd`` at 10^5 steps, where its 251 records are 0.25% of the steps; left out with ``--full``.
- PyTorch: what a researcher writes, eager, float64: one run per stepsize (a Python loop over the
  stepsizes), each a ``for t in range(steps)`` loop on the 4 seeds batched as a (4, m, d) tensor
  (``torch.matmul``), the risk by autograd (``loss.backward()``, then the update under
  ``torch.no_grad()``), the risk of every step kept. Only ``--torch-runs`` (4) stepsizes spread over
  the grid are timed; the whole grid's time is their mean per run × 64 (the runs differ only in η).
  ``torch.set_num_threads`` is the core count; on a GPU (JAX's default backend and torch's CUDA), cuda.

Checked first, in float64: ``gd``'s final weights after 20 steps at the grid's smallest and largest
stepsize against the PyTorch loop's from the same w_0 (``gd``'s: ``seed_keys(0, 0, 4)`` and
``initial_weights``, as ``gd`` draws them). Every figure is the median (min..max) of ``ROUNDS``
timed rounds, the programs interleaved round by round. "Run-steps/s" is (runs × steps) / time, runs
= 64 × 4. FLOPs per step of one run (a multiply-add counts 2; element-wise work, the records and
reductions are not counted): the forward x wᵀ, 2ndm, and the backward's (∂L/∂z)ᵀ x, 2ndm: 4ndm.
The ceiling: this machine's float64 (n × d) by (d × 256m) matmul (every run's forward at once).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import markdown_table, matmul_gflops, publish, ratio_text, summary

from dynsim.engine.runner import map_seeds, seed_keys, select_devices
from dynsim.large_step import gd, load_data
from dynsim.large_step.dynamics import Problem, run
from dynsim.large_step.model import initial_weights, make_model, radius_of, smoothness

try:
    import torch
except ImportError:  # the optional extra is not installed
    torch = None

WIDTH, SEEDS, INIT_SCALE, C = 256, 4, 0.1, 0.5
ETAS = np.geomspace(1.0, 2.56e4, 64)
ROUNDS, CHECK_STEPS, FULL_STEPS = 3, 20, 100_000
SETTINGS = dict(model="two_layer", width=WIDTH, c=C, init_scale=INIT_SCALE, seeds=SEEDS, power_iterations=0)


def starts(d: int):
    """``gd``'s w_0 of every seed (seed 0), (seeds, m, d), float64."""
    net = make_model("two_layer", WIDTH, c=C)
    with jax.enable_x64(True):
        _, keys = seed_keys(0, 0, SEEDS)
        return np.asarray(jax.vmap(lambda key: initial_weights(net, d, key, INIT_SCALE))(keys))


def torch_device() -> str:
    """cuda where JAX runs on a GPU and torch sees one, else cpu."""
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def torch_run(x, y, w0, eta: float, steps: int):
    """Gradient descent on the seeds batched in ``w0`` (seeds, m, d) at stepsize ``eta``: the final
    weights and the risk of every seed at every step (autograd, eager)."""
    m = w0.shape[1]
    signs = torch.where(torch.arange(m, device=w0.device) < (m + 1) // 2, 1.0, -1.0).to(w0.dtype)
    zero = torch.zeros((), dtype=w0.dtype, device=w0.device)
    w = w0.clone().requires_grad_(True)
    risks = []
    for _ in range(steps):
        z = torch.matmul(x, w.transpose(1, 2))  # (seeds, n, m)
        f = (C * z + (1 - C) * torch.logaddexp(z, zero)) @ signs / m
        loss = torch.logaddexp(zero, -y * f).mean(dim=1)  # one risk per seed
        loss.sum().backward()
        with torch.no_grad():
            w -= eta * w.grad
        w.grad = None
        risks.append(loss.detach())
    return w.detach(), torch.stack(risks)


def agreement(x, y) -> dict:
    """Largest relative difference (max-abs, over the seeds) of the final weights, ``gd`` against the
    PyTorch loop, after ``CHECK_STEPS`` steps at the smallest and largest stepsize."""
    etas = ETAS[[0, -1]]
    out = gd(x, y, etas=etas, steps=CHECK_STEPS, **SETTINGS)
    w0 = torch.tensor(starts(x.shape[1]))
    differences = []
    for i, eta in enumerate(etas):
        w, _ = torch_run(torch.tensor(x), torch.tensor(y), w0, float(eta), CHECK_STEPS)
        ours = out.weights.values[i]
        differences.append(float(np.max(np.abs(ours - w.numpy())) / np.max(np.abs(w.numpy()))))
    return {"etas": etas.tolist(), "steps": CHECK_STEPS, "weights_rel": max(differences)}


def sparse_program(x, y, steps: int):
    """``gd``'s program with records only at steps 0 and ``steps``, and its arguments."""
    net = make_model("two_layer", WIDTH, c=C)
    problem = Problem(net, (0, steps), smoothness(net, radius_of(x)), 0, False)
    with jax.enable_x64(True):
        w0 = jnp.asarray(starts(x.shape[1]))
        items = (jnp.tile(w0, (ETAS.size, 1, 1)), jnp.repeat(jnp.asarray(ETAS), SEEDS))
        shared = {"x": jnp.asarray(x), "y": jnp.asarray(y)}

    def call():
        with jax.enable_x64(True):
            return map_seeds(run, items, shared, problem, select_devices("auto"))

    return call


def clock(fn) -> float:
    """Wall seconds of one call of ``fn`` (its outputs are NumPy arrays or synchronized)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="GD steps of every run (default 50)")
    parser.add_argument("--full", action="store_true", help=f"the issue's {FULL_STEPS} steps (for a GPU)")
    parser.add_argument("--torch-runs", type=int, default=4, help="stepsizes the PyTorch loop times (default 4)")
    args = parser.parse_args()
    steps = FULL_STEPS if args.full else args.steps
    data = load_data("digits", pair=(3, 8))
    x, y = data.x, data.y
    n, d = x.shape
    runs = ETAS.size * SEEDS
    flops = 4 * n * d * WIDTH  # one GD step of one run
    with jax.enable_x64(True):
        ceiling = matmul_gflops(n, d, WIDTH * runs, dtype=jnp.float64, steps=10)
    record = {"n": n, "d": d, "width": WIDTH, "seeds": SEEDS, "etas": ETAS.tolist(), "steps": steps}
    record.update(flops_per_run_step=flops, matmul_gflops_shape=ceiling, rounds=ROUNDS)

    def dynsim_call():
        return gd(x, y, etas=ETAS, steps=steps, **SETTINGS)

    programs = {"dynsim gd (one program)": dynsim_call}
    if not args.full:
        programs["dynsim, records at 0 and T only"] = sparse_program(x, y, steps)
    compile_s = {name: clock(call) for name, call in programs.items()}  # the warm-up calls
    seconds = {name: [] for name in programs}
    lines = [
        f"Gradient descent, digits 3 vs 8 (n = {n}, d = {d}), two-layer net m = {WIDTH}, float64, "
        f"{ETAS.size} stepsizes x {SEEDS} seeds = {runs} runs of {steps} steps; median (min..max) of "
        f"{ROUNDS} rounds; first calls (compile + one run): "
        + ", ".join(f"{name} {value:.1f} s" for name, value in compile_s.items())
        + ".",
        f"Machine (XLA, float64, best of 5): {n}x{d}x{WIDTH * runs} matmul {ceiling:.1f} GFLOP/s; "
        f"FLOPs per run-step 4ndm = {flops / 1e6:.1f} M.",
    ]
    if torch is not None:
        torch.set_num_threads(os.cpu_count())
        check = agreement(x, y)
        record["agreement"] = check
        lines.append(
            f"PyTorch {torch.__version__} eager peer, float64, from the same w_0: final weights after "
            f"{CHECK_STEPS} steps at eta = {ETAS[0]:g} and {ETAS[-1]:g} agree to {check['weights_rel']:.1e} "
            "(max-abs relative)."
        )
        device = torch_device()
        tx, ty = torch.tensor(x, device=device), torch.tensor(y, device=device)
        tw0 = torch.tensor(starts(d), device=device)
        subset = ETAS[np.unique(np.linspace(0, ETAS.size - 1, args.torch_runs).round().astype(int))]

        def torch_grid():
            for eta in subset:
                torch_run(tx, ty, tw0, float(eta), steps)
            if device == "cuda":
                torch.cuda.synchronize()

        torch_run(tx, ty, tw0, float(subset[0]), min(steps, 5))  # warm-up
        programs["PyTorch eager, loop over stepsizes"] = torch_grid
        seconds["PyTorch eager, loop over stepsizes"] = []
        lines.append(
            f"PyTorch on {device}, {torch.get_num_threads()} threads: {subset.size} of the {ETAS.size} stepsizes "
            f"timed (eta = {', '.join(f'{eta:.3g}' for eta in subset)}), the grid's time extrapolated as "
            f"{ETAS.size} x their mean per stepsize."
        )
    for _ in range(ROUNDS):
        for name, call in programs.items():
            elapsed = clock(call)
            if name.startswith("PyTorch"):
                elapsed *= ETAS.size / subset.size
            seconds[name].append(elapsed)
    reference = statistics.median(seconds.get("PyTorch eager, loop over stepsizes", seconds[next(iter(seconds))]))
    rows = []
    for name, values in seconds.items():
        stats = summary(values)
        record[name] = stats | {"compile_s": compile_s.get(name)}
        per_step = [value / steps * 1e3 for value in values]
        rate = runs * steps / stats["median_s"]
        gflops = rate * flops / 1e9
        rows.append(
            [
                name,
                f"{stats['median_s']:.1f} ({stats['min_s']:.1f}..{stats['max_s']:.1f})",
                f"{statistics.median(per_step):.0f} ({min(per_step):.0f}..{max(per_step):.0f})",
                f"{rate:.0f}",
                ratio_text(reference / stats["median_s"]),
                f"{gflops:.1f} ({gflops / ceiling:.0%})",
            ]
        )
    header = ["program", "s per grid", "ms per grid step", "run-steps/s", "speed vs PyTorch", "GFLOP/s (of matmul)"]
    table = markdown_table(header, rows)
    if torch is None:
        lines.append("PyTorch is not installed (pip install -e .[bench]): its row is missing.")
    publish("large_step", record, lines, table)


if __name__ == "__main__":
    main()
