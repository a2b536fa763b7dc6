"""The server side of every opening handshake, as one sans-I/O state machine.

Theory of operation: bytes go in with :meth:`ServerHandshake.receive_data`; the
machine moves through phases and says what to write with :meth:`data_to_send`.

``SNIFF``   the first bytes are classified (TLS, Flash policy, HTTP, garbage)
``HEAD``    the request head is read, within a size and header-count limit
``DECIDE``  the head is complete and valid for its draft; the I/O layer may consult the
            application (origin policy, a custom check, subprotocol choice) and then
            calls :meth:`accept` or :meth:`reject`
``KEY3``    hixie-76 only: waiting for the 8 bytes after the head. In proxy mode the
            101 head is already written, because HTTP proxies hold key3 back until
            they have seen the server's answer
``PLAIN``   a plain ``GET`` or ``HEAD`` (no upgrade) for one of ``plain_paths``: the I/O
            layer answers it with :meth:`respond` (health checks, metrics)
``OPEN``    the handshake succeeded: :attr:`accepted` says how, and its ``leftover``
            bytes belong to the framer
``CLOSE``   write what :meth:`data_to_send` returns, then close the connection
``TLS``     a TLS record arrived; the I/O layer wraps the stream or closes it
``HTTP2``   the HTTP/2 connection preface arrived and ``http2`` is on: the I/O layer
            hands the connection to :mod:`wscompat.protocol.http2`

Every rejection goes through :meth:`reject`, so each error maps to one response here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from websockets.extensions import Extension

from wscompat.drafts import ALL_DRAFTS, Draft
from wscompat.errors import HandshakeRejected
from wscompat.protocol.extensions import CompressionSettings, negotiate
from wscompat.protocol.handshake import hixie75, hixie76, hybi
from wscompat.protocol.handshake.detect import detect, mentions_websocket, version_header
from wscompat.protocol.handshake.location import location, origin_echo, printable
from wscompat.protocol.handshake.origin import check_origin, single_origin
from wscompat.protocol.http import HeadParser, Request, error_response, response
from wscompat.protocol.policy import DEFAULT_POLICY, policy_response
from wscompat.protocol.sniff import Kind, sniff

__all__ = ["PLAIN_PAGE", "Accepted", "HandshakeSettings", "Phase", "ServerHandshake"]


class Phase(enum.Enum):
    SNIFF = "sniff"
    HEAD = "head"
    DECIDE = "decide"
    KEY3 = "key3"
    PLAIN = "plain"
    OPEN = "open"
    CLOSE = "close"
    TLS = "tls"
    HTTP2 = "http2"


@dataclass(frozen=True)
class HandshakeSettings:
    """What the handshake accepts. Every limit here is also a server option."""

    drafts: frozenset[Draft] = ALL_DRAFTS
    max_head_size: int = 16384
    max_headers: int = 100
    sniff_limit: int = 64
    secure: bool = False
    """Say ``wss://`` in hixie locations (TLS here, or at a trusted front proxy)."""
    require_tls: bool = False
    """This connection is plain and must not be: an HTTP request gets 403, anything else
    but a TLS ClientHello is closed unanswered (no policy file, no page)."""
    allow_missing_origin: bool = True
    """Requests without an origin are accepted (hixie answers echo ``null``); else 403."""
    origins: tuple[str, ...] | None = None
    """Allowed origins, exact or with ``*`` wildcards; None allows all."""
    hixie76_early_head: bool = True
    """Write the hixie-76 101 head before key3 when key3 did not come with the head."""
    policy: str = DEFAULT_POLICY
    compression: CompressionSettings | None = None
    """Compression extensions to negotiate on hybi drafts; None negotiates none."""
    http2: bool = False
    """The HTTP/2 connection preface starts an HTTP/2 session (phase HTTP2); off, it is
    read as an HTTP/1.1 request line (and refused)."""
    plain_paths: frozenset[str] = frozenset()
    """Paths (without query) whose plain GET and HEAD requests the I/O layer answers
    itself (phase PLAIN), such as a health check; every other plain request gets 426."""


@dataclass(frozen=True)
class Accepted:
    draft: Draft
    request: Request
    subprotocol: str | None = None
    extensions: str | None = None
    """The ``Sec-WebSocket-Extensions`` value answered, if any."""
    leftover: bytes = field(default=b"", repr=False)
    negotiated: tuple[Extension, ...] = field(default=(), repr=False)
    """The agreed extensions' per-connection objects, for the framer."""


