"""A real browser connecting with wss:// to the same port that serves plain ws://."""

from __future__ import annotations

import base64
import hashlib
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import wscompat

from ..conftest import Starter
from .test_chromium import Peer, run_page

PAGE = Path(__file__).with_name("chromium_tls_page.html")


class TlsPeer(Peer):
    """Echo on /secure and /plain, noting whether each came over TLS."""

    def __init__(self) -> None:
        super().__init__()
        self.secure: dict[str, bool] = {}

    async def handler(self, ws: wscompat.Connection) -> None:
        if ws.path == "/report":
            await super().handler(ws)
            return
        self.secure[ws.path] = ws.secure
        async for message in ws:
            await ws.send(message)


def spki_hash(cert_pem: bytes) -> str:
    """What --ignore-certificate-errors-spki-list wants: base64 SHA-256 of the key info.

    It makes Chromium accept this one test certificate and no other."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.mark.live
async def test_chromium_wss_and_ws_on_one_port(start_server: Starter, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    peer = TlsPeer()
    server = await start_server(peer.handler, ssl_context=context)
    flag = f"--ignore-certificate-errors-spki-list={spki_hash(cert.cert_chain_pems[0].bytes())}"
    report = await run_page(tmp_path, server.port, "tls", peer, source=PAGE, extra_flags=[flag])
    assert report["errors"] == []
    assert report["results"] == {"wss": {"echo": "over wss 中"}, "ws": {"echo": "over ws 😀"}}
    assert peer.secure == {"/secure": True, "/plain": False}
