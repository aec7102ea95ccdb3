r"""The predictors of the large-step system and the logistic risk (shared/specs/large_step.md §1, §4).

Two predictors of the trained weights w:

- linear, :math:`f(w;x) = \langle w, x\rangle`, w ∈ R^d;
- two-layer, :math:`f(w;x) = \frac1m \sum_{j=1}^m a_j \phi(\langle x, w_j\rangle)`, w ∈ R^{m×d},
  fixed outer signs :math:`a_j = +1` for the first ⌈m/2⌉ neurons and −1 for the rest, no biases.

On them the empirical logistic risk :math:`L(w) = \frac1n\sum_i \ell(y_i f(w;x_i))`,
:math:`\ell(z) = \log(1 + e^{-z})`, and its gradient scale :math:`G(w) = \frac1n\sum_i
|\ell'(y_i f(w;x_i))|`, computed as ``logaddexp(0, −z)`` and ``sigmoid(−z)`` (never
``1 − sigmoid(z)``, which cancels at large margins: the risk reaches 1e-9 and below).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import ConfigError
from ..engine.runner import seed_keys
from ..engine.types import Array, Float
from .activations import Activation, activation

MODELS = ("linear", "two_layer")


class Model(NamedTuple):
    """A predictor: ``kind`` (``"linear"`` or ``"two_layer"``), its width m (1 for the linear
    one) and, for the two-layer net, its activation φ. Hashable: it keys compiled programs."""

    kind: str
    width: int = 1
    act: Activation | None = None

    @property
    def signs(self) -> Float[Array, " m"]:
        """The fixed outer weights a_j: +1 for the first ⌈m/2⌉ neurons, −1 for the rest."""
        return jnp.where(jnp.arange(self.width) < (self.width + 1) // 2, 1.0, -1.0)

    def shape(self, d: int) -> tuple[int, ...]:
        """The shape of w for inputs in R^d: (d,) or (m, d)."""
        return (d,) if self.kind == "linear" else (self.width, d)


def make_model(kind: str = "linear", width: int | None = None, name: str = "leaky_softplus", c=0.5, h=1.0) -> Model:
    """The :class:`Model` of ``kind`` (the two-layer one of ``width`` m with activation ``name``).

    Raises:
        ConfigError: an unknown kind, a missing or non-positive width, a width given to the
            linear model, or an invalid activation (:func:`~dynsim.large_step.activations.activation`).
    """
    if kind not in MODELS:
        raise ConfigError(f"model = {kind!r} is invalid: must be one of {', '.join(map(repr, MODELS))}")
    if kind == "linear":
        if width not in (None, 1):
            raise ConfigError(f"width = {width!r} is invalid: the linear model has no width (leave it unset)")
        return Model("linear")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"width = {width!r} is invalid: the two-layer model needs an integer width m >= 1")
    return Model("two_layer", width, activation(name, c, h))


def predict(model: Model, w: Array, x: Float[Array, "n d"]) -> Float[Array, " n"]:
    r"""The predictions f(w; x_i) of every row of ``x``: ⟨w, x_i⟩, or
    :math:`\frac1m\sum_j a_j\phi(\langle x_i, w_j\rangle)`."""
    if model.kind == "linear":
        return x @ w
    return model.act.phi(x @ w.T) @ model.signs / model.width


def margins(model: Model, w: Array, x: Float[Array, "n d"], y: Float[Array, " n"]) -> Float[Array, " n"]:
    """The margins q_i = y_i f(w; x_i)."""
    return y * predict(model, w, x)


def risk(model: Model, w: Array, x: Float[Array, "n d"], y: Float[Array, " n"]) -> Float[Array, ""]:
    r""":math:`L(w) = \frac1n \sum_i \log(1 + e^{-q_i})`, as ``logaddexp(0, −q)``."""
    return jnp.mean(jnp.logaddexp(0.0, -margins(model, w, x, y)))


def gradient_scale(q: Float[Array, " n"]) -> Float[Array, ""]:
    r""":math:`G = \frac1n\sum_i |\ell'(q_i)| = \frac1n\sum_i \sigma(-q_i)` from the margins q."""
    return jnp.mean(jax.nn.sigmoid(-q))


def norm(w: Array) -> Float[Array, ""]:
    """‖w‖, the Euclidean norm of every trained weight."""
    return jnp.sqrt(jnp.sum(w**2))


def neuron_margins(model: Model, w: Array, x: Float[Array, "n d"], y: Float[Array, " n"]) -> Float[Array, " m"]:
    r"""Per neuron j of the two-layer net, :math:`\min_i y_i a_j \langle x_i, w_j\rangle / \|w_j\|`
    (Fig. 4 of Cai et al.); NaN for a zero neuron; an empty array for the linear model."""
    if model.kind == "linear":
        return jnp.zeros((0,), x.dtype)
    lengths = jnp.sqrt(jnp.sum(w**2, axis=1))
    scores = (y[:, None] * (x @ w.T) * model.signs).min(axis=0)
    return jnp.where(lengths > 0, scores / jnp.where(lengths > 0, lengths, 1.0), jnp.nan)


def defect(model: Model) -> float:
    """κ, the near-homogeneity defect: 0 for the linear model, the activation's κ (A1) otherwise."""
    return 0.0 if model.kind == "linear" else model.act.kappa


