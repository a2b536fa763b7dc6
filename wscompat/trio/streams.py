"""Stream helpers for the trio layer."""

from __future__ import annotations

import trio

__all__ = ["PrefixedStream"]


class PrefixedStream(trio.abc.Stream):
    """A stream that first gives back bytes already read from it.

    The sniffer has to read a TLS ClientHello's first bytes to recognise it; the TLS
    layer then needs to see them again, so they are put in front of the stream.
    """

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self.stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            chunk, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return chunk
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()
