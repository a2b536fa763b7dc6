"""Sans-I/O framers: one per draft family, one interface for all."""

from .base import Closed, Event, Framer, Message, Pong, State
from .hixie import HixieFramer
from .hybi import HybiFramer

__all__ = ["Closed", "Event", "Framer", "HixieFramer", "HybiFramer", "Message", "Pong", "State"]
