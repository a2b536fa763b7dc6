"""Every ``sh`` block of the README and docs/ works as written, one command at a time.

A block is split into commands: ``\\``-continued lines are joined, ``#`` comments
dropped, ``&&`` separates commands, and a trailing ``&`` runs one in the background
until the block ends. Pipes, redirections and other shell syntax have no rule and fail.
Each command is then checked by the first rule that takes it; a command no rule takes
fails, so a new kind of command needs a rule here before it can be documented.

- ``pip install`` is not run (it would change the environment under test). It may name
  only the project itself (``.``, ``-e .``) with extras that pyproject.toml declares,
  or packages that pyproject.toml lists: a page cannot ask for something the project's
  test command does not know how to install.
- ``apt-get install`` / ``apt install`` is not run either; it may name only Debian
  packages that tests/run.sh installs.
- A script of the repository (``bash tests/run.sh``, ``python benchmarks/bench.py``,
  ``python -m tests.conformance.report``) is not run: one is this very test command,
  the others benchmarks or test runs of minutes. It must exist (relative to the
  repository root, where the README says to run it), and every ``--flag`` the page
  gives it must appear in its ``--help``, which must exit 0; a shell script takes no
  flags the page could show. ``python -m pytest PATH`` is not run either (it is the
  test command's last step); its paths must exist.
- ``wscompat serve ...`` runs in a temporary directory holding the page's ``# NAME.py``
  files, on a free port in place of the one shown (``--port`` is added where the page
  relies on the default 8080; ``--policy-port`` and ``--metrics-port`` are moved too). Certificate and key files
  it names are made for it by a test CA. It must listen, answer a WebSocket echo (over
  ``wss://`` with ``--certfile``, and over ``ws://`` unless ``--require-tls``), and exit
  0 without a traceback on SIGINT, as a reader's Ctrl-C stops it.
- Any other ``wscompat`` command runs in that directory, with the ports of servers the
  block started replaced the same way, and must exit 0.
"""

from __future__ import annotations

import re
import shlex
import signal
import sys
import tomllib
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from .blocks import ROOT, Block, each, write_page_files
from .processes import (
    MESSAGE,
    Certificates,
    Process,
    certificates,
    echo,
    environment,
    free_port,
    listening,
    started,
    wscompat_executable,
)

KINDS = ("sh", "bash", "shell")
COMMAND_BOUND = 60.0
"""Seconds a command that is not a server may run (``wscompat vectors check`` takes a
second or two)."""
HELP_BOUND = 30.0
DEFAULT_PORT = 8080
"""The port ``wscompat serve`` listens on without ``--port``."""
OPERATORS = re.compile(r"^[|&;<>()]+$|^\d?>")


def commands(code: str) -> list[tuple[list[str], bool]]:
    """The commands of a block, each with whether it runs in the background (``&``)."""
    found: list[tuple[list[str], bool]] = []
    for line in code.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        background = bool(tokens) and tokens[-1] == "&"
        if background:
            tokens.pop()
        command: list[str] = []
        for token in [*tokens, "&&"]:
            if token != "&&":
                assert not OPERATORS.match(token), f"no rule for the shell syntax {token!r}"
                command.append(token)
            elif command:
                found.append((command, background))
                command = []
    return found


