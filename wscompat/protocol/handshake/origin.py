"""The origin policy, the same for every draft that carries an origin.

hixie clients and RFC 6455 browsers send ``Origin``; hybi-07 and hybi-08 send
``Sec-WebSocket-Origin``. One list of patterns covers every generation.

Theory of operation: an origin is only ever compared in its serialized form (RFC 6454
§6.2), ``scheme "://" host [":" port]`` or the literal ``null``. It is parsed once, with
string operations and regular expressions of one bounded character class each, so the
cost grows linearly with its length and a host longer than DNS allows (253 bytes, 63
per label) is refused before it is split. Anything else, userinfo, a path, a query, a
fragment, whitespace, control or non-ASCII characters, is a malformed origin. The scheme
and host compare case-insensitively; a port equal to the scheme's default (80 for http
and ws, 443 for https and wss) is the same as no port.

Patterns are origins in which ``*`` stands for exactly one label of a host name:
``https://*.app.example`` admits ``https://a.app.example``, not ``https://app.example``
nor ``https://a.b.app.example``. The scheme and port of a pattern compare exactly, a
trailing dot in the host must be written in the pattern too, and IP addresses (IPv6 in
brackets) are written in full. The pattern ``*`` alone admits every well-formed origin
except ``null``, which an opaque context (a sandboxed frame, a ``file:`` page) sends
and anyone can produce: list ``null`` to admit it. Patterns are parsed and compiled into
sets once per list, so a check never backtracks over a peer's bytes: it costs one set
lookup per distinct placement of ``*`` among the patterns of the origin's shape.

No library parses exactly this grammar: ``urllib.parse`` accepts userinfo, paths and
malformed ports and lowercases non-ASCII hosts, so the parser is written out here;
``ipaddress`` validates IP literals.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple, Protocol

from wscompat.errors import HandshakeRejected
from wscompat.protocol.http import Request

__all__ = [
    "MAX_HOST",
    "MAX_LABEL",
    "Origin",
    "OriginPolicy",
    "check_origin",
    "origin_allowed",
    "origin_policy",
    "parse_origin",
    "single_origin",
    "validate_patterns",
]

MAX_HOST = 253
"""Bytes in a host name without its trailing dot, as DNS allows (RFC 1035 §2.3.4)."""
MAX_LABEL = 63
"""Bytes in one label of a host name (RFC 1035 §2.3.4)."""
_MAX_IPV6 = 47
"""``[`` + the longest textual IPv6 address (45, IPv4-mapped) + ``]``."""
_MAX_SHOWN = 64
"""Characters quoted of a malformed origin in a refusal (the rest could be 16 KiB)."""

DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
WILDCARD = "*"

_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]{0,31}")
_LABEL = re.compile(rf"[a-z0-9_\-]{{1,{MAX_LABEL}}}")
_PORT = re.compile(r"[0-9]{1,5}")
_DIGITS = re.compile(r"[0-9]+")


class Origin(NamedTuple):
    """A parsed serialized origin: lowercase scheme, normalized host and port.

    ``labels`` holds a host name's labels (a trailing dot gives a last empty label) and
    is empty for an IP address, which ``host`` holds in its canonical form.
    """

    scheme: str
    host: str
    port: int | None
    labels: tuple[str, ...]


class _Settings(Protocol):
    @property
    def origins(self) -> tuple[str, ...] | None: ...
    @property
    def allow_missing_origin(self) -> bool: ...


def _host(text: str, *, patterns: bool) -> tuple[str, tuple[str, ...]] | str:
    """(normalized host, labels), or why ``text`` is not a host."""
    if text.startswith("["):
        if len(text) > _MAX_IPV6 or not text.endswith("]") or "%" in text:
            return "an IPv6 address must be [address], without a zone"
        try:
            address = ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            return "not an IPv6 address"
        return f"[{address.compressed}]", ()
    rooted = text.endswith(".")
    name = text[:-1] if rooted else text
    if not name or len(name) > MAX_HOST:
        return f"a host name has 1 to {MAX_HOST} bytes"
    labels = name.split(".")
    for label in labels:
        if not (_LABEL.fullmatch(label) or (patterns and label == WILDCARD)):
            return (f"{label[:80]!r} is not a host label (letters, digits, '-', '_'; "
                    f"1 to {MAX_LABEL})")
    digits = sum(1 for label in labels if _DIGITS.fullmatch(label))
    if digits and digits + labels.count(WILDCARD) == len(labels) > digits:
        return "a * stands for a label of a host name, never part of an IP address"
    if _DIGITS.fullmatch(labels[-1]):
        # As in URL parsing, a numeric last label makes the host an IPv4 address, which
        # browsers send in dotted-decimal form and without a trailing dot.
        if rooted:
            return "an IPv4 address has no trailing dot"
        try:
            return str(ipaddress.IPv4Address(name)), ()
        except ValueError:
            return "not an IPv4 address in dotted-decimal form"
    return text, (*labels, "") if rooted else tuple(labels)


def _parse(text: str, *, patterns: bool) -> Origin | str:
    """The origin ``text`` serializes, or why it is not one."""
    if not text.isascii():
        # Checked first: str.lower() maps some non-ASCII letters to ASCII ones (the
        # Kelvin sign to "k"). Browsers send internationalized names in punycode.
        return "not ASCII (write internationalized names in punycode, xn--...)"
    scheme, separator, rest = text.lower().partition("://")
    if not separator:
        return "not scheme://host[:port] or null"
    if not _SCHEME.fullmatch(scheme):
        return f"{scheme[:40]!r} is not a scheme"
    if rest.startswith("["):
        end = rest.find("]") + 1
        host_text, port_text = (rest[:end], rest[end:]) if end else (rest, "")
        if port_text and not port_text.startswith(":"):
            return "only a port may follow an IPv6 address"
        port_text = port_text[1:]
        has_port = end > 0 and end < len(rest)
    else:
        host_text, colon, port_text = rest.partition(":")
        has_port = bool(colon)
    port: int | None = None
    if has_port:
        if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
            return f"{port_text[:8]!r} is not a port (0 to 65535)"
        port = int(port_text)
        if DEFAULT_PORTS.get(scheme) == port:
            port = None
    host = _host(host_text, patterns=patterns)
    if isinstance(host, str):
        return host
    return Origin(scheme, host[0], port, host[1])


def parse_origin(text: str) -> Origin | None:
    """``text`` as a serialized origin; None for ``null`` and for anything malformed."""
    parsed = _parse(text, patterns=False)
    return parsed if isinstance(parsed, Origin) else None


_Shape = tuple[str, int | None, int]
"""Scheme, port and number of labels: an origin is compared only with patterns of its shape."""
_Fixed = dict[tuple[int, ...], set[tuple[str, ...]]]
"""Where a pattern's labels are not ``*``, and the labels found there in each pattern."""


