"""The vector corpus ships with the package: a wheel built from this checkout, installed
into a fresh virtual environment, checks and replays its own corpus from a directory
that is not the checkout."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tomllib
from pathlib import Path

import trio

from wscompat.vectors.corpus import SCHEMA_NAME, corpus_dir
from wscompat.vectors.format import vector_files

from ..conftest import Starter

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SOURCES = ("pyproject.toml", "README.md", "wscompat", "vectors")
"""What a wheel is built from (copied, so that the build leaves nothing in the checkout)."""


def test_the_package_list_is_the_source_tree() -> None:
    """pyproject.toml lists the packages (discovery cannot map the corpus): every
    package under wscompat/ is listed, and the corpus is vectors/ itself."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "wscompat").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert set(setuptools["packages"]) == found | {"wscompat.corpus"}
    assert setuptools["package-dir"] == {"wscompat.corpus": "vectors"}
    globs = setuptools["package-data"]["wscompat.corpus"]
    shipped = {path.relative_to(ROOT / "vectors") for path in (ROOT / "vectors").rglob("*")
               if path.is_file()}
    matched = {path for path in shipped if any(path.match(glob) for glob in globs)}
    assert matched == shipped and Path(SCHEMA_NAME) in matched


def test_from_a_checkout_the_corpus_is_the_checkouts() -> None:
    assert corpus_dir() == ROOT / "vectors"


async def _run(*command: str | Path, cwd: Path, seconds: float = 60) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with trio.fail_after(seconds):
        done = await trio.run_process([str(part) for part in command], cwd=cwd, env=env,
                                      capture_stdout=True, capture_stderr=True, check=False)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"{command}: {done.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    return out


async def test_the_wheel_checks_and_replays_its_own_corpus(
    start_server: Starter, tmp_path: Path
) -> None:
    source, wheels, venv, elsewhere = (tmp_path / name for name in
                                       ("source", "wheels", "venv", "elsewhere"))
    source.mkdir()
    elsewhere.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    await _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, source,
               cwd=tmp_path, seconds=120)
    [wheel] = wheels.glob("wscompat-*.whl")
    # The venv sees the dependencies installed here, and takes pip from them too.
    await _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv,
               cwd=tmp_path)
    python = venv / "bin" / "python"
    await _run(python, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
               "--ignore-installed", wheel, cwd=elsewhere)

    where = await _run(python, "-c", "import wscompat.vectors.corpus as c, wscompat; "
                       "print(wscompat.__file__); print(c.corpus_dir())", cwd=elsewhere)
    package, corpus = (Path(line) for line in where.split())
    assert package.is_relative_to(venv), package  # the wheel's wscompat, not the checkout's
    assert corpus == package.parent / "corpus"
    assert (corpus / SCHEMA_NAME).read_bytes() == (ROOT / "vectors" / SCHEMA_NAME).read_bytes()

    count = len(vector_files([ROOT / "vectors"]))
    out = await _run(venv / "bin" / "wscompat", "vectors", "check", cwd=elsewhere)
    assert f"wscompat vectors check: {count} vectors" in out
    assert re.search(rf"^total +{count} +{count} +0$", out, re.MULTILINE), out[-2000:]

    server = await start_server(select_subprotocol=lambda _, offered: offered[0])
    out = await _run(venv / "bin" / "wscompat", "replay", f"ws://127.0.0.1:{server.port}/",
                     "--jobs", "16", cwd=elsewhere)
    total = re.search(r"^total +(\d+) +(\d+) +0 +0 +(\d+)$", out, re.MULTILINE)
    assert total, out[-2000:]
    assert int(total.group(1)) == count and int(total.group(2)) > count // 2
