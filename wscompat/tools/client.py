"""``wscompat client URL``: talk to any WebSocket server as a client of one generation.

Interactive, each line of standard input is sent as a text message and each message
received is printed as it arrives (``< text``, ``< [binary, N bytes] hex``); the end
of standard input closes the connection cleanly. Scripted, ``--send`` messages go out
in order and ``--expect`` messages must come back in order, each within ``--timeout``.
With nothing expected, the client closes once the server has been quiet for
``--linger`` after the last message sent: a server may answer a close at once and
drop the replies it had yet to send, so closing right after sending would lose them.
``-v`` prints the handshake's bytes both ways on standard error, as curl -v does.
With ``--http2`` the WebSocket is an extended CONNECT stream on an HTTP/2 connection
(RFC 8441): ``-v`` then prints the header lists of the request and its answer.

Theory of operation. A :class:`Session` drives one sans-I/O
:class:`~wscompat.protocol.connection.ClientConnection` over a trio stream. It writes
and reads the handshake itself, so that the bytes can be shown (over HTTP/2 the
handshake is the stream's, and the session drives an
:class:`~wscompat.protocol.connection.Established` framer over it); then a reader task
feeds every read to the connection, puts the messages it yields on a channel and
writes whatever the connection has to say (pongs, the close reply). Closing sends the
draft's close and lets the reader run on until the server's answer: messages the
server sent before that answer are still printed, which is what makes ``--send``
followed by the end of the run show the server's replies.
"""

from __future__ import annotations

import math
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import trio
from websockets.extensions import ClientExtensionFactory, Extension

from wscompat.conformance.wire import FrameParser
from wscompat.conformance.wire import ProtocolError as WireError
from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected, ProtocolViolation
from wscompat.protocol.connection import (
    ClientConnection,
    ConnectionSettings,
    Established,
    make_framer,
)
from wscompat.protocol.extensions import (
    DEFLATE_FRAME_NAMES,
    ClientDeflateFrameFactory,
    ClientPerMessageDeflateFactory,
)
from wscompat.protocol.framing import Message, State
from wscompat.protocol.handshake.client import ClientHandshake
from wscompat.tools.common import (
    CannotConnect,
    Target,
    UsageError,
    connect_stream,
    hex_preview,
    printable,
    show_exchange,
    status_line,
)
from wscompat.trio.http2_client import H2WebSocketStream, alpn_context, h2_session

__all__ = [
    "COMPRESSION_NAMES",
    "EXIT_FAILED",
    "EXIT_OK",
    "ClientOptions",
    "Console",
    "Session",
    "default_origin",
    "extension_factories",
    "run_client",
]

EXIT_OK, EXIT_FAILED = 0, 1
COMPRESSION_NAMES = ("permessage-deflate", *DEFLATE_FRAME_NAMES)
MAX_MESSAGE = 16 * 2**20
"""The largest message received: a tool should see what a server sends, within reason."""
RECEIVE_SIZE = 65536
QUEUE = 16
"""Messages received and not yet printed before reading pauses."""
CLOSE_OPCODE = 0x8
CLEAN_CODES = frozenset({1000, 1001, 1005})
"""Close codes of a connection that ended as it should (1000 on hixie too)."""

Data = str | bytes


class Failed(Exception):
    """The run failed (exit status 1); the message is the one line to show."""


@dataclass(frozen=True)
class ClientOptions:
    """One run of the client, as the command line describes it."""

    target: Target
    draft: Draft = Draft.RFC6455
    origin: str | None = None
    subprotocols: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    compression: tuple[str, ...] = ()
    sends: tuple[Data, ...] = ()
    expects: tuple[Data, ...] = ()
    timeout: float = 5.0
    linger: float = 0.5
    """With nothing to expect: how long the server must have been quiet, after the last
    message sent, before the client closes."""
    verbose: bool = False
    ssl_context: ssl.SSLContext | None = None
    http2: bool = False
    """Open the WebSocket over HTTP/2 (RFC 8441)."""

    @property
    def scripted(self) -> bool:
        """``--send`` or ``--expect`` was given: standard input is not read."""
        return bool(self.sends or self.expects)

    def check(self) -> None:
        """UsageError for what the draft cannot carry, before any connection is made."""
        caps = self.draft.caps
        if self.http2 and self.draft is not Draft.RFC6455:
            raise UsageError(f"HTTP/2 carries RFC 6455 only: no --draft {self.draft.short} "
                             "with --http2")
        if not caps.binary and any(isinstance(m, bytes) for m in (*self.sends, *self.expects)):
            raise UsageError(f"{self.draft} carries text only: no --send-binary or "
                             "--expect-binary")
        if not caps.extensions and self.compression:
            raise UsageError(f"{self.draft} has no extensions: no --compression")
        if self.draft in (Draft.HIXIE75, Draft.HIXIE76) and len(self.subprotocols) > 1:
            raise UsageError(f"{self.draft} offers one subprotocol at most")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise UsageError("--timeout is a number of seconds above 0")
        if not (math.isfinite(self.linger) and self.linger >= 0):
            raise UsageError("--linger is a number of seconds, 0 or more")


