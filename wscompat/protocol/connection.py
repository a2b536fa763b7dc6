"""One WebSocket connection, sans-I/O, from its first byte to its close.

Theory of operation: a :class:`ServerConnection` is fed every byte the socket gives,
from the first one on. Behind a TCP-mode proxy that sends it (``proxy_protocol``),
a PROXY protocol header comes first: it gives :attr:`proxied`, the client's address,
and a connection without one is closed unanswered. While the handshake runs, bytes go
to the
:class:`~wscompat.protocol.handshake.server.ServerHandshake` (sniff, head, draft
detection, hixie-76's key3); when the head is valid the connection waits in phase
``DECIDE`` for the I/O layer to call :meth:`accept` or :meth:`reject` (the I/O layer
may run an asynchronous ``process_request`` first). Once accepted, the connection
builds the draft's framer from its :class:`ConnectionSettings`, hands it the bytes
that came after the handshake, and from then on every byte goes to the framer.

The I/O layer's loop is the same in every phase: ``receive_data`` (or
``receive_eof``), write :meth:`data_to_send`, close TCP when ``eof_wanted``, and act
on :meth:`events`. The trio server, the trio client and the offline vector checker
all drive this object, so no handshake or framing logic exists anywhere else.

The close state is kept here, once: the first ``Closed`` event sets
:attr:`close_code`, :attr:`close_reason` and :attr:`closed_by`. So is ping
bookkeeping: :meth:`send_ping` records the payload, and a pong answers its own ping
and every ping sent before it (``Pong.acked``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from wscompat.drafts import Draft
from wscompat.errors import ConnectionClosedError, HandshakeRejected, ProtocolViolation
from wscompat.protocol.framing import (
    Closed,
    Event,
    Framer,
    HixieFramer,
    HybiFramer,
    Message,
    Pong,
    State,
)
from wscompat.protocol.handshake import Accepted, HandshakeSettings, ServerHandshake
from wscompat.protocol.handshake import Phase as HandshakePhase
from wscompat.protocol.handshake.client import ClientHandshake, ClientResult
from wscompat.protocol.http import Request, RequestView
from wscompat.protocol.proxy_header import ProxyHeaderError, ProxyHeaderReader
from wscompat.protocol.sniff import Kind

__all__ = [
    "ClientConnection",
    "ConnectionSettings",
    "Established",
    "Phase",
    "ServerConnection",
    "UpgradeRequest",
    "choose_subprotocol",
    "make_framer",
]


@dataclass(frozen=True)
class UpgradeRequest(RequestView):
    """What the application sees of a handshake before deciding on it."""

    request: Request
    draft: Draft
    remote: tuple[str, int] | None
    offered_subprotocols: tuple[str, ...]
    secure: bool = False
    """The request came over TLS (on a port that serves ws:// and wss:// alike)."""

    @property
    def generation(self) -> str:
        """The draft's name, or ``rfc8441`` for an extended CONNECT over HTTP/2."""
        return "rfc8441" if self.request.http_version == "HTTP/2" else self.draft.value


SelectSubprotocol = Callable[[UpgradeRequest, Sequence[str]], "str | None"]


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything a connection needs from the server's options, built once per server.

    ``handshake_secure`` is the same handshake for connections that came over TLS
    (hixie locations then say ``wss://``), so neither is rebuilt per connection.
    """

    handshake: HandshakeSettings = field(default_factory=HandshakeSettings)
    handshake_secure: HandshakeSettings = field(
        default_factory=lambda: HandshakeSettings(secure=True)
    )
    max_message_size: int | None = 2**20
    max_frame_size: int | None = None
    hixie_binary: Literal["error", "base64"] = "error"
    subprotocols: frozenset[str] | None = None
    select_subprotocol: SelectSubprotocol | None = None
    proxy_protocol: bool = False
    """Each plain connection begins with a PROXY protocol header (a TLS connection had
    its own read before the TLS began)."""


class Phase(enum.Enum):
    """Where a connection is, from the I/O layer's point of view."""

    HANDSHAKE = "handshake"
    """Bytes are needed before anything can be decided."""
    DECIDE = "decide"
    """A valid upgrade request: call accept() or reject()."""
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    """The closing handshake is over, or the connection failed."""
    REFUSED = "refused"
    """Answered without an upgrade (an error, the plain page, the policy file, garbage):
    write what is pending, then close."""
    TLS = "tls"
    """A TLS ClientHello arrived: the I/O layer wraps the stream or closes it."""
    PLAIN = "plain"
    """A plain GET or HEAD for one of the settings' ``plain_paths``: call respond()."""
    HTTP2 = "http2"
    """The HTTP/2 connection preface arrived (cleartext, prior knowledge): the I/O layer
    hands the connection, with its ``buffered`` bytes, to an HTTP/2 session."""


_FRAMER_PHASE = {State.OPEN: Phase.OPEN, State.CLOSING: Phase.CLOSING, State.CLOSED: Phase.CLOSED}


def make_framer(
    draft: Draft,
    settings: ConnectionSettings,
    extensions: Sequence[object] = (),
    *,
    client: bool = False,
) -> Framer:
    """The framer for a freshly opened connection of ``draft``: the one place a framer
    is chosen, for servers and clients alike."""
    if draft is Draft.HIXIE75 or draft is Draft.HIXIE76:
        return HixieFramer(
            draft, max_message_size=settings.max_message_size, binary=settings.hixie_binary
        )
    return HybiFramer(
        draft,
        max_message_size=settings.max_message_size,
        max_frame_size=settings.max_frame_size,
        extensions=list(extensions),
        client=client,
    )


def choose_subprotocol(settings: ConnectionSettings, upgrade: UpgradeRequest) -> str | None:
    """The settings' choice: the callback's, else the first one in the client's list
    that ``subprotocols`` contains, else none (HTTP/1.1 and HTTP/2 alike)."""
    offered = upgrade.offered_subprotocols
    if not offered:
        return None
    select = settings.select_subprotocol
    if select is not None:
        chosen = select(upgrade, offered)
        if chosen is not None and chosen not in offered:
            raise ValueError(f"select_subprotocol chose {chosen!r}, which was not offered")
        return chosen
    supported = settings.subprotocols
    if supported is None:
        return None
    return next((p for p in offered if p in supported), None)


class _Open:
    """What the two sides share once the framer runs: sending, events, close state."""

    framer: Framer | None
    draft: Draft | None

    def _init_open(self) -> None:
        self.framer = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_by: str = ""
        """``peer``, ``local`` or ``timeout`` (set by the I/O layer), once closed."""
        self._pings: dict[bytes, None] = {}

    def _open_framer(self, framer: Framer, leftover: bytes) -> None:
        self.framer = framer
        if leftover:  # frames that came with the handshake belong to the framer
            framer.receive_data(leftover)

    def events(self) -> list[Event]:
        """Events since the last call. A Closed event also sets the close state."""
        framer = self.framer
        if framer is None:
            return []
        events = framer.events()
        for index, event in enumerate(events):
            if type(event) is Message:
                continue
            if isinstance(event, Closed):
                self.finish(event.code, event.reason, "peer" if event.by_peer else "local")
            elif isinstance(event, Pong):
                events[index] = Pong(event.data, self._acknowledge(event.data))
        return events

    def finish(self, code: int, reason: str, by: str) -> bool:
        """Record how the connection ended, once; True if this call recorded it."""
        if self.close_code is not None:
            return False
        self.close_code, self.close_reason, self.closed_by = code, reason, by
        self._pings.clear()
        return True

    def _acknowledge(self, data: bytes) -> tuple[bytes, ...]:
        if data not in self._pings:
            return ()
        acked = []
        for payload in list(self._pings):
            del self._pings[payload]
            acked.append(payload)
            if payload == data:
                break
        return tuple(acked)

    # -- sending, once open -------------------------------------------------------------

    def _framer(self) -> Framer:
        if self.framer is None:
            raise ProtocolViolation("the connection is not open")
        return self.framer

    @property
    def state(self) -> State:
        return State.OPEN if self.framer is None else self.framer.state

    def send_text(self, text: str) -> None:
        self._framer().send_text(text)

    def send_binary(self, data: bytes) -> None:
        self._framer().send_binary(data)

    def send_ping(self, data: bytes) -> None:
        """Send a ping (UnsupportedByDraft on hixie); ValueError if one with the same
        payload is still waiting for its pong."""
        if len(data) > 125:
            raise ValueError("a ping carries at most 125 bytes")
        if data in self._pings:
            raise ValueError("a ping with this payload is already waiting for its pong")
        if self.close_code is not None or self.state is not State.OPEN:
            # No pong can come once the close has begun: a ping now would wait forever.
            raise ConnectionClosedError(1006, "connection is closing")
        self._framer().send_ping(data)
        self._pings[data] = None

    def ping_pending(self, data: bytes) -> bool:
        return data in self._pings

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Start the draft's closing handshake (hixie-75: ask for TCP to be closed)."""
        self._framer().send_close(code, reason)

    def abort(self, code: int, reason: str) -> None:
        if self.framer is not None:
            self.framer.abort(code, reason)

    def whole_frames(self, data: bytes | bytearray) -> tuple[int, int]:
        """See :meth:`Framer.whole_frames`: (0, 0) before the connection is open."""
        framer = self.framer
        return (0, 0) if framer is None else framer.whole_frames(data)

    def pass_frames(self, frames: bytes) -> bool:
        """See :meth:`Framer.pass_frames`: False once the close has begun."""
        framer = self.framer
        return framer is not None and self.close_code is None and framer.pass_frames(frames)


class Established(_Open):
    """A connection whose handshake happened elsewhere: a framer with the same close
    state and ping bookkeeping as the others (tests use it; so can a transport that
    negotiates the upgrade itself)."""

    def __init__(self, framer: Framer) -> None:
        self._init_open()
        self.draft = framer.draft
        self.framer = framer

    @property
    def phase(self) -> Phase:
        assert self.framer is not None
        return _FRAMER_PHASE[self.framer.state]

    @property
    def eof_wanted(self) -> bool:
        assert self.framer is not None
        return self.framer.eof_wanted

    @property
    def wants_write(self) -> bool:
        assert self.framer is not None
        return self.framer.wants_write

    def receive_data(self, data: bytes | bytearray) -> None:
        self._framer().receive_data(data)

    def receive_eof(self) -> None:
        self._framer().receive_eof()

    def data_to_send(self) -> bytes:
        return self._framer().data_to_send()

    def chunks_to_send(self) -> list[bytes]:
        return self._framer().chunks_to_send()


class ServerConnection(_Open):
    """The server side of one connection: handshake, then frames."""

    def __init__(self, settings: ConnectionSettings, *, secure: bool = False) -> None:
        self.settings = settings
        self.secure = secure
        self.handshake = ServerHandshake(
            settings.handshake_secure if secure else settings.handshake
        )
        self.accepted: Accepted | None = None
        self._head = b""
        """The end of the handshake (the 101, hixie-76's answer), written before frames."""
        self._proxy_header: ProxyHeaderReader | None = (
            ProxyHeaderReader() if settings.proxy_protocol and not secure else None)
        """While a PROXY protocol header is awaited: what reads it."""
        self.proxied: tuple[str, int] | None = None
        """The client's address, as the PROXY protocol header gave it."""
        self.proxy_error: str | None = None
        """Why the connection was closed unanswered: no valid PROXY protocol header."""
        self._init_open()

    # -- what the I/O layer asks --------------------------------------------------------

    @property
    def phase(self) -> Phase:
        framer = self.framer
        if framer is not None:
            return _FRAMER_PHASE[framer.state]
        hs = self.handshake.phase
        if hs is HandshakePhase.DECIDE:
            return Phase.DECIDE
        if hs is HandshakePhase.CLOSE:
            return Phase.REFUSED
        if hs is HandshakePhase.TLS:
            return Phase.TLS
        if hs is HandshakePhase.PLAIN:
            return Phase.PLAIN
        if hs is HandshakePhase.HTTP2:
            return Phase.HTTP2
        return Phase.HANDSHAKE

    @property
    def draft(self) -> Draft | None:  # type: ignore[override]
        return self.handshake.draft

    @property
    def request(self) -> Request | None:
        return self.handshake.request

    @property
    def kind(self) -> Kind | None:
        """What the sniffer saw (None before it decided)."""
        return self.handshake.kind

    @property
    def rejection(self) -> HandshakeRejected | None:
        return self.handshake.rejection

    @property
    def buffered(self) -> bytes:
        """In phase TLS or HTTP2: the bytes read so far, for the next layer to read."""
        return self.handshake.buffered

    @property
    def eof_wanted(self) -> bool:
        """Once what :meth:`data_to_send` returns is written, TCP should be closed."""
        if self.framer is not None:
            return self.framer.eof_wanted
        return self.handshake.phase is HandshakePhase.CLOSE

    # -- bytes in and out ---------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        framer = self.framer
        if framer is not None:
            framer.receive_data(data)
            return
        if self._proxy_header is not None:
            data = self._after_proxy_header(data)
            if not data:
                return
        self.handshake.receive_data(bytes(data))
        self._maybe_open()

    def _after_proxy_header(self, data: bytes | bytearray) -> bytes:
        """Take the PROXY protocol header from the front of the input: the bytes that
        follow it, once it is whole (empty while it is not, or when the connection
        begins otherwise, which closes it with nothing to say)."""
        reader = self._proxy_header
        assert reader is not None
        try:
            rest = reader.feed(bytes(data))
        except ProxyHeaderError as exc:
            self._proxy_header = None
            self.proxy_error = str(exc)
            self.handshake.phase = HandshakePhase.CLOSE
            return b""
        if rest is None:
            return b""
        self._proxy_header = None
        self.proxied = reader.header.source if reader.header else None
        return rest

    def receive_eof(self) -> None:
        if self.framer is not None:
            self.framer.receive_eof()
        elif self.close_code is None:
            self.finish(1006, "connection closed during the handshake", "peer")

    def data_to_send(self) -> bytes:
        if self.framer is None:
            return self.handshake.data_to_send()
        head = self._head
        if head:  # the end of the handshake leaves before any frame
            self._head = b""
            return head + self.framer.data_to_send()
        return self.framer.data_to_send()

    def chunks_to_send(self) -> list[bytes]:
        """:meth:`data_to_send` as pieces, for a vectored write."""
        if self.framer is None or self._head:
            data = self.data_to_send()
            return [data] if data else []
        return self.framer.chunks_to_send()

    @property
    def wants_write(self) -> bool:
        return self.framer is None or bool(self._head) or self.framer.wants_write

    # -- decisions ----------------------------------------------------------------------

    def http2_negotiated(self) -> None:
        """TLS's ALPN chose ``h2``: the connection is HTTP/2 from its first byte (phase
        HTTP2, nothing buffered)."""
        if self.handshake.phase is not HandshakePhase.SNIFF or self.handshake.buffered:
            raise RuntimeError("ALPN is decided before any byte is read")
        self.handshake.phase = HandshakePhase.HTTP2

    def upgrade_request(self, remote: tuple[str, int] | None = None) -> UpgradeRequest:
        """The request being decided on, for ``process_request`` and subprotocol choice."""
        hs = self.handshake
        if hs.request is None or hs.draft is None:
            raise RuntimeError("no request to decide on")
        return UpgradeRequest(hs.request, hs.draft, remote, tuple(hs.offered_subprotocols),
                              self.secure)

    def choose_subprotocol(self, upgrade: UpgradeRequest) -> str | None:
        return choose_subprotocol(self.settings, upgrade)

    def accept(self, subprotocol: str | None = None) -> None:
        """Answer the upgrade; hixie-76 still needs key3 if it has not come yet."""
        self.handshake.accept(subprotocol)
        self._maybe_open()

    def reject(
        self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.handshake.reject(status, reason, headers)

    def respond(
        self, status: int, body: bytes, content_type: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Answer a request of phase PLAIN (a HEAD gets the head alone), then close."""
        self.handshake.respond(status, body, content_type, headers)

    def answer_health(self, *, serving: bool) -> None:
        """Answer a health check (phase PLAIN): 200 while serving, 503 with Retry-After
        while the server shuts down, so that a load balancer takes it out."""
        if serving:
            self.respond(200, b"ok\n", "text/plain; charset=utf-8")
        else:
            self.respond(503, b"shutting down\n", "text/plain; charset=utf-8",
                         (("Retry-After", "5"),))

    def _maybe_open(self) -> None:
        hs = self.handshake
        if hs.phase is not HandshakePhase.OPEN or self.framer is not None:
            return
        accepted = hs.accepted
        assert accepted is not None
        self.accepted = accepted
        if hs.request is not None:
            hs.request.headers.compact()
        framer = make_framer(accepted.draft, self.settings, accepted.negotiated)
        self._head = hs.data_to_send()
        self._open_framer(framer, accepted.leftover)


class ClientConnection(_Open):
    """The client side: writes a generation's request, checks the answer, then frames."""

    def __init__(self, handshake: ClientHandshake, settings: ConnectionSettings) -> None:
        self.handshake = handshake
        self.settings = settings
        self.draft = handshake.draft
        self.result: ClientResult | None = None
        self._init_open()

    def request(self) -> bytes:
        """The request bytes to write first."""
        return self.handshake.request()

    @property
    def phase(self) -> Phase:
        if self.framer is None:
            return Phase.HANDSHAKE
        return _FRAMER_PHASE[self.framer.state]

    @property
    def eof_wanted(self) -> bool:
        return self.framer is not None and self.framer.eof_wanted

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes; HandshakeRejected while the answer is refused or wrong."""
        if self.framer is not None:
            self.framer.receive_data(data)
            return
        result = self.handshake.receive_data(bytes(data))
        if result is None:
            return
        self.result = result
        framer = make_framer(self.handshake.draft, self.settings, result.extensions, client=True)
        self._open_framer(framer, result.leftover)

    def receive_eof(self) -> None:
        if self.framer is None:
            raise HandshakeRejected(0, "connection closed during the handshake")
        self.framer.receive_eof()

    def data_to_send(self) -> bytes:
        return b"" if self.framer is None else self.framer.data_to_send()

    def chunks_to_send(self) -> list[bytes]:
        return [] if self.framer is None else self.framer.chunks_to_send()

    @property
    def wants_write(self) -> bool:
        return self.framer is not None and self.framer.wants_write
