"""Every fenced block of the README and docs/ has a checker, and the blocks are found.

The checker modules of this package each declare the kinds of block they check in
``KINDS``; a block of any other kind (an unknown info string, or none at all) fails
here, so a new kind of block needs a checker before it can be added to a page.
"""

from __future__ import annotations

import importlib
from collections import Counter

import pytest

from .blocks import ALL, PAGES, PROBLEMS, ROOT, parse

CHECKERS = ("test_examples", "test_shell", "test_node", "test_configs", "test_samples")
"""The modules of this package that check blocks."""


def checked_kinds() -> dict[str, str]:
    kinds: dict[str, str] = {}
    for name in CHECKERS:
        module = importlib.import_module(f"{__package__}.{name}")
        for kind in module.KINDS:
            assert kind not in kinds, f"{kind} is checked by both {kinds[kind]} and {name}"
            kinds[kind] = name
    return kinds


def test_every_block_has_a_checker() -> None:
    kinds = checked_kinds()
    unchecked = [
        f"{block.where}: ```{block.info}" for block in ALL if block.kind not in kinds
    ]
    assert not unchecked, (
        "blocks of a kind no checker takes (give them an info string a module in "
        f"tests/docs checks, see its KINDS): {unchecked}; checked: {sorted(kinds)}"
    )


def test_every_code_block_is_fenced() -> None:
    assert not PROBLEMS


def test_the_pages_are_found() -> None:
    names = {str(page.relative_to(ROOT)) for page in PAGES}
    assert {"README.md", "docs/guide.md", "docs/deployment.md", "docs/drafts/hixie-76.md"} <= names
    assert Counter(block.page for block in ALL)["docs/deployment.md"] >= 5


def test_fences_as_commonmark_has_them() -> None:
    page = "\n".join([
        "text",
        "```python",
        "print(1)",
        "```",
        "1. a step:",
        "",
        "   ```sh",
        "   wscompat vectors check",
        "   ```",
        "~~~~ ini",
        "```",
        "~~~~",
        "<!-- not run: a diagram -->",
        "",
        "```text",
        "a -> b",
        "```",
        "```",
        "no info",
        "```",
    ])
    blocks, problems = parse("page.md", page)
    assert not problems
    assert [(b.kind, b.code, b.line, b.mark) for b in blocks] == [
        ("python", "print(1)\n", 2, None),
        ("sh", "wscompat vectors check\n", 7, None),
        ("ini", "```\n", 10, None),
        ("text", "a -> b\n", 15, "a diagram"),
        ("", "no info\n", 18, None),
    ]


def test_a_page_mark_covers_its_text_blocks() -> None:
    blocks, _ = parse("page.md", "<!-- text blocks not run: recorded output -->\n```text\nx\n```\n")
    assert blocks[0].mark == "recorded output"


def test_an_unclosed_fence_is_a_problem() -> None:
    blocks, problems = parse("page.md", "```python\nprint(1)\n")
    assert blocks == []
    assert problems == ["page.md:1: the fence ``` is never closed"]


def test_an_indented_code_block_is_a_problem() -> None:
    page = "\n".join([
        "1. a step,",
        "   carried on",
        "",
        "   still the step",
        "   ```sh",
        "   wscompat vectors check",
        "   ```",
        "",
        "text",
        "",
        "    wscompat serve",
    ])
    blocks, problems = parse("page.md", page)
    assert [block.kind for block in blocks] == ["sh"]
    assert [problem.split(": ")[0] for problem in problems] == ["page.md:11"]


@pytest.mark.parametrize("first", ["# chat.py", "# chat.py: a handler"])
def test_a_python_block_can_be_a_file(first: str) -> None:
    blocks, _ = parse("page.md", f"```python\n{first}\nx = 1\n```\n")
    assert blocks[0].file_name == "chat.py"


@pytest.mark.parametrize(("info", "first", "name"), [
    ("js", "// server.js", "server.js"),
    ("js", "# server.js", None),
    ("python", "// server.js", None),
])
def test_a_file_is_named_in_its_language(info: str, first: str, name: str | None) -> None:
    blocks, _ = parse("page.md", f"```{info}\n{first}\nx = 1\n```\n")
    assert blocks[0].file_name == name
