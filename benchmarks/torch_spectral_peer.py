"""The peer a researcher would otherwise write for the spectral system: an embedding table trained by
SGD on the spectral contrastive loss, as a plain PyTorch eager loop.

The loss is written the way the authors' code writes it (HaoChen et al., github.com/jhaochenz96/
spectral_contrastive_learning, ``models/spectral.py``, function ``D``)::

    loss_part1 = -2 * torch.mean(z1 * z2) * z1.shape[1]
    square_term = torch.matmul(z1, z2.T) ** 2
    loss_part2 = torch.mean(torch.triu(square_term, diagonal=1) + torch.tril(square_term, diagonal=-1)) \
        * z1.shape[0] / (z1.shape[0] - 1)

that is ``-(2/B) sum_i z_i^T z_i^+ + 1/(B(B-1)) sum_{i != j} (z_i^T z_j^+)^2``, dynsim's
``losses.spectral`` with ``lam = 1``. Their code first maps every ``z`` with ``||z|| >= sqrt(mu)``
onto the sphere of radius ``sqrt(mu)`` and divides by ``mu``; dynsim's default is no projection
(specs/spectral.md §2), so the peer leaves it out (``mu = inf``).

Model and data: the tabular encoder ``Phi = torch.nn.Parameter(N x k)``; per step, B positive pairs
of an HSBM augmentation graph drawn as dynsim draws them (``x̄`` uniform, two independent
augmentations from the ``theta`` mixture, node index ``(c S + s) n + j``), ``z = Phi[x]``,
``z+ = Phi[x+]``, ``loss.backward()`` and ``torch.optim.SGD``. Eager mode, no ``torch.compile``.
``Phi[x]`` gives ``Phi`` a dense N × k gradient (one per lookup, summed by autograd); with
``sparse=True`` the lookups are ``F.embedding(x, Phi, sparse=True)`` instead, whose gradient is a
sparse tensor of the 2B rows, which ``torch.optim.SGD`` applies as such (the change a user who
profiles would make; the PyTorch side of dynsim's ``make_sparse_step``).

PyTorch is optional (``pip install -e .[bench]``); :data:`torch` is ``None`` when it is absent.
"""

from __future__ import annotations

import time

import numpy as np

try:
    import torch
except ImportError:  # the optional extra is not installed
    torch = None


def spectral_loss(z1, z2):
    """The authors' ``D(z1, z2, mu)`` without the norm projection (``mu = inf``), as they write it."""
    loss_part1 = -2 * torch.mean(z1 * z2) * z1.shape[1]
    square_term = torch.matmul(z1, z2.T) ** 2
    loss_part2 = (
        torch.mean(torch.triu(square_term, diagonal=1) + torch.tril(square_term, diagonal=-1))
        * z1.shape[0]
        / (z1.shape[0] - 1)
    )
    return loss_part1 + loss_part2


class HSBMPairs:
    """Positive pairs of the HSBM augmentation graph ``hsbm(classes, subclasses, nodes, theta)``.

    ``x̄`` uniform over the N = r S n nodes; each view independently keeps ``x̄`` (θ0), or moves to a
    uniform node of its subclass (θ1), of another subclass of its class (θs) or of another class (θ2).
    """

    def __init__(self, classes: int, subclasses: int, nodes: int, theta, generator):
        self.r, self.s, self.n = classes, subclasses, nodes
        self.num_nodes = classes * subclasses * nodes
        self.thresholds = torch.tensor(np.cumsum(theta)[:3], dtype=torch.float32)
        self.generator = generator

    def _uniform(self, size: int, batch: int):
        return torch.randint(0, size, (batch,), generator=self.generator)

    def _augment(self, xbar):
        batch = xbar.shape[0]
        component = torch.searchsorted(self.thresholds, torch.rand(batch, generator=self.generator), right=True)
        cls, sub = xbar // (self.s * self.n), xbar // self.n % self.s
        other_sub = (sub + 1 + self._uniform(max(self.s - 1, 1), batch)) % self.s
        other_cls = (cls + 1 + self._uniform(max(self.r - 1, 1), batch)) % self.r
        block = torch.where(
            component == 1,
            cls * self.s + sub,
            torch.where(component == 2, cls * self.s + other_sub, other_cls * self.s + self._uniform(self.s, batch)),
        )
        return torch.where(component == 0, xbar, block * self.n + self._uniform(self.n, batch))

    def __call__(self, batch: int):
        xbar = self._uniform(self.num_nodes, batch)
        return self._augment(xbar), self._augment(xbar)


