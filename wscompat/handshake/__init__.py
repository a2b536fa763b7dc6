"""Opening handshakes: draft detection and one module per draft family."""

from .detect import detect
from .server import Accepted, HandshakeSettings, Phase, ServerHandshake

__all__ = ["Accepted", "HandshakeSettings", "Phase", "ServerHandshake", "detect"]
