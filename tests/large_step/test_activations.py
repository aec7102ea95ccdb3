"""The activations of spec §2: measured constants against the closed forms, phi against NumPy/SciPy, input errors."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit, ndtr

from dynsim.engine.config import ConfigError
from dynsim.large_step.activations import ACTIVATIONS, activation, constants

LOG2 = math.log(2.0)
SQRT_2PI = math.sqrt(2.0 * math.pi)
CLOSED = 1e-9  # the measured constants are accurate to ~1e-14; closed forms are asserted to this


def huber_np(z, h):
    return np.where(z < 0, 0.0, np.where(z <= h, z * z / (2 * h), z - h / 2))


# name, keyword arguments, phi and phi' written out with NumPy/SciPy, independently of the module.
REFERENCES = [
    ("leaky_softplus", {"c": 0.3}, lambda z: 0.3 * z + 0.7 * np.logaddexp(0, z), lambda z: 0.3 + 0.7 * expit(z)),
    ("softplus", {}, lambda z: np.logaddexp(0, z), expit),
    ("huber", {"h": 2.0}, lambda z: huber_np(z, 2.0), lambda z: np.clip(z, 0, 2.0) / 2.0),
    (
        "leaky_huber",
        {"c": 0.5, "h": 0.5},
        lambda z: 0.5 * z + 0.5 * huber_np(z, 0.5),
        lambda z: 0.5 + 0.5 * np.clip(z, 0, 0.5) / 0.5,
    ),
    ("gelu", {}, lambda z: z * ndtr(z), lambda z: ndtr(z) + z * np.exp(-z * z / 2) / SQRT_2PI),
    ("silu", {}, lambda z: z * expit(z), lambda z: expit(z) * (1 + z * expit(-z))),
]


@functools.partial(jax.jit, static_argnums=0)
def derivatives(phi, z):
    """phi, phi' and phi'' at the points z."""
    return phi(z), jax.vmap(jax.grad(phi))(z), jax.vmap(jax.grad(jax.grad(phi)))(z)


POINTS = np.array([-700.0, -30.0, -2.5, -0.3, 0.25, 0.7, 1.5, 30.0, 700.0])


@pytest.mark.parametrize("c", [0.3, 0.5, 0.8])
def test_leaky_softplus_constants(c):
    act = activation("leaky_softplus", c=c)
    assert act.kappa == pytest.approx((1 - c) * LOG2, abs=CLOSED)
    assert act.beta == pytest.approx((1 - c) / 4, abs=CLOSED)
    assert act.alpha == pytest.approx(c, abs=CLOSED)
    assert act.slope == pytest.approx(1.0, abs=CLOSED)  # sup phi' = 1 is approached as z → ∞


def test_leaky_softplus_at_one_half_is_the_spec_row():
    act = activation("leaky_softplus")
    assert (round(act.kappa, 4), round(act.beta, 4), round(act.alpha, 4)) == (0.3466, 0.125, 0.5)


def test_softplus_constants():
    act = activation("softplus")
    assert act.kappa == pytest.approx(LOG2, abs=CLOSED)
    assert act.beta == pytest.approx(0.25, abs=CLOSED)
    # inf phi' = 0 is approached only as z → −∞: on |z| <= 40 it is sigmoid(−40) ≈ 4e-18, within 1e-15 of 0 (A4 fails).
    assert 0.0 <= act.alpha < 1e-15
    assert act.slope == pytest.approx(1.0, abs=CLOSED)


@pytest.mark.parametrize("h", [0.5, 1.0, 2.0])
def test_huber_constants(h):
    # phi'' jumps from 0 to 1/h at z = 0 and back at z = h: the supremum 1/h is attained on (0, h).
    act = activation("huber", h=h)
    assert act.kappa == pytest.approx(h / 2, abs=CLOSED)
    assert act.beta == pytest.approx(1 / h, abs=CLOSED)
    assert act.alpha == pytest.approx(0.0, abs=CLOSED)
    assert act.slope == pytest.approx(1.0, abs=CLOSED)


@pytest.mark.parametrize("c, h", [(0.3, 1.0), (0.5, 2.0), (0.8, 0.5)])
def test_leaky_huber_constants(c, h):
    act = activation("leaky_huber", c=c, h=h)
    assert act.kappa == pytest.approx((1 - c) * h / 2, abs=CLOSED)
    assert act.beta == pytest.approx((1 - c) / h, abs=CLOSED)
    assert act.alpha == pytest.approx(c, abs=CLOSED)
    assert act.slope == pytest.approx(1.0, abs=CLOSED)


