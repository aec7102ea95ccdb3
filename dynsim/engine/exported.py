"""Programs kept traced and lowered between processes (``jax.export``), beside the compile cache.

JAX's persistent cache skips compiling a program, not tracing and lowering it, which a new
process pays again (about 0.75 s for the two-tower ODE solve) along with importing what the
tracing needs (diffrax, 0.7 s). :func:`call` keeps the exported program, serialized, in
``<compile cache>/exported/`` under a key of everything that could change it: the name and
static options the caller gives, the shapes and dtypes of the arguments, the jax version, the
backend, and a digest of dynsim's own source. A later process deserializes it and calls it; its
compilation then comes from JAX's cache. With the cache off (``DYNSIM_CACHE=off``, or no compile
cache directory) the program is traced and run as a plain ``jax.jit`` call.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable, Hashable
from pathlib import Path

import jax
import numpy as np
from jax import export

from . import cache

SUFFIX = ".jaxexport"
# The exported programs are kept under this size, the least recently used removed first; a
# program larger than a quarter of it (one with large constants) is not kept at all.
MAX_BYTES = 256 * 2**20


@functools.cache
def source_digest() -> str:
    """sha256 of every ``.py`` file of the dynsim package (path and content)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def exported_dir() -> Path | None:
    """``<compile cache>/exported`` (created 0700), or ``None`` when dynsim's cache is off."""
    compile_dir = jax.config.jax_compilation_cache_dir
    if cache.requested_dir() is None or not compile_dir:
        return None
    return cache.private_dir(Path(compile_dir) / "exported")


def program_key(name: Hashable, args) -> str:
    """The file name of the exported program ``name`` for arguments shaped like ``args``."""
    shapes = [(np.shape(leaf), str(np.result_type(leaf))) for leaf in jax.tree.leaves(args)]
    parts = (name, shapes, jax.tree.structure(args), jax.__version__, jax.default_backend(), source_digest())
    return hashlib.sha256(repr(parts).encode()).hexdigest() + SUFFIX


def _write_atomic(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def call(name: Hashable, build: Callable[[], Callable], *args):
    """``build()(*args)``, through the exported program ``name`` kept in the cache.

    Args:
        name: everything static the program depends on besides the arguments' shapes and dtypes
            (a tuple of strings and numbers; its ``repr`` enters the key).
        build: returns the jitted function of ``args`` (flat arrays and tuples of them: the
            argument and result trees must be of built-in containers); imported modules
            needed only for tracing belong inside it.
        args: the arguments.
    """
    directory = exported_dir()
    if directory is None:
        return build()(*args)
    path = directory / program_key(name, args)
    if path not in _LOADED:
        _LOADED[path] = jax.jit(_load_or_export(path, build, args).call)
    return _LOADED[path](*args)


# The programs this process has loaded, by file: a later call with the same key reuses the compiled one.
_LOADED: dict[Path, Callable] = {}


def _load_or_export(path: Path, build: Callable[[], Callable], args) -> export.Exported:
    try:
        program = export.deserialize(bytearray(path.read_bytes()))
        os.utime(path)  # its modification time is when it was last used
        return program
    except (OSError, ValueError):  # absent, or unreadable: export it (again)
        program = export.export(build())(*args)
        serialized = program.serialize()
        if len(serialized) <= MAX_BYTES // 4:
            _write_atomic(path, serialized)
            prune(path.parent)
        return program


def prune(directory: Path, max_bytes: int = MAX_BYTES) -> list[Path]:
    """Remove the least recently used exported programs of ``directory`` until the rest hold at
    most ``max_bytes``; returns the removed files. Programs from an earlier dynsim or jax (their
    keys differ) are never used again, so they are the first to go."""
    entries = []
    for path in directory.glob("*" + SUFFIX):
        try:
            info = path.stat()
        except FileNotFoundError:  # removed by another process meanwhile
            continue
        entries.append((info.st_mtime_ns, info.st_size, path))
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    return removed
