"""Which draft does a request head speak? The decision table of the protocol reference.

Rows are tried in order and the first match wins. ``Sec-WebSocket-Version`` decides
before anything else, so a hybi client that also sends hixie keys is never read as
hixie-76, and a hybi client that lost its version header is refused rather than being
mistaken for hixie-75.
"""

from __future__ import annotations

import re

from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.protocol.handshake.location import split_host
from wscompat.protocol.http import Request

__all__ = ["PLAIN_HTTP", "detect", "mentions_websocket", "version_header"]

PLAIN_HTTP = None
"""What :func:`detect` returns for a request that is not a WebSocket upgrade at all."""

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,8}")
_BY_VERSION = {13: Draft.RFC6455, 8: Draft.HYBI08, 7: Draft.HYBI07}
_LEGACY_KEYS = ("Sec-WebSocket-Key1", "Sec-WebSocket-Key2")


def version_header(enabled: frozenset[Draft]) -> tuple[tuple[str, str], ...]:
    """``Sec-WebSocket-Version`` listing the enabled hybi versions, highest first."""
    versions = sorted((d.version for d in enabled if d.version is not None), reverse=True)
    if not versions:
        return ()
    return (("Sec-WebSocket-Version", ", ".join(map(str, versions))),)


def _reject(status: int, reason: str, enabled: frozenset[Draft]) -> HandshakeRejected:
    headers = version_header(enabled)
    if status == 426:
        headers = (("Upgrade", "websocket"), *headers)
    return HandshakeRejected(status, reason, headers)


def _is_upgrade(request: Request) -> bool:
    return "websocket" in request.headers.tokens("Upgrade")


def mentions_websocket(request: Request) -> bool:
    """Whether a request says anything of WebSocket: then it is judged as an upgrade."""
    return any(name.lower().startswith(("sec-websocket-", "websocket-")) for name, _ in
               request.headers) or _is_upgrade(request)


def detect(request: Request, enabled: frozenset[Draft]) -> Draft | None:
    """The draft of an upgrade request, None for a plain page request; else reject."""
    if request.method != "GET":
        raise HandshakeRejected(405, f"method {request.method} not allowed", (("Allow", "GET"),))
    if not mentions_websocket(request):
        return PLAIN_HTTP
    if request.http_version != "1.1":
        raise _reject(400, "WebSocket needs HTTP/1.1", enabled)
    host = request.headers.get("Host")
    if not host:
        raise _reject(400, "missing Host", enabled)
    try:
        split_host(host)  # RFC 9112 §3.2: an invalid Host is a 400
    except HandshakeRejected as exc:
        raise _reject(400, exc.reason, enabled) from None
    if not _is_upgrade(request):
        raise _reject(400, "missing Upgrade: websocket", enabled)
    if "upgrade" not in request.headers.tokens("Connection"):
        raise _reject(400, "missing Connection: Upgrade", enabled)
    draft = _table(request, enabled)
    if draft not in enabled:
        raise _reject(426, f"{draft} is not enabled on this server", enabled)
    return draft


def _table(request: Request, enabled: frozenset[Draft]) -> Draft:
    headers = request.headers
    versions = headers.get_all("Sec-WebSocket-Version")
    if versions:
        if len(versions) > 1 or not _DECIMAL.fullmatch(versions[0]):
            raise _reject(400, "malformed Sec-WebSocket-Version", enabled)
        draft = _BY_VERSION.get(int(versions[0]))
        if draft is None:
            raise _reject(426, f"unsupported Sec-WebSocket-Version {versions[0]}", enabled)
        return draft
    if "Sec-WebSocket-Key" in headers:
        raise _reject(400, "Sec-WebSocket-Key without Sec-WebSocket-Version", enabled)
    present = [name for name in _LEGACY_KEYS if name in headers]
    if len(present) == 2:
        legacy_draft = headers.get_all("Sec-WebSocket-Draft")
        if legacy_draft and legacy_draft != ["0"]:
            raise _reject(400, f"unsupported Sec-WebSocket-Draft {legacy_draft[0]}", enabled)
        return Draft.HIXIE76
    if present:
        raise _reject(400, f"{present[0]} without its pair", enabled)
    return Draft.HIXIE75
