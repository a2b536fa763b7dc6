"""Every ``js`` block of the README and docs/ is JavaScript that Node accepts.

``node --check`` parses each block (syntax only: nothing is required or run). A block
that is a file of its page (first line ``// NAME.js``) must also be run by one of the
page's ``sh`` blocks (``node NAME.js``, see ``test_shell.py``): that run, with the
gateway in front of it answering an echo, is what shows the file works, so a page file
no command runs fails here.
"""

from __future__ import annotations

from pathlib import Path

import trio

from .blocks import Block, each, of_kind
from .processes import node_executable
from .test_shell import KINDS as SHELL_KINDS
from .test_shell import commands

KINDS = ("js",)
CHECK_BOUND = 30.0
"""Seconds for ``node --check`` (a Node start-up)."""


async def syntax_errors(code: str, directory: Path, name: str = "example.js") -> str:
    """What ``node --check`` says of ``code`` written to ``directory/name``; "" if
    nothing is wrong."""
    (directory / name).write_text(code, encoding="utf-8")
    with trio.fail_after(CHECK_BOUND):
        done = await trio.run_process([node_executable(), "--check", name], cwd=directory,
                                      check=False, capture_stdout=True, capture_stderr=True)
    return "" if done.returncode == 0 else (done.stdout + done.stderr).decode() or "failed"


def run_by_page(page: str) -> set[str]:
    """The files the page's ``sh`` blocks run with ``node``."""
    return {
        argv[1]
        for block in of_kind(*SHELL_KINDS)
        if block.page == page
        for argv, _ in commands(block.code)
        if argv[0] == "node" and len(argv) > 1
    }


@each(*KINDS)
async def test_the_script_is_javascript(block: Block, tmp_path: Path) -> None:
    errors = await syntax_errors(block.code, tmp_path, block.file_name or "example.js")
    assert not errors, f"{block.where}: {errors}"
    if block.file_name is not None:
        assert block.file_name in run_by_page(block.page), (
            f"{block.where}: no sh block of {block.page} runs node {block.file_name}")


async def test_the_check_finds_a_syntax_error(tmp_path: Path) -> None:
    assert "SyntaxError" in await syntax_errors("const = 1;\n", tmp_path)
