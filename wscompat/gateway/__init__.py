"""The gateway: clients of every draft in front, one RFC 6455 (or byte-stream)
connection per client to an existing backend behind (``wscompat proxy``, docs/gateway.md).

``wscompat.gateway.proxy`` makes it a wscompat application (a ``process_request`` that
opens the backend while the client's handshake waits, and a handler that bridges the
two); ``routes`` parses upstreams and routes, ``headers`` builds what the backend is
told, ``upstream`` opens the backend leg, ``bridge`` runs the two pumps, ``translate``
maps messages and closes across drafts, and ``cli`` is the command.
"""

from wscompat.gateway.headers import DEFAULT_FORWARD, DRAFT_HEADER, HeaderPolicy
from wscompat.gateway.proxy import Gateway, GatewayConfig, serve_gateway
from wscompat.gateway.routes import Route, RouteTable, Upstream, parse_route, parse_upstream

__all__ = [
    "DEFAULT_FORWARD",
    "DRAFT_HEADER",
    "Gateway",
    "GatewayConfig",
    "HeaderPolicy",
    "Route",
    "RouteTable",
    "Upstream",
    "parse_route",
    "parse_upstream",
    "serve_gateway",
]
