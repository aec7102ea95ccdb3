import importlib.util
import os
import tempfile
from pathlib import Path

# The suite is mostly compiling: XLA's CPU backend without LLVM's optimization passes compiles
# faster and runs slower, a good trade for tests (tests/large_step and tests/spectral: 178 s instead
# of 248 s on 2 cores, the same tests passing). Set before JAX starts its backend; the processes
# tests start inherit it, and the multi-device tests add their flag to it, so that results compared
# across processes come from programs compiled alike.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

# One compile cache for the whole suite, its xdist workers and the processes its tests start (they
# inherit the variable), apart from the user's own: a program one of them compiled, the others load.
os.environ.setdefault("DYNSIM_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"dynsim-tests-{os.getuid()}"))

from dynsim.engine.runner import _sharded  # noqa: E402 (imports dynsim, which reads DYNSIM_CACHE_DIR)

jax.config.update("jax_enable_x64", True)


@pytest.fixture(autouse=True, scope="module")
def release_compiled_programs():
    """Drop the compiled programs of a test module once it is done.

    Every XLA executable on the CPU keeps a few memory mappings of its own; one process that
    compiles the whole suite's programs passes Linux's limit of 65530 mappings per process
    (vm.max_map_count) and then crashes inside a compile (a segmentation fault, measured at about
    43 000 mappings ten minutes into the suite and rising). Clearing JAX's caches, and dynsim's
    cache of sharded programs, between modules releases them.
    """
    yield
    _sharded.cache_clear()
    jax.clear_caches()


@pytest.fixture
def key():
    return jax.random.PRNGKey(20261122)


@pytest.fixture
def count_traces(monkeypatch):
    """``count_traces(backend_module)``: a list that gets the plan of every trace of its ``simulate_seed``."""

    def patch(module):
        traces, original = [], module.simulate_seed

        def counted(key, inputs, plan):
            traces.append(plan)
            return original(key, inputs, plan)

        monkeypatch.setattr(module, "simulate_seed", counted)
        return traces

    return patch


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running; run by `make test-all`")


@pytest.fixture(scope="session")
def reference():
    """``ode/reference.py``: the independent NumPy/SciPy implementation of the reduced ODE."""
    path = Path(__file__).resolve().parents[1] / "ode" / "reference.py"
    spec = importlib.util.spec_from_file_location("ode_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def toy(monkeypatch):
    """The toy system of tests/toy.py, registered as ``"toy"`` for the command line and run directories."""
    from toy import TOY

    from dynsim import registry

    monkeypatch.setitem(registry.SYSTEMS, "toy", TOY)
    return TOY
