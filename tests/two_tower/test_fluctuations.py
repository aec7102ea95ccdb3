"""The predicted finite-width fluctuations (``dynsim.ode.fluctuations``) against independent references.

Seed-free first: the sector-local Jacobians and Hessians against the full Gram field of the
enumerated population loss; the tangent against the central difference of that full Gram flow
from ``I ± εE``; the mean-shift response against its second difference. Then seeds, on the exact
Gram-space simulator: ``m × Var`` over 512 seeds at two widths against ``Σ(t) + m P_s(t)``
(within four standard errors of a variance, ``4 sqrt(2/511) = 25%``); the mean shift against
antithetic initializations ``I ± E/sqrt(m)`` with common batches; and at width ``10^12`` the
batch-noise variance and its scaling with the step size and the batch.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from enumeration import gram_flow, gram_rate

import dynsim
from dynsim.engine.config import ConfigError
from dynsim.engine.runner import record_steps, scan_run, seed_keys
from dynsim.two_tower import fluctuations as _fluctuations
from dynsim.two_tower import reduced as _reduced
from dynsim.two_tower import sectors as _sectors
from dynsim.two_tower import tangent as _tangent
from dynsim.two_tower.finite import plan_and_inputs, split_seed_key
from dynsim.two_tower.gram import latent_gram_of, latent_scales, make_step
from dynsim.two_tower.model import bartlett_gram

KINDS = ("infonce", "positive", "spectral")
SEEDS = 512
VARIANCE_BOUND = 4 * np.sqrt(2 / (SEEDS - 1))  # four standard errors of a sample variance
# A small case every seed-free check shares (one compiled program): r = 2, n = 1, two stages.
SMALL = {
    "data": {"r": 2, "n": 1, "spectrum": "list", "sigma": [1.6, 1.0], "sigma_b": [1.2, 0.9], "noise": 0.6},
    "loss": {"stages": [[0.5, 1.0], [3.0, 1.0]], "lam": 0.8},
    "train": {"lr": 0.1},
    "run": {"record_every": 1.0},
}
SCALES = np.array([1.6, 1.0, 0.6, 1.2, 0.9, 0.6])  # D = (sigma_A, eta_A, sigma_B, eta_B)


def state_of(gram, r):
    """``y = (a, b, p, nu^A, nu^B)`` of a latent Gram matrix ``Q`` (…, 2q, 2q)."""
    q = gram.shape[-1] // 2
    diag = jnp.diagonal(gram, axis1=-2, axis2=-1)
    signal = np.arange(r)
    parts = [diag[..., :r], diag[..., q : q + r], gram[..., signal, q + signal], diag[..., r:q], diag[..., q + r :]]
    return jnp.concatenate(parts, axis=-1)


def random_symmetric(rng, size):
    """``E`` with the Wishart fluctuation's covariance: variance 2 on the diagonal, 1 off it."""
    g = rng.standard_normal((size, size))
    return (g + g.T) / np.sqrt(2)


