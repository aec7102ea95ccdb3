"""The peer a researcher would otherwise write: the ``param`` step as a plain PyTorch eager loop.

Same model, shapes, loss and float32 as dynsim's ``param`` backend (population normalization,
symmetric InfoNCE with weight ``lam`` on the off-diagonal mean): per step, draw a Rademacher
batch ``u_A = [z, xi_A]``, ``u_B = [z, xi_B]``, form ``x = u P^T``, ``f = x W^T / ||W P||_F``,
``s = f_A f_B^T``, back-propagate with ``loss.backward()`` and apply ``torch.optim.SGD``. It is
written as such a user would write it, with no fusion or compilation (``torch.compile`` is
not used: it is not what "eager" means, and it needs a C++ toolchain at run time).

PyTorch is optional (``pip install -e .[bench]``); :data:`torch` is ``None`` when it is absent.
"""

from __future__ import annotations

import math
import time

import jax
import numpy as np

try:
    import torch
except ImportError:  # the optional extra is not installed
    torch = None


def device() -> str:
    """cuda where JAX runs on a GPU and torch sees one, else cpu."""
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def infonce(s, tau: float, lam: float):
    """Symmetric InfoNCE on the ``B × B`` similarity ``s`` (dynsim's ``_loss.infonce``)."""
    batch = s.shape[0]
    logits = tau * s
    positive = torch.diagonal(logits)
    off_diagonal = logits.masked_fill(torch.eye(batch, dtype=torch.bool, device=s.device), -math.inf)
    log_weight = math.log(lam / (batch - 1))
    negative_a = torch.logsumexp(off_diagonal, dim=1) + log_weight
    negative_b = torch.logsumexp(off_diagonal, dim=0) + log_weight
    loss_a = torch.logaddexp(positive, negative_a) - positive
    loss_b = torch.logaddexp(positive, negative_b) - positive
    return torch.mean(loss_a + loss_b) / 2


def batch_loss(w_a, w_b, p_a, p_b, u_a, u_b, tau: float, lam: float):
    """``L`` on one batch, population normalization: ``f = (u P^T) W^T / ||W P||_F``."""
    f_a = (u_a @ p_a.T) @ w_a.T / torch.linalg.matrix_norm(w_a @ p_a)
    f_b = (u_b @ p_b.T) @ w_b.T / torch.linalg.matrix_norm(w_b @ p_b)
    return infonce(f_a @ f_b.T, tau, lam)


def rademacher(shape, generator):
    """Uniform ``±1`` entries, float32."""
    return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1


class EagerRun:
    """``steps`` SGD steps of the two-tower model at ``width``, timed as a whole by :meth:`__call__`."""

    def __init__(self, width: int, r: int, n: int, batch: int, lr: float, tau: float, lam: float, steps: int):
        q = r + n
        generator = torch.Generator().manual_seed(0)
        sigma = torch.tensor(np.geomspace(4.0, 1.0, r), dtype=torch.float32)  # dynsim's default: geometric, kappa 4
        scales = torch.cat([sigma, torch.full((n,), 0.3)])
        # canonical basis, d = q: P = diag(sigma, eta)
        self.p_a = self.p_b = torch.diag(scales)
        self.w_a = (torch.randn(width, q, generator=generator) / math.sqrt(width)).requires_grad_()
        self.w_b = (torch.randn(width, q, generator=generator) / math.sqrt(width)).requires_grad_()
        self.optimizer = torch.optim.SGD([self.w_a, self.w_b], lr=lr / tau)  # gamma = 1/tau (rescale)
        self.generator, self.r, self.n, self.batch = generator, r, n, batch
        self.tau, self.lam, self.steps = tau, lam, steps

    def step(self):
        z = rademacher((self.batch, self.r), self.generator)
        u_a = torch.cat([z, rademacher((self.batch, self.n), self.generator)], dim=1)
        u_b = torch.cat([z, rademacher((self.batch, self.n), self.generator)], dim=1)
        self.optimizer.zero_grad()
        loss = batch_loss(self.w_a, self.w_b, self.p_a, self.p_b, u_a, u_b, self.tau, self.lam)
        loss.backward()
        self.optimizer.step()
        return loss

    def __call__(self) -> float:
        """Run ``steps`` steps; returns the wall seconds."""
        start = time.perf_counter()
        for _ in range(self.steps):
            self.step()
        return time.perf_counter() - start


def matmul_gflops(n: int, k: int, repeats: int = 7) -> float:
    """Median float32 GFLOP/s of PyTorch's ``n × k`` by ``k × n`` matmul, after a warm-up."""
    a, b = torch.randn(n, k), torch.randn(k, n)
    a @ b
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    return 2 * n * n * k / float(np.median(seconds)) / 1e9


def loss_and_grads(weights, maps, latents, tau: float, lam: float):
    """``(L, dL/dW_A, dL/dW_B)`` in PyTorch from NumPy inputs: the agreement check's peer side."""
    w_a, w_b = (torch.tensor(w, requires_grad=True) for w in weights)
    p_a, p_b = (torch.tensor(p) for p in maps)
    u_a, u_b = (torch.tensor(u) for u in latents)
    loss = batch_loss(w_a, w_b, p_a, p_b, u_a, u_b, tau, lam)
    loss.backward()
    return loss.item(), w_a.grad.numpy(), w_b.grad.numpy()