def declared() -> tuple[set[str], set[str]]:
    """pyproject.toml's extras, and every package it lists (normalized names)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    requirements = [*project.get("dependencies", []), *(r for rs in extras.values() for r in rs)]
    return set(extras), {normalized(requirement) for requirement in requirements}


def normalized(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert name is not None, f"not a requirement: {requirement!r}"
    return re.sub(r"[-_.]+", "-", name[0]).lower()


def check_pip(args: list[str]) -> None:
    extras, packages = declared()
    targets: list[str] = []
    for arg in args:
        if arg.startswith("-"):
            assert arg in {"-e", "--editable", "-q", "--quiet", "-U", "--upgrade"}, (
                f"no rule for the pip option {arg}")
        else:
            targets.append(arg)
    assert targets, "pip install names nothing"
    for target in targets:
        project = re.fullmatch(r"\.(?:\[(?P<extras>[\w,-]*)\])?", target)
        if project is not None:
            wanted = {e.strip() for e in (project["extras"] or "").split(",") if e.strip()}
            assert wanted <= extras, f"{target}: pyproject.toml has no extra {wanted - extras}"
        else:
            assert normalized(target) in packages, f"pyproject.toml does not list {target}"


def apt_packages() -> set[str]:
    return set(re.findall(r"need_apt\+=\(([\w.+-]+)\)", (ROOT / "tests/run.sh").read_text()))


def check_apt(args: list[str]) -> None:
    if args[:1] == ["update"]:
        return
    assert args[:1] == ["install"], f"no rule for apt {args}"
    wanted = {arg for arg in args[1:] if not arg.startswith("-")}
    assert wanted, "apt install names nothing"
    assert wanted <= apt_packages(), f"tests/run.sh does not install {wanted - apt_packages()}"


async def check_script(interpreter: str, script: str, args: list[str]) -> None:
    """A repository script (``tests/run.sh``) or module (``-m tests.conformance.report``)."""
    module = script.startswith("-m ")
    path = ROOT / (script[3:].replace(".", "/") + ".py" if module else script)
    assert not Path(script).is_absolute() and path.is_file(), f"no {script} in the repository"
    flags = [arg.split("=")[0] for arg in args if arg.startswith("--")]
    if not flags:
        return
    assert interpreter.startswith("python"), f"{script} is a shell script: no --help to check"
    with trio.fail_after(HELP_BOUND):
        done = await trio.run_process([sys.executable, *script.split(" ", 1), "--help"],
                                      cwd=ROOT, env=environment(), check=False,
                                      capture_stdout=True, capture_stderr=True)
    text = done.stdout.decode()
    assert done.returncode == 0, f"{script} --help: {done.stderr.decode()}"
    missing = [flag for flag in flags if not re.search(rf"(?<![\w-]){flag}(?![\w-])", text)]
    assert not missing, f"{script} has no {missing}: {text}"


def check_pytest(args: list[str]) -> None:
    """pytest is the test command's own last step: the paths it is given must exist."""
    paths = [arg.split("::")[0] for arg in args if not arg.startswith("-")]
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert not missing, f"pytest is given {missing}, which do not exist"


