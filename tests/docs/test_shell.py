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
- ``npm install NAME...`` is not run either; every NAME must be a dependency in
  tests/peers/node/package.json, which the test command installs.
- ``wscompat serve ...`` runs in a temporary directory holding the page's files (``#
  NAME.py``, ``// NAME.js``), on a free port in place of the one shown (``--port`` is
  added where the page relies on the default 8080; ``--policy-port`` and
  ``--metrics-port`` are moved too). Certificate and key files it names are made for it
  by a test CA. It must listen, answer a WebSocket echo (over ``wss://`` with
  ``--certfile``, and over ``ws://`` unless ``--require-tls``), and exit 0 without a
  traceback on SIGINT, as a reader's Ctrl-C stops it.
- ``wscompat proxy ...`` is started and stopped the same way, and its backends are
  real: an ``--upstream`` or ``--route`` URL naming a server an earlier command of the
  block started (``ws://127.0.0.1:9000/`` after ``node server.js &``) goes to it, on
  the port it was moved to; any other gets a backend the checker starts on a free port
  or a Unix socket (see ``backends.py``): a ``wscompat serve`` echo server for ``ws://``,
  ``wss://`` (its certificate from the test CA, which the gateway trusts through
  ``--upstream-cafile`` or, without it, as the system's CAs) and ``ws+unix:``, a byte
  echo for ``tcp://`` and ``unix:``. Through each route's prefix (``/`` for
  ``--upstream``), an RFC 6455 client and a hixie-76 client (those of them that
  ``--drafts`` admits) must get their message echoed by the backend: as text from a
  WebSocket backend, as binary or base64 text from a stream.
- ``node NAME.js`` runs a file of the page (a ``js`` block starting ``// NAME.js``)
  with ``NODE_PATH`` at tests/peers/node's packages and ``PORT`` set to a free port: the
  port the page shows is the file's default, ``process.env.PORT || NNNN``, and later
  commands' URLs with ``:NNNN`` are moved with it. It must listen on that port, run
  until the block ends, and end on SIGINT.
- Any other ``wscompat`` command runs in that directory, with the ports of servers the
  block started replaced the same way, and must exit 0.
"""

from __future__ import annotations

import re
import shlex
import signal
import ssl
import sys
import tomllib
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from wscompat import Draft, HandshakeRejected
from wscompat.drafts import parse_drafts
from wscompat.gateway.routes import parse_upstream

from . import backends
from .blocks import ROOT, Block, each, page_files, write_page_files
from .processes import (
    MESSAGE,
    NODE_MODULES,
    NODE_PEERS,
    Certificates,
    Process,
    certificates,
    echo,
    environment,
    free_port,
    listening,
    node_dependencies,
    node_executable,
    relayed,
    started,
    streamed,
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
VALUED = frozenset({"--port", "--policy-port", "--metrics-port", "--certfile", "--keyfile",
                    "--upstream-cafile", "--upstream", "--route", "--drafts"})
"""The options of ``serve`` and ``proxy`` whose values the checker moves or reads."""
NODE_PORT = re.compile(r"process\.env\.PORT\s*\|\|\s*(\d+)")


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


def check_npm(args: list[str]) -> None:
    assert args[:1] == ["install"], f"no rule for npm {args}"
    options = [arg for arg in args[1:] if arg.startswith("-")]
    assert not options, f"no rule for the npm options {options}"
    names = {re.sub(r"(?<=.)@.*", "", arg) for arg in args[1:]}
    assert names, "npm install names nothing"
    installed = node_dependencies()
    assert names <= installed, (
        f"{NODE_PEERS / 'package.json'} has no dependency {sorted(names - installed)}")


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
class Plan:
    """A ``serve`` or ``proxy`` command as the checker runs it, and what it checks."""

    argv: list[str]
    shown: int = DEFAULT_PORT
    """The port the page shows (the default 8080 when it shows none)."""
    certfile: Path | None = None
    keyfile: Path | None = None
    cafile: Path | None = None
    drafts: str | None = None
    routes: list[tuple[str, str]] = field(default_factory=list)
    """The gateway's backends, each with the path that reaches it and its URL."""


@dataclass
class Session:
    """What one block's commands share: a directory, a port map, servers, certificates."""

    block: Block
    directory: Path
    stack: AsyncExitStack
    ports: dict[int, int] = field(default_factory=dict)
    listening: set[int] = field(default_factory=set)
    """The shown ports the block's servers listen on (moved to ``ports[shown]``)."""
    servers: list[tuple[Process, bool]] = field(default_factory=list)
    """The servers started in the background, each with whether it must exit 0."""
    backends: dict[tuple[str, str, int, str], int | Path] = field(default_factory=dict)
    """The backends started for the gateway's URLs, by kind, host, port, socket path."""
    certs: Certificates | None = None
    tasks: trio.Nursery | None = None
    count: int = 0

    def port(self, shown: int) -> int:
        return self.ports.setdefault(shown, free_port())

    def log(self) -> Path:
        self.count += 1
        return self.directory / f".command-{self.count}.log"

    def file(self, value: str) -> Path:
        assert not Path(value).is_absolute(), f"{value}: no rule for an absolute path"
        return self.directory / value

    def certificates(self) -> Certificates:
        self.certs = self.certs or certificates()
        return self.certs

    async def nursery(self) -> trio.Nursery:
        """Where the backends that are trio tasks run, until the block ends."""
        if self.tasks is None:
            self.tasks = await self.stack.enter_async_context(trio.open_nursery())
            self.stack.callback(self.tasks.cancel_scope.cancel)
        return self.tasks

    def moved(self, arg: str) -> str:
        """``arg`` with the URLs' ports of the servers started so far replaced."""
        for shown, port in self.ports.items():
            arg = re.sub(rf"(?<=:){shown}(?!\d)", str(port), arg)
        return arg

    async def serve(self, command: str, args: list[str], background: bool) -> None:
        """``wscompat serve`` or ``wscompat proxy``: started, checked, and stopped."""
        plan = await self.plan(command, args)
        port = self.ports[plan.shown]
        if plan.certfile is not None:
            self.certificates().write(plan.certfile, plan.keyfile)
        env: dict[str, str] = {}
        if plan.cafile is not None:
            self.certificates().write_ca(plan.cafile)
        elif any(url.startswith("wss:") for _, url in plan.routes):
            # Without --upstream-cafile the gateway trusts the system's CAs: the test CA.
            env["SSL_CERT_FILE"] = str(self.directory / ".test-ca.pem")
            self.certificates().write_ca(Path(env["SSL_CERT_FILE"]))
        server = await self.stack.enter_async_context(
            started(plan.argv, self.directory, self.log(), env))
        await listening(server, port)
        self.listening.add(plan.shown)
        schemes = (["wss"] if plan.certfile is not None else []) + (
            [] if "--require-tls" in args else ["ws"])
        for scheme in schemes:
            context = self.certificates().client if scheme == "wss" else None
            if command == "serve":
                reply = await echo(f"{scheme}://127.0.0.1:{port}/", ssl_context=context)
                assert MESSAGE in reply, reply
            for path, url in plan.routes:
                await self.through(f"{scheme}://127.0.0.1:{port}{path}", url, plan.drafts,
                                   context)
        if background:
            self.servers.append((server, True))
        else:
            await self.interrupt(server)

    async def plan(self, command: str, args: list[str]) -> Plan:
        """The command line with its ports moved and its backends started."""
        plan = Plan([wscompat_executable(), command])
        values = iter(args)
        for arg in values:
            name, equals, inline = arg.partition("=")
            if name not in VALUED:
                plan.argv.append(arg)
                continue
            value = inline if equals else next(values, None)
            assert value is not None, f"{name} without a value"
            if name == "--port":
                plan.shown = int(value)
                value = str(self.port(plan.shown))
            elif name in {"--policy-port", "--metrics-port"}:
                value = str(self.port(int(value)))
            elif name == "--certfile":
                plan.certfile = self.file(value)
            elif name == "--keyfile":
                plan.keyfile = self.file(value)
            elif name == "--upstream-cafile":
                plan.cafile = self.file(value)
            elif name == "--drafts":
                plan.drafts = value
            elif name == "--upstream":
                value = await self.backend(value)
                plan.routes.append(("/", value))
            elif name == "--route":
                prefix, separator, url = value.partition("=")
                assert separator, f"--route {value}: not PREFIX=URL"
                url = await self.backend(url)
                plan.routes.append((prefix, url))
                value = f"{prefix}={url}"
            plan.argv += [name, value]
        if "--port" not in plan.argv:  # the page relies on the default port
            plan.argv += ["--port", str(self.port(plan.shown))]
        return plan

    async def backend(self, url: str) -> str:
        """``url``, a gateway's backend, aimed at a server the block started or at one
        started for it here."""
        upstream = parse_upstream(url)
        if upstream.host in backends.LOCAL_HOSTS and upstream.port in self.listening:
            return backends.located(upstream, self.ports[upstream.port])
        key = (upstream.kind, upstream.host, upstream.port, upstream.socket_path)
        if key not in self.backends:
            number = len(self.backends) + 1
            socket = self.directory / f"backend-{number}.sock"
            if upstream.kind == "tcp":
                self.backends[key] = await backends.tcp_echo(await self.nursery())
            elif upstream.kind == "unix":
                await backends.unix_server(await self.nursery(), socket, None)
                self.backends[key] = socket
            else:
                port = await self.echo_server(number, secure=upstream.kind == "wss")
                self.backends[key] = port
                if upstream.kind == "ws+unix":
                    await backends.unix_server(await self.nursery(), socket, port)
                    self.backends[key] = socket
        return backends.located(upstream, self.backends[key])

    async def echo_server(self, number: int, *, secure: bool) -> int:
        """A ``wscompat serve`` echo server on a free port, over TLS if ``secure``."""
        port = free_port()
        argv = [wscompat_executable(), "serve", "--port", str(port)]
        if secure:
            certfile = self.directory / f"backend-{number}.pem"
            self.certificates().write(certfile, None)
            argv += ["--certfile", str(certfile)]
        server = await self.stack.enter_async_context(
            started(argv, self.directory, self.log()))
        await listening(server, port)
        return port

    async def through(
        self, url: str, upstream: str, drafts: str | None, context: ssl.SSLContext | None
    ) -> None:
        """A WebSocket echo through the gateway at ``url`` to its ``upstream``."""
        accepted = parse_drafts(drafts) if drafts else frozenset(Draft)
        checked = [d for d in (Draft.RFC6455, Draft.HIXIE76) if d in accepted]
        for draft in checked or sorted(accepted, key=list(Draft).index)[:1]:
            where = f"{self.block.where}: {url} ({draft.value}) to {upstream}: no echo"
            if parse_upstream(upstream).stream:
                data = await streamed(url, draft=draft, ssl_context=context)
                assert data == MESSAGE.encode(), f"{where}, but {data!r}"
            else:
                replies = await relayed(url, draft=draft, ssl_context=context)
                assert replies and MESSAGE in replies[-1], f"{where}, but {replies}"

    async def node(self, args: list[str], background: bool) -> None:
        """``node NAME.js``: a file of the page, on a free port given as ``PORT``."""
        assert len(args) == 1, f"no rule for node {shlex.join(args)}: only node NAME.js"
        name = args[0]
        code = page_files(self.block.page).get(name)
        assert code is not None, (
            f"{name} is not a file of {self.block.page}: show it in a js block whose first "
            f"line is // {name}")
        default = NODE_PORT.search(code)
        assert default is not None, f"{name} does not listen on process.env.PORT || NNNN"
        shown = int(default[1])
        port = self.port(shown)
        env = {"NODE_PATH": str(NODE_MODULES), "PORT": str(port)}
        server = await self.stack.enter_async_context(
            started([node_executable(), name], self.directory, self.log(), env))
        await listening(server, port)
        self.listening.add(shown)
        if background:
            self.servers.append((server, False))
        else:
            await self.interrupt(server, clean=False)

    async def interrupt(self, server: Process, *, clean: bool = True) -> None:
        """Ctrl-C: a wscompat server exits 0 without a traceback (``clean``); any other
        program must end, as Node does, by the signal."""
        assert server.popen.poll() is None, f"{self.block.where}: ended early: {server.describe()}"
        status = await server.stop(signal.SIGINT)
        allowed = {0} if clean else {0, -signal.SIGINT}
        assert status in allowed, f"{self.block.where}: {server.describe()}"
        if clean:
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
        elif name == "npm":
            check_npm(args)
        elif name == "pytest":
            check_pytest(args)
        elif module:
            await check_script("python", f"-m {name}", args)
        elif python or name in {"bash", "sh"}:
            assert args, f"no rule for {name} without a script"
            await check_script(name, args[0], args[1:])
        elif name == "node":
            await self.node(args, background)
        elif name == "wscompat" and args[:1] in (["serve"], ["proxy"]):
            await self.serve(args[0], args[1:], background)
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
        # The last started first: a gateway before the backend it is in front of.
        for server, clean in reversed(session.servers):
            await session.interrupt(server, clean=clean)


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


def test_npm_lines_name_what_the_node_peers_install() -> None:
    check_npm(["install", "ws"])
    check_npm(["install", "ws@8"])
    with pytest.raises(AssertionError, match="no dependency"):
        check_npm(["install", "express"])
    with pytest.raises(AssertionError, match="names nothing"):
        check_npm(["install"])


async def run_block(code: str, directory: Path) -> Session:
    """The commands of ``code``, as a block of a page that has no files, run in full."""
    block = Block("page.md", 1, "sh", code, None)
    async with AsyncExitStack() as stack:
        session = Session(block, directory, stack)
        for argv, background in commands(code):
            await session.command(argv, background)
        for server, clean in reversed(session.servers):
            await session.interrupt(server, clean=clean)
    return session


async def test_a_gateway_gets_a_backend_of_each_kind(tmp_path: Path) -> None:
    session = await run_block(
        "wscompat proxy --upstream wss://app.internal/ --upstream-cafile ca.pem \\\n"
        "  --route /feed=ws+unix:/run/feed.sock:/live --route /vnc=unix:/run/vnc.sock &\n"
        "wscompat proxy --port 8081 --drafts 76 --upstream wss://app.internal/\n",
        tmp_path)
    assert sorted(kind for kind, _, _, _ in session.backends) == ["unix", "ws+unix", "wss"]
    assert session.listening == {8080, 8081}


async def test_a_gateway_in_front_of_the_blocks_own_server_is_checked_through_it(
    tmp_path: Path,
) -> None:
    # The backend refuses plain connections: the gateway passes its refusal on.
    with pytest.raises(HandshakeRejected, match="403"):
        await run_block(
            "wscompat serve --port 9000 --certfile backend.pem --require-tls &\n"
            "wscompat proxy --upstream ws://127.0.0.1:9000/\n",
            tmp_path)


async def test_node_runs_only_a_file_of_the_page(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="not a file of page"):
        await run_block("node app.js &\n", tmp_path)
