"""The protocol core stays sans-I/O: no trio, no sockets, no clocks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "wscompat"
IO_LAYER = {
    "connection.py", "server.py", "client.py", "cli.py", "streams.py", "__init__.py", "__main__.py",
    "replay.py", "record.py", "vector_cli.py",
}
FORBIDDEN = {"trio", "socket", "asyncio", "time", "ssl", "select", "selectors"}
CORE = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).as_posix() not in IO_LAYER)


@pytest.mark.parametrize("path", CORE, ids=[p.relative_to(PACKAGE).as_posix() for p in CORE])
def test_core_module_imports_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    imported = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{path.name} imports {imported & FORBIDDEN}"


def test_the_core_list_is_not_empty() -> None:
    names = {p.name for p in CORE}
    assert {"sniff.py", "http.py", "hixie.py", "hybi.py", "server.py", "vectors.py"} <= names
