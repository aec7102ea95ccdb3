"""The activations of the two-layer network and their constants (A1)–(A4) (spec §2).

The two-layer predictor ``f(w;x) = (1/m) sum_j a_j phi(<x, w_j>)`` needs an activation that is homogeneous only up to a
bounded defect. The spec's conditions, each a number of the activation:

- (A1) near-homogeneity: ``|phi(z) − z phi'(z)| <= kappa`` for all z (kappa bounds the Euler defect of ``f``);
- (A2) ``|phi'| <= 1`` (``slope <= 1``), so that ``||grad f|| <= ||x||/sqrt(m)``;
- (A3) ``|phi''| <= beta`` (smoothness, ``||∇²f|| <= beta/m``);
- (A4) for the phase-1 and acceleration results only: ``phi' >= alpha > 0`` (derivative bounded away from zero).

The constants are not copied from the spec's table: :func:`constants` measures them in float64 on a dense grid of
``|z| <= 40`` (the range the spec's table was checked on), with phi' and phi'' by automatic differentiation and each
extremum refined on a finer local grid. The tests compare them with the spec's closed forms.

>>> act = activation("leaky_softplus", c=0.5)
>>> round(act.kappa, 6), round(act.beta, 6), round(act.alpha, 6), round(act.slope, 6)
(0.346574, 0.125, 0.5, 1.0)
>>> activation("leaky_softplus", c=0.5) is act
True
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import ConfigError

ACTIVATIONS = ("leaky_softplus", "softplus", "huber", "leaky_huber", "gelu", "silu")

_LEAKY = ("leaky_softplus", "leaky_huber")
_WIDTHS = ("huber", "leaky_huber")

GRID_HALF_WIDTH = 40.0  # the constants are measured on |z| <= GRID_HALF_WIDTH
GRID_POINTS = 400_001  # coarse grid: spacing 2e-4
REFINE_POINTS = 2_001  # local grid of +-1 coarse spacing around the best coarse point: spacing 2e-7


class Activation(NamedTuple):
    """An activation ``phi`` and its measured constants (spec §2).

    Attributes:
        name: one of :data:`ACTIVATIONS`.
        phi: the elementwise function, for jnp arrays (jit, vmap and grad, float32 and float64).
        kappa: (A1) ``sup_z |phi(z) − z phi'(z)|``.
        beta: (A3) ``sup_z |phi''(z)|``.
        alpha: ``inf_z phi'(z)``; (A4) holds iff ``alpha > 0`` (negative for GELU and SiLU).
        slope: ``sup_z |phi'(z)|``; (A2) holds iff ``slope <= 1``.
    """

    name: str
    phi: Callable
    kappa: float
    beta: float
    alpha: float
    slope: float


def _float(z):
    """``z`` as a jnp array of a floating dtype (integers become the default float)."""
    z = jnp.asarray(z)
    return z if jnp.issubdtype(z.dtype, jnp.floating) else z.astype(float)


def softplus(z):
    """Softplus ``log(1 + e^z)``, as ``logaddexp(0, z)`` (no overflow for large |z|)."""
    return jnp.logaddexp(0.0, _float(z))


def leaky_softplus(z, c: float):
    """The paper's leaky softplus ``c z + (1−c) log(1 + e^z)`` (spec §2, Example 3.1)."""
    z = _float(z)
    return c * z + (1.0 - c) * jnp.logaddexp(0.0, z)


def huber(z, h: float):
    """Huberized ReLU of width h: 0 (z < 0), ``z²/(2h)`` (0 <= z <= h), ``z − h/2`` (z > h).

    Written as ``clip(z, 0, h)²/(2h) + max(z − h, 0)``, which is the same function and has finite derivatives at
    every z (no branch squares a large z).
    """
    z = _float(z)
    inner = jnp.clip(z, 0.0, h)
    return inner * inner / (2.0 * h) + jnp.maximum(z - h, 0.0)


def leaky_huber(z, c: float, h: float):
    """Leaky Huberized ReLU ``c z + (1−c) phi_h(z)``, ``phi_h`` the Huberized ReLU of width h."""
    z = _float(z)
    return c * z + (1.0 - c) * huber(z, h)


def gelu(z):
    """GELU ``z Φ(z)``, Φ the standard normal distribution function (the exact form, not the tanh approximation).

    Φ is ``jax.scipy.special.ndtr``, which uses ``erfc`` in the lower tail, so the value keeps its relative accuracy
    there, as in ``jax.nn.gelu(approximate=False)`` (both underflow to 0 only where Φ itself does, z < −37.5).
    """
    z = _float(z)
    return z * jax.scipy.special.ndtr(z)


def silu(z):
    """SiLU ``z sigmoid(z)``."""
    z = _float(z)
    return z * jax.nn.sigmoid(z)


def _profiles(phi: Callable, z) -> jnp.ndarray:
    """The four functions whose suprema are the constants, at the points z: shape (4, len(z)).

    Rows: ``|phi − z phi'|`` (kappa), ``|phi''|`` (beta), ``−phi'`` (−alpha), ``|phi'|`` (slope).
    """
    d1 = jax.vmap(jax.grad(phi))(z)
    d2 = jax.vmap(jax.grad(jax.grad(phi)))(z)
    return jnp.stack([jnp.abs(phi(z) - z * d1), jnp.abs(d2), -d1, jnp.abs(d1)])


