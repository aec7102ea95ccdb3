"""The jghm system: CLIP training of its two towers beside a PyTorch eager loop, and its exact
inference (belief propagation) beside NumPy.

1. MLP towers, the minimal configuration (``tree(3, 2, 4, 0.2, 42)``: T = 8 leaves, V = 4 states;
   the ``model`` and ``train`` defaults: ``mlp``, width 256, ``model.layers`` = 3, out q = 16, B = 256,
   AdamW lr 1e-3 → 1e-6 on a cosine schedule, weight decay 1e-3, gradient-norm clip 1.0), float32.
   The tower is whatever ``dynsim.jghm.encoders.tower`` builds for ``model.layers`` (``--mlp-layers``),
   and the peer copies its shapes; the table's title names its linear layers (32 → 256 → 256 → 16 at
   the default).
2. Transformer towers on the same tree: d = 32, 2 blocks, 1 head, q = 16, B = 256, same optimizer.

   dynsim: the training loop of :func:`dynsim.jghm.training.run` without its records: ``towers``,
   ``optimizer`` (its schedule over the timed steps), ``clip_loss`` (no guidance), each step on B
   fresh pairs from :func:`dynsim.jghm.tree.sample` at ``fold_in(key, step)``, ``STEPS`` steps in one
   ``lax.fori_loop`` inside one ``jax.jit``; timed warm (a first call compiles it), from the same
   initial state every call. The PyTorch peer, eager, the same model and shapes: per tower
   ``nn.Sequential`` of the MLP's ``nn.Linear`` layers (shapes read off dynsim's tower) with
   ``nn.GELU(approximate="tanh")`` (``jax.nn.gelu``'s default) between them, on the one-hot leaves
   flattened position-major; or token ``nn.Embedding`` plus a learned positional embedding,
   pre-LayerNorm blocks ``h + MHA(LN(h))``, ``h + MLP(LN(h))`` (``nn.MultiheadAttention`` with
   ``bias=False``, as equinox's attention has no biases; MLP d → 4d → d), a per-token
   ``nn.Linear(d, q)`` readout and a learned linear pooling over the T positions. The loss: logits
   U Vᵀ, ``F.cross_entropy`` over rows plus over columns (dynsim's ``clip_loss``, the two directions
   summed, mean over the batch), ``loss.backward()``, ``clip_grad_norm_(·, 1.0)``,
   ``torch.optim.AdamW`` (weight decay 1e-3, betas and eps the defaults of both), ``CosineAnnealingLR``
   to 1e-6 over the timed steps. Its initial weights are dynsim's (copied). Each step draws its B
   pairs with a NumPy sampler of the tree (:func:`numpy_sample`: per level, every child's state by
   inverse CDF from its parent's row of T), so both sides' timings include drawing the batch;
   drawing alone is timed for both in its own table (dynsim: ``sample`` in the same ``fori_loop``;
   NumPy: the sampler per batch, the same count). Not timed: the PyTorch optimizer and schedule are
   rebuilt and the weights reset before each timed run. ``torch.set_num_threads`` is the core count; where JAX runs
   on a GPU and torch sees one, the peer runs on cuda (the sampler on the host).

3. Belief propagation on the paper-size tree (``tree(4, 3, 10, 0.2, 42)``: 81 leaves, V = 10),
   n = 4096 image trees drawn once: ``jax.jit`` of :func:`dynsim.jghm.bp.root_posterior` in float64
   and in float32 against the same upward pass in NumPy, float64 (:func:`numpy_root_posterior`: per
   level the children reshaped (n, nodes, m, V), max-shifted ``np.einsum(..., optimize=True)``, log,
   summed over the children; then the prior and a softmax). Agreement: max |Δ| of the posteriors
   against NumPy's. NumPy's einsum runs in OpenBLAS on every core; each NumPy run is followed by an
   untimed pause of ``SETTLE_S`` (see there).

Checked first, in float64: dynsim's compiled program and the PyTorch loop from the same initial
weights on the same pairs (dynsim's draws), ``CHECK_STEPS`` steps with the cosine schedule over those
steps: the losses summed over the steps and the weights after them (max-abs relative); where the
clip acts (gradient norm above 1) they differ by more than rounding, because ``clip_grad_norm_``
scales by 1/(norm + 10⁻⁶) and optax by 1/norm. And both samplers' joint frequencies of (image leaf t,
text leaf t) against the exact ones. Every timing is the median
(min..max) of ``ROUNDS`` rounds, the programs of a section interleaved round by round. FLOPs (a
multiply-add counts 2; element-wise work, softmax, LayerNorm and the optimizer not counted): 3 × the
forward's matmuls per step (forward + two backward products) — the towers' linear layers, the
attention's QKᵀ and AV, the readout and pooling, and the B × B logits. The ceiling: this machine's
float32 matmul through XLA at the step's largest shape (B × 256 × 256 for the MLP, (B·T) × d × 4d
for the transformer), best of 5.
"""

