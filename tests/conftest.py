import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.PRNGKey(20261122)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running; run by `make test-all`")
