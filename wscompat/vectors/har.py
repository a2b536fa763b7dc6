"""HAR files in (a browser's "Save all as HAR"), WebSocket exchanges out.

Chrome's DevTools export a WebSocket as an entry with ``_resourceType: "websocket"``:
the upgrade request and the 101 answer (each a list of header fields), and
``_webSocketMessages``, each ``{"type": "send" | "receive", "opcode": 1 | 2, "data"}``
with binary data in base64. This module rebuilds the bytes those stand for as an
:class:`~wscompat.vectors.capture.Exchange`, and says what a HAR file cannot carry:

- **masks**: the client's frames are written with the mask ``00 00 00 00``;
- **frames**: each message is one frame (fragmentation is not kept), and pings, pongs
  and the closing handshake are not in the file at all, nor how the connection ended;
- **the wire form of the heads**: header names, values and order as listed, each line
  ended by CRLF;
- **compression**: messages are kept inflated, so the compressed frames cannot be
  rebuilt; an entry whose answer accepted an extension is imported without it (the
  offer and the acceptance are left out of both heads, and the vector says so).

Entries of HTTP/2 (RFC 8441) WebSockets have no HTTP/1.1 upgrade to rebuild and are
passed over with a note.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wscompat.drafts import Draft
from wscompat.protocol.framing.lengths import hybi_header_bytes
from wscompat.vectors.capture import Exchange
from wscompat.vectors.recording import guess_draft

__all__ = ["HarError", "looks_like_har", "read_har"]

MAX_HAR_BYTES = 256 * 2**20
"""Bytes of one HAR file read (a HAR holds every response body of a page)."""
_EXTENSIONS = "sec-websocket-extensions"
_ZERO_MASK = b"\x00\x00\x00\x00"


class HarError(ValueError):
    """The file is not a HAR file this reader understands."""


def looks_like_har(head: bytes) -> bool:
    """Whether a file's first bytes look like a HAR (JSON) file."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def read_har(path: Path) -> tuple[list[tuple[str, Exchange]], list[str]]:
    """``(entry name, exchange)`` for each WebSocket entry of the file, and notes on
    the entries passed over."""
    if path.stat().st_size > MAX_HAR_BYTES:
        raise HarError(f"{path}: larger than {MAX_HAR_BYTES} bytes")
    try:
        raw = json.loads(path.read_bytes().decode("utf-8-sig"))
        entries = raw["log"]["entries"]
        if not isinstance(entries, list):
            raise TypeError("log.entries is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise HarError(f"{path}: not a HAR file ({exc})") from None
    found: list[tuple[str, Exchange]] = []
    skipped: list[str] = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or (
                "_webSocketMessages" not in entry and entry.get("_resourceType") != "websocket"):
            continue
        name = f"entry {number}"
        try:
            exchange = _exchange(entry)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            skipped.append(f"{name}: cannot be read ({exc})")
            continue
        if isinstance(exchange, str):
            skipped.append(f"{name}: {exchange}")
        else:
            found.append((f"{name} ({exchange.server})", exchange))
    return found, skipped


def _fields(headers: Any) -> list[tuple[str, str]]:
    return [(str(h["name"]), str(h["value"])) for h in headers]


def _head(first_line: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [first_line, *(f"{name}: {value}" for name, value in headers), "", ""]
    return "\r\n".join(lines).encode("utf-8")


def _version(value: Any) -> str:
    text = str(value or "").strip()
    return text if text.upper().startswith("HTTP/1") else "HTTP/1.1"


def _exchange(entry: dict[str, Any]) -> Exchange | str:
    """The entry's exchange, or why it cannot be one."""
    request, response = entry["request"], entry["response"]
    if str(request.get("httpVersion", "")).lower() in ("h2", "http/2", "http/2.0", "h3"):
        return "a WebSocket over HTTP/2 or HTTP/3: no HTTP/1.1 upgrade to rebuild"
    request_fields = [(n, v) for n, v in _fields(request["headers"]) if not n.startswith(":")]
    response_fields = _fields(response["headers"])
    notes = ["a HAR file keeps messages, not frames: each message is written as one "
             "frame, the client's masked with 00 00 00 00 (the real masks are not in the "
             "file), and pings, pongs, the closing handshake and how the connection "
             "ended are not in it"]
    if any(name.lower() == _EXTENSIONS for name, _ in response_fields):
        accepted = ", ".join(v for n, v in response_fields if n.lower() == _EXTENSIONS)
        notes.append(f"the server accepted {accepted}, but a HAR file keeps messages "
                     "inflated: the offer and the acceptance are left out of the heads")
        request_fields = [(n, v) for n, v in request_fields if n.lower() != _EXTENSIONS]
        response_fields = [(n, v) for n, v in response_fields if n.lower() != _EXTENSIONS]
    url = urlsplit(str(request["url"]))
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    client_head = _head(f"{request.get('method', 'GET')} {target} "
                        f"{_version(request.get('httpVersion'))}", request_fields)
    status = int(response["status"])
    reason = str(response.get("statusText") or "").strip()
    server_head = _head(f"{_version(response.get('httpVersion'))} {status} {reason}".rstrip(),
                        response_fields)
    draft = guess_draft(client_head)
    if draft is Draft.HIXIE76:
        return "a hixie-76 request, whose 8 key bytes after the head a HAR file does not keep"
    # Named without query or credentials: those are in the request, redacted on demand.
    where = f"{url.scheme}://{url.netloc.rpartition('@')[2]}{url.path or '/'}"
    exchange = Exchange(client="the browser", server=where, started=_started(entry),
                        notes=notes)
    exchange.events = [("client", client_head), ("server", server_head)]
    if status != 101:
        return exchange
    for message in entry.get("_webSocketMessages") or ():
        side = {"send": "client", "receive": "server"}.get(message["type"])
        opcode = int(message["opcode"])
        if side is None or opcode not in (1, 2):
            continue
        data = message["data"]
        payload = (str(data).encode("utf-8") if opcode == 1 else
                   base64.b64decode(str(data), validate=True))
        if draft in (Draft.HIXIE75, Draft.HIXIE76):
            if opcode != 1:
                return "a binary message on a hixie connection, which has no binary frames"
            frame = b"\x00" + payload + b"\xff"
        elif side == "client":
            header = hybi_header_bytes(0x80 | opcode, len(payload))
            frame = header[:1] + bytes((header[1] | 0x80,)) + header[2:] + _ZERO_MASK + payload
        else:
            frame = hybi_header_bytes(0x80 | opcode, len(payload)) + payload
        if exchange.events[-1][0] == side:
            exchange.events[-1] = (side, exchange.events[-1][1] + frame)
        else:
            exchange.events.append((side, frame))
    return exchange


def _started(entry: dict[str, Any]) -> datetime.datetime | None:
    try:
        started = datetime.datetime.fromisoformat(str(entry["startedDateTime"]))
    except (KeyError, ValueError):
        return None
    return started.astimezone(datetime.UTC) if started.tzinfo else started
