"""Play the client side of vectors against any running server, over real sockets.

Each vector gets its own connection. Its ``send`` steps go out as written (in their
chunks, with its pauses), and each expectation is read from the socket and compared by
the same matcher as the offline check (:mod:`wscompat.vectors.expect`), within a timeout per
step. A vector ends as one of:

``expected``   every expectation and the vector's ``end`` held;
``different``  the server answered, but not as the vector says (the diff shows where);
``no_answer``  the server said nothing within the timeout where an answer was due;
``skipped``    the vector needs server options this run was not told the server has.

The server may be hostile, so everything it can make replay hold is bounded: each
expectation's wait (``timeout``), each vector's whole exchange (``vector_deadline``,
pauses included), the run (``run_deadline``), and the bytes held at once for one vector
(``max_answer``). Server bytes are kept in one buffer per connection from which matched
bytes are dropped at the front, and the matcher is asked again only where its last
answer says something new can be decided, so the work done stays in proportion to the
bytes received, however they are dribbled. An answer that announces more than
``max_answer`` bytes (a Content-Length) fails at once, without waiting for it.

The requests go out exactly as recorded, ``Host`` and path included: hixie answers echo
them, so rewriting them would change what the right answer is. What does change over
``wss://`` is the scheme a hixie answer puts in its location, so there the expected
location is the secure one (:func:`secure_expectations`). Replay cannot see what the
server's application received, so ``events`` are not compared; vectors assume an echo
server, and their expected frames are the echoes.

A connection that cannot be made at all (refused, an unknown host, a failed TLS
handshake) would fail every vector the same way, so the first one stops the run:
:func:`replay_all` raises :class:`CannotConnect`, which says why in one line. A connection
that only takes too long is that vector's ``no_answer``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.protocol.handshake.location import split_host
from wscompat.protocol.proxy_header import leading_header_size
from wscompat.protocol.urls import parse_ws_url
from wscompat.trio.client import open_stream
from wscompat.vectors.expect import status_of
from wscompat.vectors.format import (
    EXPECTATIONS,
    GENERATIONS,
    LoadLimits,
    Step,
    Vector,
    VectorError,
    load,
)
from wscompat.vectors.report import DIFF_LIMIT, Outcome

__all__ = [
    "MAX_ANSWER", "RUN_DEADLINE", "STATUSES", "VECTOR_DEADLINE", "CannotConnect",
    "ReplaySettings", "parse_url", "replay_all", "replay_vector", "secure_expectations",
    "ssl_text",
]

STATUSES = ("expected", "different", "no_answer", "skipped")
FAILING = ("different", "no_answer")
VECTOR_DEADLINE = 120.0
"""Seconds one vector's whole exchange may take: connecting, every step and pause."""
RUN_DEADLINE = 600.0
"""Seconds a whole replay run may take."""
MAX_ANSWER = 16 * 2**20
"""Server bytes held at once for one vector: received and not yet matched."""
_READ_SIZE = 65536
"""Bytes asked of the socket per read."""
_START = 64
"""Bytes kept from the start of the server's answer, for its status line."""


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
    vector_deadline: float = VECTOR_DEADLINE
    """Seconds one vector may take in all."""
    run_deadline: float = RUN_DEADLINE
    """Seconds the whole run may take; vectors not finished by then are no answer."""
    max_answer: int = MAX_ANSWER
    """Server bytes held at once for one vector."""
    limits: LoadLimits = field(default_factory=LoadLimits)
    """For vectors given as files, loaded when their turn comes."""


def parse_url(url: str) -> tuple[str, int, bool]:
    """Host, port and TLS flag of a ``ws://`` or ``wss://`` URL whose path is ``/``.

    Raises ValueError otherwise: vectors carry their own request targets, so a URL path
    would be silently ignored.
    """
    parsed = parse_ws_url(url)
    if parsed.resource != "/":
        raise ValueError(f"{url!r} has a path: vectors send their own request targets "
                         "(and hixie answers echo them), so give ws://host:port/ only")
    return parsed.host, parsed.port, parsed.secure


