"""The practical system: training steps/s of its two heads beside a PyTorch eager loop of the same
heads and loss.

The heads and the loss are the defaults of the ``practical`` system (``dynsim.load_config({"system":
"practical"})``): per modality a head ``features → 256 → 256 → 64`` (``model.layers`` = 3 linear
layers, batch norm and ReLU between them, the output normalized), modality A the packaged digits'
``pix`` view (240 features), modality B their ``fou`` view (76), the symmetric InfoNCE of
:func:`dynsim.losses.infonce` on the cosine similarities at ``lam`` = 1 and inverse temperature tau =
10 (the default's longest stage), the gradient multiplied by gamma = 1/tau (``loss.rescale``), Adam at lr
1e-3, float32, at B = 1024 and at the default B = 256. The inputs: ``BATCHES`` fixed batches of
the seed's standardized training pairs (:func:`dynsim.practical.training.split`, each batch the first
B of a random permutation of them), step i on batch i mod ``BATCHES``, the same on both sides.

dynsim: the step of :func:`dynsim.practical.training.run` without its records and batch drawing:
``heads`` from one key, ``jax.value_and_grad`` of ``batch_loss`` (training mode, the batch-norm running
statistics threaded through), the gradient times gamma, the optimizer of
:func:`dynsim.engine.optimizers.optimizer`; ``STEPS[B]`` steps in one ``lax.fori_loop`` inside one
``jax.jit``, timed warm (a first call compiles it), from the same initial state every call. The
PyTorch peer, eager: per head ``nn.Sequential(Linear, BatchNorm1d, ReLU, Linear, BatchNorm1d, ReLU,
Linear)`` (``BatchNorm1d`` with momentum 0.1 and eps 1e-5, as dynsim's heads), its output divided by
its norm; the loss (``torch_peer.infonce``) per row ``logaddexp(positive, log(lam mean_{j≠i}
exp(tau s_ij)))`` minus the positive, over rows and over columns, averaged; ``loss.backward()``, every
gradient times gamma, ``torch.optim.Adam`` (betas and eps the defaults of both), a plain Python loop
of steps. Its initial weights are dynsim's (copied). Not timed: the PyTorch weights and running
statistics are reset and its optimizer rebuilt before each timed run. ``torch.set_num_threads`` is the
core count; where JAX runs on a GPU and torch sees one, the peer runs on cuda.

Checked first, at each B, in float32 from the same initial weights on the same batches: the loss of
each of ``CHECK_STEPS`` steps (the first before any update, the others after Adam's), the weights and
the running statistics after them (max-abs relative), the biases of the linear layers ahead of a
batch norm apart: batch norm subtracts the batch mean, so their gradient is zero in exact arithmetic
and each side's is float32 rounding, which Adam normalizes into steps of its own (in float64 both
sides agree on them, and on everything else, to about 1e-13). Every timing is the median (min..max) of
``ROUNDS`` rounds, the two programs interleaved round by round. FLOPs (a multiply-add counts 2;
batch norm, the loss's element-wise work and the optimizer not counted): 3 × the forward's matmuls
per step (forward + two backward products): both heads' linear layers and the B × B similarities,
2·B·(240·256 + 256·256 + 256·64) + 2·B·(76·256 + 256·256 + 256·64) + 2·B²·64. The ceiling: this
machine's float32 matmul through XLA at B × 256 × 256, best of 5.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch_peer
from _common import clock, interleaved, markdown_table, matmul_gflops, publish, ratio_text, summary

import dynsim
from dynsim.engine.optimizers import optimizer
from dynsim.practical.heads import EPS, MOMENTUM
from dynsim.practical.simulate import pairs
from dynsim.practical.simulate import problem as make_problem
from dynsim.practical.training import batch_loss, heads, split

try:
    import torch
    import torch.nn as nn
except ImportError:  # the optional extra is not installed
    torch = None

SIZES = (1024, 256)  # batch sizes B, the first
STEPS = {1024: 40, 256: 120}  # steps per timed run
ROUNDS, CHECK_STEPS, BATCHES = 7, 3, 4


# --- the configuration and dynsim's program ----------------------------------------------------


def config_of(batch: int):
    """The practical system's default configuration at batch ``batch``."""
    return dynsim.load_config({"system": "practical", "train": {"batch": batch}})


