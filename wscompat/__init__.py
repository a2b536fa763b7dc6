"""wscompat: one trio WebSocket server for every generation of the protocol."""

from .client import connect
from .connection import Connection
from .drafts import Capabilities, Draft
from .errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeRejected,
    MessageTooBig,
    ProtocolViolation,
    UnsupportedByDraft,
    WebSocketError,
)
from .options import Rejection, ServerOptions, UpgradeRequest
from .server import Server, serve

__all__ = [
    "Capabilities",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Draft",
    "HandshakeRejected",
    "MessageTooBig",
    "ProtocolViolation",
    "Rejection",
    "Server",
    "ServerOptions",
    "UnsupportedByDraft",
    "UpgradeRequest",
    "WebSocketError",
    "connect",
    "serve",
]

__version__ = "0.1.0"
