import importlib.util
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)


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
