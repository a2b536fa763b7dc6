"""Sans-I/O framers: one per draft family, one interface for all."""

from wscompat.protocol.framing.base import Closed, Event, Framer, Message, Pong, State
from wscompat.protocol.framing.hixie import HixieFramer
from wscompat.protocol.framing.hybi import HybiFramer

__all__ = ["Closed", "Event", "Framer", "HixieFramer", "HybiFramer", "Message", "Pong", "State"]
