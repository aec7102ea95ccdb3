"""The examples in public docstrings run and print what they say."""

import doctest

import pytest

from dynsim.engine import compare as _compare
from dynsim.engine import config as _config
from dynsim.two_tower import ode as _ode
from dynsim.two_tower import phase as _phase
from dynsim.two_tower import simulate as _simulate
from dynsim.two_tower import stages as _stages


@pytest.mark.parametrize(
    "module", [_config, _simulate, _compare, _stages, _phase, _ode], ids=lambda m: m.__name__
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