def default_origin(target: Target) -> str:
    """The origin a page served from the URL's own host would send."""
    scheme = "https" if target.secure else "http"
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.secure else 80
    return f"{scheme}://{host}" + ("" if target.port == default else f":{target.port}")


def extension_factories(names: Sequence[str]) -> list[ClientExtensionFactory]:
    """Client factories offering ``names`` in that order of preference."""
    factories: list[ClientExtensionFactory] = []
    for name in names:
        if name == "permessage-deflate":
            factories.append(ClientPerMessageDeflateFactory())
        else:
            factories.append(ClientDeflateFrameFactory(name))
    return factories


class Console:
    """Where the run prints: messages on ``out``, everything else on ``err``; every
    line flushed at once, so a reader of a pipe sees it as it happens."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err

    def message(self, data: Data, prefix: str = "<") -> None:
        print(f"{prefix} {describe(data)}", file=self.out, flush=True)

    def info(self, line: str) -> None:
        print(line, file=self.err, flush=True)


def describe(data: Data) -> str:
    """A message on one line: text escaped, binary as hex."""
    if isinstance(data, str):
        return printable(data, sys.maxsize)
    return f"[binary, {len(data)} bytes] {hex_preview(data)}".rstrip()


class Session:
    """One client connection: the sans-I/O protocol, the stream under it, and the
    reader task's signals. See the module docstring."""

    def __init__(self, stream: trio.abc.Stream, proto: ClientConnection | Established,
                 console: Console, *, timeout: float, verbose: bool) -> None:
        self.stream = stream
        self.proto = proto
        self.subprotocol: str | None = None
        self.extensions: tuple[Extension, ...] = ()
        """What the handshake agreed."""
        self.console = console
        self.timeout = timeout
        self.verbose = verbose
        self.finished = trio.Event()
        """Set when the reader has stopped: the connection is over."""
        self.close_heard: tuple[int, str] | None = None
        """The server's close frame (code, reason), once one came, if watched for."""
        self._frames: FrameParser | None = None
        self._lock = trio.StrictFIFOLock()
        self._eof_sent = False

    def watch_for_close(self) -> None:
        """Note the server's close frame as it arrives (RFC 6455 framing only): over
        HTTP/2 the protocol reports the close once the stream has ended, which a server
        may never do after answering it."""
        self._frames = FrameParser()

    def _look_for_close(self, data: bytes) -> None:
        frames = self._frames
        if frames is None:
            return
        frames.feed(data)
        try:
            while (frame := frames.next()) is not None:
                if frame.opcode == CLOSE_OPCODE:
                    payload = frame.payload
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                    self.close_heard = code, payload[2:].decode("utf-8", "replace")
                    self._frames = None
                    return
        except WireError:  # the protocol object judges the stream; stop watching
            self._frames = None

    async def open(self) -> None:
        """Write the request and read the answer; Failed with the status line (or why
        a 101 is not valid) when the server refuses."""
        assert isinstance(self.proto, ClientConnection)
        request = self.proto.request()
        if self.verbose:
            show_exchange(">", request, self.console.info)
        await self.stream.send_all(request)
        received = bytearray()
        try:
            while self.proto.framer is None:
                data = await self._receive()
                if not data:
                    self.proto.receive_eof()  # raises HandshakeRejected
                received += data
                self.proto.receive_data(data)
        except HandshakeRejected as exc:
            if self.verbose and received:
                show_exchange("<", bytes(received), self.console.info)
            raise Failed(refusal(exc, bytes(received))) from None
        result = self.proto.result
        assert result is not None
        self.subprotocol, self.extensions = result.subprotocol, result.extensions
        if self.verbose:
            answer = bytes(received[: len(received) - len(result.leftover)])
            show_exchange("<", answer, self.console.info)

    async def read(self, messages: trio.MemorySendChannel[Data]) -> None:
        """Feed every read to the protocol until the connection closes; messages go
        to ``messages``, which is closed at the end."""
        proto = self.proto
        try:
            async with messages:
                await self._deliver(messages)  # frames that came with the handshake
                while proto.close_code is None:
                    data = await self._receive()
                    try:
                        if data:
                            self._look_for_close(data)
                            proto.receive_data(data)
                        else:
                            proto.receive_eof()
                    except ProtocolViolation as exc:
                        proto.abort(exc.code, exc.reason)
                    await self._deliver(messages)
                    await self._flush()
                    if not data:
                        break
                # The server closes TCP first (RFC 6455 §7.1.1): wait for it, briefly.
                with trio.move_on_after(self.timeout):
                    while await self._receive():
                        pass
        finally:
            self.finished.set()

    async def send(self, data: Data) -> bool:
        """Send one message; False once the connection is closing and cannot."""
        proto = self.proto
        if proto.close_code is not None or proto.state is not State.OPEN:
            return False
        if isinstance(data, str):
            proto.send_text(data)
        else:
            proto.send_binary(data)
        if self.verbose:
            self.console.info(f"> {describe(data)}")
        await self._flush()
        return True

    async def close(self) -> None:
        """Start the draft's closing handshake (if nobody has yet) and wait, at most
        ``timeout``, for the reader to see it end."""
        proto = self.proto
        if proto.close_code is None and proto.state is State.OPEN:
            proto.send_close(1000, "")
            await self._flush()
        with trio.move_on_after(self.timeout):
            await self.finished.wait()

    async def _deliver(self, messages: trio.MemorySendChannel[Data]) -> None:
        for event in self.proto.events():
            if isinstance(event, Message):
                await messages.send(event.data)

    async def _receive(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(RECEIVE_SIZE))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def _flush(self) -> None:
        """Write what the protocol has to say; half-close once it wants TCP closed."""
        async with self._lock:
            data = self.proto.data_to_send()
            try:
                if data:
                    await self.stream.send_all(data)
                if self.proto.eof_wanted and not self._eof_sent:
                    self._eof_sent = True
                    if isinstance(self.stream, trio.abc.HalfCloseableStream):
                        await self.stream.send_eof()
                    else:  # TLS cannot half-close: hixie-75's close is closing it all
                        await self.stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the reader sees the end and reports it


