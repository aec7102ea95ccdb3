"""The examples in docstrings run and print what they say: every module of dynsim that has one."""

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import dynsim

MODULES = [
    info.name
    for info in pkgutil.walk_packages(dynsim.__path__, "dynsim.")
    if ">>>" in Path(importlib.util.find_spec(info.name).origin).read_text()
]


def test_the_modules_with_examples_are_found():
    assert {"dynsim.two_tower.config", "dynsim.two_tower.ode", "dynsim.registry"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