from __future__ import annotations

import argparse
import os
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
from dynsim.jghm.bp import root_posterior
from dynsim.jghm.simulate import problem as make_problem
from dynsim.jghm.training import clip_loss, optimizer, towers
from dynsim.jghm.tree import Tree, sample, tree

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # the optional extra is not installed
    torch = None

TRAIN_TREE = dict(depth=3, branching=2, states=4, flip=0.2, seed=42)
BP_TREE = dict(depth=4, branching=3, states=10, flip=0.2, seed=42)
BP_TREES = 4096
MODELS = {
    "mlp": {"architecture": "mlp"},  # the defaults: width 256, layers 3, heads 1, out 16
    "transformer": {"architecture": "transformer", "width": 32, "layers": 2, "heads": 1, "out": 16},
}
STEPS = {"mlp": 100, "transformer": 50}  # steps per timed run
ROUNDS, CHECK_STEPS, BP_ROUNDS, SAMPLER_CHECK = 7, 3, 7, 1 << 15
# NumPy's einsum runs its products in OpenBLAS, whose worker threads keep the cores busy for a moment
# after the last one: a jitted BP call right after a NumPy one took 101-113 ms against 62-89 ms after
# a pause of this length (medians of 7, by hand), so the NumPy runs are followed by it (not timed).
SETTLE_S = 0.3


# --- the configuration and dynsim's program ----------------------------------------------------


def config_of(kind: str, steps: int, mlp_layers: int):
    """The jghm configuration of a section: the defaults, the section's towers, ``steps`` steps."""
    model = dict(MODELS[kind], **({"layers": mlp_layers} if kind == "mlp" else {}))
    tables = {"tree": TRAIN_TREE, "model": model, "train": {"steps": steps}, "run": {"record_every": steps}}
    return dynsim.load_config({"system": "jghm", **tables})


def dynsim_program(config, key):
    """``(train, params, state, static, key)``: ``train(params, state, model, key)`` runs the
    configuration's steps as :func:`dynsim.jghm.training.run` does (without its records), jitted, from
    the towers' initial ``params`` (``static``: the rest of them) and the optimizer's initial ``state``;
    ``key`` is the training key (the draws of step i come from ``fold_in(key, i)``)."""
    problem = make_problem(config)
    steps = problem.records[-1]
    init_key, train_key = jax.random.split(key)
    params, static = eqx.partition(towers(problem, config.tree.model(), init_key), eqx.is_array)
    transform = optimizer(problem)
    grad = jax.value_and_grad(clip_loss, has_aux=True)

    def train(params, state, model: Tree, key):
        def step(index, carry):
            params, state, total = carry
            image, text, _ = sample(model, jax.random.fold_in(key, index), problem.batch)
            (_, loss), grads = grad(params, static, (image, text), ((), ()), 0.0)
            updates, state = transform.update(grads, state, params)
            return optax.apply_updates(params, updates), state, total + loss

        return jax.lax.fori_loop(0, steps, step, (params, state, jnp.zeros(())))

    return jax.jit(train), params, transform.init(params), static, train_key


def dynsim_sampler(problem, steps: int):
    """``(model, key) -> checksum``: only the drawing of ``steps`` batches, in the same ``fori_loop``."""

    def draw(model, key):
        def step(index, total):
            image, text, _ = sample(model, jax.random.fold_in(key, index), problem.batch)
            return total + image[0, 0] + text[-1, -1]

        return jax.lax.fori_loop(0, steps, step, jnp.zeros((), jnp.int32))

    return jax.jit(draw)


