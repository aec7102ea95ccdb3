"""The heads with batch norm against a NumPy forward pass, in training and in evaluation mode, and
the running statistics they keep."""

import jax
import numpy as np

from dynsim.practical.heads import EPS, MOMENTUM, embed, head


def numpy_forward(model, running, x, train: bool):
    """The head of dynsim.practical.heads written again in NumPy (float64): linear, batch norm
    (batch statistics with the biased variance in training, the running ones in evaluation), ReLU."""
    means, variances = [], []
    layers = len(model.linears)
    for i, linear in enumerate(model.linears):
        x = x @ np.asarray(linear.weight).T + np.asarray(linear.bias)
        if i == layers - 1:
            break
        if train:
            mean, var = x.mean(axis=0), x.var(axis=0)
            means.append(MOMENTUM * np.asarray(running.mean[i]) + (1 - MOMENTUM) * mean)
            variances.append(MOMENTUM * np.asarray(running.var[i]) + (1 - MOMENTUM) * x.var(axis=0, ddof=1))
        else:
            mean, var = np.asarray(running.mean[i]), np.asarray(running.var[i])
        x = np.maximum(np.asarray(model.scales[i]) * (x - mean) / np.sqrt(var + EPS) + np.asarray(model.shifts[i]), 0)
    return x / np.linalg.norm(x, axis=1, keepdims=True), means, variances


def test_train_and_eval_mode_match_numpy(key):
    model, running = head(7, 12, 5, 3, key)
    model = jax.tree.map(lambda p: p * 1.3 + 0.05 if p.ndim == 1 else p, model)  # scales, shifts not 1, 0
    x = np.random.default_rng(0).normal(size=(40, 7)) * np.arange(1, 8)
    f, updated = embed(model, running, x, train=True)
    expected, means, variances = numpy_forward(model, running, x, train=True)
    np.testing.assert_allclose(f, expected, rtol=1e-10, atol=1e-12)
    for got, want in zip(updated.mean + updated.var, means + variances, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert np.allclose(np.linalg.norm(f, axis=1), 1)
    # evaluation with the updated statistics: per example, independent of the rest of the batch
    g, unchanged = embed(model, updated, x, train=False)
    np.testing.assert_allclose(g, numpy_forward(model, updated, x, train=False)[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(embed(model, updated, x[:3], train=False)[0], g[:3], rtol=1e-12)
    assert unchanged is updated
    assert not np.allclose(g, f)  # the two modes differ


def test_running_statistics_converge_to_the_data_statistics(key):
    """Fed the same batch again and again, the running mean and unbiased variance approach the
    batch's (geometrically, at rate MOMENTUM), so evaluation mode approaches training mode."""
    model, running = head(3, 4, 2, 2, key)
    x = np.random.default_rng(1).normal(size=(16, 3)) + 2.0
    f_train, _ = embed(model, running, x, train=True)
    for _ in range(300):
        _, running = embed(model, running, x, train=True)
    z = x @ np.asarray(model.linears[0].weight).T + np.asarray(model.linears[0].bias)
    np.testing.assert_allclose(running.mean[0], z.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(running.var[0], z.var(axis=0, ddof=1), rtol=1e-9)
    f_eval, _ = embed(model, running, x, train=False)
    np.testing.assert_allclose(f_eval, f_train, atol=0.05)  # differ only through n/(n-1) in the variance