class CannotConnect(Exception):
    """No connection to the server could be made: refused, unreachable, an unknown host,
    or a TLS handshake that failed. The message is the one line to show."""


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connect_error(exc: BaseException, settings: ReplaySettings) -> CannotConnect | None:
    """What stops the run, for an error raised while connecting; None for the errors
    of one connection only (a timeout)."""
    where = _authority(settings.host, settings.port)
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else None
    if isinstance(cause, ssl.SSLError):
        text = ssl_text(cause)
        hint = (" (--cafile names the CA that signed the server's certificate; "
                "--insecure skips the check)"
                if isinstance(cause, ssl.SSLCertVerificationError) else "")
        return CannotConnect(f"TLS handshake with {where} failed: {text}{hint}")
    if isinstance(exc, trio.BrokenResourceError):
        reason = str(cause) if cause is not None else "the connection broke"
        return CannotConnect(f"TLS handshake with {where} failed: {reason}")
    if isinstance(exc, OSError):
        return CannotConnect(f"cannot connect to {where}: {_reason(exc)}")
    return None


def ssl_text(exc: ssl.SSLError) -> str:
    """The words of a TLS error, without OpenSSL's source location."""
    return re.sub(r" \(_ssl\.c:\d+\)$", "", str(exc))


def _reason(exc: OSError) -> str:
    """The words of the first OSError in an error and its causes: "Connection refused"
    rather than trio's "all attempts to connect to ... failed"."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return str(seen.strerror)
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)
        if isinstance(seen, BaseExceptionGroup) and seen.exceptions:
            seen = seen.exceptions[0]
        else:
            seen = seen.__cause__
    return str(exc)


_LOCATION = re.compile(rb"(\r\n(?:Sec-)?WebSocket-Location:[ \t]*)ws://([^\r\n]*)",
                       re.IGNORECASE)
_HOST = re.compile(rb"\r\nHost:[ \t]*([^\r\n]*)", re.IGNORECASE)
_DEFAULT_PORTS = {"ws": "80", "wss": "443"}


def secure_expectations(vector: Vector) -> Vector:
    """The vector as a server reached over TLS answers it: hixie locations say
    ``wss://`` where the vector, written for a plain connection, says ``ws://``.

    The port follows the drafts' rule, shown only when it is not the scheme's default:
    a request with ``Host: example.com:80`` expects ``ws://example.com/`` in plain text
    and ``wss://example.com:80/`` over TLS. Vectors of other drafts, and those that
    already expect ``wss://`` (written for the ``secure`` option), come back unchanged.
    """
    if vector.draft not in (Draft.HIXIE75, Draft.HIXIE76):
        return vector
    request = bytearray()
    for step in vector.steps:
        if step.kind in EXPECTATIONS:
            break
        request += step.data if step.kind == "send" else b""
    head_end = request.find(b"\r\n\r\n")
    found = _HOST.search(request if head_end < 0 else request[: head_end + 2])
    try:
        name, port = split_host(found.group(1).decode("latin-1").strip()) if found else ("", None)
    except HandshakeRejected:
        return vector  # refused for its Host: no location to expect

    def plain_to_secure(location: re.Match[bytes]) -> bytes:
        rest = location.group(2).decode("latin-1")
        shown = {scheme: name + (f":{port}" if port and port.lstrip("0") != default else "")
                 for scheme, default in _DEFAULT_PORTS.items()}
        if name and rest.startswith(shown["ws"]):
            rest = shown["wss"] + rest[len(shown["ws"]):]
        return location.group(1) + b"wss://" + rest.encode("latin-1")

    def secure(step: Step) -> Step:
        end = step.data.find(b"\r\n\r\n")
        if step.kind not in ("expect", "expect_head") or end < 0:
            return step
        head = _LOCATION.sub(plain_to_secure, step.data[:end])
        return dataclasses.replace(step, data=head + step.data[end:])

    return dataclasses.replace(vector, steps=tuple(secure(step) for step in vector.steps))


def proxy_header_first(vector: Vector) -> tuple[bytes, Vector]:
    """The PROXY protocol header a vector's client sends first, and the vector without
    it: over TLS the header goes in the clear before the TLS handshake, as the proxy
    in front of a TLS server sends it, and the rest inside. A vector whose first bytes
    are no header comes back as it is, with nothing to send first."""
    sent = b"".join(step.data for step in vector.steps if step.kind == "send")
    size = left = leading_header_size(sent)
    if not size:
        return b"", vector
    steps: list[Step] = []
    for step in vector.steps:
        if left and step.kind == "send":
            taken = min(left, len(step.data))
            left -= taken
            rest = step.data[taken:]
            if rest:
                steps.append(dataclasses.replace(step, data=rest, chunks=_after(step.chunks,
                                                                               taken)))
            continue
        steps.append(step)
    return sent[:size], dataclasses.replace(vector, steps=tuple(steps))


def _after(chunks: tuple[int, ...], taken: int) -> tuple[int, ...]:
    """A send step's chunk sizes once its first ``taken`` bytes are gone."""
    out: list[int] = []
    for size in chunks:
        cut = min(size, taken)
        taken -= cut
        if size - cut:
            out.append(size - cut)
    return tuple(out)


