"""The sans-I/O framer interface every draft implements, and the events it produces.

A framer turns received bytes into events and application calls into bytes to write.
It never blocks and never touches a socket: the I/O layer feeds it, drains
:meth:`Framer.data_to_send`, and closes the TCP connection when ``eof_wanted`` says so.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass

from wscompat.drafts import Draft

__all__ = ["Closed", "Event", "Framer", "Message", "Pong", "State"]


@dataclass(slots=True)
class Message:
    """A complete message: ``str`` for text, ``bytes`` for binary.

    Slotted and not frozen: one is made per received message, and a frozen dataclass
    pays for ``object.__setattr__`` on every construction.
    """

    data: str | bytes


@dataclass(frozen=True)
class Pong:
    """A pong arrived. ``acked`` lists the pings it answers: its own payload and every
    ping sent before it (filled in by the protocol connection, which keeps the pings)."""

    data: bytes
    acked: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Closed:
    """The connection ended. ``code`` follows the RFC 6455 numbering on every draft:

    the peer's close code (or ours when we failed the connection), 1005 when a close
    frame carried none, 1000 for a clean hixie close, 1006 when TCP ended abruptly.
    """

    code: int
    reason: str
    by_peer: bool


Event = Message | Pong | Closed


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Framer(abc.ABC):
    draft: Draft
    state: State
    eof_wanted: bool
    """True once the framer has nothing more to say and TCP should be closed."""

    @abc.abstractmethod
    def receive_data(self, data: bytes | bytearray) -> None: ...

    def receive_into(self, buffer: bytearray, count: int) -> None:
        """Parse ``buffer[:count]``, a read buffer the I/O layer reuses for its next
        read as soon as this returns: nothing may keep a view of it. This default
        copies; the framers parse it where it lies."""
        self.receive_data(bytes(buffer[:count]))

    @abc.abstractmethod
    def receive_eof(self) -> None: ...

    @abc.abstractmethod
    def events(self) -> list[Event]: ...

    @property
    @abc.abstractmethod
    def wants_write(self) -> bool:
        """Bytes are waiting in :meth:`data_to_send` (cheap: no lock needed to ask)."""

    @abc.abstractmethod
    def data_to_send(self) -> bytes: ...

    def chunks_to_send(self) -> list[bytes]:
        """What :meth:`data_to_send` would return, as the pieces it would join: an I/O
        layer that writes them with one ``writev`` saves copying a large payload."""
        data = self.data_to_send()
        return [data] if data else []

    @abc.abstractmethod
    def send_text(self, text: str) -> None: ...

    @abc.abstractmethod
    def send_binary(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def send_ping(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (or, on hixie-75, ask for TCP to be closed)."""

    @abc.abstractmethod
    def abort(self, code: int, reason: str) -> None:
        """Fail the connection from our side: close frame if the draft has one, then EOF."""

    # A gateway's relay of frames as they came (see HybiFramer): drafts whose frames
    # cannot leave unchanged on another connection take and pass none.

    def whole_frames(self, data: bytes | bytearray) -> tuple[int, int]:
        """How many bytes at the start of ``data``, and how many messages, are whole
        frames that another connection may send on exactly as they came."""
        return 0, 0

    def pass_frames(self, frames: bytes) -> bool:
        """Queue frames another framer's :meth:`whole_frames` took, to leave unchanged;
        False, having done nothing, when this connection cannot send them so."""
        return False
