"""The gateway as an application: its server options, its settings, and how it tells a
client that came over TLS (for ``X-Forwarded-Proto``)."""

from __future__ import annotations

import pytest

from wscompat import Draft, ServerOptions
from wscompat.gateway import Gateway, GatewayConfig, RouteTable
from wscompat.protocol.connection import UpgradeRequest
from wscompat.protocol.http import Headers, Request

ROUTES = RouteTable.of("ws://127.0.0.1:9000/")


def test_the_backend_chooses_the_subprotocol() -> None:
    """The server's own choice is off; ``subprotocols`` only narrows the offer."""
    gateway = Gateway(GatewayConfig(ROUTES), ServerOptions(
        subprotocols=["chat"], select_subprotocol=lambda request, offered: offered[0],
        max_queue=4, write_limit=1024, max_message_size=4096, ping_interval=None))
    options = gateway.options
    assert options.process_request == gateway.process_request
    assert options.select_subprotocol is None
    assert options.subprotocols is None
    assert gateway.offerable == frozenset({"chat"})
    # The backend leg has the client leg's limits.
    assert gateway.legs.io.max_queue == 4
    assert gateway.legs.io.write_limit == 1024
    assert gateway.legs.connection.max_message_size == 4096
    assert gateway.bridge.ping_interval is None


@pytest.mark.parametrize(("failure_code", "timeout"), [(1006, 5.0), (1011, 0.0),
                                                       (1011, float("inf"))])
def test_bad_settings(failure_code: int, timeout: float) -> None:
    with pytest.raises(ValueError, match=r"failure_code|connect_timeout"):
        GatewayConfig(ROUTES, failure_code=failure_code, connect_timeout=timeout)


def upgrade(*, secure: bool = False) -> UpgradeRequest:
    request = Request("GET", "/", "1.1", Headers([("Host", "gw")]))
    return UpgradeRequest(request, Draft.RFC6455, ("127.0.0.1", 1), (), secure)


def test_a_request_that_came_over_tls_says_so() -> None:
    gateway = Gateway(GatewayConfig(ROUTES))
    assert gateway._secure(upgrade(secure=True)) is True
    assert gateway._secure(upgrade(secure=False)) is False


def test_behind_a_tls_proxy_the_servers_options_say() -> None:
    assert Gateway(GatewayConfig(ROUTES), ServerOptions(secure=True))._secure(upgrade())

