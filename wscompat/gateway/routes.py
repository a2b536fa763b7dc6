"""Where each client goes: ``--upstream`` and ``--route`` parsed, and paths matched.

An upstream is a URL: ``ws://`` or ``wss://`` (an RFC 6455 backend), ``ws+unix:PATH``
(an RFC 6455 backend on a Unix socket, ``ws+unix:/run/app.sock:/chat`` for a resource),
``tcp://host:port`` or ``unix:PATH`` (a byte stream, websockify style). A route maps a
path prefix to an upstream; a prefix matches whole path segments (``/chat`` matches
``/chat``, ``/chat/room`` and ``/chat?x=1``, not ``/chatroom``) and the longest match
wins; the default upstream, if any, takes every other path.

The backend sees the client's path rewritten as nginx's ``proxy_pass`` does when its
URL has a path: the matched prefix is replaced by the upstream's path. An upstream
without a path (``ws://10.0.0.5:9000``) gets the client's path unchanged. The query
always follows.

Sans-I/O: nothing here touches a socket.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

__all__ = ["Route", "RouteTable", "Upstream", "parse_route", "parse_upstream"]

Kind = Literal["ws", "wss", "tcp", "unix", "ws+unix"]
STREAM_KINDS = frozenset({"tcp", "unix"})


@dataclass(frozen=True)
class Upstream:
    """One backend: how to reach it, and which resource to ask it for."""

    kind: Kind
    host: str = ""
    port: int = 0
    path: str | None = None
    """The resource's base on a WebSocket backend; None: the client's path as it came."""
    socket_path: str = ""
    """The Unix socket of ``unix:`` and ``ws+unix:``."""
    url: str = ""
    """As written, for messages."""

    @property
    def stream(self) -> bool:
        """A byte stream (tcp, unix): messages carry its bytes, websockify style."""
        return self.kind in STREAM_KINDS

    @property
    def secure(self) -> bool:
        return self.kind == "wss"

    def resource(self, client_path: str, prefix: str = "") -> str:
        """The request-target for the backend, from the client's: ``prefix`` (the route
        that matched) replaced by this upstream's path."""
        path, mark, query = client_path.partition("?")
        if self.path is not None:
            rest = path[len(prefix):] if prefix and path.startswith(prefix) else path
            base = self.path.rstrip("/")
            rest = rest.lstrip("/")
            path = f"{base}/{rest}" if rest or not base else base
        return path + mark + query


def parse_upstream(url: str) -> Upstream:
    """An upstream URL, or ValueError saying what is wrong with it."""
    text = url.strip()
    if text.startswith("unix:") or text.startswith("ws+unix:"):
        return _unix(text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss", "tcp"):
        raise ValueError(f"{url!r}: an upstream is ws://, wss://, ws+unix:, tcp:// or unix:")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number from 0 to 65535") from None
    host = parts.hostname
    if not host:
        raise ValueError(f"{url!r}: no host")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: an upstream carries no query or fragment (the client's "
                         "query is forwarded)")
    if parts.username or parts.password:
        raise ValueError(f"{url!r}: credentials in an upstream URL are not supported")
    if scheme == "tcp":
        if port is None:
            raise ValueError(f"{url!r}: tcp:// needs a port")
        if parts.path not in ("", "/"):
            raise ValueError(f"{url!r}: a tcp:// upstream has no path")
        return Upstream("tcp", host, port, url=text)
    default = 443 if scheme == "wss" else 80
    kind: Kind = "wss" if scheme == "wss" else "ws"
    return Upstream(kind, host, port or default, parts.path or None, url=text)


def _unix(text: str) -> Upstream:
    kind: Kind = "unix" if text.startswith("unix:") else "ws+unix"
    rest = text.partition(":")[2]
    if rest.startswith("//"):  # unix:///run/x.sock, as some tools write it
        rest = rest[2:]
    path: str | None = None
    if kind == "ws+unix" and ":" in rest:
        rest, _, path = rest.partition(":")
        if not path.startswith("/"):
            raise ValueError(f"{text!r}: the resource after the socket path starts with /")
    if not rest:
        raise ValueError(f"{text!r}: no socket path")
    return Upstream(kind, path=path, socket_path=rest, url=text)


@dataclass(frozen=True)
class Route:
    prefix: str
    upstream: Upstream


def parse_route(text: str) -> Route:
    """``/prefix=URL``, or ValueError."""
    prefix, sep, url = text.partition("=")
    prefix = prefix.strip()
    if not sep or not prefix.startswith("/"):
        raise ValueError(f"{text!r}: a route is /PREFIX=URL, e.g. /chat=ws://10.0.0.5:9000/")
    if "?" in prefix:
        raise ValueError(f"{text!r}: a route's prefix is a path, without a query")
    if prefix != "/":
        prefix = prefix.rstrip("/")
    return Route(prefix, parse_upstream(url))


class RouteTable:
    """The routes, longest prefix first, and the default upstream."""

    def __init__(self, default: Upstream | None = None, routes: Iterable[Route] = ()) -> None:
        self.default = default
        self.routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)
        seen: set[str] = set()
        for route in self.routes:
            if route.prefix in seen:
                raise ValueError(f"two routes for {route.prefix}")
            seen.add(route.prefix)
        if default is None and not self.routes:
            raise ValueError("no upstream: give --upstream URL or at least one --route")

    @classmethod
    def of(cls, upstream: str | None = None, routes: Mapping[str, str] | None = None,
           ) -> RouteTable:
        """From URLs: ``RouteTable.of("ws://b:9000/", {"/vnc": "tcp://v:5900"})``."""
        return cls(
            None if upstream is None else parse_upstream(upstream),
            [parse_route(f"{prefix}={url}") for prefix, url in (routes or {}).items()],
        )

    def match(self, target: str) -> tuple[Upstream, str] | None:
        """The upstream for a request-target and the resource to ask it for; None when
        no route matches and there is no default. ValueError for a path with a ``.`` or
        ``..`` segment: the backend would resolve it past the prefix that was matched."""
        path = _path_of(target)
        if any(unquote(segment) in (".", "..") for segment in path.split("/")):
            raise ValueError("a path with . or .. segments")
        for route in self.routes:
            prefix = route.prefix
            if prefix in ("/", path) or path.startswith(prefix + "/"):
                return route.upstream, route.upstream.resource(
                    path + _query_of(target), "" if prefix == "/" else prefix)
        if self.default is None:
            return None
        return self.default, self.default.resource(path + _query_of(target))


def _path_of(target: str) -> str:
    """The path of a request-target, also in absolute form (``GET ws://h/x``)."""
    if not target.startswith("/"):
        parts = urlsplit(target)
        return parts.path or "/"
    return target.partition("?")[0]


def _query_of(target: str) -> str:
    _, mark, query = target.partition("?")
    return mark + query
