"""The multimodal data model of SPEC §1 (seed 001 §3, eq. 1).

A pair is drawn in its latent coordinates ``u_A = [z, xi_A]``, ``u_B = [z, xi_B]``
(Rademacher, shared ``z`` for a positive pair) and mapped to the ambient space by the
``d × (r+n)`` latent map ``P_A = [M_A  H_A] = [U_A diag(sigma_A)  V_A diag(eta_A)]``, so
that ``x_A = P_A u_A = M_A z + H_A xi_A``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.types import Array, Float, Key
from .config import DataConfig


def spectrum(profile: str, kappa: float, r: int) -> np.ndarray:
    r"""Signal spectrum ``sigma`` (length r, descending) with ``sigma_max / sigma_min = kappa``.

    - ``geometric``: :math:`\sigma_k = \kappa^{(r-k)/(r-1)}`, k = 1..r;
    - ``linear``: evenly spaced from :math:`\kappa` down to 1;
    - ``spike``: :math:`\sigma_1 = \kappa`, all others 1 (seed 001, Lemma B.17).

    For ``r = 1`` every profile gives ``[kappa]``.
    """
    if profile == "geometric":
        return kappa ** np.linspace(1.0, 0.0, r)
    if profile == "linear":
        return np.linspace(kappa, 1.0, r)
    if profile == "spike":
        return np.concatenate([[kappa], np.ones(r - 1)])
    raise ValueError(f"unknown spectrum profile {profile!r}")


def spectra(data: DataConfig) -> dict[str, np.ndarray]:
    """The four spectra of a configuration: ``sigma_a``, ``sigma_b`` (r,), ``eta_a``, ``eta_b`` (n,).

    The noise spectrum is the same for both modalities: ``data.eta`` or the constant ``data.noise``.
    """
    if data.spectrum == "list":
        sigma_a = np.asarray(data.sigma, dtype=float)
        sigma_b = np.asarray(data.sigma if data.sigma_b is None else data.sigma_b, dtype=float)
    else:
        sigma_a = spectrum(data.spectrum, data.kappa, data.r)
        kappa_b = data.kappa if data.kappa_b is None else data.kappa_b
        sigma_b = spectrum(data.spectrum, kappa_b, data.r)
    eta = np.full(data.n, data.noise) if data.eta is None else np.asarray(data.eta, dtype=float)
    return {"sigma_a": sigma_a, "sigma_b": sigma_b, "eta_a": eta, "eta_b": eta.copy()}


def basis(key: Key, d: int, q: int, kind: str, dtype) -> Float[Array, "d q"]:
    """Orthonormal columns ``[U V]`` (d × q, q = r + n).

    ``canonical``: the first q coordinate vectors. ``random``: Haar-distributed, from the QR
    decomposition of a Gaussian matrix with the signs of R's diagonal moved into Q.
    """
    if kind == "canonical":
        return jnp.eye(d, q, dtype=dtype)
    q_mat, r_mat = jnp.linalg.qr(jax.random.normal(key, (d, q), dtype))
    return q_mat * jnp.sign(jnp.diagonal(r_mat))


def latent_map(columns: Float[Array, "d q"], sigma: Float[Array, " r"], eta: Float[Array, " n"]):
    """``P = [U diag(sigma)  V diag(eta)]`` (d × q), so that ``x = P [z; xi]``."""
    return columns * jnp.concatenate([sigma, eta])


def sample_latents(key: Key, batch: int, r: int, n: int, dtype):
    """``batch`` positive pairs in latent coordinates: ``(u_A, u_B)``, each batch × (r+n).

    ``z ~ Uniform{±1}^r`` is shared by the pair; ``xi_A, xi_B ~ Uniform{±1}^n`` are independent.
    """
    key_z, key_a, key_b = jax.random.split(key, 3)
    z = jax.random.rademacher(key_z, (batch, r), dtype)
    xi_a = jax.random.rademacher(key_a, (batch, n), dtype)
    xi_b = jax.random.rademacher(key_b, (batch, n), dtype)
    return jnp.concatenate([z, xi_a], axis=1), jnp.concatenate([z, xi_b], axis=1)
