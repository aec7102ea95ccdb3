"""Population gradient flow of the spectral contrastive loss (specs/spectral.md §5), in JAX float64.

Three vector fields and one entry point:

- F-space: dF/dt = 4(Ā − FFᵀ)F, whose Π = FFᵀ solves the Riccati equation
  dΠ/dt = 4(ĀΠ + ΠĀ − 2Π²); :func:`riccati` is its closed form.
- Tabular f: dΦ/dt = −∇L(Φ) = 4WΦ − 4DΦ(ΦᵀDΦ) (:func:`tabular_field`).
- Linear f(x) = Vᵀψ(x): dV/dt = 4(M₊V − ΣVVᵀΣV), M₊ = ΨᵀWΨ, Σ = ΨᵀDΨ (:func:`linear_field`).

:func:`flow` uses the closed form where it applies (tabular f on a regular graph, D = I/N,
where Φ(t) = √N F(t/N)) and diffrax (``dynsim.engine.integrate.integrate``) otherwise.

Time. ``flow`` runs in the time of its own state: t = η × step of full-batch gradient descent on
L(Φ) or L(V). ``riccati`` runs in F-space time.

Rotation. The closed form fixes Π = FFᵀ only: its F(t) differs from the solution of the F-flow
by an orthogonal factor on the right that has no closed form (checked: 0.29 apart in max norm
at t = 3 on an 8-node HSBM while FFᵀ agrees to 1e-12). Every observable of
``observables.py`` is invariant under it; compare closed-form and integrated states through ΦΦᵀ.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import ConfigError
from ..engine.infinite import SolverError
from ..engine.integrate import integrate, resolve_solver
from ..engine.types import Array, Float
from .config import ENCODERS
from .graph import Graph, eigensystem

SOLVE_METHODS = ("auto", "closed", "diffrax")


def _inverse_sqrt(matrix: Float[Array, "k k"]) -> Float[Array, "k k"]:
    values, vectors = jnp.linalg.eigh(matrix)
    return (vectors / jnp.sqrt(values)) @ vectors.T


def riccati(
    gammas: Float[Array, " N"], U: Float[Array, "N N"], F0: Float[Array, "N k"], t: Float[Array, ""]
) -> Float[Array, "N k"]:
    r"""Closed form of the F-space flow dF/dt = 4(Ā − FFᵀ)F, up to a right rotation.

    .. math::
        F(t) = G K^{-1/2},\quad G = e^{4Āt} F_0,\quad
        K = I_k + F_0^T [(e^{8Āt} − I) Ā^{-1}] F_0,

    so that F Fᵀ = Π(t) = G K⁻¹ Gᵀ solves dΠ/dt = 4(ĀΠ + ΠĀ − 2Π²). Computed in the eigenbasis
    of Ā, where (e^{8Āt} − I)Ā⁻¹ acts as (e^{8γt} − 1)/γ (8t at γ = 0, so Ā need not be
    invertible).

    In one step K has condition number about e^{8(γ_1 − γ_k)t}, and its inverse square root
    loses every digit of the slow directions by t ≈ 5/(γ_1 − γ_k). The formula is therefore
    applied in ⌈t max|γ|⌉ equal steps, each restarting from the last F (Π is a semigroup): K
    stays below about e^8 (1 + ‖F‖²), the cost grows linearly in t, and each step's rotation
    is the symmetric K^{-1/2}. For t ≤ 1/max|γ| it is the single formula above.

    Args:
        gammas: (N,) eigenvalues γ of Ā.
        U: (N, N) orthonormal eigenvectors of Ā, as columns.
        F0: (N, k) F(0); any rank.
        t: () F-space time ≥ 0.

    Returns:
        (N, k) F(t).
    """
    return U @ _advance(gammas, U.T @ F0, t)


def _advance(gammas: Float[Array, " N"], coefficients: Float[Array, "N k"], t) -> Float[Array, "N k"]:
    """:func:`riccati` in the eigenbasis (F = U · coefficients), over F-space time ``t``."""
    steps = jnp.maximum(1, jnp.ceil(t * jnp.max(jnp.abs(gammas)))).astype(jnp.int32)
    dt = t / steps
    decay = jnp.exp(4 * gammas * dt)
    growth = jnp.where(gammas == 0, 8 * dt, jnp.expm1(8 * gammas * dt) / jnp.where(gammas == 0, 1.0, gammas))
    eye = jnp.eye(coefficients.shape[1], dtype=coefficients.dtype)

    def step(_, coefficients):
        K = eye + coefficients.T @ (growth[:, None] * coefficients)
        return (decay[:, None] * coefficients) @ _inverse_sqrt(K)

    return jax.lax.fori_loop(0, steps, step, coefficients)


def tabular_field(t, phi: Float[Array, "N k"], args) -> Float[Array, "N k"]:
    r"""The tabular flow dΦ/dt = −∇L(Φ) = 4WΦ − 4DΦ(ΦᵀDΦ).

    Args:
        t: time (unused: the field is autonomous).
        phi: (N, k) Φ.
        args: (W (N, N), degrees (N,)).

    Returns:
        (N, k) dΦ/dt.
    """
    del t
    W, degrees = args
    weighted = degrees[:, None] * phi
    return 4 * (W @ phi) - 4 * weighted @ (phi.T @ weighted)


def linear_field(t, V: Float[Array, "d k"], args) -> Float[Array, "d k"]:
    r"""The linear-encoder flow dV/dt = −∇L(V) = 4(M₊V − ΣVVᵀΣV), L(V) = −2 tr(VᵀM₊V) + tr((VᵀΣV)²).

    Args:
        t: time (unused: the field is autonomous).
        V: (d, k) V, f(x) = Vᵀψ(x).
        args: (M₊ = ΨᵀWΨ (d, d), Σ = ΨᵀDΨ (d, d)).

    Returns:
        (d, k) dV/dt.
    """
    del t
    positive, second = args
    weighted = second @ V
    return 4 * (positive @ V) - 4 * weighted @ (V.T @ weighted)


@jax.jit
def _closed_tabular(gammas, U, phi0, ts):
    # On a regular graph W = Ā/N and D = I/N, so F = Φ/√N runs the F-flow at time t/N. Π is a
    # semigroup: each save time is reached from the previous one, in the eigenbasis, and the
    # states go back to the nodes once, at the end.
    nodes = phi0.shape[0]
    intervals = jnp.diff(ts, prepend=jnp.zeros((1,), ts.dtype)) / nodes

    def advance(coefficients, dt):
        coefficients = _advance(gammas, coefficients, dt)
        return coefficients, coefficients

    coefficients = jax.lax.scan(advance, U.T @ (phi0 / math.sqrt(nodes)), intervals)[1]
    return math.sqrt(nodes) * jnp.einsum("ij,tjk->tik", U, coefficients)


def _is_regular(graph: Graph) -> bool:
    return bool(np.ptp(graph.degrees) <= 1e-12 * graph.degrees.max())


def flow(
    graph: Graph,
    state0: Float[Array, "n k"],
    ts: Float[Array, " T"],
    *,
    encoder: str = "tabular",
    features: Float[Array, "N d"] | None = None,
    method: str = "auto",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    solver=None,
    max_steps: int = 100_000,
) -> Float[Array, "T n k"]:
    r"""The population gradient flow from ``state0``, saved at ``ts``.

    Tabular encoder: the state is Φ (N × k), dΦ/dt = 4WΦ − 4DΦ(ΦᵀDΦ). Linear encoder: the state
    is V (d × k), dV/dt = 4(M₊V − ΣVVᵀΣV). ``method="auto"`` takes the closed form
    Φ(t) = √N F(t/N) (:func:`riccati` from F0 = Φ0/√N) for the tabular encoder on a regular
    graph, and diffrax otherwise. The closed form is exact in Π = ΦΦᵀ and leaves a right
    rotation of Φ open (see the module docstring).

    Called inside ``jax.vmap`` (over a leading seed axis of ``state0``) or ``jax.jit``, a failed
    solve does not raise: the states past the failure are ``inf``. Called directly, it raises.

    Args:
        graph: the graph.
        state0: (N, k) Φ(0), or (d, k) V(0) for the linear encoder.
        ts: (T,) non-decreasing save times ≥ 0; the solve ends at ``ts[-1]``.
        encoder: ``"tabular"`` or ``"linear"``.
        features: (N, d) Ψ, rows ψ(x); required by (and only by) the linear encoder.
        method: ``"auto"``, ``"closed"`` (an error where it does not apply) or ``"diffrax"``.
        rtol, atol: diffrax step-size controller tolerances.
        solver: a name of ``dynsim.engine.integrate.SOLVERS``, a diffrax solver, or None (Tsit5).
        max_steps: diffrax step cap.

    Returns:
        (T, N, k) Φ(t) or (T, d, k) V(t).

    Raises:
        ConfigError: an unknown encoder or method, features missing or superfluous, or
            ``method="closed"`` for the linear encoder or a non-regular graph.
        SolverError: the diffrax solve failed (outside vmap / jit).
    """
    if encoder not in ENCODERS:
        raise ConfigError(f"encoder = {encoder!r} is invalid: must be one of {', '.join(map(repr, ENCODERS))}")
    if method not in SOLVE_METHODS:
        raise ConfigError(f"method = {method!r} is invalid: must be one of {', '.join(map(repr, SOLVE_METHODS))}")
    if (features is None) != (encoder == "tabular"):
        given = "missing" if features is None else "given"
        raise ConfigError(
            f"features {given} for encoder = {encoder!r}: the linear encoder, and only it, takes features"
        )
    closed = encoder == "tabular" and _is_regular(graph)
    if method == "closed" and not closed:
        why = "the linear encoder" if encoder == "linear" else "a graph whose degrees are not all equal"
        raise ConfigError(f"method = 'closed' is invalid: the Riccati closed form does not apply to {why}")
    if not isinstance(ts, jax.core.Tracer) and (np.any(np.diff(ts) < 0) or np.min(ts) < 0):
        raise ConfigError(f"ts = {np.asarray(ts).tolist()} is invalid: save times must be non-decreasing and >= 0")
    ts = jnp.asarray(ts)
    if closed and method != "diffrax":
        gammas, U = eigensystem(graph)
        return _closed_tabular(jnp.asarray(gammas), jnp.asarray(U), state0, ts)
    if encoder == "tabular":
        field, args = tabular_field, (jnp.asarray(graph.W), jnp.asarray(graph.degrees))
    else:
        features = np.asarray(features)
        second = features.T @ (graph.degrees[:, None] * features)
        field, args = linear_field, (jnp.asarray(features.T @ graph.W @ features), jnp.asarray(second))
    out = integrate(
        field, state0, args, ts, ts[-1], None, solver=resolve_solver(solver), rtol=rtol, atol=atol, max_steps=max_steps
    )
    if not isinstance(out.succeeded, jax.core.Tracer) and not bool(out.succeeded):
        raise SolverError(
            f"flow: the diffrax solve stopped at t = {float(out.time_reached):.6g} of {float(ts[-1]):.6g} "
            f"after {int(out.num_steps)} steps (a non-finite state, or max_steps too few for rtol/atol)",
            time=float(out.time_reached),
        )
    return out.ys
