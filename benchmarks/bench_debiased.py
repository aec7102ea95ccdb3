"""The debiased contrastive loss in the official code's in-batch form, and its gradient, beside a
PyTorch eager implementation of the same formula (issue 15).

B = 512 data, two views each, k = 128, temperature 0.5, τ⁺ = 0.1, float32. The inputs are the raw
projections (2 × B × k); both sides normalize them to unit rows, form the 2B × 2B similarities,
mask out each anchor and its positive, and take ``Ng = max((−τ⁺ N pos + Σ neg) / (1 − τ⁺),
N e^{−1/t})`` with N = 2B − 2 and the loss ``mean(−log(pos / (pos + Ng)))``; one call is the loss
and the gradient with respect to both views.

- dynsim: ``jax.jit(jax.value_and_grad(...))`` of :func:`dynsim.spectral.debiased.in_batch` on
  :func:`~dynsim.spectral.debiased.unit` rows.
- PyTorch: the authors' ``main.py`` criterion (github.com/chingyaoc/DCL) as written there
  (``F.normalize``, ``torch.exp(torch.mm(out, out.t()) / t)``, ``masked_select`` with their
  ``get_negative_mask``, ``torch.clamp``), then ``loss.backward()``; eager. The mask is built once,
  outside the timed call (their loop over the batch rebuilds it every step; a user who profiles
  would hoist it).

Checked first, in float64 on the same inputs: loss and gradients agree. Every figure is the median
(min..max) of timed calls after a warm-up, the two sides interleaved round by round. FLOPs (a
multiply-add counts 2; element-wise work not counted): the 2B × 2B similarity forward and the two
products of its backward, 3 · 2 (2B)² k.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import markdown_table, matmul_gflops, publish, ratio_text, summary, timed

from dynsim.spectral.debiased import in_batch, unit

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the optional extra is not installed
    torch = None

BATCH, K, TEMPERATURE, TAU_PLUS = 512, 128, 0.5, 0.1
ROUNDS, CALLS = 7, 10


def dynsim_loss(raw_1, raw_2):
    """The in-batch debiased loss of unit-normalized views (dynsim)."""
    return in_batch(unit(raw_1), unit(raw_2), TEMPERATURE, TAU_PLUS)


def negative_mask(batch: int):
    """The authors' ``get_negative_mask``: True off the anchor and its positive."""
    mask = torch.ones((batch, 2 * batch), dtype=bool)
    for i in range(batch):
        mask[i, i] = 0
        mask[i, i + batch] = 0
    return torch.cat((mask, mask), 0)


def torch_loss(raw_1, raw_2, mask):
    """The authors' criterion (DCL ``main.py``, debiased branch) on normalized views."""
    out_1, out_2 = F.normalize(raw_1, dim=-1), F.normalize(raw_2, dim=-1)
    batch = out_1.shape[0]
    out = torch.cat([out_1, out_2], dim=0)
    neg = torch.exp(torch.mm(out, out.t().contiguous()) / TEMPERATURE)
    neg = neg.masked_select(mask).view(2 * batch, -1)
    pos = torch.exp(torch.sum(out_1 * out_2, dim=-1) / TEMPERATURE)
    pos = torch.cat([pos, pos], dim=0)
    count = batch * 2 - 2
    ng = (-TAU_PLUS * count * pos + neg.sum(dim=-1)) / (1 - TAU_PLUS)
    ng = torch.clamp(ng, min=count * np.e ** (-1 / TEMPERATURE))
    return (-torch.log(pos / (pos + ng))).mean()


def torch_value_and_grad(raw_1, raw_2, mask):
    """Loss and gradients of the PyTorch criterion (fresh leaves every call, as a training step has)."""
    a, b = raw_1.detach().requires_grad_(True), raw_2.detach().requires_grad_(True)
    loss = torch_loss(a, b, mask)
    loss.backward()
    return loss.detach(), a.grad, b.grad