def _options_key(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True)


class _Peer:
    """One connection's socket and the server bytes received on it not yet matched."""

    def __init__(self, stream: trio.abc.Stream, max_answer: int) -> None:
        self.stream = stream
        self.pending = bytearray()
        """Received and not yet accounted for by an expectation (matched bytes are
        dropped from the front, which a bytearray does without copying the rest)."""
        self.start = b""
        """The first bytes of the answer, for its status line."""
        self.max_answer = max_answer
        self.overflow = False
        """More than ``max_answer`` bytes are pending: reading has stopped."""
        self.eof = False
        self.reset = False
        self.step = 0
        """The step being played, counted from 1."""

    def consume(self, size: int) -> None:
        del self.pending[:size]

    async def send(self, data: bytes) -> bool:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def send_eof(self, seconds: float) -> bool:
        if isinstance(self.stream, trio.SSLStream) and not await self._end_tls(self.stream,
                                                                              seconds):
            return False
        if not isinstance(self.stream, trio.abc.HalfCloseableStream):
            return False
        try:
            await self.stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def _end_tls(self, tls: trio.SSLStream[trio.abc.Stream], seconds: float) -> bool:
        """TLS has no half-close: its close_notify is how a client over TLS says it has
        nothing more to send, which a server reads as the end of the stream, as it would
        a TCP half-close. The server answers with its own close_notify (within
        ``seconds``), and the connection goes on as plain TCP, where the end of the
        stream is all there is left to read."""
        with trio.move_on_after(max(seconds, 0.0)):
            try:
                transport, trailing = await tls.unwrap()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.eof = True  # closed without a close_notify: the end all the same
                return False
            self.stream = transport
            self.pending += trailing
            return True
        return False

    async def receive(self, seconds: float) -> bool:
        """Read once within ``seconds``; False when nothing came in time, or nothing
        more is read (the server closed, or sent more than ``max_answer`` bytes)."""
        if self.eof or self.overflow:
            return False
        room = self.max_answer + 1 - len(self.pending)
        with trio.move_on_after(max(seconds, 0.0)):
            try:
                data = await self.stream.receive_some(min(_READ_SIZE, room))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data, self.reset = b"", True
            if not data:
                self.eof = True
                return True
            if len(self.start) < _START:
                self.start += data[: _START - len(self.start)]
            self.pending += data
            self.overflow = len(self.pending) > self.max_answer
            return True
        return False


