"""HTTP/2 vectors checked offline: an ``h2`` client and wscompat's sans-I/O HTTP/2
session, bytes passed between them in memory.

:func:`check_h2` is :func:`wscompat.vectors.format.check` for a vector whose ``draft`` is
``rfc8441``. The server side is :class:`~wscompat.protocol.http2.H2ServerSession` with
the echo application on every WebSocket stream, driven as the trio server drives it
(decide each request, hand each stream its bytes and take the window back, queue what
its framer writes, END_STREAM once the framer wants the end, GOAWAY and the end of the
connection when the client closes TCP); the client side is :class:`.H2Peer`. After each
client step the two exchange bytes until both are quiet, the client's reaching the
server whole or one byte at a time (as the HTTP/1.1 check delivers a ``send``; what the
server says is compared as it accumulates, so the client takes it whole), and the flood
budgets see a clock that never moves, so a run is the same every time.

:func:`h2_pieces` runs a vector the same way and keeps what each side put on the wire,
in order: the bytes ``wscompat vectors export`` writes into a capture of an HTTP/2
vector, since its file holds no bytes of its own for HPACK's sake.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from wscompat.options import ServerOptions
from wscompat.protocol.connection import Phase
from wscompat.protocol.framing import Message, State
from wscompat.protocol.http2 import (
    DataArrived,
    H2Event,
    H2ServerSession,
    H2ServerStream,
    RequestReceived,
    SessionEnded,
    StreamEnded,
    StreamReset,
)
from wscompat.vectors.format import (
    H2_CLIENT,
    H2_EXPECTATIONS,
    Result,
    Step,
    Vector,
    server_options,
)
from wscompat.vectors.h2peer import H2Peer, StepError
from wscompat.vectors.wire import Piece

__all__ = ["check_h2", "h2_pieces"]

EXCHANGES = 100_000
"""Rounds of bytes both ways after one step before the run is declared stuck (each
round moves bytes; flow control needs a few per window)."""
_NOW = 0.0
"""The clock the flood budgets see: it never moves, so they never refill."""


class _H2Echo:
    """The server: an HTTP/2 session whose WebSocket streams echo, without I/O."""

    def __init__(self, options: ServerOptions) -> None:
        self.session = H2ServerSession(options.settings, options.h2_settings)
        self.eof = False
        self.events: list[tuple[int, str | bytes]] = []
        self.streams: dict[int, H2ServerStream] = {}
        """Every WebSocket stream opened, by number."""

    def feed(self, data: bytes) -> None:
        if not self.eof:
            self._dispatch(self.session.receive_data(data, _NOW))

    def feed_eof(self) -> None:
        """The client closed TCP: as the trio server, end the session (GOAWAY)."""
        if not self.eof:
            self._dispatch(self.session.terminate(0, ""))
            self.eof = True

    def output(self) -> bytes:
        return self.session.data_to_send()

    def _dispatch(self, events: list[H2Event]) -> None:
        for event in events:
            if isinstance(event, RequestReceived):
                stream = event.stream
                if stream.phase is Phase.DECIDE:
                    stream.accept(stream.choose_subprotocol(stream.upgrade_request()))
                    self.streams[stream.stream_id] = stream
                elif stream.phase is Phase.PLAIN:
                    stream.answer_health(serving=True)
                self._serve(stream)
            elif isinstance(event, DataArrived):
                self._serve(event.stream)
            elif isinstance(event, StreamEnded):
                stream = event.stream
                self._serve(stream)
                if stream.framer is not None:
                    stream.receive_eof()
                    self._serve(stream)
            elif isinstance(event, StreamReset):
                stream = event.stream
                if stream.framer is not None:
                    stream.finish(1006, "stream reset", "peer")
            elif isinstance(event, SessionEnded):
                self.eof = True

    def _serve(self, stream: H2ServerStream) -> None:
        """What the stream's Connection and echo handler do with what arrived."""
        if stream.framer is None:
            return
        session = self.session
        if stream.inbox:
            stream.receive_data(session.take(stream, len(stream.inbox)))
        for event in stream.events():
            if isinstance(event, Message):
                self.events.append((stream.stream_id, event.data))
                if stream.state is State.OPEN:
                    if isinstance(event.data, str):
                        stream.send_text(event.data)
                    else:
                        stream.send_binary(event.data)
        out = stream.data_to_send()
        if stream.alive and not stream.end_queued:
            if out:
                session.send(stream, out)
            if stream.eof_wanted:
                session.send(stream, end=True)