def forward_flops(problem, leaves: int, states: int) -> int:
    """Matmul FLOPs of one forward pass of both towers on a batch and of its B × B logits."""
    b, q = problem.batch, problem.out
    if problem.architecture == "mlp":
        sizes = [leaves * states] + [problem.width] * (problem.layers - 1) + [q]  # model.layers linear maps
        per_pair = sum(2 * a * c for a, c in zip(sizes[:-1], sizes[1:], strict=False))
    else:
        d = problem.width
        per_token = problem.layers * (2 * 4 * d * d + 2 * 2 * 4 * d * d + 2 * 2 * leaves * d) + 2 * d * q
        per_pair = leaves * per_token + 2 * leaves * q
    return 2 * b * per_pair + 2 * b * b * q


# --- the NumPy sampler and BP -------------------------------------------------------------------


def numpy_sample(cdfs: dict, prior: np.ndarray, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(image, text) leaves (n, m^L) of n joint draws: y ~ prior, then each tree level by level, every
    child's state by inverse CDF from its parent's row (``cdfs``: per modality the (L, m, V, V) cumulative
    sums of T over the child's state)."""
    roots = np.minimum((rng.random(n)[:, None] > np.cumsum(prior)).sum(axis=1), prior.size - 1)
    out = []
    for modality in ("image", "text"):
        cdf = cdfs[modality]
        states = cdf.shape[-1]
        level = roots[:, None]
        for layer in range(cdf.shape[0]):
            rows = cdf[layer][:, level]  # (m, n, nodes, V): child c's CDF given its parent
            u = rng.random(rows.shape[:-1] + (1,))
            children = np.minimum((u > rows).sum(axis=-1), states - 1)
            level = children.transpose(1, 2, 0).reshape(n, -1)  # child c of node j is node m j + c
        out.append(level)
    return out[0], out[1]


def exact_pair_marginals(model: Tree) -> np.ndarray:
    """(T, V, V) P(image leaf t = a, text leaf t = b): Σ_y p(y) P_im(leaf t = a | y) P_tx(leaf t = b | y)."""
    laws = []
    for modality in ("image", "text"):
        transitions = model.transitions[modality]
        depth, branching = transitions.shape[:2]
        per_leaf = []
        for leaf in range(branching**depth):
            law = np.eye(model.states)
            for layer in range(depth):
                law = law @ transitions[layer, leaf // branching ** (depth - 1 - layer) % branching]
            per_leaf.append(law)
        laws.append(np.stack(per_leaf))  # (T, V_y, V)
    return np.einsum("y,tya,tyb->tab", model.prior, laws[0], laws[1])


def pair_frequencies(image, text, states: int) -> np.ndarray:
    """(T, V, V) empirical frequencies of (image leaf t, text leaf t)."""
    image, text = np.asarray(image), np.asarray(text)
    codes = image * states + text  # (n, T)
    counts = [np.bincount(codes[:, t], minlength=states * states) for t in range(codes.shape[1])]
    return np.stack(counts).reshape(-1, states, states) / image.shape[0]


def numpy_root_posterior(transitions: np.ndarray, prior: np.ndarray, leaves: np.ndarray) -> np.ndarray:
    """(n, V) p(y | leaves) by the upward pass, NumPy float64: per level (n, nodes, m, V) children,
    q = log Σ_s' T[c, s, s'] e^{h - max} + max, summed over the children c."""
    depth, branching, states = transitions.shape[:3]
    h = np.where(np.arange(states) == leaves[..., None], 0.0, -np.inf)  # log 1[s = x]
    with np.errstate(divide="ignore"):
        for layer in range(depth - 1, -1, -1):
            children = h.reshape(h.shape[0], -1, branching, states)
            top = children.max(axis=-1, keepdims=True)
            top = np.where(np.isfinite(top), top, 0.0)
            total = np.einsum("njcv,csv->njcs", np.exp(children - top), transitions[layer], optimize=True)
            h = (np.log(total) + top).sum(axis=2)
        logits = np.log(prior) + h[:, 0]
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


# --- the PyTorch peer ----------------------------------------------------------------------------


def torch_tower(tower, dtype, device):
    """The PyTorch twin of one dynsim tower, built in ``dtype`` on ``device``, with its weights."""
    kind = {"dtype": dtype, "device": device}

    def t(array):
        return torch.tensor(np.asarray(array), **kind)

    def linear(layer):
        out = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, **kind)
        with torch.no_grad():
            out.weight.copy_(t(layer.weight))
            if layer.bias is not None:
                out.bias.copy_(t(layer.bias))
        return out

    def mlp(eqx_mlp):
        modules = []
        for index, layer in enumerate(eqx_mlp.layers):
            modules.append(linear(layer))
            if index < len(eqx_mlp.layers) - 1:
                modules.append(nn.GELU(approximate="tanh"))  # jax.nn.gelu's default
        return nn.Sequential(*modules)

    def layer_norm(norm):
        out = nn.LayerNorm(norm.shape, eps=norm.eps, **kind)
        with torch.no_grad():
            out.weight.copy_(t(norm.weight))
            out.bias.copy_(t(norm.bias))
        return out

    if hasattr(tower, "mlp"):
        return OneHotMLP(mlp(tower.mlp), tower.states)
    blocks = []
    for block in tower.blocks:
        a = block.attention
        attention = nn.MultiheadAttention(a.query_size, a.num_heads, bias=False, batch_first=True, **kind)
        with torch.no_grad():
            attention.in_proj_weight.copy_(
                torch.cat([t(p.weight) for p in (a.query_proj, a.key_proj, a.value_proj)], dim=0)
            )
            attention.out_proj.weight.copy_(t(a.output_proj.weight))
        blocks.append(
            TorchBlock(layer_norm(block.attention_norm), attention, layer_norm(block.mlp_norm), mlp(block.mlp))
        )
    embedding = nn.Embedding(*tower.embedding.weight.shape, **kind)
    with torch.no_grad():
        embedding.weight.copy_(t(tower.embedding.weight))
    return TorchTransformer(embedding, t(tower.position), blocks, linear(tower.readout), t(tower.pooling))


if torch is not None:

    class OneHotMLP(nn.Module):
        """E(x) = MLP(one_hot(x) flattened position-major)."""

        def __init__(self, mlp, states: int):
            super().__init__()
            self.mlp, self.states = mlp, states

        def forward(self, leaves):
            one_hot = F.one_hot(leaves, self.states).to(self.mlp[0].weight.dtype)
            return self.mlp(one_hot.flatten(1))

    class TorchBlock(nn.Module):
        """Pre-LayerNorm block: h + MHA(LN(h)), then h + MLP(LN(h))."""

        def __init__(self, attention_norm, attention, mlp_norm, mlp):
            super().__init__()
            self.attention_norm, self.attention, self.mlp_norm, self.mlp = attention_norm, attention, mlp_norm, mlp

        def forward(self, h):
            normed = self.attention_norm(h)
            h = h + self.attention(normed, normed, normed, need_weights=False)[0]
            return h + self.mlp(self.mlp_norm(h))

    class TorchTransformer(nn.Module):
        """Token + positional embedding, the blocks, a per-token readout, linear pooling over positions."""

        def __init__(self, embedding, position, blocks, readout, pooling):
            super().__init__()
            self.embedding, self.blocks, self.readout = embedding, nn.ModuleList(blocks), readout
            self.position, self.pooling = nn.Parameter(position), nn.Parameter(pooling)

        def forward(self, leaves):
            h = self.embedding(leaves) + self.position
            for block in self.blocks:
                h = block(h)
            return self.pooling @ self.readout(h)


def torch_loss(image_tower, text_tower, image, text):
    """The symmetric in-batch CLIP loss: cross-entropy over rows plus over columns of U Vᵀ."""
    logits = image_tower(image) @ text_tower(text).T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)


class EagerTraining:
    """The PyTorch loop: ``steps`` AdamW steps of the two towers from dynsim's initial weights."""

    def __init__(self, config, params, static, dtype, device: str, steps: int):
        image, text = eqx.combine(params, static)
        self.towers = (torch_tower(image, dtype, device), torch_tower(text, dtype, device))
        self.parameters = [p for tower in self.towers for p in tower.parameters()]
        self.initial = [p.detach().clone() for p in self.parameters]
        self.train, self.device, self.steps = config.train, device, steps

    def reset(self):
        """The initial weights, a new optimizer and schedule (not timed)."""
        with torch.no_grad():
            for p, p0 in zip(self.parameters, self.initial, strict=True):
                p.copy_(p0)
        t = self.train
        self.optimizer = torch.optim.AdamW(self.parameters, lr=t.lr, weight_decay=t.weight_decay)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, self.steps, eta_min=t.lr_final)

    def step(self, image, text):
        image = torch.from_numpy(image).to(self.device)
        text = torch.from_numpy(text).to(self.device)
        loss = torch_loss(*self.towers, image, text)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters, self.train.clip)
        self.optimizer.step()
        self.schedule.step()
        return loss.detach()

    def run(self, draw):
        """``steps`` steps, each on ``draw()`` (image, text) leaves; blocks until done."""
        for _ in range(self.steps):
            loss = self.step(*draw())
        if self.device == "cuda":
            torch.cuda.synchronize()
        return loss


