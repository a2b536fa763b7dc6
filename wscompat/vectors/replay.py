"""Play the client side of vectors against any running server, over real sockets.

Each vector gets its own connection. Its ``send`` steps go out as written (in their
chunks, with its pauses), and each expectation is read from the socket and compared by
the same matcher as the offline check (:mod:`wscompat.vectors.expect`), within a timeout per
step. A vector ends as one of:

``expected``   every expectation and the vector's ``end`` held;
``different``  the server answered, but not as the vector says (the diff shows where);
``no_answer``  the server said nothing within the timeout where an answer was due;
``skipped``    the vector needs server options this run was not told the server has.

The requests go out exactly as recorded, ``Host`` and path included: hixie answers echo
them, so rewriting them would change what the right answer is. Replay cannot see what
the server's application received, so ``events`` are not compared; vectors assume an
echo server, and their expected frames are the echoes.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import trio

from wscompat.trio.client import open_stream
from wscompat.vectors.expect import status_of
from wscompat.vectors.format import EXPECTATIONS, Step, Vector
from wscompat.vectors.report import Outcome

__all__ = ["STATUSES", "ReplaySettings", "parse_url", "replay_all", "replay_vector"]

STATUSES = ("expected", "different", "no_answer", "skipped")
FAILING = ("different", "no_answer")


@dataclass(frozen=True)
class ReplaySettings:
    host: str
    port: int
    secure: bool = False
    timeout: float = 2.0
    """Seconds each expectation may take to arrive."""
    settle: float = 0.2
    """Seconds of silence that confirm nothing more comes after the last expectation."""
    gap: float = 0.01
    """Seconds between the chunks of one send step, so they leave as separate segments."""
    jobs: int = 8
    """Vectors replayed at once, each on its own connection."""
    server_options: dict[str, Any] = field(default_factory=dict)
    """The options the server was started with; vectors needing others are skipped."""
    ssl_context: ssl.SSLContext | None = None


def parse_url(url: str) -> tuple[str, int, bool]:
    """Host, port and TLS flag of a ``ws://`` or ``wss://`` URL whose path is ``/``.

    Raises ValueError otherwise: vectors carry their own request targets, so a URL path
    would be silently ignored.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{url!r} has a path: vectors send their own request targets "
                         "(and hixie answers echo them), so give ws://host:port/ only")
    secure = parts.scheme == "wss"
    return parts.hostname, parts.port or (443 if secure else 80), secure


def _options_key(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True)


class _Peer:
    """One connection's socket, the bytes received on it and how far they are compared."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.received = bytearray()
        self.read = 0
        self.eof = False
        self.reset = False

    @property
    def pending(self) -> bytes:
        return bytes(self.received[self.read :])

    async def send(self, data: bytes) -> bool:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def send_eof(self) -> bool:
        if not isinstance(self.stream, trio.abc.HalfCloseableStream):
            return False
        try:
            await self.stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def receive(self, seconds: float) -> bool:
        """Read once within ``seconds``; False when nothing came in time."""
        if self.eof:
            return False
        with trio.move_on_after(max(seconds, 0.0)):
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data, self.reset = b"", True
            if data:
                self.received += data
            else:
                self.eof = True
            return True
        return False


async def replay_vector(vector: Vector, settings: ReplaySettings) -> Outcome:
    """Replay one vector on a fresh connection and classify the server's answer."""
    outcome = Outcome(vector.id, vector.draft.value, vector.name, str(vector.path), "expected")
    if _options_key(vector.options) != _options_key(settings.server_options):
        outcome.status = "skipped"
        outcome.problem = (f"needs a server started with options {_options_key(vector.options)}"
                           if vector.options else "needs a server started with default options")
        return outcome
    try:
        with trio.fail_after(settings.timeout):
            stream = await open_stream(settings.host, settings.port, secure=settings.secure,
                                       ssl_context=settings.ssl_context)
    except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
        outcome.status, outcome.problem = "no_answer", f"cannot connect: {exc or 'timed out'}"
        return outcome
    peer = _Peer(stream)
    try:
        await _play(vector, settings, peer, outcome)
    finally:
        await trio.aclose_forcefully(stream)
    if peer.reset:
        outcome.notes.append("the server reset the connection")
    return outcome