async def replay_vector(vector: Vector, settings: ReplaySettings) -> Outcome:
    """Replay one vector on a fresh connection and classify the server's answer, within
    ``settings.vector_deadline``."""
    from wscompat.vectors.h2replay import (  # noqa: PLC0415 (it imports this module)
        open_h2_stream,
        play_h2,
    )

    outcome = Outcome(vector.id, vector.generation, vector.name, str(vector.path), "expected")
    if _options_key(vector.options) != _options_key(settings.server_options):
        outcome.status = "skipped"
        outcome.problem = (f"needs a server started with options {_options_key(vector.options)}"
                           if vector.options else "needs a server started with default options")
        return outcome
    before_tls = b""
    if settings.secure:
        vector = secure_expectations(vector)
        if vector.options.get("proxy_protocol") and not vector.http2:
            before_tls, vector = proxy_header_first(vector)
    peer: _Peer | None = None
    with trio.move_on_after(settings.vector_deadline) as deadline:
        try:
            with trio.fail_after(settings.timeout):
                if vector.http2:
                    stream = await open_h2_stream(settings.host, settings.port,
                                                  secure=settings.secure,
                                                  ssl_context=settings.ssl_context)
                else:
                    stream = await open_stream(settings.host, settings.port,
                                               secure=settings.secure,
                                               ssl_context=settings.ssl_context,
                                               before_tls=before_tls)
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            stop = _connect_error(exc, settings)
            if stop is not None:
                raise stop from exc
            outcome.status = "no_answer"
            outcome.problem = (f"cannot connect: no connection within {settings.timeout:g} s"
                               f"{' (TLS included)' if settings.secure else ''}")
            return outcome
        if vector.http2:
            try:
                stream = await play_h2(vector, stream, outcome, timeout=settings.timeout,
                                       settle=settings.settle,
                                       max_answer=settings.max_answer)
            finally:
                await trio.aclose_forcefully(stream)
            return outcome
        peer = _Peer(stream, settings.max_answer)
        try:
            await _play(vector, settings, peer, outcome)
        finally:
            await trio.aclose_forcefully(peer.stream)  # plain TCP once TLS has ended
    if deadline.cancelled_caught:
        where = f" (at step {peer.step})" if peer and peer.step else ""
        _fail(outcome, "no_answer", f"the vector did not finish within its deadline of "
              f"{settings.vector_deadline:g} s{where}", step=peer.step if peer else 0,
              actual=bytes(peer.pending[:DIFF_LIMIT]) if peer else b"")
    if peer and peer.reset:
        outcome.notes.append("the server reset the connection")
    if peer and peer.overflow:
        outcome.notes.append(f"the server sent more than {settings.max_answer} bytes that "
                             "no expectation accounted for; replay stopped reading")
    return outcome


async def _play(vector: Vector, settings: ReplaySettings, peer: _Peer, outcome: Outcome) -> None:
    sent_eof = False
    for number, step in enumerate(vector.steps, 1):
        peer.step = number
        if step.kind == "send":
            if not await _send(step, settings, peer):
                outcome.notes.append(f"the server stopped reading before step {number}")
        elif step.kind == "send_eof":
            sent_eof = await peer.send_eof(settings.timeout)
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
            await peer.send_eof(settings.timeout)
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
    expected = step.data if step.kind in ("expect", "expect_head") else b""
    checked = needed = 0
    while True:
        if peer.eof or len(peer.pending) >= needed:
            found = step.match(peer.pending, eof=peer.eof, checked=checked)
            if found.done:
                break
            checked, needed = found.checked, found.needed
            if needed > settings.max_answer:
                _fail(outcome, "different", f"{step.kind}: the answer needs at least "
                      f"{needed} bytes, more than the {settings.max_answer} replay holds",
                      step=number, expected=expected, actual=peer.pending)
                return False
        if peer.overflow:
            _fail(outcome, "different", f"{step.kind}: more than {settings.max_answer} bytes "
                  "without a complete answer", step=number, expected=expected,
                  actual=peer.pending)
            return False
        if not await peer.receive(deadline - trio.current_time()):
            if peer.pending:
                _fail(outcome, "different", f"incomplete answer: only {len(peer.pending)} "
                      f"bytes within {settings.timeout:g} s", step=number,
                      expected=expected, actual=peer.pending)
            else:
                what = ("did not close the connection" if step.kind == "expect_eof"
                        else "sent nothing")
                _fail(outcome, "no_answer", f"{step.kind}: the server {what} within "
                      f"{settings.timeout:g} s", step=number, expected=expected)
            return False
    if found.problem:
        _fail(outcome, "different", f"{step.kind}: {found.problem}", step=number,
              expected=expected, actual=peer.pending)
        return False
    peer.consume(found.consumed)
    return True


