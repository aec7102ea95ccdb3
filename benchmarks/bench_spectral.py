"""The spectral system: its SGD program beside a PyTorch eager loop, its exact flow beside SciPy.

1. SGD. An HSBM augmentation graph of N = 10^5 nodes (``hsbm(10, 10, 1000, THETA)``), the tabular
   encoder (an N × k table Φ), k = 64, B = 512 positive pairs per step, float32, plain SGD. dynsim
   runs, inside the engine's ``scan_run``, the simulator's SGD program (``make_sparse_step``: SGD on
   the 2B touched rows by scatter-add, checked by ``touched_rows_finite``, as ``simulate_seed`` runs
   it) and the dense optax step (``make_step``, which momentum, Adam and the linear encoder take;
   here with plain SGD, so both compute the same update), each with a trivial record: the real
   records need the dense N × N graph arrays (80 GB in float64 at this N). ``Inputs(arrays=None,
   features=None)``: the SGD loss reads only the sampler and the table. The PyTorch peer
   (``torch_spectral_peer.py``, optional) is the eager loop in the authors' form, with dense
   gradients (``Phi[x]``), in this process and in a fresh one (see :func:`torch_fresh_process`),
   and with sparse ones (``F.embedding(sparse=True)``). Checked first, in float64 on the same Φ and
   pairs: the peer's loss, gradient and stepped table against dynsim's; the sparse program's Φ
   against the dense one's after ``STEPS`` steps; both pair samplers against the exact pair
   statistics. Then the dynsim programs at N = 10^4, and the steps in pieces.

2. Exact flow. ``hsbm(10, 4, 50, THETA)`` (N = 2000, a regular graph), k = 16, float64, Φ_0 iid
   N(0, 0.1²), 50 save times on [0, 4·10^4]. ``flow(..., method="closed")`` and
   ``flow(..., method="diffrax")`` (Tsit5, Dopri8), jitted, against SciPy's ``solve_ivp`` (RK45,
   DOP853) of dΦ/dt = 4WΦ − 4DΦ(ΦᵀDΦ) at the same rtol and atol; agreement through Π = ΦΦᵀ (the
   closed form fixes Φ only up to a rotation) and the population loss.

Every figure is the median (min..max) of several timed runs after a warm-up (SciPy: no warm-up,
it compiles nothing), compile time apart; the runs of different programs are interleaved round by
round, so that a slow spell of the machine touches every column alike (after each SciPy run, a pause
of ``SCIPY_SETTLE_S`` lets OpenBLAS's spinning threads go to sleep).

Counting rules (a multiply-add counts 2; element-wise work and reductions are not counted): the SGD
step's B × B similarity s = z z⁺ᵀ, dz = ds z⁺ and dz⁺ = dsᵀ z is 3 · 2B²k FLOPs; the dense update
moves at least 4 · Nk · 4 bytes (the N × k gradient written, then Φ and it read and Φ written); a
flow field evaluation is 2N²k FLOPs in W Φ.
"""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch_peer
import torch_spectral_peer as peer
from _common import markdown_table, matmul_gflops, ratio_text, summary, timed, write_record
from scipy.integrate import solve_ivp

from dynsim.engine.integrate import integrate, resolve_solver
from dynsim.engine.runner import all_finite, scan_run
from dynsim.losses import spectral
from dynsim.spectral.finite import (
    Inputs,
    Plan,
    initial_params,
    make_loss,
    make_sparse_step,
    make_step,
    optimizer,
    touched_rows_finite,
)
from dynsim.spectral.flow import flow, tabular_field
from dynsim.spectral.graph import Graph, eigensystem, hsbm, minimum, pair_sampler

THETA = (0.5, 0.3, 0.15, 0.05)
SGD_GRAPH = (10, 10, 1000, THETA)  # N = 10^5
SMALL_GRAPH = (10, 10, 100, THETA)  # N = 10^4, where the dense N × k work is small
K, BATCH, LR, INIT_SCALE = 64, 512, 1.0, 0.1
STEPS, ROUNDS = 100, 5  # steps per timed run, interleaved rounds
NO_ARRAYS = Inputs(arrays=None, features=None)

SIMULATOR = "dynsim: the simulator's SGD program (make_sparse_step in scan_run, touched-row check)"
DENSE = "dynsim: the dense optax step (momentum, Adam, linear encoder) in scan_run"
TORCH = "PyTorch eager (authors' loss, Phi[x], backward, optim.SGD)"
TORCH_FRESH = "PyTorch eager (Phi[x]), in a fresh process (not interleaved)"
TORCH_SPARSE = "PyTorch eager, sparse gradient (F.embedding(sparse=True))"

FLOW_GRAPH = (10, 4, 50, THETA)  # N = 2000
FLOW_K, T_END, SAVES, RTOL, ATOL = 16, 4e4, 50, 1e-8, 1e-10
FLOW_ROUNDS = 3
# OpenBLAS's worker threads spin for about 0.1 s after SciPy's last matmul and, on a small machine, slow
# whatever runs next (the closed form by up to half); a pause after each SciPy run lets them sleep.
SCIPY_SETTLE_S = 0.3
DIFFRAX_EVALUATIONS = {"tsit5": 6, "dopri8": 13}  # new field evaluations per step (both FSAL)


