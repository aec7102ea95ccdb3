"""Decompositions one matrix at a time: the same numbers as jnp.linalg's, and no batched LAPACK
call left in the program under vmap (a batched call is what deadlocked XLA's CPU thread pool)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynsim.engine import lapack

rng = np.random.default_rng(0)
SQUARE = rng.normal(size=(3, 4, 6, 6))
SYMMETRIC = SQUARE @ np.swapaxes(SQUARE, -1, -2)
TALL = rng.normal(size=(3, 4, 9, 5))

CASES = [
    ("eigh", lapack.eigh, jnp.linalg.eigh, SYMMETRIC),
    ("eigvalsh", lapack.eigvalsh, jnp.linalg.eigvalsh, SYMMETRIC),
    ("svd", lapack.svd, lambda a: jnp.linalg.svd(a, full_matrices=False), TALL),
    ("singular_values", lapack.singular_values, lambda a: jnp.linalg.svd(a, compute_uv=False), TALL),
    ("pinv", lapack.pinv, jnp.linalg.pinv, TALL),
]


@pytest.mark.parametrize(("name", "ours", "reference", "batch"), CASES, ids=[case[0] for case in CASES])
def test_each_matrix_gives_what_jnp_linalg_gives_under_nested_vmap(name, ours, reference, batch):
    with jax.enable_x64(True):
        looped = jax.jit(jax.vmap(jax.vmap(ours)))(batch)
        for i in range(batch.shape[0]):
            for j in range(batch.shape[1]):
                one = jax.jit(reference)(batch[i, j])
                for got, want in zip(jax.tree.leaves(looped), jax.tree.leaves(one), strict=True):
                    np.testing.assert_array_equal(got[i, j], want, err_msg=name)


def test_vmap_leaves_one_matrix_per_lapack_call():
    batch = SYMMETRIC.astype(np.float32)
    ours = jax.jit(jax.vmap(jax.vmap(lapack.eigh))).lower(batch).as_text()
    theirs = jax.jit(jax.vmap(jax.vmap(jnp.linalg.eigh))).lower(batch).as_text()
    assert "syevd" in ours and "syevd" in theirs
    assert "tensor<3x4x6x6xf32>) -> (tensor<3x4x6x6xf32>" in theirs.replace("\n", "")  # batched: one call
    calls = [line for line in ours.splitlines() if "syevd" in line and "call" in line]
    assert calls and all("tensor<6x6xf32>" in line and "x6x6xf32" not in line for line in calls)