def agreement(kind: str, mlp_layers: int) -> dict:
    """float64: dynsim's program and the PyTorch loop, ``CHECK_STEPS`` steps from the same weights on
    dynsim's draws; relative differences of the summed losses of the steps and (max-abs) of the final
    weights, and how far the weights moved."""
    config = config_of(kind, CHECK_STEPS, mlp_layers)
    with jax.enable_x64(True):
        model = config.tree.model()
        train, params, state, static, key = dynsim_program(config, jax.random.PRNGKey(0))
        batch = make_problem(config).batch
        draws = [sample(model, jax.random.fold_in(key, i), batch)[:2] for i in range(CHECK_STEPS)]
        draws = [(np.array(image), np.array(text)) for image, text in draws]
        ours, _, total = train(params, state, model, key)
        peer = EagerTraining(config, params, static, torch.float64, "cpu", CHECK_STEPS)
        peer.reset()
        theirs = sum(peer.step(*draw).item() for draw in draws)
        ours_flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(ours)])
        names = flat_names(eqx.combine(ours, static))
    peer_flat = torch_flat(peer, names)
    assert peer_flat.size == ours_flat.size == sum(p.numel() for p in peer.parameters), "the towers differ"
    return {
        "steps": CHECK_STEPS,
        "loss_rel": abs(float(total) - theirs) / abs(theirs),
        "weights_rel": float(np.max(np.abs(ours_flat - peer_flat)) / np.max(np.abs(peer_flat))),
        "weights_moved": float(np.max(np.abs(peer_flat - torch_flat_initial(peer, names)))),
    }