class Run(NamedTuple):
    """A compiled, warmed-up program: ``run()`` blocks until done; ``settle_s``: a pause after each timed run."""

    run: object
    compile_s: float
    settle_s: float = 0.0


# --- machine ceilings ---------------------------------------------------------------------------


def axpy_gbs(shape: tuple[int, int], steps: int = 50) -> float:
    """GB/s of ``p ← p − 10⁻³ g`` on float32 arrays of ``shape`` in one ``lax.scan``, in place as in the
    step's update (reads ``p`` and ``g``, writes ``p``); the best of 5 runs."""
    p = jax.random.normal(jax.random.PRNGKey(0), shape)
    g = jax.random.normal(jax.random.PRNGKey(1), shape)

    def run(p, g):
        return jax.lax.scan(lambda p, _: (p - 1e-3 * g, None), p, None, length=steps)[0]

    seconds = min(timed(jax.jit(run), p, g, repeats=5))
    return 3 * p.size * 4 * steps / seconds / 1e9


# --- 1. SGD -------------------------------------------------------------------------------------


def sgd_plan(graph: Graph, dtype: str = "float32") -> Plan:
    """The benchmark's :class:`Plan`: tabular encoder, plain SGD on the minibatch estimator."""
    return Plan(graph=graph, encoder="tabular", k=K, dim=graph.num_nodes, method="sgd", batch=BATCH, lr=LR,
                optimizer="sgd", momentum=0.0, steps=STEPS, record_every=STEPS, init_scale=INIT_SCALE,
                dtype=dtype)  # fmt: skip


def scan_program(plan: Plan, sparse_path: bool, observe_fn=lambda state, step: jnp.zeros(())):
    """``(Φ, key) -> (records, diverged_at)``: ``plan.steps`` steps in the engine's ``scan_run``, the state
    and check of ``simulate_seed`` (``sparse_path``) or the dense optax step with the default check."""

    def run(params, key):
        if sparse_path:
            state = (params, jnp.zeros(2 * plan.batch, jnp.int32))
            step_fn = make_sparse_step(plan, key)
            return scan_run(state, step_fn, observe_fn, plan.steps, plan.steps, touched_rows_finite)
        state = (params, optimizer(plan).init(params))
        return scan_run(state, make_step(plan, NO_ARRAYS, key), observe_fn, plan.steps, plan.steps)

    return run


def final_tables(plan: Plan, params: jax.Array, key: jax.Array) -> dict:
    """Φ after ``plan.steps`` steps of each dynsim program from the same Φ and key, and its divergence flag."""
    out = {}
    for sparse_path in (True, False):
        records, diverged_at = jax.jit(scan_program(plan, sparse_path, lambda state, step: state[0]))(params, key)
        out[sparse_path] = (np.asarray(records[-1]), int(diverged_at))
    return out


def compiled_run(program, *args) -> Run:
    """Compile ``program`` on ``args`` (timed), warm it up once, and wrap it as a :class:`Run`."""
    start = time.perf_counter()
    compiled = jax.jit(program).lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))
    return Run(lambda: jax.block_until_ready(compiled(*args)), compile_s)


def interleaved(runs: dict, rounds: int, first: dict | None = None) -> dict:
    """Wall seconds of ``rounds`` runs of each program, one of each per round (``first``: runs already timed)."""
    seconds = {name: list((first or {}).get(name, [])) for name in runs}
    for round_ in range(rounds):
        for name, run in runs.items():
            if len(seconds[name]) <= round_:
                start = time.perf_counter()
                run.run()
                seconds[name].append(time.perf_counter() - start)
                time.sleep(run.settle_s)
    return seconds


FRESH_PROCESS = """
import json, sys
sys.path.insert(0, {path!r})
import torch_spectral_peer as peer
run = peer.EagerRun({graph!r}, {k}, {batch}, {lr}, {scale}, {steps})
run()
print(json.dumps([run() for _ in range({rounds})]))
"""


def torch_fresh_process() -> list[float]:
    """Seconds of ``ROUNDS`` runs of the dense PyTorch peer in a new interpreter, after one warm-up run.

    In this process the peer runs after the float64 agreement check, whose 51 MB arrays raised
    glibc's mmap threshold, so its 25.6 MB gradients come from the heap; a new process maps and
    unmaps each of them (page faults every step) until something larger has been freed.
    """
    code = FRESH_PROCESS.format(path=str(Path(__file__).parent), graph=SGD_GRAPH, k=K, batch=BATCH, lr=LR,
                                scale=INIT_SCALE, steps=STEPS, rounds=ROUNDS)  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def pair_kinds_exact(classes: int, subclasses: int, nodes: int, theta) -> np.ndarray:
    """P(x = x⁺), P(same subclass, x ≠ x⁺), P(same class, other subclass), P(other class) of a positive pair."""
    theta0, theta1, theta_s, theta2 = theta
    r, s, n = classes, subclasses, nodes
    node = (theta0 + theta1 / n) ** 2 + (n - 1) * (theta1 / n) ** 2
    node += theta_s**2 / (n * max(s - 1, 1)) + theta2**2 / (n * s * max(r - 1, 1))
    sub = (theta0 + theta1) ** 2 + theta_s**2 / max(s - 1, 1) + theta2**2 / (s * max(r - 1, 1))
    same_class = (theta0 + theta1 + theta_s) ** 2 + theta2**2 / max(r - 1, 1)
    return np.array([node, sub - node, same_class - sub, 1 - same_class])


