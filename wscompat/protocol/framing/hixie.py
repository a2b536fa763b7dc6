"""hixie-75 and hixie-76 (hybi-00) framing.

Frames are told apart by their first byte. High bit clear: a sentinel frame running to
the next 0xFF, UTF-8 text when the type is 0x00 and discarded otherwise. High bit set:
a length in 7-bit groups, then that many bytes, discarded; on hixie-76, type 0xFF with
length 0 is the closing handshake. There is no binary message, no ping and no close
code. Sentinel frames have no length, so the bytes buffered before the 0xFF are capped.
"""

from __future__ import annotations

import base64
import codecs
from typing import Literal

from wscompat.drafts import Draft
from wscompat.errors import MessageTooBig, ProtocolViolation, UnsupportedByDraft
from wscompat.protocol.framing.base import Closed, Event, Framer, Message, State

__all__ = ["CLOSE_FRAME", "HixieFramer"]

CLOSE_FRAME = b"\xff\x00"
BinaryPolicy = Literal["error", "base64"]


class HixieFramer(Framer):
    def __init__(
        self,
        draft: Draft = Draft.HIXIE76,
        *,
        max_message_size: int | None = 2**20,
        binary: BinaryPolicy = "error",
    ) -> None:
        if draft not in (Draft.HIXIE75, Draft.HIXIE76):
            raise ValueError(f"{draft} is not a hixie draft")
        self.draft = draft
        self.state = State.OPEN
        self.eof_wanted = False
        self._max = max_message_size
        self._binary = binary
        self._buf = bytearray()
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._close_sent = False
        self._closing = (1000, "")
        self._reset_frame()

    def _reset_frame(self) -> None:
        """State of a sentinel frame that did not end in the read it began in.

        Such a frame never waits in the buffer: each read's share of it is scanned for
        the end byte and, for text, decoded at once into ``_parts``, so a large message
        costs one decode and one join, with no buffer growing (and copied on every
        growth) to its size. ``_carry`` holds an incomplete UTF-8 sequence (at most
        three bytes) until the next read; ``_size`` counts the frame's bytes so far.
        """
        self._frame: int | None = None
        self._size = 0
        self._parts: list[str] = []
        self._carry = b""

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        self._receive(data, len(data))

    def receive_into(self, buffer: bytearray, count: int) -> None:
        """Parse ``buffer[:count]`` where it lies: the I/O layer's shared read buffer,
        searched for end bytes within ``count`` (a memoryview has no ``find``). What
        is kept (decoded text, an incomplete tail) is copied out, so the buffer may be
        read into again as soon as this returns."""
        self._receive(buffer, count)

    def _receive(self, data: bytes | bytearray, stop: int) -> None:
        """Parse ``data[:stop]``; every search and length below is bounded by ``stop``."""
        if self.state is State.CLOSED or self.eof_wanted:
            return
        try:
            start = 0
            if self._frame is not None:
                start = self._continue_frame(data, 0, stop)
                if start < 0:
                    return
            buf = self._buf
            if buf:  # an incomplete frame from an earlier read: the read joins it
                with memoryview(data) as view:
                    buf += view[start:stop]
                src: bytes | bytearray = buf
                pos, stop = 0, len(buf)
            else:  # parsed where it lies: only an incomplete tail is ever copied
                src, pos = data, start
            while pos < stop and not self.eof_wanted:
                end = self._parse_one(src, pos, stop)
                if end < 0:
                    break
                pos = end
        except ProtocolViolation as exc:
            self.abort(exc.code, exc.reason)
            return
        if self.eof_wanted:
            return  # a close has already emptied the buffer
        if src is buf:
            del buf[:pos]
        elif pos < stop:
            with memoryview(src) as view:
                buf += view[pos:stop]

    def _parse_one(self, src: bytes | bytearray, pos: int, stop: int) -> int:
        """Consume the frame starting at ``src[pos]``: the offset past it (``stop``
        when a sentinel frame goes on in the next read), or -1 when a length-prefixed
        frame needs more bytes."""
        frame_type = src[pos]
        if frame_type & 0x80 == 0:
            return self._sentinel(src, frame_type, pos, stop)
        return self._length_prefixed(src, frame_type, pos, stop)

    def _sentinel(self, src: bytes | bytearray, frame_type: int, pos: int, stop: int) -> int:
        end = src.find(0xFF, pos + 1, stop)
        if end >= 0 and (self._max is None or end - pos - 1 <= self._max):
            if frame_type == 0x00 and self.state is State.OPEN:
                with memoryview(src) as view:
                    self._decode(view[pos + 1 : end], final=True)
                self._deliver()
            return end + 1
        # Not complete in this read (or over the limit): the frame goes on piece by
        # piece, and none of its bytes stay in the buffer.
        self._frame = frame_type
        self._continue_frame(src, pos + 1, stop)  # -1 here: over the limit has raised
        return stop

    def _continue_frame(self, data: bytes | bytearray, start: int, stop: int) -> int:
        """Take the current sentinel frame's share of ``data[start:stop]``: the offset
        past its end byte, or -1 when it goes on in the next read."""
        end = data.find(0xFF, start, stop)
        last = stop if end < 0 else end
        size = self._size + last - start
        over = self._max is not None and size > self._max
        text = self._frame == 0x00 and self.state is State.OPEN
        if text:
            # The bytes before the limit are checked before the limit is, so that an
            # invalid byte there fails the frame (1007) however the input was split.
            upto = start + (self._max - self._size) if self._max is not None and over else last
            with memoryview(data) as view:
                self._decode(view[start:upto], final=end >= 0 and not over)
        if over:
            if end < 0:
                raise MessageTooBig(f"frame exceeds {self._max} bytes without an end byte")
            raise MessageTooBig(f"message exceeds {self._max} bytes")
        if end < 0:
            self._size = size
            return -1
        if text:
            self._deliver()
        self._reset_frame()
        return end + 1

    def _decode(self, piece: memoryview, *, final: bool) -> None:
        """Decode ``piece`` into the frame's text; the frame fails (1007) as soon as its
        bytes can no longer be UTF-8. Decoded from the caller's buffer, not a copy; the
        view is released before an error leaves, as a view kept alive by the error
        would keep the buffer from being resized."""
        with piece:
            try:
                if self._carry:  # a character cut between two reads: a small copy
                    joined = self._carry + piece
                    text, used = codecs.utf_8_decode(joined, "strict", final)
                    self._carry = joined[used:]
                else:
                    text, used = codecs.utf_8_decode(piece, "strict", final)
                    self._carry = bytes(piece[used:])
            except UnicodeDecodeError as exc:
                reason = exc.reason
            else:
                self._parts.append(text)
                return
        raise ProtocolViolation(f"invalid UTF-8: {reason}", 1007)

    def _deliver(self) -> None:
        parts = self._parts
        self._events.append(Message(parts[0] if len(parts) == 1 else "".join(parts)))
        self._parts = []

    def _length_prefixed(
        self, buf: bytes | bytearray, frame_type: int, pos: int, stop: int
    ) -> int:
        length = 0
        index = pos + 1
        while True:
            if index >= stop:
                return -1
            b = buf[index]
            index += 1
            length = length * 128 + (b & 0x7F)
            if self._max is not None and length > self._max:
                raise MessageTooBig(f"frame length exceeds {self._max} bytes")
            if not b & 0x80:
                break
        if frame_type == 0xFF and length == 0 and self.draft is Draft.HIXIE76:
            self._on_close_frame()
            return index
        if stop < index + length:
            return -1
        return index + length  # the drafts define no data in these frames

    def _on_close_frame(self) -> None:
        if self._close_sent:
            code, reason = self._closing
            self._finish(code, reason, by_peer=False)
        else:
            self._out.append(CLOSE_FRAME)
            self._close_sent = True
            self._finish(1000, "", by_peer=True)

    def _finish(self, code: int, reason: str, *, by_peer: bool) -> None:
        self.state = State.CLOSED
        self.eof_wanted = True
        self._buf.clear()
        self._reset_frame()
        self._events.append(Closed(code, reason, by_peer))

    def receive_eof(self) -> None:
        if self.state is State.CLOSED:
            return
        if self._close_sent:
            self._finish(*self._closing, by_peer=False)
        elif self.draft is Draft.HIXIE75 and not self._buf and self._frame is None:
            self._finish(1000, "", by_peer=True)  # the only way hixie-75 ever closes
        else:
            self._finish(1006, "connection lost", by_peer=True)

    def events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- sending -----------------------------------------------------------------------

    @property
    def wants_write(self) -> bool:
        return bool(self._out)

    def data_to_send(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    def chunks_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def _check_open(self) -> None:
        if self.state is not State.OPEN:
            raise ProtocolViolation(f"connection is {self.state.value}")

    def send_text(self, text: str) -> None:
        self._check_open()
        data = text.encode()
        if len(data) < 4096:  # one piece, one write; a long text is not copied again
            self._out.append(b"\x00" + data + b"\xff")
        else:
            self._out += (b"\x00", data, b"\xff")

    def send_binary(self, data: bytes) -> None:
        if self._binary == "base64":
            self.send_text(base64.b64encode(data).decode("ascii"))
            return
        raise UnsupportedByDraft(
            f"{self.draft} carries only text; send str, or enable the base64 binary fallback"
        )

    def send_ping(self, data: bytes) -> None:
        raise UnsupportedByDraft(f"{self.draft} has no ping frame")

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        """hixie-76 sends 0xFF 0x00 and waits; hixie-75 just asks for TCP to be closed.

        Neither draft can carry ``code`` or ``reason``: they are kept for the local log.
        """
        self._check_open()
        self._closing = (code, reason)
        if self.draft is Draft.HIXIE75:
            self._finish(code, reason, by_peer=False)
            return
        self._out.append(CLOSE_FRAME)
        self._close_sent = True
        self.state = State.CLOSING

    def abort(self, code: int, reason: str) -> None:
        """Fail the connection: no closing handshake, TCP is closed."""
        if self.state is not State.CLOSED:
            self._finish(code, reason, by_peer=False)