def flat_names(towers_pair) -> list[str]:
    """The role of every array leaf of the two towers, in ``jax.tree.leaves`` order."""
    paths = jax.tree_util.tree_flatten_with_path(eqx.filter(towers_pair, eqx.is_array))[0]
    return [jax.tree_util.keystr(path) for path, _ in paths]


def _torch_arrays(peer, source) -> dict:
    """dynsim's leaf path -> the PyTorch array holding the same weights (``source``: parameters or initial)."""
    arrays = dict(zip((id(p) for p in peer.parameters), source, strict=True))
    out = {}
    for index, tower in enumerate(peer.towers):
        prefix = f"[{index}]"

        def get(p):
            return arrays[id(p)].detach().cpu().numpy()

        if isinstance(tower, OneHotMLP):
            linears = [m for m in tower.mlp if isinstance(m, nn.Linear)]
            for i, layer in enumerate(linears):
                out[f"{prefix}.mlp.layers[{i}].weight"] = get(layer.weight)
                out[f"{prefix}.mlp.layers[{i}].bias"] = get(layer.bias)
            continue
        out[f"{prefix}.embedding.weight"] = get(tower.embedding.weight)
        out[f"{prefix}.position"] = get(tower.position)
        out[f"{prefix}.pooling"] = get(tower.pooling)
        out[f"{prefix}.readout.weight"] = get(tower.readout.weight)
        out[f"{prefix}.readout.bias"] = get(tower.readout.bias)
        for b, block in enumerate(tower.blocks):
            base = f"{prefix}.blocks[{b}]"
            for norm in ("attention_norm", "mlp_norm"):
                out[f"{base}.{norm}.weight"] = get(getattr(block, norm).weight)
                out[f"{base}.{norm}.bias"] = get(getattr(block, norm).bias)
            q, k, v = np.split(get(block.attention.in_proj_weight), 3)
            for name, value in (("query_proj", q), ("key_proj", k), ("value_proj", v)):
                out[f"{base}.attention.{name}.weight"] = value
            out[f"{base}.attention.output_proj.weight"] = get(block.attention.out_proj.weight)
            linears = [m for m in block.mlp if isinstance(m, nn.Linear)]
            for i, layer in enumerate(linears):
                out[f"{base}.mlp.layers[{i}].weight"] = get(layer.weight)
                out[f"{base}.mlp.layers[{i}].bias"] = get(layer.bias)
    return out