def sparse_dense_agreement(graph: Graph) -> dict:
    """Max |Φ_sparse − Φ_dense| after ``STEPS`` steps from the same Φ and key, float64 and float32, how far Φ
    moved, and the divergence flags (-1: none)."""
    out = {}
    for dtype in ("float64", "float32"):
        with jax.enable_x64(dtype == "float64"):
            plan = sgd_plan(graph, dtype)
            phi = initial_params(jax.random.PRNGKey(0), plan)
            tables = final_tables(plan, phi, jax.random.PRNGKey(1))
        (sparse_phi, sparse_flag), (dense_phi, dense_flag) = tables[True], tables[False]
        out[dtype] = {"max_diff": float(np.max(np.abs(sparse_phi - dense_phi))),
                      "moved": float(np.max(np.abs(dense_phi - np.asarray(phi)))),
                      "diverged_at": [sparse_flag, dense_flag]}  # fmt: skip
    return out


def torch_agreement(graph: Graph) -> dict:
    """Max differences of the peer's loss, gradient and stepped table from dynsim's (float64, same Φ and
    pairs; the stepped table against both dynsim steps), and the pair statistics of both samplers against
    the exact ones."""
    plan = sgd_plan(graph, "float64")
    with jax.enable_x64(True):
        phi = initial_params(jax.random.PRNGKey(2), plan)
        step_key = jax.random.PRNGKey(3)
        loss, grad = jax.value_and_grad(make_loss(plan, NO_ARRAYS, step_key))(phi, 0)
        dense = make_step(plan, NO_ARRAYS, step_key)((phi, optimizer(plan).init(phi)), 0)[0]
        sparse_ = make_sparse_step(plan, step_key)((phi, jnp.zeros(2 * BATCH, jnp.int32)), 0)[0]
        x, x_plus = pair_sampler(graph)(jax.random.fold_in(step_key, 0), BATCH)  # the pairs both steps drew
    grad, dense, sparse_ = np.asarray(grad), np.asarray(dense), np.asarray(sparse_)
    differences = {}
    for sparse in (False, True):
        peer_loss, peer_grad, peer_stepped = peer.loss_grad_and_step(
            np.asarray(phi), np.asarray(x), np.asarray(x_plus), LR, sparse=sparse
        )
        differences[sparse] = (abs(peer_loss - float(loss)), np.max(np.abs(peer_grad - grad)),
                               np.max(np.abs(peer_stepped - dense)),
                               np.max(np.abs(peer_stepped - sparse_)))  # fmt: skip
    draws = 2**17
    ours = pair_sampler(graph)(jax.random.PRNGKey(5), draws)
    kinds = {
        "exact": pair_kinds_exact(*SGD_GRAPH),
        "dynsim": peer.pair_kinds(*(np.asarray(v) for v in ours), SGD_GRAPH[1], SGD_GRAPH[2]),
        "torch": peer.pair_kinds(*peer.sample_pairs(SGD_GRAPH, draws), SGD_GRAPH[1], SGD_GRAPH[2]),
    }
    return {
        "loss": float(loss),
        "loss_diff": float(differences[False][0]),
        "grad_diff": float(differences[False][1]),
        "step_diff_dense": float(differences[False][2]),
        "step_diff_sparse": float(differences[False][3]),
        "torch_sparse_max_diff": float(max(differences[True])),
        "grad_max": float(np.max(np.abs(grad))),
        "grad_rows": int(np.count_nonzero(np.any(grad != 0, axis=1))),
        "kinds": {name: value.tolist() for name, value in kinds.items()},
        "kinds_draws": draws,
        "kinds_max_diff": max(float(np.max(np.abs(kinds[s] - kinds["exact"]))) for s in ("dynsim", "torch")),
    }