@pytest.mark.parametrize("kind", KINDS)
def test_sector_jacobians_and_hessians_equal_the_full_gram_field(kind):
    r, n = 2, 2
    rng = np.random.default_rng(3)
    sigma_a, sigma_b = rng.uniform(0.5, 1.5, (2, r))
    eta_a, eta_b = rng.uniform(0.2, 0.6, (2, n))
    spectra = tuple(jnp.asarray(x**2) for x in (sigma_a, sigma_b, eta_a, eta_b))
    scales = np.concatenate([sigma_a, eta_a, sigma_b, eta_b])
    y = jnp.asarray(np.concatenate([rng.uniform(0.5, 2, 2 * r), rng.uniform(0.1, 0.5, r + 2 * n)]))
    tau, lam = 1.7, 0.8
    stage = _sectors.Stage(jnp.asarray(tau), jnp.asarray(1 / tau), jnp.asarray(lam))
    q_inf = _fluctuations._gram_of(np.asarray(y), r, n)
    table = _sectors.sectors(r, n)
    assert len(table.kinds) == (r + 2 * n) * (r + 2 * n - 1) // 2

    def full(delta, rows, mask):
        """The full field at Q(y) + delta on one sector's entries: (state part, sector entries)."""
        first, second = rows[np.array(_sectors.ENTRIES).T]
        values = jnp.where(mask, delta, 0.0)
        gram = jnp.asarray(q_inf).at[first, second].add(values, mode="drop").at[second, first].add(values, mode="drop")
        rate = gram_rate(gram / np.outer(scales, scales), scales, r, n, tau, 1 / tau, lam, kind)
        field = scales[:, None] * rate * scales[None, :]  # dQ/dt = D (dK/dt) D
        entries = field.at[first, second].get(mode="fill", fill_value=0.0)
        return state_of(field, r), jnp.where(mask, entries, 0.0)

    def derivatives(field):
        """At delta = 0: the field, its sector Jacobian, its invariant Hessian, its invariant Jacobian."""
        zero = jnp.zeros(4)
        return (
            field(zero)[0],
            jax.jacfwd(lambda d: field(d)[1])(zero),
            jax.jacfwd(jax.jacfwd(lambda d: field(d)[0]))(zero),
            jax.jacfwd(lambda d: field(d)[0])(zero),
        )

    arrays = tuple(jnp.asarray(x) for x in table)
    local = lambda sector: derivatives(lambda d: _sectors.sector_field(y, d, sector, spectra, stage, kind))  # noqa: E731
    mine = jax.jit(jax.vmap(local))
    theirs = jax.jit(jax.vmap(lambda rows, mask: derivatives(lambda d: full(d, rows, mask))))
    field_mine, jac_mine, hess_mine, _ = mine(arrays)
    field_full, jac_full, hess_full, coupling = theirs(jnp.asarray(table.rows), jnp.asarray(table.mask))
    np.testing.assert_allclose(field_mine, field_full, atol=1e-14)
    np.testing.assert_allclose(jac_mine, jac_full, atol=1e-14)
    np.testing.assert_allclose(hess_mine, hess_full, atol=1e-14)
    assert np.abs(coupling).max() < 1e-14  # at first order a sector does not move the invariant state
    assert np.abs(jac_full).max() > 0.05  # what is compared is not trivially zero
    if kind != "positive":  # the positive loss is linear in the cross entries: no second order
        assert np.abs(hess_full).max() > 1e-3


def _small(kind="infonce", **overrides):
    config = dynsim.load_config({**SMALL, "loss": {**SMALL["loss"], "kind": kind}})
    return dynsim.engine.config.with_overrides(config, overrides) if overrides else config


def test_gradient_field_and_step_map_agree_with_the_reduced_field():
    # The field from the loss gradient's invariant entries is the closed-form reduced field, and
    # one population SGD step moves by lr times it up to O(lr^2).
    config = _small()
    problem = dynsim.two_tower.ode._problem(config, "")
    with jax.enable_x64(True):
        args = jax.tree.map(jnp.asarray, problem.args)
        y = _reduced.initial_state(args) + jnp.linspace(0.1, 0.3, 8)
        stage = _tangent.stage_at(args, 0.5)
        field = _reduced.vector_field(0.5, y, args, "infonce")
        grads = _tangent.population_gradient(y, stage, "infonce", 2)
        spectra = _tangent.spectra_of(args)
        np.testing.assert_allclose(_sectors.gradient_field(y, *grads, spectra, stage.gamma), field, rtol=1e-13)
        step = lambda lr: _tangent.step_map(y, stage, args, lr, "infonce")  # noqa: E731
        errors = [np.abs((step(lr) - y) / lr - field).max() for lr in (1e-3, 1e-4)]
    assert 8 < errors[0] / errors[1] < 12  # the step's error to the field is first order in lr
    c = _reduced.cosines(y, 2)[0]
    table = _sectors.sectors(2, 1)
    for index in range(len(table.kinds)):  # at delta = 0 every sector's loss is the reduced loss
        sector = (table.kinds[index], table.slots[index], table.mask[index])
        alpha, beta = _sectors.traces(y, 2)
        loss = _sectors.sector_loss(_reduced.split(y, 2)["p"], alpha, beta, jnp.zeros(4), sector, stage, "infonce")
        np.testing.assert_allclose(loss, _reduced.reduced_loss(c, stage.tau, stage.lam, "infonce"), rtol=1e-14)


