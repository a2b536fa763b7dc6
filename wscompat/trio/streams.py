"""Stream and socket helpers for the trio layer: listeners, peer addresses, prefixes."""

from __future__ import annotations

import trio

__all__ = ["PrefixedStream", "fmt_remote", "open_listeners", "remote_of"]


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


async def open_listeners(host: str | None, port: int) -> list[trio.SocketListener]:
    """Listeners on every address of ``host``, all on one port even when ``port`` is 0
    (trio would otherwise pick a different free port per address family)."""
    for _ in range(5):
        listeners = await trio.open_tcp_listeners(port, host=host)
        ports = {listener.socket.getsockname()[1] for listener in listeners}
        if port != 0 or len(ports) == 1:
            return listeners
        chosen = listeners[0].socket.getsockname()[1]
        for listener in listeners:
            await listener.aclose()
        try:
            return await trio.open_tcp_listeners(chosen, host=host)
        except OSError:
            continue  # taken in between by someone else: pick again
    raise OSError("could not find one free port for every address family")


def remote_of(stream: trio.abc.Stream) -> tuple[str, int] | None:
    sock = getattr(stream, "socket", None)
    try:
        peer = sock.getpeername() if sock is not None else None
    except OSError:
        return None
    return (str(peer[0]), int(peer[1])) if peer else None


def fmt_remote(remote: tuple[str, int] | None) -> str:
    if remote is None:
        return "-"
    host, port = remote
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