def refusal(exc: HandshakeRejected, received: bytes) -> str:
    """One line on a failed handshake: the server's status line, and the versions a
    refusal lists; or why a 101 answer is not one the draft's clients accept."""
    if exc.status == 101:
        return f"the server's 101 answer is not valid: {printable(exc.reason)}"
    if exc.status == 0 or not received:
        return f"no valid answer: {printable(exc.reason)}"
    line = f"refused: {status_line(received)}"
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for field in head.split("\r\n")[1:]:
        name, _, value = field.partition(":")
        if name.strip().lower() == "sec-websocket-version":
            line += f" (Sec-WebSocket-Version: {printable(value.strip())})"
    return line


async def run_client(options: ClientOptions, console: Console, stdin: TextIO) -> int:
    """Connect, converse (scripted or from ``stdin``), close; the exit status."""
    target = options.target
    context = alpn_context(options.ssl_context) if options.http2 and target.secure else (
        options.ssl_context)
    try:
        with trio.fail_after(options.timeout):
            stream = await connect_stream(target, context)
    except CannotConnect as exc:
        console.info(f"wscompat client: {exc}")
        return EXIT_FAILED
    except trio.TooSlowError:
        console.info(f"wscompat client: no connection to {target.where} within "
                     f"{options.timeout:g} s")
        return EXIT_FAILED
    try:
        if options.http2:
            return await _run_h2(options, console, stdin, stream)
        handshake = ClientHandshake(
            options.draft, target.host, target.resource, port=target.port,
            secure=target.secure, origin=options.origin, subprotocols=options.subprotocols,
            extra_headers=options.headers,
            extensions=extension_factories(options.compression),
        )
        proto = ClientConnection(handshake, ConnectionSettings(max_message_size=MAX_MESSAGE))
        session = Session(stream, proto, console, timeout=options.timeout,
                          verbose=options.verbose)
        try:
            with trio.fail_after(options.timeout):
                await session.open()
        except trio.TooSlowError:
            raise Failed(f"no answer to the handshake within {options.timeout:g} s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise Failed("the connection broke during the handshake") from None
        _connected(options, session, interactive=not options.scripted and stdin.isatty())
        return await _converse(options, session, stdin)
    except Failed as exc:
        console.info(f"wscompat client: {exc}")
        return EXIT_FAILED
    finally:
        await trio.aclose_forcefully(stream)


async def _run_h2(options: ClientOptions, console: Console, stdin: TextIO,
                  stream: trio.abc.Stream) -> int:
    """The conversation over an extended CONNECT stream on a new HTTP/2 connection;
    Failed when the server does not speak HTTP/2 or RFC 8441, or refuses."""
    target = options.target
    try:
        async with h2_session(stream, host=target.host, port=target.port,
                              timeout=options.timeout) as client:
            if options.verbose:
                how = "TLS, ALPN h2" if client.secure else "prior knowledge"
                console.info(f"* HTTP/2 ({how}), the server's SETTINGS: "
                             f"{_settings(client.session.remote_settings)}")
            try:
                with trio.fail_after(options.timeout):
                    io = await client.open_websocket(
                        target.resource, origin=options.origin,
                        subprotocols=options.subprotocols, extra_headers=options.headers,
                        extensions=extension_factories(options.compression))
            except HandshakeRejected as exc:
                if options.verbose:
                    _show_fields(">", client.session.last_request, console)
                raise Failed(h2_refusal(exc)) from None
            if options.verbose:
                _show_h2_exchange(io, console)
            settings = ConnectionSettings(max_message_size=MAX_MESSAGE)
            proto = Established(make_framer(Draft.RFC6455, settings, io.extensions,
                                            client=True))
            session = Session(io, proto, console, timeout=options.timeout,
                              verbose=options.verbose)
            session.watch_for_close()
            session.subprotocol, session.extensions = io.subprotocol, io.extensions
            _connected(options, session, interactive=not options.scripted and stdin.isatty())
            return await _converse(options, session, stdin)
    except HandshakeRejected as exc:  # no HTTP/2 on this port
        raise Failed(h2_refusal(exc)) from None
    except trio.TooSlowError:
        raise Failed(f"no answer within {options.timeout:g} s") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise Failed(f"the HTTP/2 connection broke: {exc}") from None


def h2_refusal(exc: HandshakeRejected) -> str:
    """One line on a failed HTTP/2 handshake: the status and the reason the server's
    body gave, with the versions a refusal lists; or why there is no RFC 8441 here."""
    if exc.status == 0:
        return printable(exc.reason)
    if 200 <= exc.status < 300:
        return f"the server's {exc.status} answer is not valid: {printable(exc.reason)}"
    line = f"refused: HTTP/2 {exc.status} {printable(exc.reason)}"
    for name, value in exc.headers:
        if name.lower() == "sec-websocket-version":
            line += f" (Sec-WebSocket-Version: {printable(value)})"
    return line


def _settings(remote: dict[str, int]) -> str:
    return ", ".join(f"{name}={value}" for name, value in remote.items()) or "none"


def _show_fields(prefix: str, fields: Sequence[tuple[str, str]], console: Console) -> None:
    """A header list one field a line, as ``-v`` shows an HTTP/1.1 head."""
    for name, value in fields:
        console.info(f"{prefix} {printable(name)}: {printable(value)}".rstrip())
    console.info(prefix)


def _show_h2_exchange(io: H2WebSocketStream, console: Console) -> None:
    _show_fields(">", io.request_headers, console)
    _show_fields("<", [(":status", str(io.status)), *io.response_headers], console)


def _connected(options: ClientOptions, session: Session, *, interactive: bool) -> None:
    """Say what was agreed, with -v or to a person at a terminal."""
    if not (options.verbose or interactive):
        return
    parts = [str(options.draft) + (" over HTTP/2" if options.http2 else "")]
    if session.subprotocol:
        parts.append(f"subprotocol {printable(session.subprotocol)}")
    for ext in session.extensions:
        parts.append(f"extension {printable(str(ext.name))}")
    hint = "; type messages, end with Ctrl-D" if interactive else ""
    session.console.info(f"* connected to {options.target.url} ({', '.join(parts)}){hint}")


async def _converse(options: ClientOptions, session: Session, stdin: TextIO) -> int:
    """Run the conversation and the closing handshake; the exit status."""
    sender, receiver = trio.open_memory_channel[Data](QUEUE)
    check = _Expectations(options.expects, options.timeout, session.console)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.read, sender)
        nursery.start_soon(check.run, receiver)
        if options.scripted:
            for message in options.sends:
                if not await session.send(message):
                    break
        else:
            await _send_lines(session, stdin)
        if options.expects:
            await check.done.wait()
        else:
            await _linger(session, check, options.linger, options.timeout)
        await session.close()
        if session.finished.is_set():  # the channel is closed: print what is left in it
            await check.drained.wait()
        nursery.cancel_scope.cancel()  # a server that never answered the close
    return _ending(options, session, check)


