"""JAX's persistent compilation cache, on by default, in a directory only this user can write.

A compiled program is written to the cache the first time a process compiles it and read back,
instead of compiled, by every later process that needs the same program (same computation,
shapes, jax version, backend and device kind: JAX's own cache key). The cache holds executable
code that every dynsim process will run, so dynsim only uses a directory the user owns and
nobody else can write: it creates it with mode 0700 and refuses one that another user owns or
that others can write.

Where: ``$DYNSIM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/dynsim/jax-<jax version>`` (by
default ``~/.cache/dynsim/jax-<jax version>``). ``DYNSIM_CACHE=off`` turns it off. A cache the
user configured in JAX itself (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config.update("jax_compilation_cache_dir", ...)``) is left as it is. JAX keeps the cache
under 2 GiB by evicting the least recently used programs.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

import jax

from .config import ConfigError

DIR_VARIABLE = "DYNSIM_CACHE_DIR"
SWITCH_VARIABLE = "DYNSIM_CACHE"
# Programs that compile faster than this are not worth a file: JAX compiles one for every eager
# operation, and reading an entry back costs about a millisecond.
MIN_COMPILE_SECONDS = 0.1
# JAX evicts the least recently used entries past this size, and with a size set it also takes a
# file lock around every read and write, which processes sharing the directory need.
MAX_BYTES = 2 * 2**30


class CacheDirError(ConfigError):
    """The cache directory cannot be used safely (another owner, writable by others, not a directory)."""


def default_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CACHE_HOME/dynsim/jax-<version>``, with ``~/.cache`` for an unset ``XDG_CACHE_HOME``."""
    base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dynsim" / f"jax-{jax.__version__}"


def requested_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The directory the environment asks for, or ``None`` when ``DYNSIM_CACHE=off``."""
    switch = environ.get(SWITCH_VARIABLE, "on").strip().lower()
    if switch not in ("on", "off"):
        raise ConfigError(f"{SWITCH_VARIABLE} = {switch!r} is invalid: must be 'on' or 'off'")
    if switch == "off":
        return None
    return Path(environ[DIR_VARIABLE]).expanduser() if environ.get(DIR_VARIABLE) else default_dir(environ)


def private_dir(path: Path) -> Path:
    """``path``, created with mode 0700 if missing, after checking that only this user can write it.

    Raises:
        CacheDirError: ``path`` is not a directory, belongs to another user, or is writable by
            its group or by others.
    """
    path = Path(path).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        path.mkdir(mode=0o700)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        pass
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise CacheDirError(f"cache directory {path} is not a directory; set {DIR_VARIABLE} to another path")
    if info.st_uid != os.getuid():
        raise CacheDirError(
            f"cache directory {path} belongs to another user (uid {info.st_uid}); "
            f"set {DIR_VARIABLE} to a directory of your own or {SWITCH_VARIABLE}=off"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheDirError(
            f"cache directory {path} is writable by others (mode {stat.S_IMODE(info.st_mode):o}): "
            f"the cache holds code dynsim runs; chmod 700 it, or set {DIR_VARIABLE} or {SWITCH_VARIABLE}=off"
        )
    return path


def enable(path: str | Path | None = None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Point JAX's persistent compilation cache at ``path`` (default: :func:`requested_dir`).

    Returns the directory in use, or ``None`` when the cache is off. Without ``path``, a cache
    directory already set in JAX (by the user, or by an earlier call) is kept and returned. Takes
    effect for the programs compiled after it, so dynsim calls it when imported.

    Raises:
        CacheDirError: the directory is not safe to use (see :func:`private_dir`).
    """
    configured = jax.config.jax_compilation_cache_dir
    if path is None and configured:
        return Path(configured)
    target = requested_dir(environ) if path is None else Path(path)
    if target is None:
        return None
    target = private_dir(target)
    jax.config.update("jax_compilation_cache_dir", str(target))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    date_undated_entries(target)
    return target


def date_undated_entries(path: Path) -> int:
    """Give every program in the cache at ``path`` the access-time file JAX's eviction reads.

    JAX writes ``<key>-atime`` beside ``<key>-cache`` only while a maximum size is set; a
    directory filled without one (JAX's default, a user's own cache dir passed as
    ``DYNSIM_CACHE_DIR``) makes every later write with eviction on fail with a warning, so
    nothing new is cached. Each missing file gets the entry's modification time. Returns how
    many were written.
    """
    written = 0
    for entry in path.glob("*-cache"):
        atime = entry.with_name(entry.name.removesuffix("-cache") + "-atime")
        if not atime.exists():
            atime.write_bytes(entry.stat().st_mtime_ns.to_bytes(8, "little"))
            written += 1
    return written