@functools.partial(jax.jit, static_argnums=0)
def _suprema(fn: Callable, params: dict) -> jnp.ndarray:
    """The suprema of the four :func:`_profiles` rows of ``z ↦ fn(z, **params)`` on ``|z| <= 40``: shape (4,).

    A coarse grid, then for each row a local grid of one coarse spacing either side of its best coarse point.
    ``params`` are traced, so activations that differ only in ``c`` or ``h`` share one compiled program.
    """

    def phi(z):
        return fn(z, **params)

    grid = jnp.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, GRID_POINTS)
    coarse = _profiles(phi, grid)
    spacing = 2.0 * GRID_HALF_WIDTH / (GRID_POINTS - 1)
    centres = grid[jnp.argmax(coarse, axis=1)]
    local = centres[:, None] + jnp.linspace(-spacing, spacing, REFINE_POINTS)[None, :]
    local = jnp.clip(local, -GRID_HALF_WIDTH, GRID_HALF_WIDTH)
    fine = _profiles(phi, local.ravel()).reshape(4, 4, REFINE_POINTS)
    # Row k of the fine evaluation is quantity k on its own local grid k.
    return jnp.maximum(coarse.max(axis=1), jnp.diagonal(fine).T.max(axis=1))


def _split(phi: Callable) -> tuple[Callable, dict]:
    """``(fn, params)`` with ``phi(z) = fn(z, **params)``: a partial's numeric keywords become traced parameters."""
    if (
        isinstance(phi, functools.partial)
        and not phi.args
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in phi.keywords.values())
    ):
        return phi.func, {k: float(v) for k, v in phi.keywords.items()}
    return phi, {}


def constants(phi: Callable) -> tuple[float, float, float, float]:
    """The constants ``(kappa, beta, alpha, slope)`` of ``phi``, measured in float64 on ``|z| <= 40`` (spec §2).

    ``kappa = sup |phi(z) − z phi'(z)|`` (A1), ``beta = sup |phi''(z)|`` (A3), ``alpha = inf phi'(z)`` (A4 iff > 0),
    ``slope = sup |phi'(z)|`` (A2 iff <= 1). phi' and phi'' are taken by automatic differentiation. Each extremum is
    found on a grid of 400 001 points (spacing 2e-4) and refined on a local grid of 2 001 points spanning one coarse
    spacing either side of the best coarse point (spacing 2e-7), so a smooth extremum is accurate to about 1e-14 and
    a kink's (Huber's) is attained on the grid itself. An extremum approached only as ``|z| → ∞`` (softplus's
    ``alpha = 0``) is the value at ``|z| = 40``.
    """
    fn, params = _split(phi)
    with jax.enable_x64(True):
        kappa, beta, minus_alpha, slope = (float(v) for v in np.asarray(_suprema(fn, params)))
    return kappa, beta, -minus_alpha, slope


def _is_real(value) -> bool:
    """Whether ``value`` is a real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _check(name: str, c: float, h: float) -> None:
    """Raise :class:`ConfigError` for an unknown name, ``c`` outside (0, 1) or ``h <= 0``."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"model.activation = {name!r} is invalid: must be one of {', '.join(ACTIVATIONS)}")
    if name in _LEAKY and not (_is_real(c) and 0.0 < c < 1.0):
        raise ConfigError(f"model.c = {c!r} is invalid: must be in (0, 1)")
    if name in _WIDTHS and not (_is_real(h) and 0.0 < h < math.inf):
        raise ConfigError(f"model.h = {h!r} is invalid: must be a finite number > 0")


def activation(name: str, c: float = 0.5, h: float = 1.0) -> Activation:
    """The activation ``phi`` called ``name`` with its measured constants (spec §2).

    - ``leaky_softplus``: ``c z + (1−c) log(1 + e^z)``, ``0 < c < 1`` (the paper's; c = 0.5 in Figs. 2 and 4);
    - ``softplus``: ``log(1 + e^z)``;
    - ``huber``: Huberized ReLU of width ``h > 0``: 0, ``z²/(2h)``, ``z − h/2`` on z < 0, [0, h], z > h;
    - ``leaky_huber``: ``c z + (1−c) huber_h(z)``;
    - ``gelu``: ``z Φ(z)``; ``silu``: ``z sigmoid(z)``.

    ``c`` is used only by the leaky activations and ``h`` only by the Huber ones; the others ignore them. The result is
    cached: the same activation gives the same object (and the same ``phi``), which compiled programs are keyed on.

    Raises:
        ConfigError: unknown ``name``, ``c`` outside (0, 1) or ``h <= 0``.
    """
    _check(name, c, h)
    return _activation(name, float(c) if name in _LEAKY else None, float(h) if name in _WIDTHS else None)


@functools.cache
def _activation(name: str, c: float | None, h: float | None) -> Activation:
    """:func:`activation` for validated, normalized arguments (``None`` where unused), cached."""
    phi = {
        "leaky_softplus": lambda: functools.partial(leaky_softplus, c=c),
        "softplus": lambda: softplus,
        "huber": lambda: functools.partial(huber, h=h),
        "leaky_huber": lambda: functools.partial(leaky_huber, c=c, h=h),
        "gelu": lambda: gelu,
        "silu": lambda: silu,
    }[name]()
    return Activation(name, phi, *constants(phi))