def lookup(phi, nodes, sparse: bool):
    """The rows ``nodes`` of the table: ``phi[nodes]`` (dense gradient) or ``F.embedding(..., sparse=True)``."""
    return torch.nn.functional.embedding(nodes, phi, sparse=True) if sparse else phi[nodes]


class EagerRun:
    """``steps`` SGD steps of the embedding table on the HSBM graph, timed as a whole by :meth:`__call__`."""

    def __init__(
        self, graph_args: tuple, k: int, batch: int, lr: float, init_scale: float, steps: int, sparse: bool = False
    ):
        classes, subclasses, nodes, theta = graph_args
        generator = torch.Generator().manual_seed(0)
        num_nodes = classes * subclasses * nodes
        self.phi = torch.nn.Parameter(init_scale * torch.randn(num_nodes, k, generator=generator))
        self.optimizer = torch.optim.SGD([self.phi], lr=lr)
        self.pairs = HSBMPairs(classes, subclasses, nodes, theta, generator)
        self.batch, self.steps, self.sparse = batch, steps, sparse

    def step(self):
        x, x_plus = self.pairs(self.batch)
        self.optimizer.zero_grad()
        loss = spectral_loss(lookup(self.phi, x, self.sparse), lookup(self.phi, x_plus, self.sparse))
        loss.backward()
        self.optimizer.step()
        return loss

    def __call__(self) -> float:
        """Run ``steps`` steps; returns the wall seconds."""
        start = time.perf_counter()
        for _ in range(self.steps):
            self.step()
        return time.perf_counter() - start


def loss_grad_and_step(phi: np.ndarray, x: np.ndarray, x_plus: np.ndarray, lr: float, sparse: bool = False):
    """``(L, dL/dPhi, Phi after one SGD step)`` in PyTorch from NumPy inputs: the agreement check's side."""
    param = torch.nn.Parameter(torch.tensor(phi))
    optimizer = torch.optim.SGD([param], lr=lr)
    optimizer.zero_grad()
    nodes, nodes_plus = torch.tensor(x, dtype=torch.int64), torch.tensor(x_plus, dtype=torch.int64)
    loss = spectral_loss(lookup(param, nodes, sparse), lookup(param, nodes_plus, sparse))
    loss.backward()
    grad = (param.grad.to_dense() if sparse else param.grad).numpy().copy()
    optimizer.step()
    return loss.item(), grad, param.detach().numpy()


def pair_kinds(x: np.ndarray, x_plus: np.ndarray, subclasses: int, nodes: int) -> np.ndarray:
    """Fractions of pairs that are the same node, same subclass, same class, or cross-class."""
    sub, sub_plus = x // nodes, x_plus // nodes
    same_class = sub // subclasses == sub_plus // subclasses
    kinds = np.where(x == x_plus, 0, np.where(sub == sub_plus, 1, np.where(same_class, 2, 3)))
    return np.bincount(kinds, minlength=4) / kinds.size


def sample_pairs(graph_args: tuple, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` pairs from the peer's sampler, as NumPy arrays."""
    classes, subclasses, nodes, theta = graph_args
    x, x_plus = HSBMPairs(classes, subclasses, nodes, theta, torch.Generator().manual_seed(seed))(batch)
    return x.numpy(), x_plus.numpy()
