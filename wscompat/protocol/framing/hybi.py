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
import logging
import sys
from typing import Any

from websockets.exceptions import ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import CLIENT, SERVER, Protocol
from websockets.protocol import State as WsState

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

from wscompat.drafts import Draft
from wscompat.errors import ProtocolViolation
from wscompat.protocol.extensions import CORRUPT_DATA_CODE, CorruptCompressedData
from wscompat.protocol.framing.base import Closed, Event, Framer, Message, Pong, State
from wscompat.protocol.framing.lengths import hybi_header, hybi_header_bytes
from wscompat.protocol.framing.masking import mask_key

__all__ = ["HybiFramer"]

_SILENT = logging.Logger("wscompat.framing.websockets", logging.CRITICAL + 1)
"""Given to websockets' protocol in place of its own logger, which at DEBUG writes every
frame's payload and at INFO a second "connection closed" line without an address: the
I/O layer logs each connection once, and payloads only with ``log_payloads``. Made
outside the logging tree (no ``getLogger``), so no configuration can turn it on."""
_SILENT.disabled = True

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
    """Frames of hybi-07, hybi-08 and RFC 6455, in and out.

    Theory of operation: received bytes are cut into whole frames here, with the one
    length parser of :mod:`.lengths`. The common frame (a single unfragmented text or
    binary frame, masked as the side requires, within the size limits, on a connection
    without extensions) is decoded on the spot: unmasked with websockets' C helper and,
    for text, decoded as UTF-8. Every other frame (control frames, fragments, frames
    with reserved bits, compressed frames, anything malformed) goes whole to the
    ``websockets`` protocol, which applies every rule of RFC 6455 to it. Because the
    protocol only ever receives whole frames, it is always at a frame boundary when the
    fast path takes over again. A frame whose header already breaks a rule (a reserved
    opcode, wrong masking, a length over the limit) is handed over at once, so the
    protocol fails the connection as early as it would on its own.

    Sending is symmetric: a server's data frames are serialized here while the
    connection is open and has no extensions; pings, pongs, closes and compressed or
    masked frames come from the protocol. Both land in one ordered output list.
    """

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
        self._side = CLIENT if client else SERVER
        self._lazy: _Protocol | None = None
        """websockets' protocol, made on first need: a connection that only ever sees
        plain data frames never needs it, and an idle one should not hold it."""
        self._extensions = list(extensions or ())
        self._plain = not extensions
        """No extension transforms frames: the fast path may run."""
        self._serialize = self._plain
        """Data frames we send need no extension: they are written here, not by the
        protocol (masked with a key of :func:`mask_key` on the client side)."""
        self._masks = client
        self._mask_bit = 0 if client else 0x80
        self._max_message = max_message_size
        self._max_frame = max_frame_size
        self._limit = _smaller(max_message_size, max_frame_size)
        self._close_frame: bytes | None = None
        """The peer's close frame, when the fast path answered it (see _fast_close)."""
        self._eof_seen = False
        if extensions:
            self._make_protocol()
        self.eof_wanted = False
        self._buf = bytearray()
        self._pending: list[bytes] = []
        self._missing = 0
        """Bytes a large frame still lacks; they wait in ``_pending`` until it is whole."""
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._parts = bytearray()
        """The fragments of the message being assembled, as one buffer: a list of them
        cost some 40 bytes per fragment, which a flood of empty continuation frames
        would have turned into memory no limit counted."""
        self._decoder: codecs.IncrementalDecoder | None = None
        self._text = False
        self._closed_reported = False

    def _make_protocol(self) -> _Protocol:
        p = self._lazy = _Protocol(self._side, max_size=(self._max_message, self._max_frame),
                                   logger=_SILENT)
        if self._extensions:
            p.extensions = self._extensions
        if self._close_frame is not None:
            # Closed by the fast path: the protocol is brought to the state it would be
            # in had it seen the close itself. What it writes went out already.
            p.receive_data(self._close_frame)
            if self._eof_seen:
                p.receive_eof()
            p.events_received()
            p.data_to_send()
        return p

    @property
    def _p(self) -> _Protocol:
        return self._lazy or self._make_protocol()

    @property
    def state(self) -> State:  # type: ignore[override]
        p = self._lazy
        if p is None:
            if self._close_frame is None:
                return State.OPEN
            return State.CLOSED if self._eof_seen else State.CLOSING
        return _STATE.get(p.state, State.CLOSED)

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._discarding():
            return
        if self._buf and not self._missing:
            need = self._completing(len(data))
            if need is not None:
                # Only the bytes that complete the frame begun in an earlier read are
                # copied; the rest of the read is parsed where it lies. Appending the
                # whole read would copy every byte of it once more (and move the
                # incomplete tail again), which for 64 KiB messages is most of their cost.
                with memoryview(data) as view:
                    self._buf += view[:need]
                self._parse(self._buf, 0)
                if need < len(data) and not self._discarding():
                    self._parse(data, need)
                return
        buf = self._input(data)
        if buf is not None:
            self._parse(buf, 0)

    def receive_into(self, buffer: bytearray, count: int) -> None:
        """Parse ``buffer[:count]`` through a view: everything kept is copied out
        (payloads unmasked into bytes of their own, an incomplete frame into
        ``_buf``), so the buffer may be read into again as soon as this returns."""
        with memoryview(buffer) as whole, whole[:count] as view:
            self.receive_data(view)

    def _discarding(self) -> bool:
        """After a close, input is discarded (RFC 6455 §1.4)."""
        p = self._lazy
        return (p is not None and p.reader.eof) or (p is None and self._close_frame is not None)

    def _completing(self, available: int) -> int | None:
        """The bytes that would complete the frame begun in ``_buf``, if ``available``
        bytes suffice; None when its header is not whole yet or the read falls short."""
        header = hybi_header(self._buf, 0)
        if header is None:
            return None
        need = header[0] + header[1] - len(self._buf)
        return need if 0 < need <= available else None

    def _parse(self, buf: bytes | bytearray | memoryview, pos: int) -> None:
        """Take every whole frame of ``buf`` from ``pos`` on; keep the incomplete rest."""
        size = len(buf)
        while pos < size:
            header = hybi_header(buf, pos)
            first = buf[pos]
            if header is None:
                if size - pos >= 2 and self._fails_early(first, buf[pos + 1], 0):
                    pos = self._hand_over(buf, pos, size)
                break
            head, length = header
            end = pos + head + length
            if end > size:
                if self._fails_early(first, buf[pos + 1], length):
                    pos = self._hand_over(buf, pos, size)
                elif end - size >= GATHER_FROM:
                    self._missing = end - size
                break
            if (
                first in (0x81, 0x82)
                and buf[pos + 1] & 0x80 == self._mask_bit
                and self._plain
                and ((p := self._lazy) is None or (
                    p.current_size is None and p.state is WsState.OPEN))
                and (self._limit is None or length <= self._limit)
            ):
                if end == size and buf is self._buf:  # a gathered frame: freed first
                    self._gathered_message(buf, pos, head, end, first == 0x82)
                    pos = size = 0
                    break
                with memoryview(buf) as view:  # no copy of the masked payload
                    if self._mask_bit:
                        mask = bytes(view[pos + head - 4 : pos + head])
                        payload = apply_mask(view[pos + head : end], mask)
                    else:
                        payload = bytes(view[pos + head : end])
                if first == 0x82:
                    self._events.append(Message(payload))
                    pos = end
                    continue
                try:
                    self._events.append(Message(payload.decode()))
                    pos = end
                    continue
                except UnicodeDecodeError:
                    pass  # the slow path reports it (1007), as for any text frame
            elif (
                first == 0x88
                and self._lazy is None
                and self._side is SERVER
                and self._plain
                and buf[pos + 1] & 0x80 == self._mask_bit
                and length <= 125
                and (self._limit is None or length <= self._limit)
                and self._fast_close(bytes(buf[pos:end]), head)
            ):
                pos = size  # what follows a close is discarded
                break
            pos = self._hand_over(buf, pos, end)
        self._keep(buf, pos)

    def _input(self, data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview | None:
        """The bytes to parse now: ``data`` itself when nothing was left over (parsed
        where it lies, with no copy), else the buffer with ``data`` added; None while a
        large frame is still being gathered."""
        if self._missing:
            # The rest of a large frame: kept as it came, joined once it is whole,
            # rather than grown into the buffer (and copied again) read after read.
            self._pending.append(bytes(data))
            self._missing -= len(data)
            if self._missing > 0:
                return None
            self._join_pending()
            return self._buf
        if self._buf:
            self._buf += data
            return self._buf
        return data

    def _gathered_message(
        self, buf: bytearray, pos: int, head: int, end: int, binary: bool
    ) -> None:
        """A data frame that fills the gathered buffer, as the fast path takes it, but
        with the buffer freed before the text is decoded, so a large message exists at
        most twice at once. Text that is not UTF-8 is remade for the protocol (1007)."""
        with memoryview(buf) as view:
            mask = bytes(view[pos + head - 4 : pos + head]) if self._mask_bit else b""
            if mask:
                payload = apply_mask(view[pos + head : end], mask)
            else:
                payload = bytes(view[pos + head : end])
            frame_head = bytes(view[pos : pos + head])
        buf.clear()
        if binary:
            self._events.append(Message(payload))
            return
        try:
            self._events.append(Message(payload.decode()))
        except UnicodeDecodeError:
            self._p.receive_data(frame_head + (apply_mask(payload, mask) if mask else payload))
            self._drain()

    def _keep(self, buf: bytes | bytearray | memoryview, pos: int) -> None:
        """Keep what follows ``pos`` (an incomplete frame) for the next read."""
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < len(buf):
            with memoryview(buf) as view:
                self._buf += view[pos:]

    def _fast_close(self, frame: bytes, head: int) -> bool:
        """Answer a client's valid close frame without websockets' protocol, exactly as
        it would: echo the payload, send EOF (the server closes TCP first), report the
        close. False, having done nothing, for a close the protocol must judge.

        Every connection ends this way, and making the protocol only to close it was a
        tenth of a short connection's cost. Should anything need the protocol later,
        it is made then and shown the same close frame (see ``_make_protocol``).
        """
        payload = apply_mask(frame[head:], frame[head - 4 : head])
        try:
            close = Close.parse(payload)
        except (ProtocolError, UnicodeDecodeError):
            return False
        self._close_frame = frame
        self._out.append(bytes((0x88, len(payload))) + payload)
        self.eof_wanted = True
        self._closed_reported = True
        self._events.append(Closed(int(close.code), close.reason, True))
        return True

    def _fails_early(self, first: int, second: int, length: int) -> bool:
        """The protocol rejects this frame from its header alone."""
        if first & 0x0F not in _OPCODES or second & 0x80 != self._mask_bit:
            return True
        p = self._lazy
        limit = self._max_message
        if limit is not None and p is not None and p.current_size is not None:
            limit -= p.current_size
        limit = _smaller(limit, self._max_frame)
        return limit is not None and length > limit

    def _hand_over(self, buf: bytes | bytearray | memoryview, pos: int, end: int) -> int:
        """Give ``buf[pos:end]`` (whole frames, or a header the protocol fails on) to
        the protocol; the offset that was consumed."""
        self._p.receive_data(bytes(buf[pos:end]))
        self._drain()
        return end

    def _join_pending(self) -> None:
        self._buf = bytearray().join([self._buf, *self._pending])
        self._pending = []
        self._missing = 0

    def receive_eof(self) -> None:
        if self._lazy is None and self._close_frame is not None:
            self._eof_seen = True  # the closing handshake is complete: nothing to report
            return
        if self._pending:
            self._join_pending()
        p = self._p
        if self._buf and not p.reader.eof:
            # An incomplete frame: the protocol reports the abrupt end (1006) as usual.
            p.receive_data(bytes(self._buf))
            self._buf.clear()
        p.receive_eof()
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
        self._collect()
        self._report_closed()

    def _on_frame(self, frame: Frame) -> None:
        op = frame.opcode
        if op is Opcode.TEXT or op is Opcode.BINARY:
            self._text = op is Opcode.TEXT
            if frame.fin:  # a whole message in one frame (a compressed one, say)
                self._events.append(Message(_decoded(frame.data) if self._text
                                            else bytes(frame.data)))
                return
            if self._text:
                self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
            self._parts = bytearray()
            self._add(frame)
        elif op is Opcode.CONT:
            self._add(frame)
        elif op is Opcode.PONG:
            self._events.append(Pong(bytes(frame.data)))
        # PING is answered by the protocol itself; CLOSE is reported by _report_closed.

    def _add(self, frame: Frame) -> None:
        """One fragment. Text is checked as it comes, so a message fails (1007) at the
        first fragment that can no longer be UTF-8, and decoded once, whole, at the end."""
        if self._decoder is not None:
            try:
                self._decoder.decode(frame.data, frame.fin)
            except UnicodeDecodeError as exc:
                raise ProtocolViolation(f"invalid UTF-8: {exc.reason}", 1007) from None
        self._parts += frame.data
        if frame.fin:
            parts = self._parts
            self._events.append(Message(parts.decode() if self._text else bytes(parts)))
            self._parts, self._decoder = bytearray(), None

    def _report_closed(self) -> None:
        """One Closed event, once the protocol is done: it sent EOF or saw the peer's."""
        p = self._lazy
        if p is None or self._closed_reported or not (p.eof_sent or p.reader.eof):
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

    def _collect(self) -> None:
        """Move what the protocol wrote into the one ordered output list."""
        if self._lazy is None:
            return
        chunks = self._lazy.data_to_send()
        if chunks:
            if chunks[-1] == b"":
                self.eof_wanted = True
                chunks.pop()
            self._out.extend(chunks)

    @property
    def wants_write(self) -> bool:
        return bool(self._out)

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def chunks_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def _add_frame(self, header: bytes, payload: bytes) -> None:
        """A small frame as one piece (one ``write``), a large one as two (one
        ``writev``, the payload never copied)."""
        if len(payload) < SPLIT_FROM:
            self._out.append(header + payload)
        else:
            self._out += (header, payload)

    @property
    def _open(self) -> bool:
        p = self._lazy
        return self._close_frame is None if p is None else p.state is WsState.OPEN

    def send_text(self, text: str) -> None:
        if self._serialize and self._open:
            self._add_data(0x81, text.encode())
            return
        self._p.send_text(text.encode("utf-8"))
        self._collect()

    def send_binary(self, data: bytes) -> None:
        if self._serialize and self._open:
            self._add_data(0x82, data)
            return
        self._p.send_binary(data)
        self._collect()

    def _add_data(self, first: int, payload: bytes) -> None:
        """A whole data frame, masked when we are the client."""
        if self._masks:
            key = mask_key()
            self._add_frame(hybi_header_bytes(first, len(payload), 0x80) + key,
                            apply_mask(payload, key))
        else:
            self._add_frame(hybi_header_bytes(first, len(payload)), payload)

    def send_ping(self, data: bytes) -> None:
        self._p.send_ping(data)
        self._collect()

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self._p.send_close(code, reason)
        self._collect()

    # -- frames relayed as they came ------------------------------------------------------

    def whole_frames(self, data: bytes | bytearray) -> tuple[int, int]:
        """The leading bytes of ``data`` that another connection may send on as they
        came (masked anew, on a client's), and the messages in them: final text or
        binary frames, masked as this side requires, without reserved bits, within the
        size limits, text valid UTF-8, read by an idle framer with no extensions. A
        gateway relays them this way rather than parsing each into a message and
        framing it anew. The first frame that is anything else (a control frame, a
        fragment, an incomplete frame, an error) ends the run: it and what follows are
        parsed as usual."""
        if (not self._plain or self._buf or self._missing or self.eof_wanted
                or self._close_frame is not None):
            return 0, 0
        p = self._lazy
        if p is not None and (p.current_size is not None or p.state is not WsState.OPEN):
            return 0, 0
        limit, mask_bit = self._limit, self._mask_bit
        size = len(data)
        pos = count = 0
        with memoryview(data) as view:
            while pos + 1 < size:
                first = data[pos]
                second = data[pos + 1]
                if first not in (0x81, 0x82) or second & 0x80 != mask_bit:
                    break
                length = second & 0x7F
                if length < 126:  # the common short frame, without a call
                    head = 6 if mask_bit else 2
                else:
                    header = hybi_header(data, pos)
                    if header is None:
                        break
                    head, length = header
                end = pos + head + length
                if end > size or (limit is not None and length > limit):
                    break
                if first == 0x81:
                    text: bytes | memoryview = view[pos + head : end]
                    if mask_bit:
                        text = apply_mask(text, bytes(view[pos + head - 4 : pos + head]))
                    try:
                        codecs.utf_8_decode(text, "strict", True)
                    except UnicodeDecodeError:
                        break  # the usual parse fails it (1007)
                pos = end
                count += 1
        return pos, count

    def pass_frames(self, frames: bytes) -> bool:
        """Queue frames :meth:`whole_frames` took on another connection, to leave as
        they came: unmasked from a server's, or, from a client's, each masked anew with
        a key of this client's own (RFC 6455 §5.3: the key is the sender's to choose).
        False, having done nothing, unless this framer is open, has no extensions and
        is the side that sends frames masked as these are."""
        if not frames or not self._serialize or not self._open:
            return False
        masked = frames[1] & 0x80
        if not self._masks:
            if masked:
                return False
            self._out.append(frames)
            return True
        if not masked:
            return False
        parts: list[bytes] = []
        pos, size = 0, len(frames)
        with memoryview(frames) as view:
            while pos < size:
                length = frames[pos + 1] & 0x7F
                if length < 126:
                    head = 6
                else:
                    header = hybi_header(frames, pos)
                    assert header is not None  # whole frames, as whole_frames() took them
                    head, length = header
                end = pos + head + length
                key = mask_key()
                # The payload is unmasked and masked again in one pass, with the XOR
                # of the two keys.
                both = apply_mask(view[pos + head - 4 : pos + head], key)
                parts += (bytes(view[pos : pos + head - 4]) + key,
                          apply_mask(view[pos + head : end], both))
                pos = end
        if size < SPLIT_FROM:
            self._out.append(b"".join(parts))
        else:
            self._out += parts
        return True

    def abort(self, code: int, reason: str) -> None:
        if self._p.state is WsState.CLOSED or self._p.eof_sent:
            return
        self._p.fail(code, _truncate(reason))
        self._collect()
        self._report_closed()


_OPCODES = frozenset(int(op) for op in Opcode)
SPLIT_FROM = 4096
"""Payloads this long or longer leave as a piece of their own (see ``_add_frame``)."""
GATHER_FROM = 65536
"""A frame still lacking this many bytes or more is gathered in pieces, then joined."""


def _decoded(data: bytes | bytearray | memoryview) -> str:
    try:
        return codecs.utf_8_decode(data, "strict", True)[0]
    except UnicodeDecodeError as exc:
        raise ProtocolViolation(f"invalid UTF-8: {exc.reason}", 1007) from None


def _smaller(a: int | None, b: int | None) -> int | None:
    """The tighter of two optional limits."""
    if a is None:
        return b
    return a if b is None else min(a, b)


def _truncate(reason: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    data = reason.encode()[:123]
    return data.decode("utf-8", "ignore")
