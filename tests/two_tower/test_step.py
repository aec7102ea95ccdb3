"""One simulator step against an update computed independently in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_loss import numpy_infonce, numpy_spectral

from dynsim.two_tower.data import sample_latents
from dynsim.two_tower.finite import Inputs, Plan
from dynsim.two_tower.param import init_state, make_step


def numpy_loss(w_a, w_b, p_a, p_b, u_a, u_b, kind, tau, lam):
    f_a = (u_a @ p_a.T) @ w_a.T / np.linalg.norm(w_a @ p_a)
    f_b = (u_b @ p_b.T) @ w_b.T / np.linalg.norm(w_b @ p_b)
    s = f_a @ f_b.T
    if kind == "infonce":
        return numpy_infonce(s, tau, lam)
    if kind == "spectral":
        return numpy_spectral(s, lam)
    return -tau * np.trace(s) / len(s)


def numpy_gradient(fn, w, h=1e-6):
    grad = np.zeros_like(w)
    for index in np.ndindex(*w.shape):
        bump = np.zeros_like(w)
        bump[index] = h
        grad[index] = (fn(w + bump) - fn(w - bump)) / (2 * h)
    return grad


@pytest.mark.parametrize(
    ("kind", "rescale"), [("infonce", True), ("infonce", False), ("spectral", True), ("positive", True)]
)
def test_sgd_step_is_w_minus_lr_gamma_grad(key, kind, rescale):
    r, n, d, width, batch, lr, tau, lam = 2, 1, 4, 5, 6, 0.3, 2.5, 0.7
    plan = Plan(
        width=width,
        r=r,
        n=n,
        d=d,
        batch=batch,
        lr=lr,
        optimizer="sgd",
        momentum=0.0,
        loss=kind,
        normalization="population",
        steps_per_stage=(3, 4),
        record_every=1,
        samples=4,
        dtype="float64",
    )
    gamma = 1 / tau if rescale else 1.0
    inputs = Inputs(
        *([jnp.zeros(1)] * 6),
        taus=jnp.array([9.0, tau]),
        gammas=jnp.array([0.0, gamma]),
        lam=jnp.asarray(lam),
        width=jnp.asarray(width),
    )
    p_a, p_b = (np.asarray(jax.random.normal(k, (d, r + n), jnp.float64)) for k in jax.random.split(key))
    state = init_state(plan, key)
    step_key = jax.random.fold_in(key, 99)
    # Step index 3 is the first step of stage 2: it must use tau and gamma of that stage.
    (new_a, new_b), _ = make_step(plan, inputs, (jnp.asarray(p_a), jnp.asarray(p_b)), step_key)(state, 3)
    u_a, u_b = (np.asarray(u) for u in sample_latents(jax.random.fold_in(step_key, 3), batch, r, n, jnp.float64))
    w_a, w_b = (np.asarray(w) for w in state[0])
    grad_a = numpy_gradient(lambda w: numpy_loss(w, w_b, p_a, p_b, u_a, u_b, kind, tau, lam), w_a)
    grad_b = numpy_gradient(lambda w: numpy_loss(w_a, w, p_a, p_b, u_a, u_b, kind, tau, lam), w_b)
    np.testing.assert_allclose(new_a, w_a - lr * gamma * grad_a, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(new_b, w_b - lr * gamma * grad_b, rtol=1e-8, atol=1e-10)
