"""The Gram-space backend against the literal parameter-space model, the Wishart law, and the ODE."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import dynsim
from dynsim.two_tower import gram as _gram
from dynsim.two_tower.model import bartlett_gram

NAMES = ("a", "b", "p", "nu_a", "nu_b")
CONTINUOUS_METRICS = ("loss", "rho_min", "rho_mean", "kappa_a", "kappa_b", "balance", "nsr", "offdiag")


def _config(loss="infonce", normalization="population", optimizer="sgd", precision="float64", **data):
    # d = 6 > r + n = 4 with a random basis: ambient directions outside span[U V] exist and
    # W_0 has components along them, which the Gram backend must (correctly) ignore.
    return dynsim.load_config(
        {
            "data": {"r": 2, "n": 2, "d": 6, "basis": "random", "kappa": 3.0, **data},
            "loss": {"kind": loss, "stages": [[0.5, 5.0], [4.0, 5.0]], "lam": 1.5},
            "train": {
                "batch": 16,
                "lr": 0.05,
                "precision": precision,
                "optimizer": optimizer,
                "normalization": normalization,
                "momentum": 0.5,
            },
            "run": {"record_every": 1.0, "alignment_samples": 64},
        }
    )


def _relative_errors(param, gram):
    return {
        name: np.abs(getattr(gram, name) - getattr(param, name)).max() / np.abs(getattr(param, name)).max()
        for name in NAMES
    }


@pytest.mark.parametrize(
    ("loss", "normalization", "optimizer"),
    list(itertools.product(["infonce", "positive", "spectral"], ["population", "batch"], ["sgd", "momentum"])),
)
def test_gram_with_exact_init_follows_param_trajectory_float64(loss, normalization, optimizer):
    # Same key: same W_0 (init="exact"), same batches, so the two backends compute the same
    # 200-step trajectory by different arithmetic (B x m embeddings vs 2q x 2q Gram matrices).
    config = _config(loss, normalization, optimizer)
    param = dynsim.simulate(config, width=50, seeds=2, backend="param")
    gram = dynsim.simulate(config, width=50, seeds=2, backend="gram", init="exact")
    errors = _relative_errors(param, gram)
    assert max(errors.values()) < 1e-10, errors
    for name in CONTINUOUS_METRICS:
        np.testing.assert_allclose(gram.metrics[name], param.metrics[name], rtol=1e-10, atol=1e-12, err_msg=name)
    # Alignment counts pairs; allow two of the 64 * 63 ordered pairs to flip on a near tie.
    np.testing.assert_allclose(gram.metrics["alignment"], param.metrics["alignment"], atol=2 / (64 * 63))
    # The trajectory moved: the equality is not that of two frozen states.
    assert np.abs(param.p[:, -1] - param.p[:, 0]).max() > 0.1 * np.abs(param.p).max()


def test_gram_follows_param_below_width_2q_where_auto_init_is_exact():
    # m = 3 < d = 6 < 2(r + n) = 8: a rank-deficient K_0; "auto" must pick the exact route.
    config = _config()
    param = dynsim.simulate(config, width=3, seeds=2)
    gram = dynsim.simulate(config, width=3, seeds=2, backend="gram")
    assert max(_relative_errors(param, gram).values()) < 1e-10


@pytest.mark.parametrize(
    ("loss", "normalization", "optimizer"), [("infonce", "population", "sgd"), ("spectral", "batch", "momentum")]
)
def test_gram_follows_param_float32(loss, normalization, optimizer):
    # Stated float32 tolerance: 2e-5 of each coordinate's scale. Float32 rounding (eps 6e-8 per
    # operation) accumulates over the 200 steps without systematic contraction to about 1.6e-6
    # (measured), so 2e-5 leaves a 10x margin while a wrong step (errors of order lr = 5e-2) fails.
    config = _config(loss, normalization, optimizer, precision="float32")
    param = dynsim.simulate(config, width=50, seeds=2)
    gram = dynsim.simulate(config, width=50, seeds=2, backend="gram", init="exact")
    errors = _relative_errors(param, gram)
    assert max(errors.values()) < 2e-5, errors
    # The alignment score is left out: with 16 distinct Rademacher latents, exact distance ties
    # are frequent and float32 rounding breaks them differently in the two backends.
    for name in CONTINUOUS_METRICS:
        np.testing.assert_allclose(gram.metrics[name], param.metrics[name], rtol=2e-5, atol=2e-6, err_msg=name)


def _bartlett_draws(width, dim, count, key, sampler=bartlett_gram):
    keys = jax.random.split(key, count)
    return np.asarray(jax.vmap(lambda k: sampler(k, width, dim, jnp.float64))(keys))


def _direct_draws(width, dim, count, key):
    omega = jax.random.normal(key, (count, width, dim), jnp.float64) / np.sqrt(width)
    return np.asarray(jnp.einsum("cmi,cmj->cij", omega, omega))


@pytest.mark.parametrize("width", [20, 1000, 10**6])
def test_bartlett_moments_are_those_of_wishart_m_identity_over_m(key, width):
    # K_0 = Omega^T Omega, Omega iid N(0, 1/m): E K = I, Var K_ii = 2/m, Var K_ij = 1/m (i != j).
    dim, count = 8, 20000
    draws = _bartlett_draws(width, dim, count, key)
    # Mean: each entry within 5 standard errors sqrt(Var / count).
    off = ~np.eye(dim, dtype=bool)
    z_mean = (draws.mean(0) - np.eye(dim)) / np.sqrt(np.where(off, 1.0, 2.0) / width / count)
    assert np.abs(z_mean).max() < 5
    # Variance: one entry's sample variance over 20000 draws has a relative standard error of
    # sqrt((2 + excess kurtosis) / 20000), at most 1.2% (m = 20: kurtosis 12/m for a diagonal
    # entry); averaged over the 8 independent diagonal entries 0.4%, over the 28 distinct
    # off-diagonal ones less. 2% is 5 standard errors.
    variance = draws.var(0)
    assert np.mean(variance[~off]) * width / 2 == pytest.approx(1, rel=0.02)
    assert np.mean(variance[off]) * width == pytest.approx(1, rel=0.02)


def _trace_and_smallest_eigenvalue(draws):
    return np.trace(draws, axis1=1, axis2=2), np.linalg.eigvalsh(draws)[:, 0]


def test_bartlett_law_equals_direct_sampling_two_sample_ks(key):
    # m = 20, dim = 8: small enough that the law is far from Gaussian and the smallest
    # eigenvalue (about (1 - sqrt(8/20))^2 = 0.14) probes the joint law of all entries.
    # Under the null the p-value is uniform, so with the fixed seed a true sampler passes the
    # 1e-3 threshold with probability 0.999; the control below shows the test has the power
    # to see an off-by-one error in the chi-square degrees of freedom at the same sample size.
    width, dim, count = 20, 8, 4000
    key_bartlett, key_direct = jax.random.split(key)
    bartlett = _trace_and_smallest_eigenvalue(_bartlett_draws(width, dim, count, key_bartlett))
    direct = _trace_and_smallest_eigenvalue(_direct_draws(width, dim, count, key_direct))
    for name, ours, theirs in zip(("trace", "smallest eigenvalue"), bartlett, direct, strict=True):
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3, name

    def off_by_one(k, m, d, dtype):  # A_ii^2 ~ chi^2_{m-i+1} instead of chi^2_{m-i}
        return bartlett_gram(k, m + 1, d, dtype) * (m + 1) / m

    wrong = _trace_and_smallest_eigenvalue(_bartlett_draws(width, dim, count, key_bartlett, off_by_one))
    assert stats.ks_2samp(wrong[0], direct[0]).pvalue < 1e-6


def test_gram_refuses_what_it_cannot_run():
    with pytest.raises(dynsim.ConfigError, match=r"train.optimizer = 'adam'.*linear in the gradient.*'param'"):
        dynsim.simulate(_config(optimizer="adam"), width=64, backend="gram")
    with pytest.raises(dynsim.ConfigError, match=r"init = 'bartlett' is invalid at width 7.*2\(r \+ n\) = 8"):
        dynsim.simulate(_config(), width=7, backend="gram", init="bartlett")
    with pytest.raises(dynsim.ConfigError, match=r"run.init = 'bartlett' is invalid: backend 'param' draws W_0"):
        dynsim.simulate(_config(), width=64, backend="param", init="bartlett")
    with pytest.raises(dynsim.ConfigError, match=r"init = 'wishart' is invalid: must be one of 'auto'"):
        dynsim.simulate(_config(), width=64, backend="gram", init="wishart")


def test_bartlett_widths_share_one_compiled_program(count_traces):
    traces = count_traces(_gram)
    for width in (100, 1000, 10**6):
        dynsim.simulate(_config(), width=width, seeds=2, backend="gram")
    assert len(traces) == 1
