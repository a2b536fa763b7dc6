"""The ``Location`` and ``Origin`` echoes shared by hixie-75 and hixie-76.

A hixie client compares the location byte for byte with the URL it opened, so the host
is echoed as the client sent it in ``Host`` (conforming clients send it lowercased, and
a hand-written client compares against its own spelling), the port appears only when it
is not the scheme's default, and the resource is the request-target exactly as received.
"""

from __future__ import annotations

from wscompat.errors import HandshakeRejected
from wscompat.protocol.http import Request

__all__ = ["location", "origin_echo"]

_DEFAULT_PORT = {"ws": "80", "wss": "443"}


def _split_host(host: str) -> tuple[str, str | None]:
    if host.startswith("["):  # IPv6 literal keeps its brackets
        end = host.find("]")
        if end < 0:
            raise HandshakeRejected(400, "malformed Host")
        name, rest = host[: end + 1], host[end + 1 :]
        if rest and not rest.startswith(":"):
            raise HandshakeRejected(400, "malformed Host")
        return name, rest[1:] or None
    name, sep, port = host.rpartition(":")
    if not sep:
        return host, None
    return name, port or None


def location(request: Request, *, secure: bool) -> str:
    host = request.headers.get("Host")
    if not host:
        raise HandshakeRejected(400, "missing Host")
    name, port = _split_host(host.strip())
    if port is not None and not (port.isascii() and port.isdigit()):
        raise HandshakeRejected(400, "malformed port in Host")
    scheme = "wss" if secure else "ws"
    if port is not None and port.lstrip("0") == _DEFAULT_PORT[scheme]:
        port = None
    authority = name + (f":{port}" if port is not None else "")
    return f"{scheme}://{authority}{request.target}"


def origin_echo(request: Request) -> str:
    """The origin to echo: the request's ``Origin`` as sent, or ``null`` without one.

    Whether a missing origin is acceptable at all is the origin policy's decision.
    """
    origin = request.origin
    return "null" if origin is None else origin