def _check_end(vector: Vector, peer: _Peer, outcome: Outcome) -> None:
    end = vector.end
    if "status" in end:
        status = status_of(peer.start)
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
    actual: bytes | bytearray = b"",
) -> None:
    """Record a failure; of the bytes, only what a report shows is kept."""
    outcome.status, outcome.problem, outcome.step = status, problem, step
    outcome.expected, outcome.actual = expected[:DIFF_LIMIT], bytes(actual[:DIFF_LIMIT])


async def replay_all(
    vectors: Sequence[Vector | Path],
    settings: ReplaySettings,
    done: Callable[[Outcome], object] | None = None,
) -> list[Outcome]:
    """Replay every vector, ``settings.jobs`` at a time, within ``settings.run_deadline``;
    outcomes in the given order. A vector given as a file is loaded when its turn comes
    (so a run holds at most ``jobs`` vectors), with ``settings.limits``. ``done`` is
    called with each outcome as it is known (a progress bar).

    Raises CannotConnect at the first connection that cannot be made at all, once the
    vectors under way are cancelled.
    """
    results: list[Outcome | None] = [None] * len(vectors)
    limiter = trio.CapacityLimiter(max(1, settings.jobs))
    failed: list[CannotConnect] = []

    async def one(index: int, item: Vector | Path, cancel: trio.CancelScope) -> None:
        async with limiter:
            try:
                outcome = await _one(item, settings)
            except CannotConnect as exc:
                failed.append(exc)
                cancel.cancel()
                return
        results[index] = outcome
        if done is not None:
            done(outcome)

    with trio.move_on_after(settings.run_deadline):
        async with trio.open_nursery() as nursery:
            for index, item in enumerate(vectors):
                nursery.start_soon(one, index, item, nursery.cancel_scope)
    if failed:
        played = sum(result is not None and result.status != "skipped" for result in results)
        if played:  # the server went away during the run
            raise CannotConnect(f"{failed[0]} ({played} "
                                f"{'vector was' if played == 1 else 'vectors were'} played)")
        raise failed[0]
    late = (f"not finished within the run's deadline of {settings.run_deadline:g} s")
    return [result if result is not None else _unplayed(item, late)
            for result, item in zip(results, vectors, strict=True)]


async def _one(item: Vector | Path, settings: ReplaySettings) -> Outcome:
    if isinstance(item, Vector):
        return await replay_vector(item, settings)
    try:
        vector = load(item, settings.limits)
    except VectorError as exc:
        outcome = _unplayed(item, f"invalid vector: {exc}")
        outcome.status = "skipped"
        return outcome
    return await replay_vector(vector, settings)


def _unplayed(item: Vector | Path, problem: str) -> Outcome:
    """The outcome of a vector that did not get to the end of its replay."""
    if isinstance(item, Vector):
        return Outcome(item.id, item.generation, item.name, str(item.path), "no_answer",
                       problem)
    draft = item.parent.name if item.parent.name in GENERATIONS else "(unknown)"
    return Outcome(f"{item.parent.name}/{item.stem}", draft, "", str(item), "no_answer",
                   problem)