def test_tangent_and_mean_shift_are_the_differences_of_the_full_gram_flow():
    # Seed-free: the full 6 × 6 Gram flow of the enumerated population loss from K_0 = I ± eps E.
    config = _small()
    r, n, q = 2, 1, 3
    rng = np.random.default_rng(11)
    flow = lambda start: np.stack(gram_flow(SCALES, r, n, config.loss.stages, 0.8, "infonce", 0.01, start))  # noqa: E731
    state = lambda k: np.asarray(state_of(SCALES[:, None] * k * SCALES[None, :], r))  # noqa: E731
    base = state(flow(np.eye(2 * q)))
    # first order: a general E (every entry), against Phi applied to its invariant part
    e1 = random_symmetric(rng, 2 * q)
    eps = 1e-4
    central = (state(flow(np.eye(2 * q) + eps * e1)) - state(flow(np.eye(2 * q) - eps * e1))) / (2 * eps)
    prediction = dynsim.ode.fluctuations(config, noise=False, mean_shift=False, rtol=1e-11, atol=1e-13)
    kick = np.asarray(state_of(SCALES[:, None] * e1 * SCALES[None, :], r))
    np.testing.assert_allclose(central, prediction.tangent[1:] @ kick, rtol=1e-6, atol=1e-8)
    # second order: one invariant entry (p_1) and one entry of every sector, against 2 mu_2
    table = _sectors.sectors(r, n)
    e2 = np.zeros((2 * q, 2 * q))
    e2[0, q] = e2[q, 0] = 1.3
    root0 = np.zeros((len(table.kinds), 4))
    for index, (rows, mask) in enumerate(zip(table.rows, table.mask, strict=True)):
        entry = int(np.flatnonzero(mask)[0])
        i, j = rows[list(_sectors.ENTRIES[entry])]
        e2[i, j] = e2[j, i] = rng.uniform(0.5, 1.5)
        root0[index, entry] = SCALES[i] * SCALES[j] * e2[i, j]
    sigma0 = np.zeros(3 * r + 2 * n)
    sigma0[2 * r] = (SCALES[0] * SCALES[q] * e2[0, q]) ** 2
    eps = 1e-3
    second = (state(flow(np.eye(2 * q) + eps * e2)) + state(flow(np.eye(2 * q) - eps * e2)) - 2 * base) / eps**2
    problem = dynsim.two_tower.ode._problem(config, "")
    with jax.enable_x64(True):
        args = jax.tree.map(jnp.asarray, problem.args)
        *_, mu2, _, _ = _fluctuations.solve_tangent(
            problem,
            args,
            "infonce",
            problem.grid,
            sigma0,
            tuple(jnp.asarray(x) for x in table),
            root0,
            np.zeros((2, 0, 0)),
            rtol=1e-11,
            atol=1e-13,
            max_steps=100_000,
        )
    assert np.abs(second).max() > 0.1  # the second-order response is of order one
    np.testing.assert_allclose(second, 2 * np.asarray(mu2)[1:], rtol=1e-4, atol=1e-5)


def gram_states(config, width, seeds, starts=None):
    """``y`` at every record of ``seeds`` runs of the exact Gram-space simulator, (seeds, T, D), float64.

    Seed ``i`` draws its batches and (when ``starts`` is None) its Wishart ``K_0`` as
    ``dynsim.simulate`` does; ``starts`` (seeds, 2q, 2q) gives every run its ``K_0`` instead, and
    all of them the batches of seed 0 (common random numbers).
    """
    config = dynsim.load_config(config)
    with jax.enable_x64(True):
        data_key, keys = seed_keys(config.run.seed, width, seeds)
        plan, inputs = plan_and_inputs(config, width, data_key, "bartlett")
        dim = 2 * (plan.r + plan.n)
        steps = sum(plan.steps_per_stage)
        if starts is not None:
            keys = jnp.repeat(keys[:1], len(starts), axis=0)

        def one(key, start):
            init_key, step_key, _ = split_seed_key(key)
            gram0 = bartlett_gram(init_key, inputs.width, dim, jnp.float64) if start is None else start
            identity = jnp.eye(dim)
            scales = latent_scales(inputs)
            observe = lambda state, _: state_of(latent_gram_of(state[0].T @ gram0 @ state[0], scales), plan.r)  # noqa: E731
            initial = (identity, optax.sgd(plan.lr).init(identity))
            return scan_run(initial, make_step(plan, inputs, gram0, step_key), observe, steps, plan.record_every)[0]

        run = jax.jit(jax.vmap(one, in_axes=(0, None if starts is None else 0)))
        states = run(keys, None if starts is None else jnp.asarray(starts))
        assert record_steps(steps, plan.record_every).size == states.shape[1]
        return np.asarray(states)


# The seed checks share one small configuration (r = 2, n = 1; 40 steps of batch 64).
SEEDED = {
    "data": {"r": 2, "n": 1, "kappa": 2.0, "noise": 0.5},
    "loss": {"stages": [[0.5, 1.0], [2.0, 1.0]]},
    "train": {"lr": 0.05, "batch": 64, "precision": "float64"},
    "run": {"record_every": 0.5},
}


