"""Headless Chromium negotiates permessage-deflate with wscompat and echoes through it.

The page (``chromium_compression_page.html``) sends compressible and incompressible text
and binary messages of 1 byte to 1 MiB, checks each echo byte for byte and reports. The
server's handler records what arrived and the connection's byte counts: with compression
both directions carry far fewer bytes than the payloads, and with compression off (the
control) more, so the test tells a negotiated header from compression actually used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import wscompat
from wscompat.trio.connection import ConnectionStats

from ..conftest import Starter
from .test_chromium import TEST_TIMEOUT, Peer, run_page

pytestmark = pytest.mark.live

PAGE = Path(__file__).with_name("chromium_compression_page.html")
SIZES = [1, 125, 126, 65535, 65536, 1048576]
KINDS = ["text-compressible", "text-incompressible", "binary-compressible",
         "binary-incompressible"]
PAYLOAD = len(KINDS) * sum(SIZES)
"""Bytes of payload each way."""


class CompressionPeer(Peer):
    """Echoes on ``/`` and notes what it saw; ``/report`` as in test_chromium."""

    def __init__(self) -> None:
        super().__init__()
        self.offered: str | None = None
        self.extensions: str | None = None
        self.received: list[tuple[type, int]] = []
        self.stats: ConnectionStats | None = None
        self.close_code: int | None = None

    async def handler(self, ws: wscompat.Connection) -> None:
        if ws.path == "/report":
            await super().handler(ws)
            return
        self.offered = ws.headers.joined("Sec-WebSocket-Extensions")
        self.extensions = ws.extensions
        try:
            async for message in ws:
                self.received.append((type(message), len(message)))
                await ws.send(message)
        finally:
            self.stats, self.close_code = ws.stats, ws.close_code
            self.finished.set()


@pytest.mark.parametrize(
    ("options", "answer"),
    [
        ({}, "permessage-deflate"),
        ({"compression_window_bits": 9, "compress_min_size": 126},
         "permessage-deflate; server_max_window_bits=9"),
        ({"compression": "off"}, None),
    ],
    ids=["default", "window-9-min-size-126", "off"],
)
async def test_chromium_echoes_through_permessage_deflate(
    start_server: Starter, tmp_path: Path, options: dict[str, Any], answer: str | None
) -> None:
    peer = CompressionPeer()
    server = await start_server(peer.handler, max_message_size=2 * 2**20, **options)
    with trio.fail_after(TEST_TIMEOUT):
        report = await run_page(tmp_path, server.port, "compression", peer, source=PAGE)
        await peer.finished.wait()

    # Negotiation, seen from both ends.
    assert peer.offered == "permessage-deflate; client_max_window_bits"
    assert peer.extensions == answer
    assert report["extensions"] == (answer or "")

    # Every message came back intact, in order, as the kind it was sent.
    assert report["errors"] == [], report["errors"]
    assert report.get("opened") is True
    echoes = report["echoes"]
    expected = [(kind, size) for size in SIZES for kind in KINDS]
    assert [(e["kind"], e["size"]) for e in echoes] == expected
    bad = [e for e in echoes if not e["ok"]]
    assert bad == [], bad
    assert peer.received == [(str if kind.startswith("text") else bytes, size)
                             for kind, size in expected]
    assert report["close"] == {"code": 1000, "reason": "all echoed", "wasClean": True}
    assert peer.close_code == 1000

    # Compression was used on the wire in both directions, or not at all for the control.
    assert peer.stats is not None
    if answer is None:
        assert peer.stats.bytes_in > PAYLOAD and peer.stats.bytes_out > PAYLOAD
    else:
        assert peer.stats.bytes_in < 0.6 * PAYLOAD, peer.stats
        assert peer.stats.bytes_out < 0.6 * PAYLOAD, peer.stats