def agreement() -> dict:
    """Relative differences of loss and gradients, float64, same inputs."""
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(2, BATCH, K))
    with jax.enable_x64(True):
        value, grads = jax.value_and_grad(dynsim_loss, argnums=(0, 1))(jnp.asarray(raw[0]), jnp.asarray(raw[1]))
    t_value, t_1, t_2 = torch_value_and_grad(torch.tensor(raw[0]), torch.tensor(raw[1]), negative_mask(BATCH))
    grad_diff = max(
        float(np.max(np.abs(np.asarray(g) - t.numpy())) / np.max(np.abs(t.numpy())))
        for g, t in zip(grads, (t_1, t_2), strict=True)
    )
    return {
        "loss": float(value),
        "loss_rel": abs(float(value) - t_value.item()) / abs(t_value.item()),
        "grad_rel": grad_diff,
    }


def main():
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(2, BATCH, K)).astype(np.float32)
    step = jax.jit(jax.value_and_grad(dynsim_loss, argnums=(0, 1)))
    args = (jnp.asarray(raw[0]), jnp.asarray(raw[1]))
    start = time.perf_counter()
    jax.block_until_ready(step(*args))
    compile_s = time.perf_counter() - start
    flops = 3 * 2 * (2 * BATCH) ** 2 * K
    ceiling = matmul_gflops(2 * BATCH, K, 2 * BATCH)
    seconds = {"dynsim (jit)": []}
    record = {"batch": BATCH, "k": K, "temperature": TEMPERATURE, "tau_plus": TAU_PLUS, "flops": flops}
    record.update(compile_s=compile_s, matmul_gflops_shape=ceiling)
    lines = [
        f"Debiased in-batch loss + gradient, B = {BATCH}, k = {K}, float32, {CALLS} calls per timing, "
        f"median (min..max) of {ROUNDS} rounds; dynsim compile {compile_s:.2f} s.",
        f"Machine (XLA, float32, best of 5): {2 * BATCH}x{K}x{2 * BATCH} matmul {ceiling:.1f} GFLOP/s.",
    ]
    if torch is not None:
        check = agreement()
        record["agreement"] = check
        lines.append(
            f"PyTorch {torch.__version__} eager peer, float64 on the same inputs: loss {check['loss']:.10g}, "
            f"relative difference {check['loss_rel']:.1e}; gradients {check['grad_rel']:.1e} (max-abs relative)."
        )
        mask = negative_mask(BATCH)
        views = (torch.tensor(raw[0]), torch.tensor(raw[1]))
        torch_value_and_grad(*views, mask)
        seconds["PyTorch eager"] = []
    for _ in range(ROUNDS):
        seconds["dynsim (jit)"].append(statistics.fmean(timed(step, *args, repeats=CALLS)))
        if torch is not None:
            calls = []
            for _ in range(CALLS):
                begin = time.perf_counter()
                torch_value_and_grad(*views, mask)
                calls.append(time.perf_counter() - begin)
            seconds["PyTorch eager"].append(statistics.fmean(calls))
    rows = []
    reference = statistics.median(seconds.get("PyTorch eager", seconds["dynsim (jit)"]))
    for name, values in seconds.items():
        stats = summary(values)
        record[name] = stats
        gflops = flops / stats["median_s"] / 1e9
        rows.append(
            [
                name,
                f"{stats['median_s'] * 1e3:.2f} ({stats['min_s'] * 1e3:.2f}..{stats['max_s'] * 1e3:.2f})",
                ratio_text(reference / stats["median_s"]),
                f"{gflops:.1f} ({gflops / ceiling:.0%})",
            ]
        )
    table = markdown_table(["program", "ms per call", "speed vs PyTorch", "GFLOP/s (share of matmul)"], rows)
    if torch is None:
        lines.append("PyTorch is not installed (pip install -e .[bench]): its column is missing.")
    publish("debiased", record, lines, table)


if __name__ == "__main__":
    main()