PLAIN_PAGE = (
    "<!doctype html><title>wscompat</title>"
    "<p>This is a WebSocket endpoint served by wscompat. It speaks hixie-75, hixie-76 "
    "(hybi-00), hybi-07, hybi-08, RFC 6455 and RFC 8441 (over HTTP/2); connect with a "
    "WebSocket client.</p>"
)


class ServerHandshake:
    def __init__(self, settings: HandshakeSettings | None = None) -> None:
        self.settings = settings or HandshakeSettings()
        self.phase = Phase.SNIFF
        self.request: Request | None = None
        self.draft: Draft | None = None
        self.accepted: Accepted | None = None
        self.rejection: HandshakeRejected | None = None
        self.kind: Kind | None = None
        self._buffer = b""
        self._out: list[bytes] = []
        self._parser: HeadParser | None = HeadParser(
            max_size=self.settings.max_head_size, max_headers=self.settings.max_headers
        )
        self._pending: tuple[bytes, int, int, Accepted] | None = None
        self._head_sent = False
        self._echo: tuple[str, str] | None = None
        """hixie: the origin and location to echo, checked when the head came."""
        self._keys: tuple[int, int] | None = None
        """hixie-76: the numbers of both keys, read when the head came."""

    # -- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self.phase is Phase.SNIFF:
            self._buffer += data
            self._sniff()
        elif self.phase is Phase.HEAD:
            self._feed_head(data)
        elif self.phase in (Phase.DECIDE, Phase.KEY3):
            self._buffer += data
            if self.phase is Phase.KEY3:
                self._finish_key3()
        # In OPEN, CLOSE and TLS the bytes are not the handshake's to read.

    @property
    def buffered(self) -> bytes:
        """Bytes received and not yet consumed (the sniffed prefix, in phase TLS)."""
        return self._buffer

    def _sniff(self) -> None:
        self.kind = sniff(self._buffer, limit=self.settings.sniff_limit)
        if self.kind is Kind.NEED_MORE:
            return
        if self.settings.require_tls and self.kind is not Kind.TLS:
            self._refuse_plain()
        elif self.kind is Kind.HTTP:
            self.phase = Phase.HEAD
            data, self._buffer = self._buffer, b""
            self._feed_head(data)
        elif self.kind is Kind.POLICY:
            self._out.append(policy_response(self.settings.policy))
            self.phase = Phase.CLOSE
        elif self.kind is Kind.TLS:
            self.phase = Phase.TLS
        elif self.kind is Kind.HTTP2:
            if self.settings.http2:
                self.phase = Phase.HTTP2
            else:  # an HTTP/1.1 server sees a request line it cannot serve
                self.kind = Kind.HTTP
                self.phase = Phase.HEAD
                data, self._buffer = self._buffer, b""
                self._feed_head(data)
        else:
            self.phase = Phase.CLOSE

    def _refuse_plain(self) -> None:
        """Refused on the sniffer's word: no parser ever reads a plain request."""
        self._buffer = b""
        self._parser = None
        if self.kind is Kind.HTTP:
            self.reject(403, "TLS required: connect with wss://")
        else:
            self.phase = Phase.CLOSE

    def _feed_head(self, data: bytes) -> None:
        try:
            assert self._parser is not None
            request = self._parser.feed(data)
            if request is None:
                return
            self.request = request
            self._buffer = self._parser.leftover
            self._parser = None  # its state is no longer needed: free it
            self._on_head(request)
        except HandshakeRejected as exc:
            self.reject(exc.status, exc.reason, exc.headers)

    def _on_head(self, request: Request) -> None:
        drafts = self.settings.drafts
        if (
            self.settings.plain_paths
            and request.method in ("GET", "HEAD")
            and request.target.partition("?")[0] in self.settings.plain_paths
            and not mentions_websocket(request)
        ):
            self.phase = Phase.PLAIN
            return
        draft = detect(request, drafts)
        if draft is None:
            page = error_response(
                426, PLAIN_PAGE,
                (("Upgrade", "websocket"), *version_header(drafts)),
                content_type="text/html; charset=utf-8",
            )
            self._out.append(page)
            self.rejection = HandshakeRejected(426, "not a WebSocket request")
            self.phase = Phase.CLOSE
            return
        self.draft = draft
        if draft in (Draft.HIXIE75, Draft.HIXIE76):
            # The location, origin and subprotocol are echoed in accept(); what cannot
            # be echoed is refused here, where every request error becomes a response.
            where = location(request, secure=self.settings.secure)
            self._echo = (printable(origin_echo(request), "Origin"), where)
            for offered in self.offered_subprotocols:
                printable(offered, "subprotocol")
        if draft is Draft.HIXIE76:
            self._keys = hixie76.parse_keys(request)
        elif draft is not Draft.HIXIE75:
            try:
                hybi.check_key(request)
            except HandshakeRejected as exc:
                raise HandshakeRejected(exc.status, exc.reason, version_header(drafts)) from None
            hybi.offered_subprotocols(request)  # each one a token, or 400
        check_origin(single_origin(request), self.settings)
        self.phase = Phase.DECIDE

    # -- decisions ---------------------------------------------------------------------

    @property
    def offered_subprotocols(self) -> list[str]:
        """What the client asked for: a list on hybi, at most one opaque string on hixie."""
        assert self.request is not None
        if self.draft is Draft.HIXIE75:
            value = hixie75.requested_subprotocol(self.request)
            return [] if value is None else [value]
        if self.draft is Draft.HIXIE76:
            value = hixie76.requested_subprotocol(self.request)
            return [] if value is None else [value]
        return hybi.offered_subprotocols(self.request)

    def respond(
        self, status: int, body: bytes, content_type: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Answer a request of phase PLAIN, then close; a HEAD gets the head alone."""
        if self.phase is not Phase.PLAIN or self.request is None:
            raise RuntimeError(f"respond() in phase {self.phase.value}")
        head = response(status, (
            *headers,
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ))
        self._out.append(head if self.request.method == "HEAD" else head + body)
        self.phase = Phase.CLOSE

    def reject(
        self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """Answer with an HTTP error and close; valid until the 101 head is written."""
        if self.phase in (Phase.OPEN, Phase.CLOSE) or self._head_sent:
            raise RuntimeError("the handshake can no longer be rejected")
        self.rejection = HandshakeRejected(status, reason, headers)
        self._out.append(error_response(status, reason, headers))
        self.phase = Phase.CLOSE

    def accept(self, subprotocol: str | None = None, extensions: str | None = None) -> None:
        """Complete the handshake with the application's choices.

        ``extensions`` is answered as given; without it, compression is negotiated on
        hybi drafts as ``settings.compression`` allows.
        """
        if self.phase is not Phase.DECIDE:
            raise RuntimeError(f"accept() in phase {self.phase.value}")
        assert self.request is not None and self.draft is not None
        offered = self.offered_subprotocols
        if subprotocol is not None and subprotocol not in offered:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered")
        request, draft = self.request, self.draft
        negotiated: tuple[Extension, ...] = ()
        if draft in (Draft.HIXIE75, Draft.HIXIE76):
            if offered and subprotocol is None:
                self.reject(400, f"subprotocol {offered[0]!r} is not supported")
                return
            assert self._echo is not None
            origin, where = self._echo
            module = hixie75 if draft is Draft.HIXIE75 else hixie76
            head = module.response_head(origin, where, subprotocol)
        else:
            if extensions is None and self.settings.compression is not None:
                offers = request.headers.get_all("Sec-WebSocket-Extensions")
                agreement = negotiate(offers, self.settings.compression)
                extensions, negotiated = agreement.header, agreement.extensions
            head = hybi.response_head(hybi.check_key(request), subprotocol, extensions)
        accepted = Accepted(draft, request, subprotocol, extensions, negotiated=negotiated)
        if draft is not Draft.HIXIE76:
            self._out.append(head)
            self._open(accepted, self._buffer)
            return
        assert self._keys is not None
        part1, part2 = self._keys
        self._pending = (head, part1, part2, accepted)
        self.phase = Phase.KEY3
        if len(self._buffer) < hixie76.KEY3_SIZE and self.settings.hixie76_early_head:
            self._out.append(head)
            self._head_sent = True
        self._finish_key3()

    def _finish_key3(self) -> None:
        if len(self._buffer) < hixie76.KEY3_SIZE:
            return
        assert self._pending is not None
        head, part1, part2, accepted = self._pending
        self._pending = None  # an open connection keeps none of it
        key3, rest = self._buffer[: hixie76.KEY3_SIZE], self._buffer[hixie76.KEY3_SIZE :]
        answer = hixie76.answer(part1, part2, key3)
        self._out.append(answer if self._head_sent else head + answer)
        self._open(accepted, rest)

    def _open(self, accepted: Accepted, leftover: bytes) -> None:
        a = accepted  # a direct constructor call: dataclasses.replace costs more
        self.accepted = Accepted(a.draft, a.request, a.subprotocol, a.extensions, leftover,
                                 a.negotiated)
        self._buffer = b""
        self._echo = self._keys = None
        self.phase = Phase.OPEN

    # -- output ------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)