def smoothness(model: Model, radius: float) -> float:
    r"""H with :math:`\|\nabla^2 L(w)\| \le H\,G(w) \le H\,L(w)` for inputs of norm at most R = ``radius``:
    R² (linear), :math:`R^2(s^2 + \beta)/m` for the two-layer net (s = sup|φ'|, β = sup|φ''|).

    From §4 of the spec: ∇²L = (1/n)Σ ℓ''∇f∇fᵀ + ℓ'∇²f with ℓ'' ≤ |ℓ'|, ‖∇f‖ ≤ sR/√m and
    ‖∇²f‖ ≤ βR²/m.
    """
    if model.kind == "linear":
        return radius**2
    return radius**2 * (model.act.slope**2 + model.act.beta) / model.width


def stable_threshold(eta, smoothness: float):
    r"""The risk below which gradient descent at stepsize η never increases the risk again:
    :math:`L \le 1/(4\eta H)`, H = ``smoothness`` (E2 for the linear model, E2' for the two-layer
    net; H of :func:`smoothness`). The proof: every margin then moves by at most 1/4 along the step, G
    grows there by at most e^{1/4}, and :math:`L(w_{t+1}) \le L(w_t) - \eta(1 - e^{1/4}/8)\|\nabla L\|^2`."""
    return 1.0 / (4.0 * eta * smoothness)


def initial_weights(model: Model, d: int, key: jax.Array, scale: float, dtype=jnp.float64) -> Array:
    """w_0: iid N(0, scale²) entries (zero when ``scale = 0``)."""
    return scale * jax.random.normal(key, model.shape(d), dtype)


def seed_starts(model: Model, d: int, scale: float, seed: int, seeds: int, first_seed: int = 0) -> Array:
    """w_0 of seeds ``first_seed .. first_seed + seeds - 1`` (:func:`initial_weights`), (seeds, *shape):
    seed i draws from ``fold_in(fold_in(key(seed), 0), i)`` (:func:`dynsim.engine.runner.seed_keys`),
    so :func:`~dynsim.large_step.gd` and the engine's runs of a seed start alike."""
    keys = seed_keys(seed, 0, seeds, first_seed)[1]
    return jax.vmap(lambda key: initial_weights(model, d, key, scale))(keys)


def radius_of(x) -> float:
    """R = max_i ‖x_i‖ (scaled first, so that huge inputs give a huge R, not an overflow)."""
    scale = float(np.abs(x).max())
    return scale * math.sqrt(float(((x / scale) ** 2).sum(axis=1).max())) if scale > 0 else 0.0
