"""The compile cache: where it lives and with which permissions, that it changes no bit, that a
user's own JAX cache is kept, and what ``import dynsim`` loads."""

import json
import os
import stat
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import run_main

from dynsim.engine import cache
from dynsim.engine.config import ConfigError

# Solve the ODE and simulate both backends, then report what a researcher's process would see.
SCRIPT = """
import hashlib, json, sys
import numpy as np
import dynsim
report = {"after_import": [m for m in ("xarray", "scipy.stats", "matplotlib", "diffrax") if m in sys.modules]}
config = {"data": {"r": 2, "n": 2}, "loss": {"stages": [[1.0, 4.0]]}}
config["run"] = {"record_every": 1.0, "alignment_samples": 16}
solution = dynsim.ode.solve(config)
report["diffrax_after_solve"] = "diffrax" in sys.modules
arrays = [solution.a, solution.p, solution.metrics["loss"]]
for backend in ("param", "gram"):
    trajectory = dynsim.simulate(config, width=8, seeds=2, backend=backend)
    arrays += [trajectory.a, trajectory.p, trajectory.metrics["alignment"]]
report["digest"] = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()
import jax
report["jax_dir"] = jax.config.jax_compilation_cache_dir
print(json.dumps(report))
"""


def _run(env_changes: dict, script: str = SCRIPT) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DYNSIM_CACHE", "JAX_COMPILATION"))}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env | env_changes, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_results_are_bitwise_equal_with_the_cache_off_cold_and_warm(tmp_path):
    directory = tmp_path / "cache"
    off = _run({"DYNSIM_CACHE": "off", "DYNSIM_CACHE_DIR": str(directory)})
    assert off["jax_dir"] is None and not directory.exists()
    cold = _run({"DYNSIM_CACHE_DIR": str(directory)})
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "exported").stat().st_mode) == 0o700
    assert any(directory.glob("*-cache")) and any((directory / "exported").glob("*.jaxexport"))
    warm = _run({"DYNSIM_CACHE_DIR": str(directory)})
    assert off["digest"] == cold["digest"] == warm["digest"]
    assert cold["jax_dir"] == warm["jax_dir"] == str(directory)
    # import dynsim loads none of these; a solve from the warm cache does not even need diffrax.
    assert off["after_import"] == cold["after_import"] == warm["after_import"] == []
    assert off["diffrax_after_solve"] and cold["diffrax_after_solve"] and not warm["diffrax_after_solve"]


def test_a_cache_the_user_set_in_jax_is_kept(tmp_path):
    script = "import jax, dynsim; print(jax.config.jax_compilation_cache_dir)"
    env = {key: value for key, value in os.environ.items() if not key.startswith("DYNSIM_CACHE")}
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "mine")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == str(tmp_path / "mine")


def test_the_directory_is_created_private_whatever_the_umask(tmp_path):
    previous = os.umask(0)
    try:
        path = cache.private_dir(tmp_path / "a" / "b")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_unsafe_directories_are_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(cache.CacheDirError, match="writable by others"):
        cache.private_dir(shared)
    (tmp_path / "file").write_text("")
    with pytest.raises(cache.CacheDirError, match="not a directory"):
        cache.private_dir(tmp_path / "file")


def test_environment_variables_choose_the_directory(tmp_path):
    assert cache.requested_dir({"DYNSIM_CACHE": "off"}) is None
    assert cache.requested_dir({"DYNSIM_CACHE_DIR": str(tmp_path)}) == tmp_path
    default = cache.requested_dir({"XDG_CACHE_HOME": str(tmp_path)})
    assert default.parent == tmp_path / "dynsim" and default.name.startswith("jax-")
    with pytest.raises(ConfigError, match="DYNSIM_CACHE = 'maybe' is invalid"):
        cache.requested_dir({"DYNSIM_CACHE": "maybe"})


def test_the_cli_refuses_an_unsafe_cache_dir_in_one_line(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    result = run_main("--cache-dir", str(shared), "systems")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "writable by others" in result.stderr


def test_entries_written_without_eviction_get_the_access_times_jax_eviction_reads(tmp_path):
    from jax._src.lru_cache import LRUCache

    unbounded = LRUCache(str(tmp_path), max_size=-1)  # JAX's default: no size, no access times
    for key in ("old", "older"):
        unbounded.put(key, b"x" * 100)
    assert not list(tmp_path.glob("*-atime"))
    with pytest.raises(FileNotFoundError):  # what every later write with eviction on ran into
        LRUCache(str(tmp_path), max_size=150).put("new", b"y" * 100)
    assert cache.date_undated_entries(tmp_path) == 2 and cache.date_undated_entries(tmp_path) == 0
    bounded = LRUCache(str(tmp_path), max_size=150)
    bounded.put("new", b"y" * 100)  # evicts both old entries to make room
    assert bounded.get("new") == b"y" * 100 and bounded.get("old") is None and bounded.get("older") is None


def test_exported_programs_are_kept_under_a_size_least_recently_used_first(tmp_path):
    from dynsim.engine import exported

    for age, name in enumerate(("newest", "middle", "oldest")):
        path = tmp_path / f"{name}{exported.SUFFIX}"
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(10**18 - age * 10**9,) * 2)
    (tmp_path / "other-cache").write_bytes(b"y" * 1000)  # not an exported program: left alone
    assert exported.prune(tmp_path, max_bytes=300) == []
    assert exported.prune(tmp_path, max_bytes=150) == [
        tmp_path / f"oldest{exported.SUFFIX}",
        tmp_path / f"middle{exported.SUFFIX}",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["newest.jaxexport", "other-cache"]


def test_a_program_too_large_to_keep_runs_without_being_written(monkeypatch):
    import jax.numpy as jnp

    from dynsim.engine import exported

    monkeypatch.setattr(exported, "MAX_BYTES", 4)
    x = np.arange(3.0)
    name = ("test.too_large", os.getpid())
    assert np.array_equal(exported.call(name, lambda: jax.jit(lambda v: 2 * v + jnp.ones(3)), x), 2 * x + 1)
    assert not (exported.exported_dir() / exported.program_key(name, (x,))).exists()
