"""The fenced code blocks of README.md and docs/, each with the kind that checks it.

A block's kind is the first word of its info string (```` ```python ```` is ``python``);
a block without one has the kind ``""``, which no checker takes: every block must say
what it is. The checker modules of this package declare the kinds they check in a
module-level ``KINDS``, and ``test_blocks.py`` fails for a block whose kind no module
declares, so a new kind of block cannot slip by unchecked.

Fences follow CommonMark: three or more backticks or tildes, indented (inside a list
item) or not; the block's lines lose the fence's indentation; a fence never closed is
reported as a problem rather than read to the end of the page. So is an indented code
block (four spaces more than the text around it, after a blank line): it has no info
string to choose a checker by, so every code block must be fenced.

Two kinds of mark live in the pages as HTML comments, which readers never see:

- ``<!-- not run: REASON -->`` on the line before a ``text`` block (blank lines may
  come between) says why that block is shown and not checked (a diagram, recorded
  output); ``<!-- text blocks not run: REASON -->`` anywhere in a page says it for every
  ``text`` block of the page (a page of recorded benchmark output). A ``text`` block
  without either mark fails.
- A ``python`` block whose first line is ``# NAME.py``, or a ``js`` block whose first
  line is ``// NAME.js``, is also a file of its page: the page's command lines
  (``wscompat serve --app NAME:handler``, ``node NAME.js``, a systemd unit's
  ``WorkingDirectory``) find it under that name in their working directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
"""Every page a reader is sent to: the README and everything under docs/."""

OPENING = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
BLOCK_MARK = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->\s*$")
PAGE_MARK = re.compile(r"<!--\s*text blocks not run:\s*(?P<reason>\S.*?)\s*-->")
FILE_NAMES = {
    "python": re.compile(r"^# (?P<name>[\w.-]+\.py)\b"),
    "js": re.compile(r"^// (?P<name>[\w.-]+\.js)\b"),
}
"""How a block of each kind says that it is a file, and its name."""
LIST_ITEM = re.compile(r"^ *(?:[-*+]|\d+[.)]) +")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, what it says it is, and its text."""

    page: str
    """The page's path from the repository root, e.g. ``docs/guide.md``."""
    line: int
    """The line of the opening fence, from 1."""
    info: str
    code: str
    mark: str | None
    """Why the block is not run, when the page says so (see the module docstring)."""

    @property
    def kind(self) -> str:
        return self.info.split()[0].lower() if self.info.split() else ""

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def file_name(self) -> str | None:
        """The file this block is: a ``python`` block that starts with ``# NAME.py``, a
        ``js`` block that starts with ``// NAME.js``."""
        pattern = FILE_NAMES.get(self.kind)
        match = pattern.match(self.code) if pattern is not None else None
        return match["name"] if match else None


def parse(page: str, text: str) -> tuple[list[Block], list[str]]:
    """The blocks of one page, and what is wrong with its code blocks (an unclosed fence,
    an indented block)."""
    lines = text.split("\n")
    page_mark = PAGE_MARK.search(text)
    blocks: list[Block] = []
    problems: list[str] = []
    index = 0
    while index < len(lines):
        opening = OPENING.match(lines[index])
        if opening is None or ("`" in opening["info"] and opening["fence"][0] == "`"):
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if end == len(lines):
            problems.append(f"{page}:{index + 1}: the fence {fence} is never closed")
            break
        body = [re.sub(rf"^ {{0,{indent}}}", "", line) for line in lines[index + 1 : end]]
        mark = None
        before = index - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        if before >= 0 and (block_mark := BLOCK_MARK.match(lines[before])):
            mark = block_mark["reason"]
        elif page_mark is not None:
            mark = page_mark["reason"]
        code = "\n".join(body) + "\n" if body else ""
        blocks.append(Block(page, index + 1, opening["info"].strip(), code, mark))
        # Hidden from the scan for indented blocks, at the indentation of the fence.
        lines[index : end + 1] = [opening["indent"] + "<fenced>"] * (end + 1 - index)
        index = end + 1
    problems += indented_blocks(page, lines)
    return blocks, problems


def indented_blocks(page: str, lines: list[str]) -> list[str]:
    """Where ``lines`` (fenced blocks hidden) have an indented code block: a line four
    spaces deeper than the list item it is in (or the margin), after a blank line."""
    found: list[str] = []
    margin = 0
    after_blank = True
    for number, line in enumerate(lines, 1):
        if not line.strip():
            after_blank = True
            continue
        indent = len(line) - len(line.lstrip(" "))
        item = LIST_ITEM.match(line)
        if item is not None and indent < margin + 4:
            margin = len(item[0])
        elif after_blank and indent < margin:
            margin = 0  # the list ended
        elif after_blank and indent >= margin + 4:
            found.append(f"{page}:{number}: an indented code block: fence it with an info "
                         "string, so that a checker takes it")
        after_blank = False
    return found


def read_pages() -> tuple[list[Block], list[str]]:
    blocks: list[Block] = []
    problems: list[str] = []
    for path in PAGES:
        found, wrong = parse(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
        blocks += found
        problems += wrong
    return blocks, problems


ALL, PROBLEMS = read_pages()


def of_kind(*kinds: str) -> list[Block]:
    """The blocks of these kinds, in page order: what a checker parametrizes over."""
    return [block for block in ALL if block.kind in kinds]


def ids(blocks: list[Block]) -> list[str]:
    return [block.where for block in blocks]


def each(*kinds: str) -> pytest.MarkDecorator:
    """Parametrize a test over the blocks of these kinds. None left is an error, not a
    skip: the kind's checker is then to be removed from its module's ``KINDS``."""
    blocks = of_kind(*kinds)
    assert blocks, f"no block of kind {kinds} is left in the pages"
    return pytest.mark.parametrize("block", blocks, ids=ids(blocks))


def page_files(page: str) -> dict[str, str]:
    """The files a page's blocks are (``# NAME.py``, ``// NAME.js``), by name."""
    return {
        block.file_name: block.code
        for block in ALL
        if block.page == page and block.file_name is not None
    }


def write_page_files(page: str, directory: Path) -> None:
    for name, code in page_files(page).items():
        (directory / name).write_text(code, encoding="utf-8")
