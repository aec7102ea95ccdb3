"""Linear algebra that never waits on XLA's CPU thread pool: one matrix per LAPACK call.

jaxlib (0.10.2) runs a batched LAPACK call (an eigendecomposition or SVD under ``vmap``) by
splitting the batch into tasks on XLA's CPU thread pool and blocking the calling thread, itself
one of the pool's, until they finish. When as many such calls run at once as the pool has
threads (independent operations of one program, or the programs of several CPU devices), every
thread waits for tasks queued behind the others, and the process hangs. A call on a single
matrix runs in the calling thread and waits for nothing. :func:`one_by_one` makes ``vmap`` of a
decomposition a loop over the batch (``lax.map``), so every call is on one matrix; each matrix is
computed by the same LAPACK routine, so the results are the same bits. docs/simulation.md, "Known
limitation", has what was seen.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def one_by_one(fn):
    """``fn`` (of arrays) whose ``vmap`` loops over the batch instead of batching ``fn``.

    Nested ``vmap`` s nest the loops. Outputs are batched along their leading axis, as ``vmap``'s.
    """

    @jax.custom_batching.custom_vmap
    def wrapped(*args):
        return fn(*args)

    @wrapped.def_vmap
    def rule(axis_size, in_batched, *args):
        def one(batched_args):
            it = iter(batched_args)
            return wrapped(*(next(it) if batched else arg for arg, batched in zip(args, in_batched, strict=True)))

        out = jax.lax.map(one, [arg for arg, batched in zip(args, in_batched, strict=True) if batched])
        return out, jax.tree.map(lambda _: True, out)

    return wrapped


eigh = one_by_one(jnp.linalg.eigh)
eigvalsh = one_by_one(jnp.linalg.eigvalsh)
svd = one_by_one(lambda a: jnp.linalg.svd(a, full_matrices=False))
singular_values = one_by_one(lambda a: jnp.linalg.svd(a, compute_uv=False))
pinv = one_by_one(jnp.linalg.pinv)
solve = one_by_one(jnp.linalg.solve)