def piece_programs(plan: Plan) -> dict:
    """Both steps cut into pieces, each ``plan.steps`` times in one ``lax.scan``: ``(Φ, key) -> ...``."""
    sample = pair_sampler(plan.graph)
    opt = optimizer(plan)
    n = plan.graph.num_nodes
    spread = jnp.arange(2 * plan.batch, dtype=jnp.int32) * (n // (2 * plan.batch))

    def scanned(body, init):
        def program(params, key):
            return jax.lax.scan(lambda c, i: body(params, key, c, i), init(params), jnp.arange(STEPS))[0]

        return program

    def sampling(params, key, c, i):
        x, x_plus = sample(jax.random.fold_in(key, i), plan.batch)
        return c + x[0] + x_plus[-1], None

    def rows(params, key, c, i):
        x, x_plus = sample(jax.random.fold_in(key, i), plan.batch)
        dz, dz_plus = jax.grad(lambda z, zp: spectral(z @ zp.T, None, 1.0), argnums=(0, 1))(params[x], params[x_plus])
        return c + dz[0, 0] + dz_plus[-1, -1], None

    def sparse_step(params, key, c, i):  # c is (Φ, rows)
        return make_sparse_step(plan, key)(c, i), None

    def row_check(params, key, c, i):  # 2B rows spread over Φ, moved every step
        return c & touched_rows_finite((params, (spread + i) % n)), None

    def dense(params, key, c, i):
        return jax.grad(make_loss(plan, NO_ARRAYS, key))(params, i), None

    def update(params, key, c, i):  # c is Φ; a fixed dense gradient
        updates, _ = opt.update(params * 1e-3, opt.init(c), c)
        return c + updates, None

    def check(params, key, c, i):
        return c & all_finite(params + i.astype(params.dtype)), None

    def total(params, key, c, i):
        return c + jnp.sum(params + i.astype(params.dtype)), None

    scalar = lambda p: jnp.zeros((), p.dtype)  # noqa: E731
    return {
        "pair sampling (pair_sampler)": scanned(sampling, lambda p: jnp.int32(0)),
        "sampling, gathers, B×B loss and its gradient w.r.t. z, z⁺": scanned(rows, scalar),
        "make_sparse_step: all of the above, then the scatter-add of the 2B rows into Φ": scanned(
            sparse_step, lambda p: (p, jnp.zeros(2 * plan.batch, jnp.int32))
        ),
        "touched_rows_finite (gather 2B rows, isfinite)": scanned(row_check, lambda p: jnp.bool_(True)),
        "dense: jax.grad of make_loss, the row gradient scattered into a zero N×k gradient": scanned(
            dense, jnp.zeros_like
        ),
        "dense: optax SGD update and apply on N×k (given the gradient)": scanned(update, lambda p: p),
        "dense: scan_run's default check (all(isfinite(Φ)))": scanned(check, lambda p: jnp.bool_(True)),
        "for scale: one sum over Φ (N×k)": scanned(total, scalar),
    }


def torch_pieces(run) -> dict:
    """Seconds per step of the PyTorch peer's sampling, forward + backward and optimizer step, and of
    the backward of its two ``Phi[x]`` lookups alone (the dense N × k gradients and their sum)."""
    parts = {"sampling": 0.0, "forward + backward": 0.0, "zero_grad + SGD step": 0.0, "lookups' backward alone": 0.0}
    for _ in range(STEPS):
        t0 = time.perf_counter()
        x, x_plus = run.pairs(run.batch)
        t1 = time.perf_counter()
        run.optimizer.zero_grad()
        t2 = time.perf_counter()
        peer.spectral_loss(run.phi[x], run.phi[x_plus]).backward()
        t3 = time.perf_counter()
        run.optimizer.step()
        t4 = time.perf_counter()
        run.optimizer.zero_grad()
        (run.phi[x].sum() + run.phi[x_plus].sum()).backward()
        t5 = time.perf_counter()
        parts["sampling"] += t1 - t0
        parts["forward + backward"] += t3 - t2
        parts["zero_grad + SGD step"] += t2 - t1 + t4 - t3
        parts["lookups' backward alone"] += t5 - t4
    return {name: value / STEPS for name, value in parts.items()}


def _rate(seconds: list[float]) -> str:
    return f"{STEPS / statistics.median(seconds):.4g} ({STEPS / max(seconds):.4g}..{STEPS / min(seconds):.4g})"


def _ms(seconds: list[float], per: int = 1) -> str:
    ms = [s / per * 1e3 for s in seconds]
    return f"{ratio_text(statistics.median(ms))} ({ratio_text(min(ms))}..{ratio_text(max(ms))})"


def _ratio(seconds: dict, slow: str, fast: str) -> float:
    return statistics.median(seconds[slow]) / statistics.median(seconds[fast])


def sgd_section(have_torch: bool) -> tuple[list[str], dict]:
    graph = hsbm(*SGD_GRAPH)
    n = graph.num_nodes
    flops = 3 * 2 * BATCH**2 * K
    dense_bytes = 4 * n * K * 4
    shape_gflops = {f"{m}x{i}x{o}": matmul_gflops(m, i, o) for m, i, o in ((BATCH, K, BATCH), (BATCH, BATCH, K))}
    ceiling = matmul_gflops(2048, 2048, 2048, steps=2)
    # s = z z⁺ᵀ has the first shape, dz = ds z⁺ and dz⁺ = dsᵀ z the second
    step_gflops = 3 / (1 / shape_gflops[f"{BATCH}x{K}x{BATCH}"] + 2 / shape_gflops[f"{BATCH}x{BATCH}x{K}"])
    bandwidth = axpy_gbs((n, K))
    lines = [
        f"### SGD: hsbm{SGD_GRAPH[:3]}, theta {THETA} (N = {n}), k = {K}, B = {BATCH}, float32, plain SGD, lr {LR}",
        "",
        f"Machine (XLA, float32, best of 5): matmul {ceiling:.1f} GFLOP/s at 2048^3; at the step's shapes "
        + ", ".join(f"{name}: {value:.1f}" for name, value in shape_gflops.items())
        + f" GFLOP/s; memory, p ← p − 10⁻³ g in place on {n}×{K} arrays: {bandwidth:.1f} GB/s.",
    ]
    record = {"graph": list(SGD_GRAPH[:3]), "theta": THETA, "nodes": n, "k": K, "batch": BATCH, "lr": LR,
              "steps_per_run": STEPS, "rounds": ROUNDS, "matmul_gflops_2048": ceiling,
              "matmul_gflops_step_shapes": shape_gflops, "axpy_gbs": bandwidth, "step_flops": flops,
              "dense_update_bytes": dense_bytes}  # fmt: skip
    paths = sparse_dense_agreement(graph)
    record["sparse_vs_dense"] = paths
    lines.append(
        f"The simulator's sparse program against the dense step, {STEPS} steps from the same Φ and key: max"
        f" |Φ_sparse − Φ_dense| = {paths['float64']['max_diff']:.1e} in float64, {paths['float32']['max_diff']:.1e}"
        f" in float32 (Φ moved by up to {paths['float32']['moved']:.2g}; divergence flags"
        f" {paths['float32']['diverged_at']}, -1: none)."
    )
    if paths["float64"]["max_diff"] > 1e-10:
        print("\n".join(lines))
        raise SystemExit("the sparse and the dense program do not compute the same SGD")
    if have_torch:
        agreement = torch_agreement(graph)
        torch_matmul = torch_peer.matmul_gflops(BATCH, K)
        record.update(torch_agreement=agreement, torch_matmul_gflops_step_shape=torch_matmul)
        kinds = agreement["kinds"]
        lines += [
            f"PyTorch {peer.torch.__version__} eager peer (its own {BATCH}x{K}x{BATCH} matmul, median of 7:"
            f" {torch_matmul:.1f} GFLOP/s). Same Φ, same {BATCH} pairs, float64: loss {agreement['loss']:.6g},"
            f" |Δloss| = {agreement['loss_diff']:.1e}; max |Δ∂L/∂Φ| = {agreement['grad_diff']:.1e} (max |∂L/∂Φ| ="
            f" {agreement['grad_max']:.1e}, {agreement['grad_rows']} non-zero rows); Φ after one SGD step: max |Δ|"
            f" = {agreement['step_diff_sparse']:.1e} against make_sparse_step, {agreement['step_diff_dense']:.1e}"
            f" against make_step. The peer with sparse gradients: max of its differences"
            f" {agreement['torch_sparse_max_diff']:.1e}.",
            f"Pair kinds (same node / same subclass / same class / other class) over {agreement['kinds_draws']}"
            f" pairs: exact {' / '.join(f'{v:.4f}' for v in kinds['exact'])}; dynsim's sampler"
            f" {' / '.join(f'{v:.4f}' for v in kinds['dynsim'])}; the peer's"
            f" {' / '.join(f'{v:.4f}' for v in kinds['torch'])} (max |Δ| from exact {agreement['kinds_max_diff']:.1e};"
            f" a standard error is at most {0.5 / agreement['kinds_draws'] ** 0.5:.1e}).",
        ]
        compared = ("loss_diff", "grad_diff", "step_diff_dense", "step_diff_sparse", "torch_sparse_max_diff")
        if max(agreement[key] for key in compared) > 1e-10:
            print("\n".join(lines))
            raise SystemExit("the PyTorch peer does not compute dynsim's step; refusing to compare speeds")
    else:
        lines.append("PyTorch is not installed (pip install -e .[bench]): its rows are left empty.")

    plan = sgd_plan(graph)
    phi0, key = initial_params(jax.random.PRNGKey(0), plan), jax.random.PRNGKey(1)
    runs = {
        SIMULATOR: compiled_run(scan_program(plan, True), phi0, key),
        DENSE: compiled_run(scan_program(plan, False), phi0, key),
    }
    if have_torch:
        torch_run = peer.EagerRun(SGD_GRAPH, K, BATCH, LR, INIT_SCALE, STEPS)
        torch_run()  # warm-up
        runs[TORCH] = Run(torch_run, 0.0)
        sparse_run = peer.EagerRun(SGD_GRAPH, K, BATCH, LR, INIT_SCALE, STEPS, sparse=True)
        sparse_run()  # warm-up
        runs[TORCH_SPARSE] = Run(sparse_run, 0.0)
    seconds = interleaved(runs, ROUNDS)
    if have_torch:
        seconds[TORCH_FRESH] = torch_fresh_process()
        runs[TORCH_FRESH] = Run(None, 0.0)

    def row(name):
        if name not in seconds:
            return [name, "-", "-", "-", "-", "-"]
        median = statistics.median(seconds[name]) / STEPS
        versus = ratio_text(_ratio(seconds, TORCH, name)) if have_torch else "-"
        compile_s = f"{runs[name].compile_s:.2f}" if name in (SIMULATOR, DENSE) else "-"
        return [name, _rate(seconds[name]), _ms(seconds[name], STEPS), versus, compile_s,
                f"{flops / median / 1e9:.1f}"]  # fmt: skip

    gains = f"The simulator's SGD program against the dense step: {ratio_text(_ratio(seconds, DENSE, SIMULATOR))}x"
    if have_torch:
        gains += (
            f"; against PyTorch eager with sparse gradients: {ratio_text(_ratio(seconds, TORCH_SPARSE, SIMULATOR))}x;"
            f" against dense PyTorch in a fresh process: {ratio_text(_ratio(seconds, TORCH_FRESH, SIMULATOR))}x"
        )
    lines += [
        "",
        f"Steps/s, median (min..max) of {ROUNDS} interleaved runs of {STEPS} steps each:",
        "",
        markdown_table(
            ["program", "steps/s", "ms/step", "speed vs PyTorch", "compile s", "GFLOP/s (6B²k)"],
            [row(name) for name in (SIMULATOR, DENSE, TORCH, TORCH_FRESH, TORCH_SPARSE)],
        ),
        "",
        gains + ".",
    ]
    record["rates"] = {name: {**summary([s / STEPS for s in secs]), "compile_s": runs[name].compile_s}
                       for name, secs in seconds.items()}  # fmt: skip

    small = hsbm(*SMALL_GRAPH)
    small_plan = sgd_plan(small)
    small_phi0 = initial_params(jax.random.PRNGKey(0), small_plan)
    small_runs = {name: compiled_run(scan_program(small_plan, sparse_path), small_phi0, key)
                  for name, sparse_path in ((SIMULATOR, True), (DENSE, False))}  # fmt: skip
    small_seconds = interleaved(small_runs, ROUNDS)
    lines += [
        "",
        f"The same dynsim programs at N = {small.num_nodes} (hsbm{SMALL_GRAPH[:3]}; Φ is"
        f" {small.num_nodes * K * 4 / 1e6:.2g} MB):",
        "",
        markdown_table(
            ["program", "steps/s", "ms/step"],
            [[name, _rate(secs), _ms(secs, STEPS)] for name, secs in small_seconds.items()],
        ),
        "",
        f"Sparse program / dense step there: {ratio_text(_ratio(small_seconds, DENSE, SIMULATOR))}x.",
    ]
    record["small_graph"] = {
        "nodes": small.num_nodes,
        "rates": {name: summary([x / STEPS for x in secs]) for name, secs in small_seconds.items()},
    }

    pieces = {}
    for name, program in piece_programs(plan).items():
        compiled = jax.jit(program).lower(phi0, key).compile()
        pieces[name] = timed(compiled, phi0, key, repeats=5)
    lines += [
        "",
        f"The steps in pieces at N = {n} (each piece {STEPS} times in one lax.scan, compiled alone; ms/step, median"
        " (min..max) of 5):",
        "",
        markdown_table(["piece", "ms/step"], [[name, _ms(s, STEPS)] for name, s in pieces.items()]),
    ]
    record["pieces_ms_per_step"] = {name: summary([x / STEPS * 1e3 for x in s]) for name, s in pieces.items()}
    if have_torch:
        parts = torch_pieces(torch_run)
        record["torch_pieces_ms_per_step"] = {name: value * 1e3 for name, value in parts.items()}
        lines += ["", f"PyTorch step in pieces (one run of {STEPS} steps, ms/step): "
                  + ", ".join(f"{name} {value * 1e3:.3g}" for name, value in parts.items()) + "."]  # fmt: skip
    matmul_ms = flops / step_gflops / 1e6
    memory_ms = dense_bytes / bandwidth / 1e6
    lines += [
        "",
        f"Bounds per step: the B×B similarity, forward and backward, is {flops / 1e6:.1f} MFLOP, {matmul_ms:.2f} ms at"
        f" the measured matmul throughput of its shapes; the dense N×k update moves at least {dense_bytes / 1e6:.1f} MB"
        f" (write the gradient, read Φ and the gradient, write Φ), {memory_ms:.2f} ms at {bandwidth:.1f} GB/s, and"
        f" the dense step's check reads Φ ({n * K * 4 / 1e6:.1f} MB) once more.",
    ]
    record.update(step_matmul_gflops=step_gflops, matmul_bound_ms=matmul_ms, memory_bound_ms=memory_ms)
    return lines, record


# --- 2. exact flow ------------------------------------------------------------------------------


def pi_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖aaᵀ − bbᵀ‖_F / ‖aaᵀ‖_F, through the QR factor of [a b] (exact, without forming N × N)."""
    k = a.shape[1]
    r = np.linalg.qr(np.concatenate([a, b], axis=1), mode="r")
    difference = r[:, :k] @ r[:, :k].T - r[:, k:] @ r[:, k:].T
    return float(np.linalg.norm(difference) / np.linalg.norm(a.T @ a))


def population_losses(states: np.ndarray, W: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """L(Φ) = −2 tr(ΦᵀWΦ) + ‖ΦᵀDΦ‖²_F at every save time, (T,)."""
    return np.array([-2 * np.sum(p * (W @ p)) + np.sum((p.T @ (degrees[:, None] * p)) ** 2) for p in states])


def flow_section() -> tuple[list[str], dict]:
    """The exact-flow table, in float64 (x64 on for the whole section)."""
    with jax.enable_x64(True):
        return _flow_section()


def diffrax_steps(graph: Graph, phi0: jax.Array, ts: jax.Array, solver: str) -> int:
    """Steps (accepted and rejected) of the solve ``flow(method="diffrax")`` makes, by the same ``integrate`` call
    (``flow`` returns the states only)."""
    args = (jnp.asarray(graph.W), jnp.asarray(graph.degrees))
    solve = jax.jit(lambda p: integrate(tabular_field, p, args, ts, ts[-1], None, solver=resolve_solver(solver),
                                        rtol=RTOL, atol=ATOL, max_steps=100_000))  # fmt: skip
    return int(solve(phi0).num_steps)


def _flow_section() -> tuple[list[str], dict]:
    graph = hsbm(*FLOW_GRAPH)
    n = graph.num_nodes
    start = time.perf_counter()
    eigensystem(graph)  # NumPy eigh of the N × N Ā, cached on the graph
    eigh_s = time.perf_counter() - start
    W, degrees = np.asarray(graph.W), np.asarray(graph.degrees)
    field_flops = 2 * n * n * FLOW_K
    lines = [
        f"### Exact flow: hsbm{FLOW_GRAPH[:3]}, theta {THETA} (N = {n}), k = {FLOW_K}, float64, {SAVES} save times on"
        f" [0, {T_END:g}], rtol {RTOL:g}, atol {ATOL:g}",
        "",
    ]
    phi0 = INIT_SCALE * jax.random.normal(jax.random.PRNGKey(4), (n, FLOW_K), jnp.float64)
    ts = jnp.linspace(0.0, T_END, SAVES)
    xla_gflops = matmul_gflops(n, n, FLOW_K, jnp.float64, steps=20)
    programs = {
        "dynsim flow, closed form (Riccati)": lambda p, t: flow(graph, p, t, method="closed"),
        "dynsim flow, diffrax Tsit5": lambda p, t: flow(graph, p, t, method="diffrax", rtol=RTOL, atol=ATOL,
                                                        solver="tsit5"),
        "dynsim flow, diffrax Dopri8": lambda p, t: flow(graph, p, t, method="diffrax", rtol=RTOL, atol=ATOL,
                                                         solver="dopri8"),
    }  # fmt: skip
    runs, states = {}, {}
    for name, program in programs.items():
        start = time.perf_counter()
        compiled = jax.jit(program).lower(phi0, ts).compile()
        compile_s = time.perf_counter() - start
        states[name] = np.asarray(compiled(phi0, ts))  # warm-up
        runs[name] = Run(lambda c=compiled: jax.block_until_ready(c(phi0, ts)), compile_s)
    y0, ts_np = np.asarray(phi0).ravel(), np.asarray(ts)

    def field(t, y):
        phi = y.reshape(n, FLOW_K)
        weighted = degrees[:, None] * phi
        return (4 * (W @ phi) - 4 * weighted @ (phi.T @ weighted)).ravel()

    first, evaluations = {}, {}
    for solver, stages in DIFFRAX_EVALUATIONS.items():
        steps = diffrax_steps(graph, phi0, ts, solver)
        evaluations[f"dynsim flow, diffrax {solver.capitalize()}"] = (stages * steps, steps)
    for method in ("RK45", "DOP853"):
        name = f"SciPy solve_ivp {method}"
        solve = functools.partial(solve_ivp, field, (0.0, T_END), y0, method=method, t_eval=ts_np, rtol=RTOL, atol=ATOL)
        start = time.perf_counter()
        solution = solve()
        first[name] = [time.perf_counter() - start]
        time.sleep(SCIPY_SETTLE_S)
        if solution.status != 0:
            raise SystemExit(f"{name} failed: {solution.message}")
        states[name], evaluations[name] = solution.y.T.reshape(SAVES, n, FLOW_K), (solution.nfev, None)
        runs[name] = Run(solve, 0.0, SCIPY_SETTLE_S)
    seconds = interleaved(runs, FLOW_ROUNDS, first)
    numpy_gflops = _numpy_matmul_gflops(W, np.asarray(phi0))
    substeps, back_s = closed_form_parts(graph, ts)
    back_flops = 2 * n * n * FLOW_K * SAVES

    closed = next(iter(states))
    losses = {name: population_losses(s, W, degrees) for name, s in states.items()}
    gap = float(losses[closed][-1] - minimum(graph, FLOW_K))
    rk45, dop853 = (statistics.median(seconds[f"SciPy solve_ivp {m}"]) for m in ("RK45", "DOP853"))
    rows = []
    for name in runs:
        median = statistics.median(seconds[name])
        finite = bool(np.isfinite(states[name]).all())
        distance = max(pi_distance(states[closed][i], states[name][i]) for i in range(SAVES)) if finite else np.inf
        rows.append([
            name, _ms(seconds[name]), f"{runs[name].compile_s:.2f}" if not name.startswith("SciPy") else "-",
            ratio_text(rk45 / median), ratio_text(dop853 / median),
            "-" if name == closed else f"{distance:.1e}",
            "-" if name == closed else f"{np.max(np.abs(losses[name] - losses[closed])):.1e}",
            _evaluations(*evaluations[name]) if name in evaluations else "",
        ])  # fmt: skip
    lines += [
        markdown_table(
            [
                "solver",
                "ms per solve",
                "compile s",
                "RK45 / this",
                "DOP853 / this",
                "max rel. ‖ΔΠ‖_F vs closed",
                "max abs ΔL vs closed",
                "field evals (steps)",
            ],
            rows,
        ),  # fmt: skip
        "",
        f"Median (min..max) of {FLOW_ROUNDS} interleaved runs; dynsim's after a warm-up. The closed form also needs"
        f" the eigendecomposition of Ā (NumPy eigh, N = {n}, once per graph, cached): {eigh_s:.2f} s, not in its"
        f" column. Population loss at t = {T_END:g}: L − L* = {gap:.1e}.",
        f"One field evaluation is {field_flops / 1e6:.0f} MFLOP in W Φ; float64 {n}×{n}×{FLOW_K} matmul (best of"
        f" 5 and 20): XLA"
        f" {xla_gflops:.1f} GFLOP/s, NumPy {numpy_gflops:.1f} GFLOP/s. The field evaluations' W Φ at those rates: "
        + ", ".join(
            f"{name.split(', ')[-1].replace('SciPy solve_ivp ', '')} {count * field_flops / rate / 1e9:.2f} s"
            for name, (count, _) in evaluations.items()
            for rate in [numpy_gflops if name.startswith("SciPy") else xla_gflops]
        )
        + " (dynsim's evaluations: 6 a step for Tsit5, 13 for Dopri8; SciPy's: its own count, nfev).",
        f"The closed form takes {substeps} sub-steps over the {SAVES} save intervals (each N×k products and a k×k"
        f" eigh), then maps the {SAVES} states back to the nodes, U C: {back_flops / 1e9:.1f} GFLOP,"
        f" {back_flops / xla_gflops / 1e6:.0f} ms at XLA's rate; that einsum alone, jitted: {_ms(back_s)} ms"
        " (median (min..max) of 5).",
    ]
    record = {"graph": list(FLOW_GRAPH[:3]), "theta": THETA, "nodes": n, "k": FLOW_K, "t_end": T_END, "saves": SAVES,
              "rtol": RTOL, "atol": ATOL, "eigh_s": eigh_s, "final_gap": gap, "scipy_nfev": evaluations,
              "xla_f64_matmul_gflops": xla_gflops, "numpy_f64_matmul_gflops": numpy_gflops,
              "closed_substeps": substeps, "closed_back_transform": summary(back_s),
              "solves": {name: {**summary(secs), "compile_s": runs[name].compile_s} for name, secs in seconds.items()},
              "agreement_pi": {row[0]: row[5] for row in rows},
              "agreement_loss": {row[0]: row[6] for row in rows}}  # fmt: skip
    return lines, record


def closed_form_parts(graph: Graph, ts: jax.Array) -> tuple[int, list[float]]:
    """The closed form's sub-steps (``⌈Δt max|γ|⌉`` per save interval, F-time Δt = Φ-time / N) and the wall
    seconds of its back-transformation alone, ``einsum("ij,tjk->tik", U, C)`` for every save time (best of 5)."""
    gammas, U = eigensystem(graph)
    n = graph.num_nodes
    intervals = np.diff(np.asarray(ts), prepend=0.0) / n
    substeps = int(np.sum(np.maximum(1, np.ceil(intervals * np.max(np.abs(gammas))))))
    coefficients = jax.random.normal(jax.random.PRNGKey(6), (len(intervals), n, FLOW_K), jnp.float64)
    back = jax.jit(lambda U, c: jnp.einsum("ij,tjk->tik", U, c))
    return substeps, timed(back, jnp.asarray(U), coefficients, repeats=5)


def _evaluations(count: int, steps: int | None) -> str:
    return f"{count}" if steps is None else f"{count} ({steps})"


def _numpy_matmul_gflops(a: np.ndarray, b: np.ndarray, repeats: int = 20) -> float:
    """GFLOP/s of NumPy's ``a @ b``, the best of ``repeats`` after a warm-up."""
    a @ b
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / min(seconds) / 1e9


def main() -> int:
    start = time.perf_counter()
    have_torch = peer.torch is not None
    sgd_lines, sgd_record = sgd_section(have_torch)
    print("\n".join(sgd_lines) + "\n", flush=True)
    flow_lines, flow_record = flow_section()
    print("\n".join(flow_lines), flush=True)
    wall = time.perf_counter() - start
    markdown = "\n".join([*sgd_lines, "", *flow_lines, "", f"Wall time of the benchmark: {wall:.0f} s."])
    print(f"\nWall time of the benchmark: {wall:.0f} s.")
    record = {"sgd": sgd_record, "flow": flow_record, "wall_s": wall}
    print(f"written {write_record('spectral', record, markdown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
