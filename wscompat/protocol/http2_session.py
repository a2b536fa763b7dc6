"""What the two sides of WebSocket over HTTP/2 (RFC 8441) share, sans-I/O.

Theory of operation: a session, :class:`~wscompat.protocol.http2.H2ServerSession` or
:class:`~wscompat.protocol.http2_client.H2ClientSession`, owns one ``h2`` connection and a
table of its streams. Once a stream carries a WebSocket, both sides move its bytes the
same way, and that is what this module holds:

- :class:`H2Stream`, the byte queues of one stream: the ``inbox`` of bytes received and
  not yet taken, the ``outbox`` of bytes queued for DATA frames, and whether each side
  has ended it or it was reset;
- :class:`H2Session`, the bookkeeping around them: :meth:`~H2Session.take` hands the
  window back only for bytes the I/O layer took, :meth:`~H2Session.send` queues bytes
  that a pump lets go as far as flow control allows, in queueing order, and
  :meth:`~H2Session.reset` and the session's end drop streams, keeping what arrived for
  their readers;
- the events these raise, generic over each side's stream type: :class:`DataArrived`,
  :class:`StreamEnded`, :class:`StreamReset`, :class:`WindowOpened` and
  :class:`SessionEnded`.

Each side adds its own handshake (the server decides requests, the client checks
answers), its own defences and its own GOAWAY handling; both modules re-export these
events, so each side's names are importable from its own module.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import Settings

__all__ = [
    "DataArrived",
    "EventSink",
    "H2Session",
    "H2Stream",
    "SessionEnded",
    "StreamEnded",
    "StreamEvent",
    "StreamReset",
    "WindowOpened",
    "error_code_name",
    "error_reason",
    "field_text",
]

S = TypeVar("S", bound="H2Stream")
E = TypeVar("E")
E_contra = TypeVar("E_contra", contravariant=True)


# -- events for the I/O layer -----------------------------------------------------------


@dataclass(frozen=True)
class DataArrived(Generic[S]):
    """Bytes for a stream wait in its ``inbox``."""

    stream: S


@dataclass(frozen=True)
class StreamEnded(Generic[S]):
    """The peer ended its side of the stream (END_STREAM): no more bytes will come."""

    stream: S


@dataclass(frozen=True)
class StreamReset(Generic[S]):
    """The stream was reset, by the peer or by the session (an error on it)."""

    stream: S
    code: int


@dataclass(frozen=True)
class WindowOpened:
    """Flow control let queued bytes go, or may now: writers waiting may go on."""


@dataclass(frozen=True)
class SessionEnded:
    """The HTTP/2 connection is over (GOAWAY either way, or a connection error): write
    what is pending, then close TCP."""

    code: int
    reason: str


StreamEvent = DataArrived[S] | StreamEnded[S] | StreamReset[S] | WindowOpened | SessionEnded
"""The events of this module, for streams of type ``S``."""


class EventSink(Protocol[S, E_contra]):
    """Where a session puts its events: a list of the side's own events ``E``, which
    take this module's among others."""

    def append(self, event: StreamEvent[S] | E_contra, /) -> None: ...


# -- one stream's bytes ------------------------------------------------------------------


class H2Stream:
    """The byte queues of one stream, both ways."""

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.inbox = bytearray()
        """Bytes received and not yet taken."""
        self.ended = False
        """The peer sent END_STREAM."""
        self.reset_code: int | None = None
        self.outbox = bytearray()
        """Bytes queued for DATA frames, waiting for flow control."""
        self.end_queued = False
        """END_STREAM goes out once the outbox is empty."""
        self.end_sent = False

    @property
    def alive(self) -> bool:
        """The stream can still carry bytes to the peer."""
        return self.reset_code is None and not self.end_sent


# -- the session's bookkeeping -----------------------------------------------------------


