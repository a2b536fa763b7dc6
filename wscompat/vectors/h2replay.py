"""HTTP/2 vectors played against a running server, over a real socket.

A vector whose ``draft`` is ``rfc8441`` is replayed on a fresh HTTP/2 connection to the
same host and port as every other vector: in cleartext with prior knowledge (the
connection preface first, as ``h2c`` clients such as Node's do), over TLS with ALPN
``h2`` (as a browser does; a server that picks anything else is answered "different").
The client waits for the server's SETTINGS before its first step, as RFC 8441 asks of a
client that sends ``:protocol``; each step then goes out through :class:`.H2Peer`, each
expectation is read until it is decided or ``timeout`` passes, and the window updates
and acknowledgements the client owes go out as the server's bytes arrive.

What replay can bound here as elsewhere: each expectation's wait, the vector's deadline
(``replay`` holds those), and the server's bytes held for expectations not yet met
(``max_answer``). A server that speaks no HTTP/2 (its answer is no frame) is
"different", with the first bytes it sent.
"""

from __future__ import annotations

import functools
import ssl

import trio

from wscompat.vectors.format import H2_CLIENT, H2_EXPECTATIONS, Vector
from wscompat.vectors.h2peer import H2Peer, StepError
from wscompat.vectors.report import Outcome

__all__ = ["ALPN", "open_h2_stream", "play_h2"]

ALPN = ["h2"]


@functools.lru_cache(maxsize=8)
def _alpn_context(context: ssl.SSLContext | None) -> ssl.SSLContext:
    """A client context offering only ``h2``, trusting what ``context`` trusts.

    ALPN is a property of the context, and the same context serves the run's HTTP/1.1
    vectors, which must not be offered HTTP/2: so a new one, with its certificates and
    its checks copied.
    """
    alpn = ssl.create_default_context()
    if context is not None:
        alpn.check_hostname = context.check_hostname
        alpn.verify_mode = context.verify_mode
        certificates = context.get_ca_certs(binary_form=True)
        if certificates:
            alpn.load_verify_locations(cadata=b"".join(certificates))
    alpn.set_alpn_protocols(ALPN)
    return alpn


async def open_h2_stream(host: str, port: int, *, secure: bool = False,
                         ssl_context: ssl.SSLContext | None = None) -> trio.abc.Stream:
    """A connection for an HTTP/2 vector: TCP, then TLS offering ALPN ``h2``."""
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    if secure:
        tls = trio.SSLStream(stream, _alpn_context(ssl_context), server_hostname=host)
        await tls.do_handshake()
        stream = tls
    return stream


class _Fail(Exception):
    """The vector's outcome is decided: ``status`` and what went wrong."""

    def __init__(self, status: str, problem: str, *, step: int = 0, expected: bytes = b"",
                 actual: bytes = b"") -> None:
        super().__init__(problem)
        self.status, self.problem, self.step = status, problem, step
        self.expected, self.actual = expected, actual


class _Wire:
    """The socket and the peer: what the peer writes goes out, what arrives goes in."""

    def __init__(self, stream: trio.abc.Stream, peer: H2Peer, max_answer: int) -> None:
        self.stream = stream
        self.peer = peer
        self.max_answer = max_answer
        self.reset = False
        self.client_eof = False
        self.tls_ended = False
        """The client ended TLS (its close_notify): what the server sends after it is
        not read as HTTP/2 any more."""

    def held(self) -> int:
        """Server bytes arrived and not yet taken by an expectation."""
        return sum(len(value) for items in self.peer.streams.values()
                   for kind, value in items if kind == "data")

    async def flush(self) -> None:
        out = self.peer.take_output()
        if out and not self.client_eof:
            try:
                await self.stream.send_all(out)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.reset = True

    async def receive(self, seconds: float) -> bool:
        """Read once within ``seconds``; False when nothing came in time or nothing more
        can come."""
        peer = self.peer
        if peer.final:
            return False
        with trio.move_on_after(max(seconds, 0.0)):
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data, self.reset = b"", True
            if data and self.tls_ended:
                pass  # the TLS session is over: what follows is not HTTP/2 to read
            elif data:
                peer.receive(data)
                if self.held() > self.max_answer:
                    raise _Fail("different", f"the server sent more than {self.max_answer} "
                                "bytes that no expectation took")
                await self.flush()
            else:
                peer.receive_eof()
            return True
        return False

    async def send_eof(self) -> None:
        """The client's end of TCP (TLS has none: its close_notify, then the rest
        unread, as the HTTP/1.1 replay does)."""
        await self.flush()
        self.client_eof = True
        stream = self.stream
        try:
            if isinstance(stream, trio.SSLStream):
                self.tls_ended = True
                with trio.move_on_after(1.0):
                    self.stream, _ = await stream.unwrap()
            elif isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.reset = True


