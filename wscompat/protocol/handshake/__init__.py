"""Opening handshakes: draft detection and one module per draft family."""

from wscompat.protocol.handshake.detect import detect
from wscompat.protocol.handshake.server import Accepted, HandshakeSettings, Phase, ServerHandshake

__all__ = ["Accepted", "HandshakeSettings", "Phase", "ServerHandshake", "detect"]
