"""How messages cross between a client and its backend leg, and how the pair ends.

Theory of operation. Where both legs are plain sockets (no TLS on either), each side's
reader hands what it parses straight to the other side (``Connection.relay``): no task
between them, no queue, and what one read brought leaves in one write, so a message
costs one task step each way. A backend leg is read by its own reader task, with a
second pinging it when keepalive is on; the handler's task only waits for the pair to
end. Backpressure crosses by itself: a reader whose target holds more than
``write_limit`` unsent bytes stops reading, and its peer's TCP window closes.

Where a leg runs over TLS (whose writes cannot be tried without waiting), two pumps
carry the messages instead: the handler's task runs the client-to-backend pump, a
second task the backend-to-client one. Each pump takes one message and hands it on
before it takes the next: a client that does not read makes ``ws.send`` wait past
``write_limit``, that pump stops taking from the backend's queue, whose reader stops at
``max_queue`` messages or ``max_queue_bytes``; the other way round the same. Either
way every buffer on the way is bounded in bytes.

Whichever pump sees its source end first records who ended (:class:`Ending`) and
cancels the rest; the pair is then closed the way :mod:`~wscompat.gateway.translate`
maps the close across drafts, shielded and within ``close_timeout``, so a server
shutting down still tells the backend (1001) and a failing backend still closes its
one client the way the client's draft closes.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Literal

import trio

from wscompat import logfields
from wscompat.errors import ConnectionClosed
from wscompat.gateway.translate import (
    GOING_AWAY,
    UNSUPPORTED_DATA,
    HixieBinary,
    backend_close,
    client_close,
    decode_stream,
    encode_stream,
    failure,
)
from wscompat.gateway.upstream import StreamLeg, WebSocketLeg
from wscompat.trio.connection import Connection
from wscompat.trio.streams import fmt_remote

__all__ = ["BridgeSettings", "Ending", "bridge"]

logger = logging.getLogger("wscompat.gateway")

STREAM_CHUNK = 65536
"""Bytes read from a byte-stream backend per message sent to the client."""

Who = Literal["client", "backend", "binary", "bad_data"]


@dataclass(frozen=True)
class BridgeSettings:
    hixie_binary: HixieBinary = "error"
    failure_code: int = 1011
    """The close code of a backend failure on RFC 6455 (1011 or 1014)."""
    ping_interval: float | None = 20.0
    """Seconds between keepalive pings to a WebSocket backend; None: no pings."""
    ping_timeout: float = 20.0
    close_timeout: float = 5.0


class Ending:
    """Who ended the pair first; later endings are consequences and are ignored."""

    __slots__ = ("error", "who")

    def __init__(self) -> None:
        self.who: Who | None = None
        self.error = ""

    def set(self, who: Who, error: str = "") -> None:
        if self.who is None:
            self.who, self.error = who, error


async def bridge(ws: Connection, leg: WebSocketLeg | StreamLeg, settings: BridgeSettings) -> None:
    """Carry messages both ways until one side ends, then close both."""
    if isinstance(leg, WebSocketLeg):
        await _websocket_pair(ws, leg, settings)
    else:
        await _stream_pair(ws, leg, settings)


# -- a WebSocket backend ---------------------------------------------------------------


async def _websocket_pair(ws: Connection, leg: WebSocketLeg, settings: BridgeSettings) -> None:
    up = leg.ws
    up.share_flusher(ws)  # the backend leg's bursts leave in one write too
    ending = Ending()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(up.run_reader)
            if settings.ping_interval is not None:
                nursery.start_soon(up.keepalive, settings.ping_interval, settings.ping_timeout)
            ended = trio.Event()
            if _relay(ws, up, settings, ending, ended):
                await ended.wait()
            else:
                nursery.start_soon(_backend_to_client, ws, up, settings, ending,
                                   nursery.cancel_scope)
                await _client_to_backend(ws, up, ending)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            try:
                await _close_websocket_pair(ws, leg, settings, ending)
            finally:
                ws.end_relay()
                up.end_relay()
                await leg.transport.aclose()


def _relay(ws: Connection, up: Connection, settings: BridgeSettings, ending: Ending,
           ended: trio.Event) -> bool:
    """Have each side's reader send what it reads straight to the other side (see
    :meth:`Connection.relay`): no pump task, no queue, one write per read. False where
    a leg is not a plain socket (TLS): the pumps then carry the messages."""
    binary = ws.caps.binary
    policy = settings.hixie_binary

    def end(who: Who) -> None:
        ending.set(who)
        ended.set()

    def to_backend(message: str | bytes) -> None:
        if ending.who is None:
            try:
                up.send_relayed(message)
            except ConnectionClosed:
                end("backend")

    def to_client(message: str | bytes) -> None:
        if ending.who is not None:
            return
        if not binary and type(message) is bytes:
            try:
                text = _binary_for_text_client(ws, message, policy)
            except _BinaryRefused:
                end("binary")
                return
            if text is None:
                return
            message = text
        try:
            ws.send_relayed(message)
        except ConnectionClosed:
            end("client")

    if not (ws.can_relay(up) and up.can_relay(ws)):
        return False
    # A client that takes binary is a hybi or RFC 8441 one: the backend's data frames
    # may reach it as they came, when no extension stands in the way (see relay()).
    up.relay(to_client, ws, lambda: end("backend"), frames=binary)
    ws.relay(to_backend, up, lambda: end("client"), frames=True)
    return True


class _BinaryRefused(Exception):
    """A binary message for a text-only client under ``--hixie-binary error``."""


def _binary_for_text_client(ws: Connection, message: bytes, policy: HixieBinary
                            ) -> str | None:
    """A backend's binary message as a text-only (hixie) client can take it: base64
    text, or None when ``--hixie-binary drop`` drops it; _BinaryRefused for ``error``."""
    if policy == "drop":
        logger.debug("%s %s dropped a binary message for a %s client",
                     fmt_remote(ws.remote), logfields.path(ws.path), ws.draft)
        return None
    if policy == "error":
        raise _BinaryRefused
    return base64.b64encode(message).decode("ascii")


async def _client_to_backend(ws: Connection, up: Connection, ending: Ending) -> None:
    while True:
        try:
            message = await ws.receive()
        except ConnectionClosed:
            ending.set("client")
            return
        try:
            await up.send(message, more=ws.pending > 0)
        except ConnectionClosed:
            ending.set("backend")
            return


async def _backend_to_client(
    ws: Connection, up: Connection, settings: BridgeSettings, ending: Ending,
    scope: trio.CancelScope,
) -> None:
    binary = ws.caps.binary
    policy = settings.hixie_binary
    try:
        while True:
            try:
                message = await up.receive()
            except ConnectionClosed:
                ending.set("backend")
                return
            if not binary and type(message) is bytes:
                try:
                    text = _binary_for_text_client(ws, message, policy)
                except _BinaryRefused:
                    ending.set("binary")
                    return
                if text is None:
                    continue
                message = text
            try:
                await ws.send(message, more=up.pending > 0)
            except ConnectionClosed:
                ending.set("client")
                return
    finally:
        scope.cancel()


async def _close_websocket_pair(
    ws: Connection, leg: WebSocketLeg, settings: BridgeSettings, ending: Ending
) -> None:
    up = leg.ws
    who = ending.who
    if who == "client":
        code, reason = backend_close(ws.draft, ws.close_code, ws.close_reason,
                                     ws.stats.closed_by)
        await up.close(code, reason)
    elif who == "backend":
        code, reason = client_close(ws.draft, up.close_code, up.close_reason,
                                    up.stats.closed_by, failure_code=settings.failure_code)
        if up.stats.closed_by != "peer" or up.close_code == 1006:
            logger.info("%s %s backend %s failed: %s %s", fmt_remote(ws.remote),
                        logfields.path(ws.path), leg.upstream.url, up.close_code,
                        logfields.field(up.close_reason or ""))
        await up.close()
        await ws.close(code, reason)
    elif who == "binary":
        logger.info("%s %s backend sent a binary message to a %s client: closed (see "
                    "--hixie-binary)", fmt_remote(ws.remote), logfields.path(ws.path), ws.draft)
        reason = f"binary message for a {ws.draft} client"
        await up.close(UNSUPPORTED_DATA, reason)
        await ws.close(UNSUPPORTED_DATA, reason)
    else:  # cancelled from outside: the server is shutting down
        await up.close(GOING_AWAY, "gateway shutting down")


# -- a byte-stream backend (tcp://, unix:) ---------------------------------------------


async def _stream_pair(ws: Connection, leg: StreamLeg, settings: BridgeSettings) -> None:
    ending = Ending()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stream_to_client, ws, leg, ending, nursery.cancel_scope)
            await _client_to_stream(ws, leg, ending)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            try:
                await _close_stream_pair(ws, leg, settings, ending)
            finally:
                await leg.aclose()


async def _client_to_stream(ws: Connection, leg: StreamLeg, ending: Ending) -> None:
    stream, mode = leg.stream, leg.mode
    while True:
        try:
            message = await ws.receive()
        except ConnectionClosed:
            ending.set("client")
            return
        try:
            data = decode_stream(message, mode)
        except ValueError as exc:
            ending.set("bad_data", str(exc))
            return
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            ending.set("backend", str(exc.__cause__ or exc))
            return


async def _stream_to_client(
    ws: Connection, leg: StreamLeg, ending: Ending, scope: trio.CancelScope
) -> None:
    stream, mode = leg.stream, leg.mode
    try:
        while True:
            try:
                data = await stream.receive_some(STREAM_CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                ending.set("backend", str(exc.__cause__ or exc))
                return
            if not data:
                ending.set("backend")
                return
            try:
                await ws.send(encode_stream(bytes(data), mode))
            except ConnectionClosed:
                ending.set("client")
                return
    finally:
        scope.cancel()


async def _close_stream_pair(
    ws: Connection, leg: StreamLeg, settings: BridgeSettings, ending: Ending
) -> None:
    who = ending.who
    if who == "backend":
        if ending.error:
            logger.info("%s %s backend %s failed: %s", fmt_remote(ws.remote),
                        logfields.path(ws.path), leg.upstream.url,
                        logfields.field(ending.error))
            await ws.close(failure(ws.draft, settings.failure_code), "backend failed")
        else:
            await ws.close(1000, "backend closed the connection")
    elif who == "bad_data":
        await ws.close(1007, ending.error)