async def play_h2(vector: Vector, stream: trio.abc.Stream, outcome: Outcome, *,
                  timeout: float, settle: float, max_answer: int) -> trio.abc.Stream:
    """Play an HTTP/2 vector on ``stream`` and fill in ``outcome``; the stream to close
    (TLS may have ended on it)."""
    peer = H2Peer(vector.settings)
    wire = _Wire(stream, peer, max_answer)
    try:
        await _play(vector, wire, outcome, timeout=timeout, settle=settle)
    except _Fail as failed:
        outcome.status, outcome.problem, outcome.step = (failed.status, failed.problem,
                                                         failed.step)
        outcome.expected, outcome.actual = failed.expected[:4096], failed.actual[:4096]
    if wire.reset:
        outcome.notes.append("the server reset the connection")
    return wire.stream


async def _settings(peer: H2Peer, wire: _Wire, timeout: float) -> None:
    """Wait for the server's first SETTINGS, which a client reads before ``:protocol``."""
    deadline = trio.current_time() + timeout
    while not peer.settings_seen:
        if peer.broken:
            raise _Fail("different", peer.broken)
        if not await wire.receive(deadline - trio.current_time()):
            if peer.eof:
                raise _Fail("different", "the server closed the connection without "
                            "answering the HTTP/2 preface")
            raise _Fail("no_answer", f"no HTTP/2 SETTINGS from the server within "
                        f"{timeout:g} s")


async def _play(vector: Vector, wire: _Wire, outcome: Outcome, *, timeout: float,
                settle: float) -> None:
    peer = wire.peer
    stream = wire.stream
    if isinstance(stream, trio.SSLStream) and stream.selected_alpn_protocol() != "h2":
        raise _Fail("different", f"the server chose {stream.selected_alpn_protocol()!r} "
                    "in ALPN, not h2")
    await wire.flush()
    await _settings(peer, wire, timeout)
    if not peer.connect_protocol:
        outcome.notes.append("the server's SETTINGS did not enable the extended CONNECT "
                             "(SETTINGS_ENABLE_CONNECT_PROTOCOL)")
    for number, step in enumerate(vector.steps, 1):
        if step.kind in H2_CLIENT:
            try:
                peer.perform(step)
            except StepError as exc:
                raise _Fail("different", f"the client cannot send it: {exc}",
                            step=number) from None
            await wire.flush()
            deadline = trio.current_time() + timeout
            while peer.blocked and not peer.final:
                if not await wire.receive(deadline - trio.current_time()):
                    raise _Fail("no_answer", f"{peer.blocked} bytes of DATA waited "
                                f"{timeout:g} s for a flow control window", step=number)
        elif step.kind == "send_eof":
            await wire.send_eof()
        elif step.kind == "pause":
            await trio.sleep(step.seconds)
        elif step.kind in H2_EXPECTATIONS or step.kind == "expect_eof":
            await _expect(wire, step.kind, number, vector, timeout=timeout, outcome=outcome)
    if vector.steps[-1].kind != "expect_eof":
        deadline = trio.current_time() + settle
        while await wire.receive(deadline - trio.current_time()):
            pass
        left = peer.leftovers()
        if left:
            raise _Fail("different", f"unexpected {left} after the last expectation",
                        actual=peer.leftover_bytes())
    eof = vector.end.get("eof")
    if eof is True:
        deadline = trio.current_time() + timeout
        while not peer.eof and await wire.receive(deadline - trio.current_time()):
            pass
        if not peer.eof:
            raise _Fail("no_answer", "end: the server did not close the connection")
    elif eof is False and peer.eof:
        raise _Fail("different", "end: the server closed the connection")


async def _expect(wire: _Wire, kind: str, number: int, vector: Vector, *, timeout: float,
                  outcome: Outcome) -> None:
    peer = wire.peer
    step = vector.steps[number - 1]
    if wire.tls_ended and kind != "expect_eof":
        note = ("over TLS, what the server sends after the client's send_eof (its "
                "close_notify) is not read: expectations after it are passed over")
        if note not in outcome.notes:
            outcome.notes.append(note)
        return
    deadline = trio.current_time() + timeout
    while True:
        found = peer.expect(step)
        if found.done:
            break
        if not await wire.receive(deadline - trio.current_time()):
            where = f"stream {step.stream}" if step.stream else "the connection"
            what = ("the server did not close the connection" if kind == "expect_eof" else
                    f"nothing more on {where}")
            raise _Fail("no_answer", f"{kind}: {what} within {timeout:g} s", step=number)
    if found.problem:
        raise _Fail("different", f"{kind}: {found.problem}", step=number,
                    expected=found.expected, actual=found.actual)