def test_gelu_constants():
    # phi − z phi' = −z² φ(z), largest at z² = 2; phi'' = φ(z)(2 − z²), largest at 0; phi'(z) + phi'(−z) = 1.
    act = activation("gelu")
    assert act.kappa == pytest.approx(2 / (math.e * SQRT_2PI), abs=CLOSED)
    assert round(act.kappa, 4) == 0.2935
    assert act.beta == pytest.approx(2 / SQRT_2PI, abs=CLOSED)
    assert round(act.beta, 3) == 0.798
    assert round(act.slope, 3) == 1.129 and round(act.alpha, 3) == -0.129  # the spec's phi' ∈ [−0.129, 1.129]
    assert act.slope + act.alpha == pytest.approx(1.0, abs=CLOSED)
    assert act.slope > 1 and act.alpha < 0  # (A2) and (A4) fail


def test_silu_constants():
    # phi'' = sigmoid'(z)(2 + z(1 − 2 sigmoid(z))), at 0: 2 · 1/4; phi'(z) + phi'(−z) = 1.
    act = activation("silu")
    assert round(act.kappa, 4) == 0.4392
    assert act.beta == pytest.approx(0.5, abs=CLOSED)
    assert round(act.slope, 4) == 1.0998 and round(act.alpha, 4) == -0.0998  # the spec's phi' ∈ [−0.0998, 1.0998]
    assert act.slope + act.alpha == pytest.approx(1.0, abs=CLOSED)


def test_constants_of_a_plain_function():
    # z ↦ z²/2 on |z| <= 40: phi − z phi' = −z²/2, phi'' = 1, phi' = z.
    kappa, beta, alpha, slope = constants(lambda z: z * z / 2)
    assert (kappa, beta, alpha, slope) == pytest.approx((800.0, 1.0, -40.0, 40.0), abs=CLOSED)


@pytest.mark.parametrize("name, kwargs, ref, ref_grad", REFERENCES, ids=[r[0] for r in REFERENCES])
def test_phi_and_its_derivative_match_numpy(name, kwargs, ref, ref_grad):
    phi = activation(name, **kwargs).phi
    with jax.enable_x64(True):
        value, slope, _ = (np.asarray(v) for v in derivatives(phi, jnp.asarray(POINTS, dtype=jnp.float64)))
    np.testing.assert_allclose(value, ref(POINTS), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(slope, ref_grad(POINTS), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_phi_is_finite_for_large_inputs(name, dtype):
    phi = activation(name).phi
    with jax.enable_x64(dtype == "float64"):
        z = jnp.asarray([-1e6, -700.0, -30.0, 30.0, 700.0, 1e6], dtype=dtype)
        value, d1, d2 = derivatives(phi, z)
    assert value.dtype == d1.dtype == d2.dtype == jnp.dtype(dtype)
    assert np.isfinite(np.asarray(value)).all() and np.isfinite(np.asarray(d1)).all()
    assert np.isfinite(np.asarray(d2)).all()
    # Far out every phi is linear with the slopes of its two ends.
    np.testing.assert_allclose(np.asarray(value)[[0, -1]] / np.asarray(z)[[0, -1]], np.asarray(d1)[[0, -1]], rtol=1e-6)


def test_the_same_arguments_give_the_same_object():
    act = activation("leaky_softplus", 0.5)
    assert activation("leaky_softplus", c=0.5) is act
    assert activation("leaky_softplus", c=1 / 2, h=3.0) is act  # h is not used by leaky softplus
    assert activation("gelu", c=0.9) is activation("gelu")
    assert hash(act) == hash(activation("leaky_softplus")) and act.phi == activation("leaky_softplus").phi
    assert activation("leaky_softplus", c=0.3) != act


def test_phi_can_be_a_static_argument():
    traces = []

    def apply(phi, z):
        traces.append(phi)
        return phi(z)

    jitted = jax.jit(apply, static_argnums=0)
    jitted(activation("silu").phi, jnp.ones(3))
    jitted(activation("silu").phi, jnp.zeros(3))
    assert len(traces) == 1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"name": "relu"}, "model.activation"),
        ({"name": "leaky_softplus", "c": 1.5}, "model.c"),
        ({"name": "leaky_softplus", "c": 0.0}, "model.c"),
        ({"name": "leaky_huber", "c": 1.0}, "model.c"),
        ({"name": "leaky_huber", "c": float("nan")}, "model.c"),
        ({"name": "huber", "h": 0.0}, "model.h"),
        ({"name": "leaky_huber", "h": -1.0}, "model.h"),
    ],
)
def test_bad_arguments_raise_a_config_error(kwargs, field):
    with pytest.raises(ConfigError, match=field) as err:
        activation(**kwargs)
    assert "\n" not in str(err.value) and "is invalid: must be" in str(err.value)


def test_the_message_names_the_range():
    with pytest.raises(ConfigError, match=r"^model\.c = 1\.5 is invalid: must be in \(0, 1\)$"):
        activation("leaky_softplus", c=1.5)