@dataclass(frozen=True)
class OriginPolicy:
    """A list of patterns, compiled: exact origins in a set; wildcard ones by shape, then
    by where their ``*`` are, so one set lookup compares an origin with all the patterns
    that put their ``*`` in the same places."""

    any: bool = False
    """The pattern ``*``: every well-formed origin but ``null``."""
    null: bool = False
    exact: frozenset[tuple[str, str, int | None]] = frozenset()
    wildcards: dict[_Shape, _Fixed] = field(default_factory=dict)

    def admits(self, text: str) -> bool:
        """Whether the origin ``text`` is allowed; a malformed one never is."""
        if text == "null":
            return self.null
        origin = parse_origin(text)
        return origin is not None and self.admits_parsed(origin)

    def admits_parsed(self, origin: Origin) -> bool:
        if self.any or (origin.scheme, origin.host, origin.port) in self.exact:
            return True
        labels = origin.labels
        fixed = self.wildcards.get((origin.scheme, origin.port, len(labels)))
        if fixed is None:
            return False
        return any(tuple(labels[i] for i in where) in found for where, found in fixed.items())


def _compile(patterns: Iterable[str], *, strict: bool) -> OriginPolicy:
    """Compile ``patterns``; a bad one raises ValueError when ``strict``, else matches
    nothing (settings built without ServerOptions are not validated up front)."""
    any_origin = null = False
    exact: set[tuple[str, str, int | None]] = set()
    wildcards: dict[_Shape, _Fixed] = {}
    for pattern in patterns:
        if pattern == WILDCARD:
            any_origin = True
            continue
        if pattern == "null":
            null = True
            continue
        parsed = _parse(pattern, patterns=True)
        if isinstance(parsed, str) and WILDCARD in pattern and parsed.startswith("'"):
            parsed += "; a * stands for one whole label of a host name"
        if isinstance(parsed, str):
            if strict:
                raise ValueError(f"origin pattern {pattern!r}: {parsed}")
            continue
        labels = parsed.labels
        if WILDCARD in labels:
            where = tuple(i for i, label in enumerate(labels) if label != WILDCARD)
            fixed = wildcards.setdefault((parsed.scheme, parsed.port, len(labels)), {})
            fixed.setdefault(where, set()).add(tuple(labels[i] for i in where))
        else:
            exact.add((parsed.scheme, parsed.host, parsed.port))
    return OriginPolicy(any_origin, null, frozenset(exact), wildcards)


