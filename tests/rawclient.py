"""A raw TCP peer for tests that must send what no well-behaved client would."""

from __future__ import annotations

import trio

from .framing_helpers import client_frame

UPGRADE13 = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def read_until(stream: trio.abc.Stream, marker: bytes, limit: int = 1 << 20) -> bytes:
    data = b""
    while marker not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
        assert len(data) < limit
    return data


async def read_to_eof(stream: trio.abc.Stream, limit: int = 1 << 22) -> bytes:
    data = b""
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            break
        if not chunk:
            break
        data += chunk
        assert len(data) < limit
    return data


class RawPeer(trio.abc.HalfCloseableStream):
    """A raw TCP stream whose first reads return what came after the 101: the server
    may write frames in the same segment as its answer."""

    def __init__(self, stream: trio.SocketStream, leftover: bytes) -> None:
        self.socket = stream.socket
        self._stream = stream
        self._leftover = leftover

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._leftover:
            data, self._leftover = self._leftover, b""
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def open_rfc6455(port: int) -> RawPeer:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(UPGRADE13)
    data = await read_until(stream, b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 101 "), data
    _, _, leftover = data.partition(b"\r\n\r\n")
    return RawPeer(stream, leftover)


def close_code(data: bytes) -> int | None:
    """The code of the first close frame in server bytes (1005 for an empty one)."""
    pos = 0
    while pos + 2 <= len(data):
        opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        head = 2
        if length == 126:
            length, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            length, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
        if opcode == 8:
            body = data[pos + head : pos + head + length]
            return int.from_bytes(body[:2], "big") if len(body) >= 2 else 1005
        pos += head + length
    return None


__all__ = ["UPGRADE13", "client_frame", "close_code", "open_rfc6455", "read_to_eof", "read_until"]
