"""hybi-07, hybi-08 and RFC 6455 framing, over the ``websockets`` sans-I/O Protocol.

Server side by default; ``client=True`` masks what it sends, for wscompat's own client.

``websockets`` brings frame parsing with C-accelerated unmasking, the control-frame
rules, close-code checks and the size limit (1009). This adapter owns what it leaves to
its I/O layers: assembling fragments into messages, and UTF-8 validation that fails a
text message (1007) at the first fragment that can no longer be valid, not at its end.

Negotiated extensions (``wscompat.protocol.extensions``) run inside the protocol's frame
pipeline, so the size limit counts inflated bytes and UTF-8 is checked after inflating.
"""

from __future__ import annotations

import codecs
import sys
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.protocol import CLIENT, SERVER, Protocol
from websockets.protocol import State as WsState

from wscompat.drafts import Draft
from wscompat.errors import ProtocolViolation
from wscompat.protocol.extensions import CORRUPT_DATA_CODE, CorruptCompressedData
from wscompat.protocol.framing.base import Closed, Event, Framer, Message, Pong, State

__all__ = ["HybiFramer"]

class _Protocol(Protocol):
    """``websockets``' protocol, except that a close between fragments is honoured.

    RFC 6455 allows control frames between the fragments of a message (§5.4) and a
    close must be answered (§5.5.1); the unfinished message is simply dropped.
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            self.current_size = None
        super().recv_frame(frame)

    def fail(self, code: int, reason: str = "") -> None:
        """Data that does not inflate closes with 1007, not the library's 1002.

        The parser calls this while handling the extension's exception, so that is where
        the cause is found.
        """
        if isinstance(sys.exception(), CorruptCompressedData):
            code = CORRUPT_DATA_CODE
        super().fail(code, reason)


_STATE = {
    WsState.OPEN: State.OPEN,
    WsState.CLOSING: State.CLOSING,
    WsState.CLOSED: State.CLOSED,
}


class HybiFramer(Framer):
    def __init__(
        self,
        draft: Draft = Draft.RFC6455,
        *,
        max_message_size: int | None = 2**20,
        max_frame_size: int | None = None,
        extensions: list[Any] | None = None,
        client: bool = False,
    ) -> None:
        self.draft = draft
        side = CLIENT if client else SERVER
        self._p = _Protocol(side, max_size=(max_message_size, max_frame_size))
        if extensions:
            self._p.extensions = list(extensions)
        self.eof_wanted = False
        self._events: list[Event] = []
        self._parts: list[bytes] = []
        self._text: list[str] | None = None
        self._decoder: codecs.IncrementalDecoder | None = None
        self._closed_reported = False

    @property
    def state(self) -> State:  # type: ignore[override]
        return _STATE.get(self._p.state, State.CLOSED)

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self._p.reader.eof:
            return
        self._p.receive_data(data)
        self._drain()

    def receive_eof(self) -> None:
        self._p.receive_eof()
        self._drain()

    def _drain(self) -> None:
        for frame in self._p.events_received():
            assert isinstance(frame, Frame)  # an OPEN protocol yields only frames
            try:
                self._on_frame(frame)
            except ProtocolViolation as exc:
                # If websockets already failed the connection on a later frame of the
                # same read, abort() does nothing: the close must still be reported.
                self.abort(exc.code, exc.reason)
                break
        self._report_closed()

    def _on_frame(self, frame: Frame) -> None:
        op = frame.opcode
        if op is Opcode.TEXT or op is Opcode.BINARY:
            if op is Opcode.TEXT:
                self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
                self._text = []
            else:
                self._decoder, self._text = None, None
            self._parts = []
            self._add(frame)
        elif op is Opcode.CONT:
            self._add(frame)
        elif op is Opcode.PONG:
            self._events.append(Pong(bytes(frame.data)))
        # PING is answered by the protocol itself; CLOSE is reported by _report_closed.

    def _add(self, frame: Frame) -> None:
        if self._decoder is not None and self._text is not None:
            try:
                self._text.append(self._decoder.decode(frame.data, frame.fin))
            except UnicodeDecodeError as exc:
                raise ProtocolViolation(f"invalid UTF-8: {exc.reason}", 1007) from None
            if frame.fin:
                self._events.append(Message("".join(self._text)))
                self._text, self._decoder = None, None
        else:
            self._parts.append(bytes(frame.data))
            if frame.fin:
                self._events.append(Message(b"".join(self._parts)))
                self._parts = []

    def _report_closed(self) -> None:
        """One Closed event, once the protocol is done: it sent EOF or saw the peer's."""
        p = self._p
        if self._closed_reported or not (p.eof_sent or p.reader.eof):
            return
        self._closed_reported = True
        if p.close_rcvd is not None and (p.close_sent is None or p.close_rcvd_then_sent):
            self._events.append(Closed(int(p.close_rcvd.code), p.close_rcvd.reason, True))
        elif p.close_sent is not None:
            self._events.append(Closed(int(p.close_sent.code), p.close_sent.reason, False))
        else:
            self._events.append(Closed(1006, "connection lost", True))

    def events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- sending -----------------------------------------------------------------------

    @property
    def wants_write(self) -> bool:
        return bool(self._p.writes)

    def data_to_send(self) -> bytes:
        chunks = self._p.data_to_send()
        if chunks and chunks[-1] == b"":
            self.eof_wanted = True
        return b"".join(chunks)

    def send_text(self, text: str) -> None:
        self._p.send_text(text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        self._p.send_binary(data)

    def send_ping(self, data: bytes) -> None:
        self._p.send_ping(data)

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self._p.send_close(code, reason)

    def abort(self, code: int, reason: str) -> None:
        if self._p.state is WsState.CLOSED or self._p.eof_sent:
            return
        self._p.fail(code, _truncate(reason))
        self._report_closed()


def _truncate(reason: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    data = reason.encode()[:123]
    return data.decode("utf-8", "ignore")