def inputs(config, problem, key) -> tuple[jax.Array, jax.Array]:
    """(BATCHES, B, d_A), (BATCHES, B, d_B): the first B of ``BATCHES`` random permutations of the
    seed's standardized training pairs (float32)."""
    data = pairs(config.data)
    shared = {side: jnp.asarray(x, jnp.float32) for side, x in (("a", data.a), ("b", data.b))}
    shared["labels"] = jnp.asarray(data.labels, jnp.float32)
    split_key, batch_key = jax.random.split(key)
    seed = split(problem, shared, split_key)
    rows = jnp.stack(
        [jax.random.permutation(k, problem.train)[: problem.batch] for k in jax.random.split(batch_key, BATCHES)]
    )
    return seed.train_a[rows], seed.train_b[rows]


def dynsim_program(problem, dims: tuple[int, int], tau: float, gamma: float, lam: float, key):
    """``(train, step, carry, static)``: ``step(carry, a, b) -> (carry, loss)`` is one step of
    :func:`dynsim.practical.training.run` on the batch (a, b), ``carry`` = (params, running statistics,
    optimizer state); ``train(carry, batches_a, batches_b, steps) -> (carry, summed loss)`` runs ``steps``
    of them in one ``fori_loop``, step i on batch i mod ``BATCHES``; both jitted. ``carry`` is the
    initial one, ``static`` the heads' non-array part."""
    models, states = heads(problem, dims, key)
    params, static = eqx.partition(models, eqx.is_array)
    transform = optimizer(problem.optimizer, problem.lr, problem.momentum)
    grad = jax.value_and_grad(batch_loss, has_aux=True)

    def step(carry, a, b):
        params, states, opt_state = carry
        (loss, states), grads = grad(params, static, states, a, b, tau, lam, problem.loss)
        grads = jax.tree.map(lambda g: gamma * g, grads)
        updates, opt_state = transform.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), states, opt_state), loss

    def train(carry, batches_a, batches_b, steps: int):
        def body(index, inner):
            carry, total = inner
            which = index % batches_a.shape[0]
            carry, loss = step(carry, batches_a[which], batches_b[which])
            return carry, total + loss

        return jax.lax.fori_loop(0, steps, body, (carry, jnp.zeros((), jnp.float32)))

    train = jax.jit(train, static_argnums=3)
    return train, jax.jit(step), (params, states, transform.init(params)), static


def forward_flops(problem, dims: tuple[int, int]) -> int:
    """Matmul FLOPs of one forward pass of both heads on a batch and of its B × B similarities."""
    b = problem.batch
    total = 0
    for features in dims:
        sizes = [features] + [problem.width] * (problem.layers - 1) + [problem.out]
        total += 2 * b * sum(x * y for x, y in zip(sizes[:-1], sizes[1:], strict=True))
    return total + 2 * b * b * problem.out


# --- the PyTorch peer ----------------------------------------------------------------------------


def torch_head(head, dtype, device):
    """The PyTorch twin of one dynsim head (its linear layers, batch norms and ReLUs), with its weights."""
    kind = {"dtype": dtype, "device": device}

    def t(array):
        return torch.tensor(np.asarray(array), **kind)

    modules = []
    for i, linear in enumerate(head.linears):
        layer = nn.Linear(linear.in_features, linear.out_features, **kind)
        with torch.no_grad():
            layer.weight.copy_(t(linear.weight))
            layer.bias.copy_(t(linear.bias))
        modules.append(layer)
        if i < len(head.linears) - 1:
            norm = nn.BatchNorm1d(linear.out_features, eps=EPS, momentum=round(1 - MOMENTUM, 6), **kind)
            with torch.no_grad():
                norm.weight.copy_(t(head.scales[i]))
                norm.bias.copy_(t(head.shifts[i]))
            modules += [norm, nn.ReLU()]
    return nn.Sequential(*modules)


