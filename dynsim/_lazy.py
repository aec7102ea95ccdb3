"""Module attributes imported on first use (PEP 562), so that importing a package stays light."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_attributes(module: str, table: Mapping[str, tuple[str, str | None]]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``table``: name -> (module to import, its attribute, or ``None``
    for the module itself); any other name raises ``AttributeError`` as usual."""

    def __getattr__(name: str) -> object:
        if name not in table:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        source, attribute = table[name]
        value = importlib.import_module(source)
        return value if attribute is None else getattr(value, attribute)

    return __getattr__