def torch_flat(peer, names) -> np.ndarray:
    """The peer's current weights flattened in dynsim's leaf order (every leaf must have its twin)."""
    arrays = _torch_arrays(peer, peer.parameters)
    return np.concatenate([np.ravel(arrays[name]) for name in names])


def torch_flat_initial(peer, names) -> np.ndarray:
    """The peer's initial weights, in dynsim's leaf order."""
    arrays = _torch_arrays(peer, peer.initial)
    return np.concatenate([np.ravel(arrays[name]) for name in names])


# --- the benchmark ------------------------------------------------------------------------------


def timing_rows(seconds: dict, entry: dict, reference: float, cells) -> list[list[str]]:
    """One table row per program: its name, ``cells(stats)``, and its speed against ``reference``
    (median seconds); each program's statistics also go to ``entry``."""
    rows = []
    for name, values in seconds.items():
        stats = summary(values)
        entry[name] = stats
        rows.append([name, *cells(stats), ratio_text(reference / stats["median_s"])])
    return rows


def training_section(kind: str, mlp_layers: int, rounds: int, record: dict) -> str:
    """Time dynsim's program and the PyTorch loop of one tower kind: the section's text and table."""
    steps = STEPS[kind]
    config = config_of(kind, steps, mlp_layers)
    problem = make_problem(config)
    model = config.tree.model()
    train, params, state, static, key = dynsim_program(config, jax.random.PRNGKey(0))
    leaves = model.leaves("image")
    flops = 3 * forward_flops(problem, leaves, model.states)
    if kind == "mlp":
        shape = (problem.batch, problem.width, problem.width)
    else:
        shape = (problem.batch * leaves, problem.width, 4 * problem.width)
    ceiling = matmul_gflops(*shape)
    dynsim_name = f"dynsim (jit, fori_loop of {steps} steps)"
    programs = {dynsim_name: lambda: clock(lambda: jax.block_until_ready(train(params, state, model, key)))}
    first_s = programs[dynsim_name]()  # compile + one run
    image_tower = eqx.combine(params, static)[0]
    if kind == "mlp":
        layers = image_tower.mlp.layers
        sizes = " → ".join(str(x) for x in [layers[0].in_features, *(layer.out_features for layer in layers)])
        described = f"MLP towers {sizes} (model.layers = {problem.layers}: {len(layers)} linear layers, GELU)"
    else:
        described = (
            f"transformer towers, d = {problem.width}, {problem.layers} blocks, {problem.heads} head, "
            f"T = {leaves} tokens"
        )
    entry = {"steps": steps, "problem": problem._asdict(), "flops_per_step": flops, "matmul_gflops_shape": ceiling}
    entry["first_call_s"] = first_s
    lines = [
        f"### {kind}: {described}, q = {problem.out}, B = {problem.batch}, float32",
        f"{steps} steps per timed run, median (min..max) of {rounds} interleaved rounds; dynsim's first call "
        f"(compile + one run) {first_s:.1f} s. FLOPs per step (3 x the forward's matmuls) {flops / 1e6:.0f} M; "
        f"machine (XLA, float32, best of 5): {'x'.join(map(str, shape))} matmul {ceiling:.1f} GFLOP/s.",
    ]
    if torch is not None:
        check = agreement(kind, mlp_layers)
        entry["agreement"] = check
        lines.append(
            f"Checked in float64 from the same weights on dynsim's draws, {CHECK_STEPS} steps (cosine over "
            f"them): the summed losses agree to {check['loss_rel']:.1e}, the weights after them to "
            f"{check['weights_rel']:.1e} (max-abs relative; they moved by up to {check['weights_moved']:.1e})."
        )
        device = torch_peer.device()
        peer = EagerTraining(config, params, static, torch.float32, device, steps)
        cdfs = {m: np.cumsum(model.transitions[m], axis=-1) for m in ("image", "text")}
        rng = np.random.default_rng(0)

        def draw():
            return numpy_sample(cdfs, model.prior, problem.batch, rng)

        def torch_run() -> float:
            peer.reset()  # not timed
            return clock(lambda: peer.run(draw))

        torch_run()  # warm-up
        programs[f"PyTorch eager ({device}, {torch.get_num_threads()} threads, NumPy sampler)"] = torch_run
    seconds = interleaved(programs, rounds)
    reference = statistics.median(seconds[list(seconds)[-1]])
    rows = []
    for name, values in seconds.items():
        stats = summary(values)
        entry[name] = stats
        rate = steps / stats["median_s"]
        gflops = rate * flops / 1e9
        rows.append(
            [
                name,
                f"{rate:.1f} ({steps / stats['max_s']:.1f}..{steps / stats['min_s']:.1f})",
                f"{stats['median_s'] / steps * 1e3:.2f}",
                ratio_text(reference / stats["median_s"]) if torch is not None else "",
                f"{gflops:.1f} ({gflops / ceiling:.0%})",
            ]
        )
    record[kind] = entry
    table = markdown_table(["program", "steps/s", "ms per step", "speed vs PyTorch", "GFLOP/s (of matmul)"], rows)
    return "\n\n".join([*lines, table])


