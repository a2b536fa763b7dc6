"""A real headless Chromium through the gateway, over ws:// and wss:// on one port, to
Node's ``ws`` server: the page reads what the backend saw, echoes text and binary and
closes with 4000; its report goes, through the gateway too, to a wscompat server in
the test's process."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from wscompat.gateway import DRAFT_HEADER

from ..conftest import Starter
from ..live.test_chromium import Peer, run_page
from ..live.test_chromium_tls import spki_hash
from .conftest import Backend, GatewayStarter, header

PAGE = Path(__file__).with_name("chromium_gateway_page.html")


@pytest.mark.live
async def test_chromium_through_the_gateway(
    start_gateway: GatewayStarter, start_server: Starter, node_backend: Backend,
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    peer = Peer()
    reports = await start_server(peer.handler)
    gateway = await start_gateway(node_backend.url, ssl_context=context,
                                  routes={"/report": f"ws://127.0.0.1:{reports.port}/report"})
    flag = f"--ignore-certificate-errors-spki-list={spki_hash(cert.cert_chain_pems[0].bytes())}"
    report = await run_page(tmp_path, gateway.port, "gateway", peer, source=PAGE,
                            extra_flags=[flag])

    assert report["errors"] == []
    for scheme, path in (("ws", "/headers/plain"), ("wss", "/headers/secure")):
        result = report["results"][scheme]
        assert result["messages"] == ["view", "text ok", "binary ok"], result
        assert result["protocol"] == "chat"
        assert result["close"] == {"code": 4000, "reason": "bye", "wasClean": True}
        view = result["view"]
        assert view["path"] == path
        assert view["subprotocol"] == "chat"
        assert header(view, DRAFT_HEADER) == ["rfc6455"]
        assert header(view, "Origin") == ["null"]  # a file:// page's origin is opaque
        assert header(view, "X-Forwarded-For") == ["127.0.0.1"]
        user_agent = header(view, "User-Agent")
        assert len(user_agent) == 1
        assert "Chrome" in user_agent[0]