def test_seed_variance_at_two_widths_is_the_predicted_covariance():
    """512 seeds at two widths (about 25 s on 2 cores): fewer seeds and a variance's sampling error
    would hide a 20% error of the prediction."""
    prediction = dynsim.ode.fluctuations(SEEDED, discrete=True)
    for width in (1000, 10000):
        measured = width * gram_states(SEEDED, width, SEEDS).var(axis=0, ddof=1)
        predicted = np.diagonal(prediction.covariance(width), axis1=1, axis2=2) * width
        ratio = measured[1:] / predicted[1:]  # every record after the start, every coordinate
        assert np.abs(ratio - 1).max() < VARIANCE_BOUND, (width, np.round(ratio, 3))
    assert np.all(np.diagonal(prediction.noise_cov[-1]) > 0)  # InfoNCE's negatives feed the invariant state


def test_mean_shift_equals_antithetic_initializations_with_common_batches():
    config = dynsim.engine.config.with_overrides(dynsim.load_config(SEEDED), {"train": {"lr": 0.02}})
    width, draws = 10_000, 128
    rng = np.random.default_rng(2)
    kicks = np.stack([random_symmetric(rng, 6) for _ in range(draws)]) / np.sqrt(width)
    eye = np.eye(6)
    states = gram_states(config, width, 2 * draws + 1, starts=np.concatenate([eye + kicks, eye - kicks, eye[None]]))
    plus, minus, base = states[:draws], states[draws:-1], states[-1]
    shift = width * ((plus + minus) / 2 - base)  # (draws, T, D): the O(1/m) response, odd orders cancelled
    measured, error = shift.mean(axis=0), shift.std(axis=0, ddof=1) / np.sqrt(draws)
    predicted = dynsim.ode.fluctuations(config, noise=False).mean_shift
    scale = np.abs(predicted).max()
    assert scale > 0.5
    assert np.all(np.abs(measured - predicted) < 4 * error + 0.05 * scale), np.round((measured - predicted) / error, 1)


def test_batch_noise_at_width_1e12_is_predicted_and_scales_as_lr_over_batch_squared():
    """Three (lr, batch) programs of 512 seeds (about 30 s on 2 cores): two ratios need three points."""
    # On the invariant set the InfoNCE batch gradient is a degenerate U-statistic: conditioned on one
    # pair, its negatives' similarities z^i * z^j are uniform whatever z^i, so the O(1/B) term of its
    # variance vanishes and the noise is O(lr / B^2) (docs/fluctuations.md), not O(lr / B).
    measured, predicted = {}, {}
    for lr, batch in ((0.025, 64), (0.025, 16), (0.0125, 16)):
        config = dynsim.engine.config.with_overrides(dynsim.load_config(SEEDED), {"train": {"lr": lr, "batch": batch}})
        measured[lr, batch] = gram_states(config, 10**12, SEEDS).var(axis=0, ddof=1)[-1]
        predicted[lr, batch] = np.diagonal(dynsim.ode.fluctuations(config, discrete=True).noise_cov[-1])
        ratio = measured[lr, batch] / predicted[lr, batch]
        assert np.abs(ratio - 1).max() < VARIANCE_BOUND, (lr, batch, np.round(ratio, 3))
    batch_exponent = np.log(measured[0.025, 16] / measured[0.025, 64]) / np.log(4)
    lr_exponent = np.log(measured[0.025, 16] / measured[0.0125, 16]) / np.log(2)
    assert np.all(np.abs(batch_exponent - 2) < 0.25), np.round(batch_exponent, 2)
    assert np.all(np.abs(lr_exponent - 1) < 0.4), np.round(lr_exponent, 2)


def test_positive_loss_has_no_batch_noise_on_the_invariant_state():
    # Without negatives every pair's similarity on the invariant set is sum_k c_k: no noise.
    prediction = dynsim.ode.fluctuations(_small("positive"), discrete=True)
    assert np.abs(prediction.noise_cov).max() < 1e-25


def test_bad_options_are_refused_with_the_field_named():
    with pytest.raises(ConfigError, match="noise_samples"):
        dynsim.ode.fluctuations(_small(), noise_samples=1)
    with pytest.raises(ConfigError, match="record grid with discrete=True"):
        dynsim.ode.fluctuations(_small(), ts=[0.0, 0.5, 2.0], discrete=True)
    with pytest.raises(ConfigError, match="train.optimizer"):
        dynsim.ode.fluctuations({**SMALL, "train": {"optimizer": "momentum"}})