def sampling_section(mlp_layers: int, rounds: int, record: dict) -> str:
    """Drawing B pairs alone, dynsim's ``sample`` in a ``fori_loop`` against the NumPy sampler, and both
    samplers' joint leaf frequencies against the exact ones."""
    steps = STEPS["mlp"]
    config = config_of("mlp", steps, mlp_layers)
    problem, model = make_problem(config), config.tree.model()
    key = jax.random.PRNGKey(1)
    draw = dynsim_sampler(problem, steps)
    cdfs = {m: np.cumsum(model.transitions[m], axis=-1) for m in ("image", "text")}
    rng = np.random.default_rng(1)

    def numpy_draws():
        for _ in range(steps):
            numpy_sample(cdfs, model.prior, problem.batch, rng)

    programs = {
        "dynsim tree.sample (jit, fori_loop)": lambda: clock(lambda: jax.block_until_ready(draw(model, key))),
        "NumPy sampler (numpy_sample)": lambda: clock(numpy_draws),
    }
    for call in programs.values():
        call()  # warm-up (compiles dynsim's)
    seconds = interleaved(programs, rounds)
    exact = exact_pair_marginals(model)
    ours = pair_frequencies(*sample(model, jax.random.PRNGKey(2), SAMPLER_CHECK)[:2], model.states)
    theirs = pair_frequencies(*numpy_sample(cdfs, model.prior, SAMPLER_CHECK, np.random.default_rng(2)), model.states)
    error = np.sqrt(exact * (1 - exact) / SAMPLER_CHECK)  # the binomial standard error of each frequency
    check = {
        "draws": SAMPLER_CHECK,
        "dynsim_max_abs": float(np.max(np.abs(ours - exact))),
        "numpy_max_abs": float(np.max(np.abs(theirs - exact))),
        "dynsim_max_z": float(np.max(np.abs(ours - exact) / error)),
        "numpy_max_z": float(np.max(np.abs(theirs - exact) / error)),
    }
    entry = {"steps": steps, "batch": problem.batch, "check": check}
    reference = statistics.median(seconds["NumPy sampler (numpy_sample)"])
    rows = timing_rows(
        seconds,
        entry,
        reference,
        lambda stats: [
            f"{steps / stats['median_s']:.0f} ({steps / stats['max_s']:.0f}..{steps / stats['min_s']:.0f})",
            f"{stats['median_s'] / steps * 1e3:.3f}",
        ],
    )
    record["sampling"] = entry
    lines = [
        f"### Drawing a batch alone: B = {problem.batch} joint pairs of the depth-3 tree, {steps} batches per run",
        f"Both samplers' frequencies of (image leaf t, text leaf t) over {SAMPLER_CHECK} draws against the exact "
        f"ones: max |Δ| {check['dynsim_max_abs']:.1e} (dynsim), {check['numpy_max_abs']:.1e} (NumPy), at most "
        f"{check['dynsim_max_z']:.1f} and {check['numpy_max_z']:.1f} binomial standard errors over the "
        f"{exact.size} cells.",
    ]
    table = markdown_table(["sampler", "batches/s", "ms per batch", "speed vs NumPy"], rows)
    return "\n\n".join([*lines, table])


