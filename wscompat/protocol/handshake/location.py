"""The ``Location`` and ``Origin`` echoes shared by hixie-75 and hixie-76.

A hixie client compares the location byte for byte with the URL it opened, so the host
is echoed as the client sent it in ``Host`` (conforming clients send it lowercased, and
a hand-written client compares against its own spelling), the port appears only when it
is not the scheme's default, and the resource is the request-target exactly as received.

What is echoed is checked first, since it lands in a response head: ``Host`` must be an
RFC 3986 ``host [ ":" port ]`` (a reg-name or IPv4 address, or an IPv6 or IPvFuture
literal in brackets), and the origin and the subprotocol printable ASCII, the characters
the drafts allow in them. Anything else is a 400, so a control byte, a space or an ``@``
never reaches the client's Location or its terminal.
"""

from __future__ import annotations

import ipaddress
import re

from wscompat.errors import HandshakeRejected
from wscompat.protocol.http import Request

__all__ = ["location", "origin_echo", "printable", "split_host"]

_DEFAULT_PORT = {"ws": "80", "wss": "443"}
_REG_NAME = re.compile(r"(?:[-A-Za-z0-9._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
"""RFC 3986 reg-name (unreserved, sub-delims, pct-encoded), which IPv4 addresses match too."""
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+")
_IPV_FUTURE = re.compile(r"[vV][0-9A-Fa-f]+\.[-A-Za-z0-9._~!$&'()*+,;=:]+")
_PORT = re.compile(r"[0-9]*")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


def split_host(host: str) -> tuple[str, str | None]:
    """``Host`` as (host, port or None) if it is an RFC 3986 ``host [":" port]``; else 400."""
    if host.startswith("["):  # an IP literal keeps its brackets
        end = host.find("]")
        name, rest = host[: end + 1], host[end + 1 :]
        if end < 0 or not _ip_literal(host[1:end]) or (rest and rest[0] != ":"):
            raise HandshakeRejected(400, "malformed Host")
        port: str | None = rest[1:]
    else:
        name, sep, port = host.rpartition(":")
        if not sep:
            name, port = host, None
        if not _REG_NAME.fullmatch(name):
            raise HandshakeRejected(400, "malformed Host")
    if port is not None and not _PORT.fullmatch(port):
        raise HandshakeRejected(400, "malformed port in Host")
    return name, port or None


def _ip_literal(inside: str) -> bool:
    if _IPV_FUTURE.fullmatch(inside):
        return True
    if not _IPV6_CHARS.fullmatch(inside):  # no zone index: RFC 3986 has none
        return False
    try:
        ipaddress.IPv6Address(inside)
    except ValueError:
        return False
    return True


def printable(value: str, what: str) -> str:
    """``value`` if it is printable ASCII (0x20-0x7E), the most a hixie head may echo;
    else 400."""
    if not _PRINTABLE.fullmatch(value):
        raise HandshakeRejected(400, f"{what} is not printable ASCII")
    return value


def location(request: Request, *, secure: bool) -> str:
    host = request.headers.get("Host")
    if not host:
        raise HandshakeRejected(400, "missing Host")
    name, port = split_host(host.strip())
    scheme = "wss" if secure else "ws"
    if port is not None and port.lstrip("0") == _DEFAULT_PORT[scheme]:
        port = None
    authority = name + (f":{port}" if port is not None else "")
    return f"{scheme}://{authority}{request.target}"


def origin_echo(request: Request) -> str:
    """The origin to echo: the request's ``Origin`` as sent, or ``null`` without one
    (or with an empty one).

    Whether a missing origin is acceptable at all is the origin policy's decision.
    """
    origin = request.origin
    return origin or "null"  # an empty header echoed empty would be a malformed answer