def validate_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    """``patterns`` as a tuple, once each is known to be valid; else ValueError saying
    which one and why (TypeError for what is not a list of strings). Run when the
    server's options are built, not per request."""
    if isinstance(patterns, str):
        raise TypeError(f"origins must be a list of patterns, not the string {patterns!r}")
    listed = tuple(patterns)
    for pattern in listed:
        if not isinstance(pattern, str):
            raise TypeError(f"origin pattern {pattern!r} is not a string")
    _compile(listed, strict=True)
    return listed


@lru_cache(maxsize=256)
def origin_policy(allowed: tuple[str, ...]) -> OriginPolicy:
    """The compiled policy of a pattern list, built once per list."""
    return _compile(allowed, strict=False)


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``allowed`` admits ``origin``; invalid patterns admit nothing."""
    return origin_policy(allowed).admits(origin)


def _shown(origin: str) -> str:
    """``origin`` quoted in at most ``_MAX_SHOWN`` printable ASCII characters (escapes
    included: a peer's control bytes stay out of responses and logs), ``...`` if cut."""
    shown = ""
    for char in origin[:_MAX_SHOWN]:
        escaped = "\\'" if char == "'" else ascii(char)[1:-1]
        if len(shown) + len(escaped) > _MAX_SHOWN:
            return f"'{shown}'..."
        shown += escaped
    return f"'{shown}'..." if len(origin) > _MAX_SHOWN else f"'{shown}'"


def single_origin(request: Request) -> str | None:
    """The origin a handshake is judged by (``Origin``, or hybi-07/08's
    ``Sec-WebSocket-Origin``), refused with 400 when either field comes more than once.

    A user agent sends one (RFC 6454 §7.3); with two, a proxy that checks one of them
    and a server that checks the other would judge different origins, so the request
    is refused rather than read by its first.
    """
    for name in ("Origin", "Sec-WebSocket-Origin"):
        if request.headers.count(name) > 1:
            raise HandshakeRejected(400, f"more than one {name} header")
    return request.origin


def check_origin(origin: str | None, settings: _Settings) -> None:
    """Reject with 403 an origin the policy does not allow.

    With no policy at all (no ``origins``, missing origins allowed) the value is not
    looked at. Otherwise it must be a serialized origin: an empty or malformed one is
    refused even where a missing one would not be.
    """
    if origin is None:
        if not settings.allow_missing_origin:
            raise HandshakeRejected(403, "missing Origin")
        return
    allowed = settings.origins
    if allowed is None and settings.allow_missing_origin:
        return
    if origin == "null":
        admitted = allowed is None or origin_policy(allowed).null
    else:
        parsed = parse_origin(origin)
        if parsed is None:
            raise HandshakeRejected(403, f"malformed origin {_shown(origin)}" if origin else
                                    "empty Origin")
        admitted = allowed is None or origin_policy(allowed).admits_parsed(parsed)
    if not admitted:
        raise HandshakeRejected(403, f"origin {origin} not allowed")
