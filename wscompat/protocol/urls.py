"""``ws://`` and ``wss://`` URLs (RFC 6455 §3), taken apart once for the client, the
tools and the vector replayer. Each adds its own rule on top (a replay has no path of
its own), not a parser of its own. The conformance runner keeps its own parser, as it
keeps all of its wire code: it shares nothing with the code it judges."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["WebSocketURL", "parse_ws_url"]


@dataclass(frozen=True)
class WebSocketURL:
    host: str
    """As in the URL, IPv6 literals without brackets."""
    port: int
    """The URL's, or 80 for ws:// and 443 for wss://."""
    resource: str
    """The request-target: path (``/`` when empty) and query, as in the URL."""
    secure: bool
    """wss://: TLS."""


def parse_ws_url(url: str) -> WebSocketURL:
    """``url`` taken apart; ValueError, saying what is wrong, unless it is a ws:// or
    wss:// URL with a host, a valid port and no fragment (which RFC 6455 §3 forbids)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
    if parts.fragment:
        raise ValueError(f"{url!r} has a fragment, which WebSocket URLs cannot have")
    secure = parts.scheme == "wss"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WebSocketURL(parts.hostname, port or (443 if secure else 80), resource, secure)
