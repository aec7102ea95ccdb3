"""The examples in public docstrings run and print what they say."""

import doctest

import pytest

import dynsim
from dynsim import _compare, _config, _phase, _simulate, _stages


@pytest.mark.parametrize(
    "module", [_config, _simulate, _compare, _stages, _phase, dynsim.ode], ids=lambda m: m.__name__
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