async def _linger(session: Session, check: _Expectations, quiet: float, bound: float) -> None:
    """Wait, at most ``bound``, until nothing has arrived for ``quiet`` seconds: the
    replies to the last messages sent then come before the close, which the server
    could otherwise answer first (and then say nothing more)."""
    check.last = trio.current_time()
    with trio.move_on_after(bound):
        while not session.finished.is_set():
            until = check.last + quiet
            if trio.current_time() >= until:
                return
            with trio.move_on_at(until):
                await session.finished.wait()


def _ending(options: ClientOptions, session: Session, check: _Expectations) -> int:
    proto = session.proto
    if check.failure is not None:
        session.console.info(f"wscompat client: {check.failure}")
        return EXIT_FAILED
    code, reason = proto.close_code, printable(proto.close_reason or "")
    closed_by = proto.closed_by
    if code is None and session.close_heard is not None:
        # Over HTTP/2: the close frames went both ways, the server kept its side of the
        # stream open, and leaving reset it.
        code, reason = session.close_heard[0], printable(session.close_heard[1])
        closed_by = "local"
        if options.verbose:
            session.console.info(f"* the server answered the close but did not end the "
                                 f"HTTP/2 stream within {options.timeout:g} s: reset")
    if code is None:
        session.console.info(f"wscompat client: the server did not answer the close within "
                             f"{options.timeout:g} s")
        return EXIT_FAILED
    if code not in CLEAN_CODES:
        session.console.info(f"wscompat client: the connection ended with {code} {reason}"
                             .rstrip())
        return EXIT_FAILED
    if options.verbose or (closed_by == "peer" and not options.scripted):
        by = "the server" if closed_by == "peer" else "the client"
        session.console.info(f"* closed by {by}: {code} {reason}".rstrip())
    return EXIT_OK


