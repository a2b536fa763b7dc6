"""``wscompat probe --http2 URL``: what a server does with WebSocket over HTTP/2.

The same kind of probe as :mod:`.probe`, each question on an HTTP/2 connection of its
own (TLS with ALPN ``h2`` for ``wss://``, prior knowledge for ``ws://``):

* the connection itself: whether the server speaks HTTP/2 there, its SETTINGS, and
  whether they enable the extended CONNECT (``SETTINGS_ENABLE_CONNECT_PROTOCOL = 1``);
* RFC 8441: an extended CONNECT as Chrome and Firefox send it, then the WebSocket's
  close, and how the stream ends after it (END_STREAM, as an orderly TCP close, or a
  reset);
* one WebSocket per compression extension offered alone, and one offering two
  subprotocols;
* refusals: an unknown ``sec-websocket-version``, a CONNECT without ``:protocol``, and
  a plain GET;
* two WebSockets open at once on one connection.

The report has the form :func:`~wscompat.tools.probe.render` shows, with an ``http2``
and a ``streams`` answer instead of the policy file and TLS questions.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from http import HTTPStatus

import trio

from wscompat.conformance.wire import FrameParser
from wscompat.conformance.wire import ProtocolError as WireError
from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected, ProtocolViolation
from wscompat.protocol.connection import ConnectionSettings, Established, make_framer
from wscompat.tools.client import COMPRESSION_NAMES, extension_factories
from wscompat.tools.common import connect_stream, printable
from wscompat.tools.probe import (
    BODY_LIMIT,
    ECHO_FIELDS,
    PROBE_SUBPROTOCOLS,
    UNKNOWN_VERSION,
    ProbeSettings,
    Question,
    Record,
    _Unanswered,
    ask_all,
)
from wscompat.trio.http2_client import (
    H2Client,
    H2WebSocketStream,
    alpn_context,
    authority_for,
    h2_session,
)

__all__ = ["DRAFT", "probe_http2"]

DRAFT = "rfc8441"
"""The name of the generation in the report's ``drafts``."""
RECEIVE_SIZE = 65536
CLOSE_OPCODE = 0x8


async def probe_http2(settings: ProbeSettings) -> Record:
    """Ask every HTTP/2 question; the report (see the module's docstring)."""
    asked = _H2Questions(settings)
    questions: dict[tuple[str, str], Question] = {
        ("http2", ""): asked.connection,
        ("drafts", DRAFT): asked.websocket,
    }
    for name in COMPRESSION_NAMES:
        questions["compression", name] = partial(asked.compression, name)
    questions["subprotocol", ""] = asked.subprotocol
    questions["refusals", "unknown-version"] = asked.unknown_version
    questions["refusals", "no-protocol"] = asked.no_protocol
    questions["refusals", "plain-get"] = asked.plain_get
    questions["streams", ""] = asked.streams
    return await ask_all(settings, questions)


