"""Every sample of what wscompat prints, answers or is made of matches the real thing.

- ``log``: sample log lines (the message, without the time and level prefix). A
  ``wscompat serve`` process is started, and for each line the connection it describes
  is made: a client of the line's draft, path, origin, subprotocol (``proto=``) and user
  agent (``ua=``) that sends one message and closes (a ``?…`` in the path is a query the
  log hides: the client sends one), or, for a ``rejected 426 unsupported
  Sec-WebSocket-Version N`` line, a request of that version. The line the server logs
  must match the sample with the addresses, ports, durations and byte counts as
  wildcards, and nothing else.
- ``http``: handshakes, byte for byte. In a block whose lines end with a literal
  ``\\r\\n`` each marker is a CRLF and the newline after it only layout (a last line
  without one is raw bytes, such as hixie-76's answer); a block without markers is a
  request head, its lines ended by CRLF, then a blank line and the body after the blank
  line of the block, if any (hixie-76's key3). A request is sent to a wscompat echo
  server that accepts the first subprotocol offered (as ``wscompat serve`` does); the
  draft the connection gets must be the one the page is about, and the server's answer
  must be the response block that follows the request on the page, or a 101 when none
  follows.
- ``usage``: a command's synopsis: every ``--flag`` it shows must be in that command's
  ``--help``.
- ``exceptions``: the exception tree, which must be wscompat's: each class where the
  tree puts it, under its base class, and every exception of wscompat.errors in it.
- ``tree``: a file tree: every entry exists where the tree puts it, and every module a
  description names (``detect.py``, ``tests/protocol/test_layers.py``) exists in that
  entry's directory (a name with a ``/`` from the repository root).
- ``diagram``: every module it names (``trio/streams.py``, ``framing/{hixie,hybi}.py``,
  ``sniff.py``) exists in the package.
- ``text``: shown, not run, only where the page says so (see blocks.py).

The prose names flags too: those in a table's ``flag`` column must exist on some
wscompat command, and those in inline code that starts with ``wscompat serve`` (or
another command) on that command.
"""

from __future__ import annotations

import itertools
import re
import signal
from pathlib import Path

import trio

import wscompat
import wscompat.errors
from wscompat import Draft

from ..conftest import Starter
from .blocks import PAGES, ROOT, Block, each, of_kind
from .processes import (
    environment,
    free_port,
    listening,
    started,
    wscompat_executable,
)

KINDS = ("log", "http", "usage", "exceptions", "tree", "diagram", "text")
LOG_BOUND = 10.0
"""Seconds for a connection's line to reach the log after it closed."""
ANSWER_BOUND = 2.0
"""Seconds a handshake answer may take to arrive in full."""
PACKAGE = ROOT / "wscompat"
CARRIED = 16
"""In a file tree, a line indented this far carries on the description above it."""

REJECTED = re.compile(r"^(?P<remote>\S+) (?P<path>\S+) rejected 426 unsupported "
                      r"Sec-WebSocket-Version (?P<version>\d+)$")
CONNECTION = re.compile(r"^(?P<remote>\S+) (?P<path>/\S*) (?P<draft>[\w-]+) (?P<rest>.*)$")
FIELD = re.compile(r'(?P<key>\w+)=(?:"(?P<quoted>[^"]*)"|(?P<value>\S+))')
VARYING = re.compile(r"\d+\.\d+\.\d+\.\d+:\d+|\b\d+\.\d+s\b|(?<=\bin=)\d+|(?<=\bout=)\d+")
"""Values of a log line that differ from run to run: address and port, duration, bytes."""


def shape(sample: str) -> re.Pattern[str]:
    """A regex of the log line ``sample`` is the message of, with its varying values as
    wildcards (their digits, not their punctuation)."""
    pattern, end = "", 0
    for value in VARYING.finditer(sample):
        pattern += re.escape(sample[end : value.start()])
        pattern += re.sub(r"\d+", r"\\d+", re.escape(value[0]))
        end = value.end()
    pattern += re.escape(sample[end:])
    return re.compile(rf"^\S+ \S+ \S+ wscompat\.server: {pattern}$", re.M)