async def _send_lines(session: Session, stdin: TextIO) -> None:
    """Send each line of ``stdin`` as a text message until its end, or until the
    connection closes (the thread blocked in readline is then abandoned)."""
    async with trio.open_nursery() as nursery:

        async def stop_when_closed() -> None:
            await session.finished.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(stop_when_closed)
        while True:
            line = await trio.to_thread.run_sync(stdin.readline, abandon_on_cancel=True)
            if not line or not await session.send(line.removesuffix("\n").removesuffix("\r")):
                break
        nursery.cancel_scope.cancel()


class _Expectations:
    """Prints every message received and checks the expected ones in order; ``done``
    is set once all have come, or one failed (``failure`` says how)."""

    def __init__(self, expected: Sequence[Data], timeout: float, console: Console) -> None:
        self.expected = list(expected)
        self.timeout = timeout
        self.console = console
        self.failure: str | None = None
        self.last = trio.current_time()
        """When the last message arrived."""
        self.done = trio.Event()
        self.drained = trio.Event()
        """Set once every message received has been printed."""
        if not self.expected:
            self.done.set()

    async def run(self, messages: trio.MemoryReceiveChannel[Data]) -> None:
        count = 0
        async with messages:
            while True:
                waiting = self.failure is None and count < len(self.expected)
                with trio.move_on_after(self.timeout if waiting else math.inf) as late:
                    try:
                        message = await messages.receive()
                    except trio.EndOfChannel:
                        break
                if late.cancelled_caught:
                    self._fail(f"no message within {self.timeout:g} s: expected "
                               f"{_quoted(self.expected[count])}")
                    continue
                self.last = trio.current_time()
                self.console.message(message)
                if not waiting:
                    continue
                expected = self.expected[count]
                count += 1
                if message != expected:
                    self._fail(f"message {count}: expected {_quoted(expected)}, got "
                               f"{_quoted(message)}")
                elif count == len(self.expected):
                    self.done.set()
        if self.failure is None and count < len(self.expected):
            self._fail(f"the connection closed before message {count + 1} "
                       f"({_quoted(self.expected[count])}) came")
        self.drained.set()

    def _fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = why
        self.done.set()


def _quoted(data: Data, limit: int = 200) -> str:
    """A message in a one-line reason: text as a Python literal (controls escaped)."""
    if isinstance(data, str):
        return repr(data[:limit]) + ("…" if len(data) > limit else "")
    return f"binary {hex_preview(data)}" if data else "an empty binary message"