async def _play(vector: Vector, settings: ReplaySettings, peer: _Peer, outcome: Outcome) -> None:
    sent_eof = False
    for number, step in enumerate(vector.steps, 1):
        if step.kind == "send":
            if not await _send(step, settings, peer):
                outcome.notes.append(f"the server stopped reading before step {number}")
        elif step.kind == "send_eof":
            sent_eof = await peer.send_eof()
        elif step.kind == "pause":
            await trio.sleep(step.seconds)
        elif step.kind in EXPECTATIONS and not await _expect(step, number, settings, peer,
                                                              outcome):
            return
    if vector.steps[-1].kind != "expect_eof":
        await _wait_eof(peer, settings.settle)
        if peer.pending:
            _fail(outcome, "different", "unexpected bytes after the last expectation",
                  actual=peer.pending)
            return
    end = vector.end
    if end.get("eof") is True and not peer.eof:
        await _wait_eof(peer, settings.timeout)
        if peer.pending:
            _fail(outcome, "different", "unexpected bytes before the close",
                  actual=peer.pending)
            return
    _check_end(vector, peer, outcome)
    if outcome.status == "expected" and "close_code" in end and not peer.eof:
        # As offline: the client closes its side, and the server must add nothing.
        if not sent_eof:
            await peer.send_eof()
        await _wait_eof(peer, settings.timeout)
        if peer.pending:
            _fail(outcome, "different", "unexpected bytes after the client closed",
                  actual=peer.pending)


async def _wait_eof(peer: _Peer, seconds: float) -> None:
    deadline = trio.current_time() + seconds
    while not peer.eof and await peer.receive(deadline - trio.current_time()):
        pass


async def _send(step: Step, settings: ReplaySettings, peer: _Peer) -> bool:
    pieces = list(_pieces(step))
    for index, piece in enumerate(pieces):
        if index:
            await trio.sleep(settings.gap)
        if not await peer.send(piece):
            return False
    return True


def _pieces(step: Step) -> list[bytes]:
    pieces, pos = [], 0
    for size in step.chunks:
        pieces.append(step.data[pos : pos + size])
        pos += size
    if pos < len(step.data) or not pieces:
        pieces.append(step.data[pos:])
    return pieces


async def _expect(
    step: Step, number: int, settings: ReplaySettings, peer: _Peer, outcome: Outcome
) -> bool:
    deadline = trio.current_time() + settings.timeout
    while True:
        found = step.match(peer.pending, eof=peer.eof)
        if found.done:
            break
        if not await peer.receive(deadline - trio.current_time()):
            expected = step.data if step.kind in ("expect", "expect_head") else b""
            if peer.pending:
                _fail(outcome, "different", f"incomplete answer: {len(peer.pending)} bytes, "
                      f"then nothing for {settings.timeout:g} s", step=number,
                      expected=expected, actual=peer.pending)
            else:
                what = ("did not close the connection" if step.kind == "expect_eof"
                        else "sent nothing")
                _fail(outcome, "no_answer", f"{step.kind}: the server {what} within "
                      f"{settings.timeout:g} s", step=number, expected=expected)
            return False
    if found.problem:
        expected = step.data if step.kind in ("expect", "expect_head") else b""
        _fail(outcome, "different", f"{step.kind}: {found.problem}", step=number,
              expected=expected, actual=peer.pending)
        return False
    peer.read += found.consumed
    return True


def _check_end(vector: Vector, peer: _Peer, outcome: Outcome) -> None:
    end = vector.end
    if "status" in end:
        status = status_of(bytes(peer.received))
        if status != end["status"]:
            _fail(outcome, "different", f"end: status {status}, expected {end['status']}")
            return
    if end.get("eof") is False and peer.eof:
        _fail(outcome, "different", "end: the server closed the connection")
    elif end.get("eof") is True and not peer.eof:
        _fail(outcome, "no_answer", "end: the server did not close the connection")


def _fail(
    outcome: Outcome,
    status: str,
    problem: str,
    *,
    step: int = 0,
    expected: bytes = b"",
    actual: bytes = b"",
) -> None:
    outcome.status, outcome.problem, outcome.step = status, problem, step
    outcome.expected, outcome.actual = expected, actual


async def replay_all(vectors: Sequence[Vector], settings: ReplaySettings) -> list[Outcome]:
    """Replay every vector, ``settings.jobs`` at a time; outcomes in the given order."""
    results: list[Outcome | None] = [None] * len(vectors)
    limiter = trio.CapacityLimiter(max(1, settings.jobs))

    async def one(index: int, vector: Vector) -> None:
        async with limiter:
            results[index] = await replay_vector(vector, settings)

    async with trio.open_nursery() as nursery:
        for index, vector in enumerate(vectors):
            nursery.start_soon(one, index, vector)
    return [r for r in results if r is not None]