class H2Session(Generic[S, E]):
    """One ``h2`` connection and its table of streams of type ``S``, which raises events
    of type ``E`` (this module's among them): taking what arrived, queueing and pumping
    what goes out, resets and the end of the connection."""

    def __init__(self, *, client_side: bool, local_settings: Settings,
                 max_streams: int, stream_window: int) -> None:
        self.streams: dict[int, S] = {}
        self.ended = False
        """GOAWAY was sent or received, or the connection failed."""
        self.end_code: int | None = None
        self.end_reason = ""
        self._sending: dict[int, S] = {}
        """Streams with queued bytes, in the order they queued them."""
        # Headers arrive as bytes and are decoded here: with an encoding, h2 decodes
        # them itself and lets a UnicodeDecodeError out of receive_data.
        config = H2Configuration(client_side=client_side, header_encoding=None,
                                 validate_inbound_headers=True)
        self._conn = conn = H2Connection(config=config)
        conn.local_settings = local_settings
        # h2 hands a header list limit to its HPACK decoder only when an acknowledged
        # SETTINGS changes it; given as an initial value, it would never reach it, and
        # the decoder would keep h2's own 64 KiB.
        limit = local_settings.max_header_list_size
        if limit is not None:
            conn.decoder.max_header_list_size = limit
        conn.initiate_connection()
        # The connection window covers every stream's window, so one stream that is not
        # read can never hold back the others; each stream's own window bounds it.
        extra = max_streams * stream_window
        conn.increment_flow_control_window(min(extra, 2**31 - 1 - 65535))

    # -- taking what arrived ------------------------------------------------------------

    def take(self, stream: S, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of the stream's inbox; the window is handed back for them."""
        inbox = stream.inbox
        if len(inbox) <= max_bytes:
            data = bytes(inbox)
            inbox.clear()
        else:
            data = bytes(inbox[:max_bytes])
            del inbox[:max_bytes]
        if data and not self.ended and stream.reset_code is None:
            self._acknowledge(len(data), stream.stream_id)
        return data

    def _acknowledge(self, size: int, sid: int) -> None:
        """Hand ``size`` bytes of window back (nothing to hand back once h2 dropped the
        stream)."""
        with contextlib.suppress(ProtocolError, StreamClosedError):
            self._conn.acknowledge_received_data(size, sid)

    def _arrived(self, stream: S, data: bytes, flow: int, events: EventSink[S, E]) -> None:
        """DATA for an open stream: its bytes wait in the inbox, its padding's window
        goes back at once (nobody reads it)."""
        if flow > len(data):
            self._conn.acknowledge_received_data(flow - len(data), stream.stream_id)
        if data:
            stream.inbox += data
            events.append(DataArrived(stream))

    def _peer_ended(self, stream: S, events: EventSink[S, E]) -> None:
        stream.ended = True
        events.append(StreamEnded(stream))
        self._maybe_forget(stream)

    # -- bytes out ----------------------------------------------------------------------

    def send(self, stream: S, data: bytes | bytearray | memoryview = b"",
             *, end: bool = False) -> None:
        """Queue bytes for the stream's DATA frames (and END_STREAM after them)."""
        if not stream.alive or stream.end_queued or self.ended:
            raise StreamClosedError(stream.stream_id)
        if data:
            stream.outbox += data
        if end:
            stream.end_queued = True
        self._sending[stream.stream_id] = stream
        self._pump([])

    def pending(self, stream: S) -> int:
        """Bytes queued on the stream that flow control has not let go yet."""
        return len(stream.outbox)

    def reset(self, stream: S, code: int = ErrorCodes.CANCEL) -> None:
        """End the stream with RST_STREAM: an error or a close that was not clean
        (CANCEL), or NO_ERROR once this side is complete and the peer's END_STREAM is
        no longer waited for (RFC 9113 §8.1). A stream closed both ways, or already
        reset, only leaves the table."""
        if (stream.end_sent and stream.ended) or stream.reset_code is not None or self.ended:
            self._forget(stream)
            return
        self._reset(stream.stream_id, code, [])

    def _pump(self, events: EventSink[S, E]) -> None:
        """Send queued bytes as far as the windows allow, in queueing order."""
        if self.ended or not self._sending:
            return
        conn = self._conn
        sent_any = False
        for sid, stream in list(self._sending.items()):
            if not stream.alive:
                del self._sending[sid]
                continue
            out = stream.outbox
            try:
                while out:
                    room = min(conn.local_flow_control_window(sid),
                               conn.max_outbound_frame_size)
                    if room <= 0:
                        break
                    chunk = bytes(out[:room])
                    del out[:room]
                    conn.send_data(sid, chunk, end_stream=stream.end_queued and not out)
                    sent_any = True
                    if not out and stream.end_queued:
                        stream.end_sent = True
                if not out and stream.end_queued and not stream.end_sent:
                    conn.end_stream(sid)
                    stream.end_sent = True
            except ProtocolError:  # h2 closed the stream itself
                self._drop(stream, int(ErrorCodes.STREAM_CLOSED), events)
                continue
            if not out:
                del self._sending[sid]
                self._maybe_forget(stream)
        if sent_any:
            events.append(WindowOpened())

    # -- streams and the connection ending ----------------------------------------------

    def _reset(self, sid: int, code: int, events: EventSink[S, E]) -> None:
        with contextlib.suppress(ProtocolError, StreamClosedError):
            self._conn.reset_stream(sid, code)
        stream = self.streams.get(sid)
        if stream is not None:
            self._drop(stream, code, events)

    def _drop(self, stream: S, code: int, events: EventSink[S, E]) -> None:
        """The stream is gone: nothing more goes out, what arrived is kept for its
        reader, and the application learns it as a lost connection."""
        if stream.reset_code is None:
            stream.reset_code = code
        self._dropping(stream, events)
        stream.outbox.clear()
        self._sending.pop(stream.stream_id, None)
        self.streams.pop(stream.stream_id, None)
        events.append(StreamReset(stream, code))

    def _dropping(self, stream: S, events: EventSink[S, E]) -> None:
        """What a side settles on a stream being dropped, before its StreamReset."""

    def _maybe_forget(self, stream: S) -> None:
        """A stream closed both ways leaves the table (its object lives on with its
        reader)."""
        if stream.end_sent and stream.ended:
            self._forget(stream)

    def _forget(self, stream: S) -> None:
        self.streams.pop(stream.stream_id, None)
        self._sending.pop(stream.stream_id, None)

    def _end(self, code: int, reason: str, events: EventSink[S, E]) -> None:
        """The connection is over: every stream is dropped, then SessionEnded."""
        if self.ended:
            return
        self.ended = True
        self.end_code, self.end_reason = code, reason
        for stream in list(self.streams.values()):
            self._drop(stream, int(ErrorCodes.CANCEL), events)
        events.append(SessionEnded(code, reason))


def field_text(field: bytes | str) -> str:
    """A header field's name or value as text: Latin-1, as HTTP/1.1 heads are read, so
    any bytes decode and none are lost."""
    return field if isinstance(field, str) else field.decode("latin-1")


def error_code_name(code: int | None) -> str:
    """An HTTP/2 error code by its name (``CANCEL``), or its number when it has none;
    None, for a stream that had none, is the connection ending."""
    if code is None:
        return "connection ended"
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


def error_reason(exc: Exception) -> str:
    """An exception as a reason to log or show: its text, or its type's name."""
    return (str(exc) or type(exc).__name__)[:200]