def torch_embed(head, x):
    """Unit embeddings h(x) / ||h(x)|| (the head in training mode)."""
    h = head(x)
    return h / h.norm(dim=1, keepdim=True)


class EagerTraining:
    """The PyTorch loop: Adam steps of the two heads from dynsim's initial weights."""

    def __init__(self, problem, params, static, tau: float, gamma: float, lam: float, dtype, device: str):
        self.heads = tuple(torch_head(h, dtype, device) for h in eqx.combine(params, static))
        self.parameters = [p for head in self.heads for p in head.parameters()]
        self.initial = [{k: v.detach().clone() for k, v in head.state_dict().items()} for head in self.heads]
        self.lr, self.tau, self.gamma, self.lam, self.device = problem.lr, tau, gamma, lam, device

    def reset(self):
        """The initial weights and running statistics, a new optimizer (not timed)."""
        for head, initial in zip(self.heads, self.initial, strict=True):
            head.load_state_dict(initial)
            head.train()
        self.optimizer = torch.optim.Adam(self.parameters, lr=self.lr)

    def step(self, a, b):
        s = torch_embed(self.heads[0], a) @ torch_embed(self.heads[1], b).T
        loss = torch_peer.infonce(s, self.tau, self.lam)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p in self.parameters:
                p.grad.mul_(self.gamma)
        self.optimizer.step()
        return loss.detach()

    def run(self, batches, steps: int):
        """``steps`` steps, step i on ``batches[i % len(batches)]``; blocks until done."""
        for index in range(steps):
            loss = self.step(*batches[index % len(batches)])
        if self.device == "cuda":
            torch.cuda.synchronize()
        return loss

    def leaves(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The weights in dynsim's leaf order (per head: every linear's weight and bias, then the
        batch norms' scales, then their shifts), and the running statistics in dynsim's (per head: the
        running means, then the variances)."""
        weights, running = [], []
        for head in self.heads:
            linears = [m for m in head if isinstance(m, nn.Linear)]
            norms = [m for m in head if isinstance(m, nn.BatchNorm1d)]
            weights += [x for layer in linears for x in (layer.weight, layer.bias)]
            weights += [norm.weight for norm in norms] + [norm.bias for norm in norms]
            running += [norm.running_mean for norm in norms] + [norm.running_var for norm in norms]
        return [x.detach().cpu().numpy() for x in weights], [x.detach().cpu().numpy() for x in running]


def pre_norm_biases(params) -> list[bool]:
    """Per leaf of the heads' ``params``: whether it is the bias of a linear layer followed by batch
    norm (every linear but the last)."""
    flags = []
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        match = re.fullmatch(r"\[(\d+)\]\.linears\[(\d+)\]\.bias", jax.tree_util.keystr(path))
        flags.append(match is not None and int(match[2]) < len(params[int(match[1])].linears) - 1)
    return flags


def agreement(step, carry, peer, batches_a, batches_b) -> dict:
    """float32: ``CHECK_STEPS`` steps of dynsim's compiled step and of the PyTorch loop from the same
    weights on the same batches; each step's two losses, the max-abs relative differences of the
    weights and of the running statistics after them. The biases of the linear layers ahead of a batch
    norm apart: batch norm subtracts the batch mean, so their gradient is zero in exact arithmetic and
    each side's is float32 rounding, which Adam scales up to steps of up to about lr x |g| / eps; for
    them the max |Δ| and how far dynsim's moved."""
    peer.reset()
    initial = jax.tree.leaves(carry[0])
    ours, theirs = [], []
    for index in range(CHECK_STEPS):
        a, b = batches_a[index % BATCHES], batches_b[index % BATCHES]
        carry, loss = step(carry, a, b)
        ours.append(float(loss))
        theirs.append(peer.step(*(torch.from_numpy(np.array(x)).to(peer.device) for x in (a, b))).item())
    weights, running = peer.leaves()
    params, states, _ = carry
    leaves, biased = jax.tree.leaves(params), pre_norm_biases(params)
    assert [x.shape for x in leaves] == [x.shape for x in weights], "the heads differ"

    def flat(arrays, chosen):
        return np.concatenate([np.ravel(x) for x, keep in zip(arrays, biased, strict=True) if keep == chosen])

    ours_flat, peer_flat, initial_flat = (flat(x, False) for x in (leaves, weights, initial))
    ours_bias, peer_bias, initial_bias = (flat(x, True) for x in (leaves, weights, initial))
    ours_running = np.concatenate([np.ravel(x) for x in jax.tree.leaves(states)])
    peer_running = np.concatenate([np.ravel(x) for x in running])
    return {
        "steps": CHECK_STEPS,
        "dynsim_losses": ours,
        "torch_losses": theirs,
        "loss_max_rel": max(abs(x - y) / abs(y) for x, y in zip(ours, theirs, strict=True)),
        "weights_rel": float(np.max(np.abs(ours_flat - peer_flat)) / np.max(np.abs(peer_flat))),
        "weights_moved": float(np.max(np.abs(peer_flat - initial_flat))),
        "pre_norm_bias_abs": float(np.max(np.abs(ours_bias - peer_bias))),
        "pre_norm_bias_moved": float(np.max(np.abs(ours_bias - initial_bias))),
        "running_rel": float(np.max(np.abs(ours_running - peer_running)) / np.max(np.abs(peer_running))),
    }


# --- the benchmark ------------------------------------------------------------------------------


def batch_section(batch: int, rounds: int, record: dict) -> tuple[list[str], list[str]]:
    """Check and time both programs at batch ``batch``: the section's lines and its table row."""
    steps = STEPS[batch]
    config = config_of(batch)
    problem = make_problem(config, "infonce")
    tau = config.loss.stages[-1][0]
    gamma = 1 / tau if config.loss.rescale else 1.0
    lam = config.loss.lam
    batches_a, batches_b = inputs(config, problem, jax.random.PRNGKey(1))
    dims = (batches_a.shape[-1], batches_b.shape[-1])
    train, step, carry, static = dynsim_program(problem, dims, tau, gamma, lam, jax.random.PRNGKey(0))
    flops = 3 * forward_flops(problem, dims)
    ceiling = matmul_gflops(batch, problem.width, problem.width)
    entry = {"batch": batch, "steps": steps, "tau": tau, "gamma": gamma, "lam": lam, "dims": dims}
    entry |= {"flops_per_step": flops, "matmul_gflops_shape": ceiling}

    def dynsim_run():
        return clock(lambda: jax.block_until_ready(train(carry, batches_a, batches_b, steps)))

    programs = {"dynsim": dynsim_run}
    entry["first_call_s"] = first_s = dynsim_run()  # compile + one run
    lines = [
        f"B = {batch}: {steps} steps per timed run; dynsim's first call (compile + one run) {first_s:.1f} s; "
        f"FLOPs per step (3 x the forward's matmuls) {flops / 1e6:.0f} M; machine (XLA, float32, best of 5): "
        f"{batch}x{problem.width}x{problem.width} matmul {ceiling:.1f} GFLOP/s."
    ]
    if torch is not None:
        device = torch_peer.device()
        peer = EagerTraining(problem, carry[0], static, tau, gamma, lam, torch.float32, device)
        check = agreement(step, carry, peer, batches_a, batches_b)
        entry["agreement"] = check
        pairs_text = ", ".join(
            f"{x:.7f} / {y:.7f}" for x, y in zip(check["dynsim_losses"], check["torch_losses"], strict=True)
        )
        lines.append(
            f"Checked in float32 from the same weights on the same batches, {CHECK_STEPS} steps: losses "
            f"(dynsim / PyTorch) {pairs_text}, max relative difference {check['loss_max_rel']:.1e}. After them "
            f"the weights agree to {check['weights_rel']:.1e} (max-abs relative; they moved by up to "
            f"{check['weights_moved']:.1e}), the running statistics to {check['running_rel']:.1e}, but for the "
            "biases ahead of batch norm: their gradient is zero in exact arithmetic, each side's float32 rounding "
            f"is what Adam normalizes, they differ by up to {check['pre_norm_bias_abs']:.1e} (moved by up to "
            f"{check['pre_norm_bias_moved']:.1e})."
        )
        torch_batches = [
            tuple(torch.from_numpy(np.array(x[i])).to(device) for x in (batches_a, batches_b)) for i in range(BATCHES)
        ]

        def torch_run() -> float:
            peer.reset()  # not timed
            return clock(lambda: peer.run(torch_batches, steps))

        torch_run()  # warm-up
        programs["torch"] = torch_run
    seconds = interleaved(programs, rounds)
    stats = {name: summary(values) for name, values in seconds.items()}
    entry |= {f"{name}_s": value for name, value in stats.items()}
    record[f"batch_{batch}"] = entry

    def rate(name):
        s = stats[name]
        return f"{steps / s['median_s']:.1f} ({steps / s['max_s']:.1f}..{steps / s['min_s']:.1f})"

    def gflops(name):
        value = steps / stats[name]["median_s"] * flops / 1e9
        return f"{value:.1f} ({value / ceiling:.0%})"

    row = [str(batch), rate("dynsim"), f"{stats['dynsim']['median_s'] / steps * 1e3:.2f}"]
    if torch is not None:
        row += [rate("torch"), f"{stats['torch']['median_s'] / steps * 1e3:.2f}"]
        row.append(ratio_text(statistics.median(seconds["torch"]) / statistics.median(seconds["dynsim"])))
        row += [gflops("dynsim"), gflops("torch")]
    else:
        row.append(gflops("dynsim"))
    return lines, row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved timed rounds (default {ROUNDS})")
    args = parser.parse_args()
    start = time.perf_counter()
    load = os.getloadavg()[0]
    record = {"rounds": args.rounds, "load_average_at_start": load}
    lines = [f"## practical: training steps of the two heads (load average {load:.2f} at the start)"]
    if torch is not None:
        torch.set_num_threads(os.cpu_count())
        lines.append(
            f"PyTorch {torch.__version__} eager peer ({torch_peer.device()}, {torch.get_num_threads()} threads)."
        )
    else:
        lines.append("PyTorch is not installed (pip install -e .[bench]): its columns and the checks are missing.")
    config = config_of(SIZES[0])
    data = pairs(config.data)
    lines.append(
        f"Heads {config.data.view_a} ({data.a.shape[1]}) and {config.data.view_b} ({data.b.shape[1]}) "
        f"→ {config.model.width} → {config.model.width} → {config.model.out} "
        f"(model.layers = {config.model.layers}, batch norm, ReLU), symmetric InfoNCE (lam = {config.loss.lam}, "
        f"tau = {config.loss.stages[-1][0]}, gradient x 1/tau), Adam lr {config.train.lr}, float32; "
        f"median (min..max) of {args.rounds} interleaved rounds."
    )
    section, rows = [], []
    for batch in SIZES:
        text, row = batch_section(batch, args.rounds, record)
        section += text
        rows.append(row)
    if torch is not None:
        header = [
            "B",
            "dynsim steps/s",
            "dynsim ms per step",
            "PyTorch steps/s",
            "PyTorch ms per step",
            "dynsim / PyTorch",
        ]
        header += ["dynsim GFLOP/s (of matmul)", "PyTorch GFLOP/s (of matmul)"]
    else:
        header = ["B", "dynsim steps/s", "ms per step", "dynsim GFLOP/s (of matmul)"]
    record["wall_s"] = time.perf_counter() - start
    record["load_average_at_end"] = os.getloadavg()[0]
    tail = (
        f"Whole run (after imports): {record['wall_s']:.0f} s; load average {record['load_average_at_end']:.2f} "
        "at the end."
    )
    publish("practical", record, [*lines, *section], "\n\n".join([markdown_table(header, rows), tail]))


if __name__ == "__main__":
    main()