@dataclass
class Session:
    """What one block's commands share: a directory, a port map, servers, certificates."""

    block: Block
    directory: Path
    stack: AsyncExitStack
    ports: dict[int, int] = field(default_factory=dict)
    servers: list[Process] = field(default_factory=list)
    certs: Certificates | None = None
    count: int = 0

    def port(self, shown: int) -> int:
        return self.ports.setdefault(shown, free_port())

    def log(self) -> Path:
        self.count += 1
        return self.directory / f".command-{self.count}.log"

    def moved(self, arg: str) -> str:
        """``arg`` with the URLs' ports of the servers started so far replaced."""
        for shown, port in self.ports.items():
            arg = re.sub(rf"(?<=:){shown}(?!\d)", str(port), arg)
        return arg

    async def serve(self, args: list[str], background: bool) -> None:
        argv = [wscompat_executable(), "serve"]
        port: int | None = None
        values = iter(args)
        certfile: Path | None = None
        keyfile: Path | None = None
        for arg in values:
            name, _, inline = arg.partition("=")
            takes_value = name in {"--port", "--policy-port", "--metrics-port", "--certfile",
                                   "--keyfile"}
            value = (inline or next(values)) if takes_value else ""
            if name == "--port":
                port = self.port(int(value))
                value = str(port)
            elif name in {"--policy-port", "--metrics-port"}:
                value = str(self.port(int(value)))
            elif name in {"--certfile", "--keyfile"}:
                path = self.directory / value
                assert not Path(value).is_absolute(), f"{value}: no rule for an absolute path"
                if name == "--certfile":
                    certfile = path
                else:
                    keyfile = path
            argv += [name, value] if takes_value else [arg]
        if port is None:  # the page relies on the default port
            port = self.port(DEFAULT_PORT)
            argv += ["--port", str(port)]
        if certfile is not None:
            self.certs = self.certs or certificates()
            self.certs.write(certfile, keyfile)
        server = await self.stack.enter_async_context(started(argv, self.directory, self.log()))
        await listening(server, port)
        if certfile is not None:
            assert self.certs is not None
            reply = await echo(f"wss://127.0.0.1:{port}/", ssl_context=self.certs.client)
            assert MESSAGE in reply, reply
        if "--require-tls" not in args:
            reply = await echo(f"ws://127.0.0.1:{port}/")
            assert MESSAGE in reply, reply
        if background:
            self.servers.append(server)
        else:
            await self.interrupt(server)

    async def interrupt(self, server: Process) -> None:
        status = await server.stop(signal.SIGINT)
        assert status == 0, f"{self.block.where}: {server.describe()}"
        assert "Traceback" not in server.output(), server.describe()

    async def run(self, args: list[str]) -> None:
        argv = [wscompat_executable(), *(self.moved(arg) for arg in args)]
        async with started(argv, self.directory, self.log()) as process:
            status = await process.wait(COMMAND_BOUND)
            assert status == 0, f"{self.block.where}: {process.describe()}"

    async def command(self, argv: list[str], background: bool) -> None:
        name, args = argv[0], argv[1:]
        if name == "sudo":
            name, args = args[0], args[1:]
        python = re.fullmatch(r"python3?", name) is not None
        module = python and args[:1] == ["-m"] and len(args) > 1
        if module:
            name, args = args[1], args[2:]  # python -m pip, python -m pytest
        if name in {"pip", "pip3"} and args[:1] == ["install"]:
            check_pip(args[1:])
        elif name in {"apt-get", "apt"}:
            check_apt(args)
        elif name == "pytest":
            check_pytest(args)
        elif module:
            await check_script("python", f"-m {name}", args)
        elif python or name in {"bash", "sh"}:
            assert args, f"no rule for {name} without a script"
            await check_script(name, args[0], args[1:])
        elif name == "wscompat" and args[:1] == ["serve"]:
            await self.serve(args[1:], background)
        elif name == "wscompat":
            await self.run(args)
        else:
            pytest.fail(f"{self.block.where}: no rule for the command {shlex.join(argv)}")


@each(*KINDS)
async def test_the_commands_work(block: Block, tmp_path: Path) -> None:
    write_page_files(block.page, tmp_path)
    found = commands(block.code)
    assert found, f"{block.where} has no command"
    async with AsyncExitStack() as stack:
        session = Session(block, tmp_path, stack)
        for argv, background in found:
            await session.command(argv, background)
        for server in session.servers:
            await session.interrupt(server)


def test_commands_are_split_as_a_shell_splits_them() -> None:
    code = "pip install . && wscompat serve \\\n  --port 8080 &  # a server\n\n# nothing\n"
    assert commands(code) == [
        (["pip", "install", "."], True), (["wscompat", "serve", "--port", "8080"], True)]
    with pytest.raises(AssertionError, match="shell syntax"):
        commands("wscompat serve | tee log")


def test_pip_and_apt_lines_name_what_the_project_installs() -> None:
    check_pip(["-e", ".[test,fuzz]"])
    check_pip(["websockets"])
    with pytest.raises(AssertionError, match="no extra"):
        check_pip([".[tset]"])
    with pytest.raises(AssertionError, match="does not list"):
        check_pip(["requests"])
    check_apt(["install", "-y", "nginx-light", "systemd"])
    with pytest.raises(AssertionError, match="does not install"):
        check_apt(["install", "apache2"])
