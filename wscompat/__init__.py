"""wscompat: one trio WebSocket server for every generation of the protocol."""

from wscompat.drafts import Capabilities, Draft
from wscompat.errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeRejected,
    MessageTooBig,
    ProtocolViolation,
    UnsupportedByDraft,
    WebSocketError,
)
from wscompat.options import Acceptance, Rejection, ServerOptions, UpgradeRequest
from wscompat.trio.client import connect
from wscompat.trio.connection import Connection
from wscompat.trio.running import run
from wscompat.trio.server import Server, serve

__all__ = [
    "Acceptance",
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
    "run",
    "serve",
]

__version__ = "0.1.0"
