"""The protocol core stays sans-I/O: no trio, no sockets, no clocks, no I/O layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "wscompat"
CORE = sorted(
    [*(PACKAGE / "protocol").rglob("*.py"), PACKAGE / "drafts.py", PACKAGE / "errors.py",
     PACKAGE / "options.py"]
)
FORBIDDEN = {"trio", "socket", "asyncio", "time", "ssl", "select", "selectors", "threading"}
IO_PACKAGES = ("wscompat.trio", "wscompat.vectors", "wscompat.cli")


def _imports(path: Path) -> set[str]:
    """Dotted names a module imports at run time (``if TYPE_CHECKING`` blocks excluded)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    imported: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path.name}: relative import of {node.module}"
            imported.add(node.module)
    return imported


@pytest.mark.parametrize("path", CORE, ids=[p.relative_to(PACKAGE).as_posix() for p in CORE])
def test_core_module_imports_no_io(path: Path) -> None:
    imported = _imports(path)
    top = {name.split(".")[0] for name in imported}
    assert not top & FORBIDDEN, f"{path.name} imports {top & FORBIDDEN}"
    layered = {name for name in imported if name.startswith(IO_PACKAGES)}
    assert not layered, f"{path.name} imports the I/O layer: {layered}"


def test_the_core_list_is_not_empty() -> None:
    names = {p.relative_to(PACKAGE).as_posix() for p in CORE}
    assert {"protocol/sniff.py", "protocol/http.py", "protocol/framing/hixie.py",
            "protocol/framing/hybi.py", "protocol/handshake/server.py"} <= names