class _H2Questions:
    """The questions, each on an HTTP/2 connection of its own."""

    def __init__(self, settings: ProbeSettings) -> None:
        self.settings = settings
        self.target = target = settings.target
        self.context = alpn_context(settings.ssl_context) if target.secure else None
        self.authority = authority_for(target.host, target.port, secure=target.secure)

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[H2Client]:
        """An HTTP/2 connection; _Unanswered when the server does not speak HTTP/2 (or
        the connection ended before an answer)."""
        t = self.target
        stream = await connect_stream(t, self.context)
        try:
            async with h2_session(stream, host=t.host, port=t.port) as client:
                yield client
        except HandshakeRejected as exc:
            raise _Unanswered(printable(exc.reason)) from None

    async def _open(self, client: H2Client, record: Record, *,
                    subprotocols: Sequence[str] = (),
                    compression: Sequence[str] = ()) -> H2WebSocketStream | None:
        """An extended CONNECT; the open stream, or None with the refusal recorded."""
        try:
            io = await client.open_websocket(
                self.target.resource, authority=self.authority, origin=self.settings.origin,
                subprotocols=subprotocols, extensions=extension_factories(compression))
        except HandshakeRejected as exc:
            if exc.status == 0:
                raise
            record.update(_rejected_evidence(exc))
            record.update(supported=False,
                          error=f"{exc.status} answer not valid: {printable(exc.reason)}"
                          if 200 <= exc.status < 300 else "refused")
            return None
        record.update(_evidence(io.status, list(io.response_headers), b""))
        record.update(supported=True, subprotocol=io.subprotocol,
                      extensions=io.extensions_header)
        return io

    # -- the connection and the generation ----------------------------------------------

    async def connection(self, record: Record) -> None:
        async with self._client() as client:
            record.update(supported=True,
                          how="TLS, ALPN h2" if client.secure else "prior knowledge",
                          settings=dict(client.session.remote_settings),
                          extended_connect=client.extended_connect)

    async def websocket(self, record: Record) -> None:
        async with self._client() as client:
            io = await self._open(client, record)
            if io is None:
                return
            record["closing"] = "not answered"
            record["stream_end"] = "not seen within the timeout"
            await self._close(io, record)

    async def _close(self, io: H2WebSocketStream, record: Record) -> None:
        """The WebSocket's close, started by us, then how the server ends the stream."""
        proto = Established(make_framer(Draft.RFC6455, ConnectionSettings(), io.extensions,
                                        client=True))
        proto.send_close(1000, "probe done")
        await io.send_all(proto.data_to_send())
        ending = "END_STREAM"
        frames = FrameParser()
        """Sees the server's close frame as it comes: ``proto`` reports the close only
        once the stream has ended, which a server may never do."""
        while True:
            try:
                data = await io.receive_some(RECEIVE_SIZE)
            except trio.BrokenResourceError as exc:
                ending, data = f"reset: {printable(str(exc))}", b""
            try:
                if data:
                    frames.feed(data)
                    while (frame := frames.next()) is not None:
                        if frame.opcode == CLOSE_OPCODE:
                            record["closing"] = "answered"
                    proto.receive_data(data)
                elif proto.close_code is None:
                    proto.receive_eof()
            except (ProtocolViolation, WireError) as exc:
                reason = exc.reason if isinstance(exc, ProtocolViolation) else str(exc)
                record["closing"] = f"broke the protocol: {printable(reason)}"
                return
            proto.events()
            if proto.close_code not in (None, 1006):
                record["closing"] = "answered"
            if not data:
                break
        record["stream_end"] = ending
        if ending == "END_STREAM":
            await io.send_eof()  # closed both ways, as the server asked

    # -- extensions and subprotocols -----------------------------------------------------

    async def compression(self, name: str, record: Record) -> None:
        async with self._client() as client:
            io = await self._open(client, record, compression=(name,))
        if io is not None and not record["extensions"]:
            record.update(supported=False,
                          error="not accepted (200 without sec-websocket-extensions)")

    async def subprotocol(self, record: Record) -> None:
        record["offered"] = list(PROBE_SUBPROTOCOLS)
        async with self._client() as client:
            io = await self._open(client, record, subprotocols=PROBE_SUBPROTOCOLS)
        if io is not None and not record["subprotocol"]:
            record.update(supported=False,
                          error="none echoed (200 without sec-websocket-protocol)")

    # -- refusals ------------------------------------------------------------------------

    async def unknown_version(self, record: Record) -> None:
        record["sent"] = f"sec-websocket-version: {UNKNOWN_VERSION}"
        fields = [*self._connect_head()[:-1], ("sec-websocket-version", str(UNKNOWN_VERSION))]
        if self.settings.origin is not None:
            fields.append(("origin", self.settings.origin))
        await self._ask(fields, record, end_stream=False)

    async def no_protocol(self, record: Record) -> None:
        record["sent"] = "CONNECT without :protocol"
        await self._ask([(":method", "CONNECT"), (":authority", self.authority)], record,
                        end_stream=False)

    async def plain_get(self, record: Record) -> None:
        record["sent"] = "GET"
        await self._ask([(":method", "GET"), (":scheme", self._scheme()),
                         (":path", self.target.resource), (":authority", self.authority),
                         ("accept", "text/html")], record)

    def _scheme(self) -> str:
        return "https" if self.target.secure else "http"

    def _connect_head(self) -> list[tuple[str, str]]:
        return [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", self._scheme()),
                (":path", self.target.resource), (":authority", self.authority),
                ("sec-websocket-version", "13")]

    async def _ask(self, fields: list[tuple[str, str]], record: Record, *,
                   end_stream: bool = True) -> None:
        """Send a request head: its answer's status and the versions it lists.
        ``supported`` means that an HTTP answer came."""
        async with self._client() as client:
            stream = await client.ask(fields, end_stream=end_stream)
        if stream.status is None:
            raise _Unanswered(printable(stream.refusal().reason))
        body = bytes(stream.body or stream.inbox)
        record.update(_evidence(stream.status, list(stream.response_headers), body))
        versions: list[int] = []
        for value in stream.response_headers.get_all("sec-websocket-version"):
            versions += [int(v) for v in re.findall(r"\d+", value)]
        record.update(supported=True, versions=versions)

    # -- many WebSockets on one connection -----------------------------------------------

    async def streams(self, record: Record) -> None:
        async with self._client() as client:
            record["max_concurrent_streams"] = client.session.remote_settings.get(
                "MAX_CONCURRENT_STREAMS")
            opened: list[H2WebSocketStream] = []
            for _ in range(2):
                io = await self._open(client, record)
                if io is None:
                    return
                opened.append(io)
            record.update(supported=True, stream_ids=[io.stream_id for io in opened])


def _evidence(status: int, fields: list[tuple[str, str]], body: bytes) -> Record:
    """An answer's status, its header fields, those that answer the request, and the
    start of a refusal's body; in the form :func:`~.probe._head_evidence` gives."""
    shown = [(printable(name, 100), printable(value, 300)) for name, value in fields]
    return {
        "status": status,
        "status_line": _status_line(status),
        "headers": [f"{name}: {value}" for name, value in shown],
        "echoed": {name: value for name, value in shown if name.lower() in ECHO_FIELDS},
        "body": printable(body.decode("utf-8", "replace"), BODY_LIMIT) if body and not (
            200 <= status < 300) else None,
    }


def _rejected_evidence(exc: HandshakeRejected) -> Record:
    return _evidence(exc.status, list(exc.headers), exc.reason.encode())


def _status_line(status: int) -> str:
    """``HTTP/2 403 Forbidden``: HTTP/2 has no reason phrase, the table shows the
    standard one."""
    try:
        return f"HTTP/2 {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP/2 {status}"