def bp_section(rounds: int, record: dict) -> str:
    """``root_posterior`` jitted in float64 and float32 against the NumPy upward pass, n trees."""
    model = tree(**BP_TREE)
    leaves = np.asarray(sample(model, jax.random.PRNGKey(3), BP_TREES)[0])
    transitions = model.transitions["image"]
    posterior = jax.jit(lambda model, leaves: root_posterior(model, leaves, "image"))
    programs, first, results = {}, {}, {}
    for precision, x64 in (("float64", True), ("float32", False)):
        with jax.enable_x64(x64):
            args = (model, jnp.asarray(leaves))

            def call(args=args, x64=x64):
                with jax.enable_x64(x64):
                    return clock(lambda: jax.block_until_ready(posterior(*args)))

            name = f"dynsim bp.root_posterior (jit, {precision})"
            first[name] = call()
            results[precision] = np.asarray(posterior(*args), dtype=np.float64)
            programs[name] = call
    reference_posterior = numpy_root_posterior(transitions, model.prior, leaves)

    def numpy_call() -> float:
        elapsed = clock(lambda: numpy_root_posterior(transitions, model.prior, leaves))
        time.sleep(SETTLE_S)  # OpenBLAS's threads spin after its last product and slow what runs next
        return elapsed

    programs["NumPy upward pass (float64)"] = numpy_call
    seconds = interleaved(programs, rounds)
    agree = {p: float(np.max(np.abs(results[p] - reference_posterior))) for p in results}
    entry = {"tree": BP_TREE, "trees": BP_TREES, "max_abs_vs_numpy": agree, "first_call_s": first}
    reference = statistics.median(seconds["NumPy upward pass (float64)"])
    rows = timing_rows(
        seconds,
        entry,
        reference,
        lambda stats: [
            f"{stats['median_s'] * 1e3:.1f} ({stats['min_s'] * 1e3:.1f}..{stats['max_s'] * 1e3:.1f})",
            f"{BP_TREES / stats['median_s']:.0f}",
        ],
    )
    record["bp"] = entry
    lines = [
        f"### Belief propagation: root posteriors of n = {BP_TREES} image trees, depth {BP_TREE['depth']}, "
        f"branching {BP_TREE['branching']} ({model.leaves('image')} leaves), V = {BP_TREE['states']}",
        f"Median (min..max) of {rounds} interleaved rounds; dynsim's first calls (compile + one run) "
        + ", ".join(f"{value:.2f} s" for value in first.values())
        + f". Max |Δ| of the posteriors against NumPy's: {agree['float64']:.1e} (float64), "
        f"{agree['float32']:.1e} (float32).",
    ]
    table = markdown_table(["program", "ms per call", "trees/s", "speed vs NumPy"], rows)
    return "\n\n".join([*lines, table])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved timed rounds (default {ROUNDS})")
    default_layers = config_of("mlp", 1, 3).model.layers
    parser.add_argument(
        "--mlp-layers", type=int, default=default_layers, help=f"model.layers of the MLP (default {default_layers})"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    load = os.getloadavg()[0]
    record = {"rounds": args.rounds, "load_average_at_start": load}
    lines = [f"## jghm: CLIP training and belief propagation (load average {load:.2f} at the start)"]
    if torch is not None:
        torch.set_num_threads(os.cpu_count())
        lines.append(f"PyTorch {torch.__version__} eager peer, {torch.get_num_threads()} threads.")
    else:
        lines.append("PyTorch is not installed (pip install -e .[bench]): its rows and the checks are missing.")
    sections = [
        training_section("mlp", args.mlp_layers, args.rounds, record),
        training_section("transformer", args.mlp_layers, args.rounds, record),
        sampling_section(args.mlp_layers, args.rounds, record),
        bp_section(BP_ROUNDS, record),
    ]
    record["wall_s"] = time.perf_counter() - start
    record["load_average_at_end"] = os.getloadavg()[0]
    sections.append(
        f"Whole run (after imports): {record['wall_s']:.0f} s; load average {record['load_average_at_end']:.2f} "
        "at the end."
    )
    publish("jghm", record, lines, "\n\n".join(sections))


if __name__ == "__main__":
    main()