async def reproduce(sample: str, port: int) -> None:
    """Make the connection ``sample`` is the log line of."""
    if rejected := REJECTED.match(sample):
        request = (f"GET {rejected['path']} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   f"Sec-WebSocket-Version: {rejected['version']}\r\n\r\n")
        with trio.fail_after(LOG_BOUND):
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(request.encode())
                while await stream.receive_some():
                    pass
        return
    line = CONNECTION.match(sample)
    assert line is not None, f"no rule to make the connection of {sample!r}"
    assert not line["rest"].startswith("tls "), "no rule to make a TLS connection"
    fields = {f["key"]: f["value"] or f["quoted"] for f in FIELD.finditer(line["rest"])}
    path = line["path"].replace("?…", "?room=1")
    origin = None if fields.get("origin", "-") == "-" else fields["origin"]
    subprotocols = () if fields.get("proto", "-") == "-" else (fields["proto"],)
    agent = () if fields.get("ua", "-") == "-" else (("User-Agent", fields["ua"]),)
    with trio.fail_after(LOG_BOUND):
        async with wscompat.connect(
            f"ws://127.0.0.1:{port}{path}", draft=Draft(line["draft"]), origin=origin,
            subprotocols=subprotocols, extra_headers=agent,
        ) as ws:
            await ws.send("a sample")
            await ws.receive()


async def check_log(block: Block, directory: Path) -> None:
    port = free_port()
    argv = [wscompat_executable(), "serve", "--port", str(port)]
    async with started(argv, directory, directory / "server.log") as server:
        await listening(server, port)
        for sample in block.code.splitlines():
            await reproduce(sample, port)
            pattern = shape(sample)
            with trio.move_on_after(LOG_BOUND):
                while not pattern.search(server.output()):
                    await trio.sleep(0.05)
            assert pattern.search(server.output()), (
                f"{block.where}: no line like\n  {sample}\nin the log:\n{server.output()}")
        assert await server.stop(signal.SIGINT) == 0, server.describe()


PAGE_DRAFTS = {
    "hixie-75.md": Draft.HIXIE75, "hixie-76.md": Draft.HIXIE76, "hybi-07.md": Draft.HYBI07,
    "hybi-08.md": Draft.HYBI08, "rfc6455.md": Draft.RFC6455,
}


def wire(code: str) -> bytes:
    """The bytes an ``http`` block stands for (see the module docstring)."""
    lines = code.removesuffix("\n").split("\n")
    if any(line.endswith("\\r\\n") for line in lines):
        return "".join(line.replace("\\r\\n", "\r\n") for line in lines).encode("latin-1")
    blank = lines.index("") if "" in lines else len(lines)
    head = "".join(f"{line}\r\n" for line in lines[:blank]) + "\r\n"
    return (head + "\n".join(lines[blank + 1 :])).encode("latin-1")


async def answer(port: int, request: bytes, size: int | None) -> bytes:
    """What the server answers: ``size`` bytes, or a head when no size is known."""
    received = b""

    def done() -> bool:
        return len(received) >= size if size is not None else b"\r\n\r\n" in received

    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(request)
        with trio.move_on_after(ANSWER_BOUND):
            while not done() and (chunk := await stream.receive_some()):
                received += chunk
    return received


async def check_http(block: Block, start_server: Starter) -> None:
    page = [b for b in of_kind("http") if b.page == block.page]
    position = page.index(block)
    if block.code.startswith("HTTP/"):
        assert position > 0 and page[position - 1].code.startswith("GET "), (
            f"{block.where}: a response block follows the request it answers")
        return  # checked with its request
    assert block.code.startswith("GET "), f"{block.where}: no rule for this http block"
    draft = PAGE_DRAFTS[Path(block.page).name]
    drafts: list[Draft] = []

    async def handler(ws: wscompat.Connection) -> None:
        drafts.append(ws.draft)
        async for message in ws:
            await ws.send(message)

    server = await start_server(
        handler, select_subprotocol=lambda _, offered: offered[0] if offered else None)
    following = page[position + 1] if position + 1 < len(page) else None
    if following is not None and following.code.startswith("HTTP/"):
        expected = wire(following.code)
        received = await answer(server.port, wire(block.code), len(expected))
        assert received == expected, f"{following.where}: the server answers\n{received!r}"
    else:
        received = await answer(server.port, wire(block.code), None)
        assert received.startswith(b"HTTP/1.1 101 "), received
    with trio.fail_after(ANSWER_BOUND):
        while not drafts:
            await trio.sleep(0.01)
    assert drafts == [draft]


FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")


def subcommand(text: str) -> tuple[str, ...]:
    """The words of ``wscompat ...`` that name a (sub)command: ``("vectors", "check")``."""
    words = text.split()
    assert words[0] == "wscompat", f"no rule for the usage of {words[0]}"
    return tuple(itertools.takewhile(lambda w: re.fullmatch(r"[a-z]+", w), words[1:]))


async def help_text(command: tuple[str, ...], directory: Path) -> str:
    with trio.fail_after(30):
        done = await trio.run_process([wscompat_executable(), *command, "--help"],
                                      cwd=directory, env=environment(), check=False,
                                      capture_stdout=True, capture_stderr=True)
    assert done.returncode == 0, f"wscompat {' '.join(command)} --help: {done.stderr.decode()}"
    return done.stdout.decode()


def missing(flags: set[str], text: str) -> list[str]:
    return sorted(f for f in flags if not re.search(rf"(?<![\w-]){f}(?![\w-])", text))


async def check_usage(block: Block, directory: Path) -> None:
    command = subcommand(block.code)
    flags = set(FLAG.findall(block.code))
    assert flags, f"{block.where} shows no flag"
    absent = missing(flags, await help_text(command, directory))
    assert not absent, f"wscompat {' '.join(command)} has no {absent}"


def flags_in_prose() -> list[tuple[str, tuple[str, ...] | None, str]]:
    """Flags the pages name outside code blocks: in the flag column of a table (of any
    wscompat command: None), and in inline code that starts with ``wscompat``."""
    found: list[tuple[str, tuple[str, ...] | None, str]] = []
    for path in PAGES:
        page = str(path.relative_to(ROOT))
        column: int | None = None
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{page}:{number}"
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not line.startswith("|"):
                column = None
            elif column is None:
                column = cells.index("flag") if "flag" in cells else -1
            elif 0 <= column < len(cells):
                found += [(where, None, flag) for flag in FLAG.findall(cells[column])]
            for span in re.findall(r"`(wscompat [^`]*)`", line):
                found += [(where, subcommand(span), flag) for flag in FLAG.findall(span)]
    return found


async def test_the_flags_the_prose_names_exist(tmp_path: Path) -> None:
    named = flags_in_prose()
    assert len({where for where, _, _ in named}) > 20, "the tables' flags are not found"
    helps = {command: await help_text(command, tmp_path)
             for command in {("serve",), ("proxy",), ("conform",), ("client",), ("probe",),
                             ("vectors", "check"), ("vectors", "import"),
                             ("vectors", "export"), ("vectors", "show"), ("replay",)}
             | {command for _, command, _ in named if command is not None}}
    every = "\n".join(helps.values())
    wrong = [f"{where}: {flag}" for where, command, flag in named
             if missing({flag}, every if command is None else helps[command])]
    assert not wrong, f"flags that no wscompat command has: {wrong}"


def check_exceptions(block: Block) -> None:
    parents: list[type[BaseException]] = []
    shown: set[type[BaseException]] = set()
    for line in block.code.splitlines():
        name = re.search(r"\w+", line)
        assert name is not None, line
        depth = name.start() // 4
        cls = getattr(wscompat.errors, name[0], None)
        assert isinstance(cls, type) and issubclass(cls, BaseException), f"no {name[0]}"
        assert getattr(wscompat, name[0]) is cls, f"wscompat does not export {name[0]}"
        del parents[depth:]
        if parents:
            assert parents[-1] in cls.__bases__, f"{name[0]} is not a {parents[-1].__name__}"
        parents.append(cls)
        shown.add(cls)
    root = min(shown, key=lambda c: len(c.__mro__))
    every = {cls for name in wscompat.errors.__all__
             if isinstance(cls := getattr(wscompat.errors, name), type)
             and issubclass(cls, root)}
    assert every == shown, f"missing from the tree: {every - shown}"


def check_tree(block: Block) -> None:
    places: list[tuple[int, Path]] = []
    directory = ROOT
    checked = 0
    for line in block.code.splitlines():
        indent = len(line) - len(line.lstrip())
        first, _, description = line.strip().partition(" ")
        if indent >= CARRIED:
            description = line  # the description of the entry above, carried on
        else:
            places = [(i, p) for i, p in places if i < indent]
            path = (places[-1][1] if places else ROOT) / first.rstrip("/")
            assert path.exists(), f"{block.where}: the tree shows {path.relative_to(ROOT)}"
            places.append((indent, path))
            directory = path if path.is_dir() else path.parent
            checked += 1
        for name in re.findall(r"[\w/]+\.py\b", description):
            module = ROOT / name if "/" in name else directory / name
            assert module.is_file(), f"{block.where}: {line.strip()} names {name}"
            checked += 1
    assert checked, f"{block.where} shows no file"


def check_diagram(block: Block) -> None:
    files = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")]
    named = re.findall(r"[\w/{},]+\.py\b", block.code)
    assert named, f"{block.where} names no module"
    for name in named:
        choices = re.search(r"\{([\w,]+)\}", name)
        spelled = ([name.replace(choices[0], c) for c in choices[1].split(",")]
                   if choices else [name])
        for module in spelled:
            assert any(f == module or f.endswith("/" + module) for f in files), (
                f"{block.where} names {module}, which is not in the package")


BROKEN_LOG = "127.0.0.1:51544 /chat?room=1 hixie-76 origin=http://site.example 0.010s in=1 out=1"


def test_log_shapes_keep_what_the_sample_says() -> None:
    pattern = shape("127.0.0.1:51544 /chat?… hixie-76 origin=- 12.408s in=1830 out=18 close=1000")
    prefix = "2026-12-01 10:00:00,000 INFO wscompat.server: "
    line = "10.0.0.7:2 /chat?… hixie-76 origin=- 0.004s in=9 out=9 close=1000"
    assert pattern.search(prefix + line)
    assert not pattern.search(prefix + line.replace("hixie-76", "hixie-75"))
    assert not pattern.search(prefix + line + " ext=-")
    assert not shape(BROKEN_LOG).search(prefix + BROKEN_LOG.replace("?room=1", "?…"))


def test_wire_reads_both_notations() -> None:
    request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n12345678"
    assert wire("GET / HTTP/1.1\nHost: a\n\n12345678\n") == request
    assert wire("HTTP/1.1 101 X\\r\\n\n\\r\\n\nabc\n") == b"HTTP/1.1 101 X\r\n\r\nabc"


@each("log")
async def test_the_log_line_is_what_the_server_logs(block: Block, tmp_path: Path) -> None:
    await check_log(block, tmp_path)


@each("http")
async def test_the_handshake_is_what_the_server_answers(
    block: Block, start_server: Starter
) -> None:
    await check_http(block, start_server)


@each("usage")
async def test_the_synopsis_shows_real_flags(block: Block, tmp_path: Path) -> None:
    await check_usage(block, tmp_path)


@each("exceptions")
def test_the_exception_tree_is_wscompats(block: Block) -> None:
    check_exceptions(block)


@each("tree")
def test_the_file_tree_is_the_repositorys(block: Block) -> None:
    check_tree(block)


@each("diagram")
def test_the_diagram_names_real_modules(block: Block) -> None:
    check_diagram(block)


@each("text")
def test_a_text_block_is_marked_as_not_run(block: Block) -> None:
    assert block.mark, (
        f"{block.where}: a text block is not checked, so the page must say why: "
        "<!-- not run: REASON --> on the line before it")
