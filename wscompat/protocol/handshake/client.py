"""The client side of every opening handshake, sans-I/O.

It writes the request a client of each generation sent and checks the answer as that
client did: hixie-75 compares an 85-byte prefix literally, hixie-76 checks the 16-byte
MD5 answer and the echoed location and origin, hybi checks the SHA-1 accept. It lets
tests, probes and replays speak to any server as an old browser would.
"""

from __future__ import annotations

import base64
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from websockets.exceptions import NegotiationError
from websockets.extensions import ClientExtensionFactory, Extension

from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.protocol.extensions import accept_response, offer_header
from wscompat.protocol.handshake import hixie75, hixie76
from wscompat.protocol.handshake.hybi import accept_key
from wscompat.protocol.http import Headers

__all__ = ["ClientHandshake", "ClientResult", "make_hixie76_key"]

_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ([^\r\n]*)\r\n")
_KEY_NOISE = [chr(c) for c in (*range(0x21, 0x30), *range(0x3A, 0x7F))]


def make_hixie76_key(rng: random.Random) -> tuple[str, int]:
    """A Sec-WebSocket-Key1/2 value made the way draft-hixie-76 §4.1 tells clients to."""
    spaces = rng.randint(1, 12)
    part = rng.randint(0, 4294967295 // spaces)
    chars = list(str(part * spaces))
    for _ in range(rng.randint(1, 12)):
        chars.insert(rng.randint(0, len(chars)), rng.choice(_KEY_NOISE))
    for _ in range(spaces):
        chars.insert(rng.randint(1, len(chars) - 1) if len(chars) > 1 else 1, " ")
    return "".join(chars), part


@dataclass(frozen=True)
class ClientResult:
    draft: Draft
    subprotocol: str | None
    headers: Headers
    leftover: bytes
    extensions: tuple[Extension, ...] = ()
    """The extensions the server agreed to, ready for the framer."""


class ClientHandshake:
    def __init__(
        self,
        draft: Draft,
        host: str,
        resource: str = "/",
        *,
        port: int | None = None,
        secure: bool = False,
        origin: str | None = "http://localhost",
        subprotocols: tuple[str, ...] = (),
        extra_headers: tuple[tuple[str, str], ...] = (),
        extensions: Sequence[ClientExtensionFactory] = (),
        rng: random.Random | None = None,
    ) -> None:
        """``extensions`` are offered in order of preference, on hybi drafts only."""
        self.draft = draft
        self._rng = rng or random.Random(os.urandom(8))
        default = 443 if secure else 80
        bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
        self.host = bracketed if port in (None, default) else f"{bracketed}:{port}"
        self.url = f"{'wss' if secure else 'ws'}://{self.host}{resource}"
        self.resource = resource
        self.origin = origin
        self.subprotocols = subprotocols
        self.extra_headers = extra_headers
        self.extensions = tuple(extensions)
        self._buffer = b""
        self.result: ClientResult | None = None
        self._expected_tail = b""
        self._key = ""

    def request(self) -> bytes:
        lines = [f"GET {self.resource} HTTP/1.1"]
        if self.draft is Draft.HIXIE75:
            lines += ["Upgrade: WebSocket", "Connection: Upgrade", f"Host: {self.host}"]
            if self.origin is not None:
                lines.append(f"Origin: {self.origin}")
            if self.subprotocols:
                lines.append(f"WebSocket-Protocol: {self.subprotocols[0]}")
            body = b""
        elif self.draft is Draft.HIXIE76:
            key1, part1 = make_hixie76_key(self._rng)
            key2, part2 = make_hixie76_key(self._rng)
            body = self._rng.randbytes(8)
            self._expected_tail = hixie76.answer(part1, part2, body)
            lines += [f"Host: {self.host}", "Connection: Upgrade", f"Sec-WebSocket-Key2: {key2}"]
            if self.subprotocols:
                lines.append(f"Sec-WebSocket-Protocol: {self.subprotocols[0]}")
            lines += ["Upgrade: WebSocket", f"Sec-WebSocket-Key1: {key1}"]
            if self.origin is not None:
                lines.append(f"Origin: {self.origin}")
        else:
            self._key = base64.b64encode(self._rng.randbytes(16)).decode()
            origin_name = "Origin" if self.draft is Draft.RFC6455 else "Sec-WebSocket-Origin"
            lines += [f"Host: {self.host}", "Upgrade: websocket", "Connection: Upgrade",
                      f"Sec-WebSocket-Key: {self._key}"]
            if self.origin is not None:
                lines.append(f"{origin_name}: {self.origin}")
            if self.subprotocols:
                lines.append(f"Sec-WebSocket-Protocol: {', '.join(self.subprotocols)}")
            offer = offer_header(self.extensions)
            if offer:
                lines.append(f"Sec-WebSocket-Extensions: {offer}")
            lines.append(f"Sec-WebSocket-Version: {self.draft.version}")
            body = b""
        lines += [f"{name}: {value}" for name, value in self.extra_headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def receive_data(self, data: bytes) -> ClientResult | None:
        """Feed response bytes; the result once the handshake is complete and valid.

        Raises HandshakeRejected with the status for a non-101 answer, and with status
        101 when a 101 answer is wrong for the draft (the client would fail it).
        """
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > 65536:
                raise HandshakeRejected(0, "response head too large")
            return None
        head, rest = self._buffer[: end + 4], self._buffer[end + 4 :]
        match = _STATUS.match(head)
        if match is None:
            raise HandshakeRejected(0, f"not an HTTP/1.1 response: {head[:40]!r}")
        status = int(match.group(1))
        if status != 101:
            raise HandshakeRejected(status, match.group(2).decode("latin-1"))
        headers = _headers(head)
        if self.draft is Draft.HIXIE76 and len(rest) < 16:
            return None
        self.result = self._validate(head, headers, rest)
        return self.result

    def _validate(self, head: bytes, headers: Headers, rest: bytes) -> ClientResult:
        fail = _invalid
        protocol: str | None
        agreed: tuple[Extension, ...] = ()
        if self.draft is Draft.HIXIE75:
            if not head.startswith(hixie75.PREFIX):
                raise fail("response does not start with the hixie-75 prefix")
            self._check_echo(headers, "WebSocket-Origin", "WebSocket-Location")
            protocol = headers.get("WebSocket-Protocol")
        elif self.draft is Draft.HIXIE76:
            if not head.startswith(b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n"):
                raise fail("wrong hixie-76 status line")
            # WebKit compared these values case-insensitively, so proxies that rewrite
            # them (nginx sends "Connection: upgrade") did not break hixie-76 clients.
            if (headers.get("Upgrade") or "").lower() != "websocket" or (
                headers.get("Connection") or ""
            ).lower() != "upgrade":
                raise fail("hixie-76 Upgrade/Connection headers are wrong")
            self._check_echo(headers, "Sec-WebSocket-Origin", "Sec-WebSocket-Location")
            if rest[:16] != self._expected_tail:
                raise fail("wrong hixie-76 challenge answer")
            rest = rest[16:]
            protocol = headers.get("Sec-WebSocket-Protocol")
        else:
            if "websocket" not in headers.tokens("Upgrade"):
                raise fail("missing Upgrade: websocket")
            if "upgrade" not in headers.tokens("Connection"):
                raise fail("missing Connection: Upgrade")
            if headers.get("Sec-WebSocket-Accept") != accept_key(self._key):
                raise fail("wrong Sec-WebSocket-Accept")
            protocol = headers.get("Sec-WebSocket-Protocol")
            try:
                agreed = accept_response(headers.get_all("Sec-WebSocket-Extensions"),
                                         self.extensions)
            except NegotiationError as exc:
                raise fail(f"Sec-WebSocket-Extensions: {exc}") from None
        if protocol is not None and protocol not in self.subprotocols:
            raise fail(f"server chose subprotocol {protocol!r}, which was not offered")
        if self.draft in (Draft.HIXIE75, Draft.HIXIE76) and self.subprotocols and not protocol:
            raise fail("server did not confirm the subprotocol")
        return ClientResult(self.draft, protocol, headers, rest, agreed)

    def _check_echo(self, headers: Headers, origin_name: str, location_name: str) -> None:
        if headers.get(location_name) != self.url:
            raise _invalid(f"{location_name} {headers.get(location_name)!r} is not {self.url!r}")
        expected_origin = self.origin if self.origin is not None else "null"
        if headers.get(origin_name) != expected_origin:
            raise _invalid(
                f"{origin_name} {headers.get(origin_name)!r} is not {expected_origin!r}"
            )


def _invalid(why: str) -> HandshakeRejected:
    """A 101 answer the client must fail: status 101 marks it as such."""
    return HandshakeRejected(101, why)


def _headers(head: bytes) -> Headers:
    items = []
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(":")
            items.append((name.strip(), value.strip()))
    return Headers(items)