@dataclass
class _Run:
    """One vector played between the peer and the echo session."""

    vector: Vector
    bytewise: bool
    server: _H2Echo = field(init=False)
    peer: H2Peer = field(init=False)
    pieces: list[Piece] = field(default_factory=list)
    step: int = 0

    def __post_init__(self) -> None:
        self.server = _H2Echo(server_options(self.vector))
        self.peer = H2Peer(self.vector.settings)

    def _split(self, data: bytes) -> Iterator[bytes]:
        if self.bytewise:
            yield from (data[i : i + 1] for i in range(len(data)))
        elif data:
            yield data

    def _keep(self, side: str, data: bytes = b"", *, eof: bool = False) -> None:
        last = self.pieces[-1] if self.pieces else None
        if data and last is not None and last.side == side and not last.eof:
            self.pieces[-1] = Piece(last.step, last.kind, side, last.data + data)
        elif data or eof:
            kind = ("send" if side == "client" else "expect") + ("_eof" if eof else "")
            self.pieces.append(Piece(self.step, kind, side, data, eof=eof))

    def exchange(self) -> bool:
        """Move bytes both ways until neither side has more; False if they never stop."""
        peer, server = self.peer, self.server
        for _ in range(EXCHANGES):
            out = peer.take_output() if not peer.final else b""
            if out and not server.eof:
                self._keep("client", out)
                for piece in self._split(out):
                    server.feed(piece)
            back = server.output()
            if back:
                self._keep("server", back)
                peer.receive(back)
            if server.eof and not peer.eof:
                self._keep("server", eof=True)
                peer.receive_eof()
            if not out and not back:
                return True
        return False

    def play(self) -> Result:
        vector, peer = self.vector, self.peer
        if not self.exchange():
            return Result(vector, False, "the connection's start never settled")
        for number, step in enumerate(vector.steps, 1):
            self.step = number
            if step.kind in H2_CLIENT:
                try:
                    peer.perform(step)
                except StepError as exc:
                    return Result(vector, False, f"the client cannot send it: {exc}",
                                  step=number)
                if not self.exchange():
                    return Result(vector, False, "the exchange after this step never "
                                  "settled", step=number)
                if peer.blocked and not peer.final:
                    return Result(vector, False, f"{peer.blocked} bytes of DATA wait for "
                                  "a flow control window the server never opened",
                                  step=number)
            elif step.kind == "pause":
                self.pieces.append(Piece(number, "pause", "", pause=step.seconds))
            elif step.kind == "send_eof":
                self._keep("client", eof=True)
                self.server.feed_eof()
                self.exchange()
            elif step.kind in H2_EXPECTATIONS or step.kind == "expect_eof":
                found = peer.expect(step)
                if not found.done:
                    what = ("expected the server to close the connection"
                            if step.kind == "expect_eof" else
                            f"the server sent nothing more for {_what(step)}")
                    return Result(vector, False, what, step=number)
                if found.problem:
                    return Result(vector, False, found.problem, found.expected[:4096],
                                  found.actual[:4096], step=number)
        if vector.steps[-1].kind != "expect_eof":
            left = peer.leftovers()
            if left:
                return Result(vector, False, f"unexpected {left} after the last expectation",
                              b"", peer.leftover_bytes(), step=len(vector.steps))
        return self._end()

    def _end(self) -> Result:
        vector, server = self.vector, self.server
        if vector.events is not None:
            want = list(zip(vector.event_streams, vector.events, strict=True))
            if server.events != want:
                return Result(vector, False, f"application saw {_short(server.events)}, "
                              f"expected {_short(want)}")
        codes = vector.end.get("close_codes", {})
        for number, code in codes.items():
            stream = server.streams.get(int(number))
            if stream is None:
                return Result(vector, False, f"stream {number} opened no WebSocket, "
                              f"expected close code {code}")
            if stream.close_code is None:
                stream.receive_eof()  # as offline HTTP/1.1: the client goes away
            if stream.close_code != code:
                return Result(vector, False, f"stream {number}: close code "
                              f"{stream.close_code}, expected {code}")
        if "eof" in vector.end and server.eof != vector.end["eof"]:
            return Result(vector, False, f"server closed: {server.eof}, expected "
                          f"{vector.end['eof']}")
        return Result(vector, True)


def _what(step: Step) -> str:
    return ("the connection" if step.kind in ("h2_expect_goaway", "expect_eof")
            else f"stream {step.stream}")


def _short(events: list[tuple[int, str | bytes]]) -> str:
    return repr([(s, e if len(e) <= 40 else f"<{type(e).__name__} of {len(e)}>")
                 for s, e in events])


def check_h2(vector: Vector, *, bytewise: bool = False) -> Result:
    """Run an HTTP/2 vector offline; with ``bytewise`` every byte of the client's goes to
    the server alone."""
    return _Run(vector, bytewise).play()


def h2_pieces(vector: Vector) -> list[Piece]:
    """What each side of an HTTP/2 vector puts on the wire against wscompat, in order,
    consecutive bytes of one side as one piece (its ``step`` is the step that sent or
    caused them; 0 for the connection's start)."""
    run = _Run(vector, bytewise=False)
    run.play()
    return run.pieces
