"""The documentation stays true: generated pages match the code, and every example runs.

Convention: every fenced ```python block in ``docs/*.md`` and ``README.md`` is executed.
The blocks of one page run in order, in one namespace, in a fresh temporary working
directory, so a later block may use the names an earlier one defined; claims worth
checking are written as ``assert`` statements in the blocks. Shell commands go in
```sh blocks and output in ```text blocks, which are not run. The generated pages
(docs/config-reference.md, docs/cli.md) must equal what ``python -m dynsim._docgen``
renders now.
"""

import re
from pathlib import Path

import pytest

from dynsim import _docgen

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _python_blocks(page: Path) -> list[tuple[int, str]]:
    """``(line, code)`` of every ```python block of a page, ``line`` where its code starts."""
    text = page.read_text()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


@pytest.mark.parametrize("name", sorted(_docgen.PAGES))
def test_generated_page_is_up_to_date(name):
    committed = (ROOT / "docs" / name).read_text()
    assert committed == _docgen.PAGES[name](), f"docs/{name} is stale: regenerate it with `{_docgen.REGENERATE}`"


@pytest.mark.parametrize("page", [p for p in PAGES if _python_blocks(p)], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for line, code in _python_blocks(page):  # padded so that tracebacks give the page's line numbers
        exec(compile("\n" * (line - 1) + code, str(page.relative_to(ROOT)), "exec"), namespace)
