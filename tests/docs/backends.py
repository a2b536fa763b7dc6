"""Stand-ins for the backends a page's ``wscompat proxy`` names on the reader's network.

A page shows ``--upstream ws://10.0.0.5:9000/`` or ``--route /vnc=tcp://10.0.0.6:5900``;
nothing listens there on the machine that checks the page, so the checker starts a
backend of the same kind on a free port (or a Unix socket in the test's directory) and
hands the gateway the URL rewritten to it (:func:`located`): a ``wscompat serve`` echo
server for a WebSocket backend, and a byte echo for a stream. The byte echoes and the
Unix socket in front of a ``ws+unix:`` backend's echo server run as tasks of the test's
own trio run: what they do is plain TCP, and the WebSocket side is a real server.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio

from wscompat.gateway.routes import Upstream

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts a page's URL may name a server of its own block by."""


def located(upstream: Upstream, where: int | Path) -> str:
    """``upstream``'s URL aimed at ``where``: a loopback port, or a Unix socket (for
    ``unix:`` and ``ws+unix:``), with its resource kept."""
    if isinstance(where, Path):
        assert upstream.kind in ("unix", "ws+unix"), upstream
        resource = f":{upstream.path}" if upstream.path is not None else ""
        return f"{upstream.kind}:{where}{resource}"
    assert upstream.kind in ("ws", "wss", "tcp"), upstream
    return f"{upstream.kind}://127.0.0.1:{where}{upstream.path or ''}"


async def echo_bytes(stream: trio.abc.Stream) -> None:
    """Send back every byte received, until the peer closes."""
    async with stream:
        try:
            async for data in stream:
                await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def relay(port: int, stream: trio.abc.Stream) -> None:
    """Carry ``stream``'s bytes to ``127.0.0.1:port`` and back, until either side ends."""
    async with (stream, await trio.open_tcp_stream("127.0.0.1", port) as server,
                trio.open_nursery() as nursery):
        nursery.start_soon(pump, stream, server, nursery.cancel_scope)
        nursery.start_soon(pump, server, stream, nursery.cancel_scope)


async def pump(source: trio.abc.Stream, sink: trio.abc.Stream, done: trio.CancelScope) -> None:
    try:
        async for data in source:
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    done.cancel()


async def tcp_echo(nursery: trio.Nursery) -> int:
    """A byte echo on a free loopback port, which it returns."""
    listeners: list[trio.SocketListener] = await nursery.start(
        partial(trio.serve_tcp, echo_bytes, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


async def unix_server(nursery: trio.Nursery, path: Path, port: int | None) -> None:
    """A Unix socket at ``path`` that echoes bytes, or relays them to ``port``."""
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen()
    handler = echo_bytes if port is None else partial(relay, port)
    await nursery.start(trio.serve_listeners, handler, [trio.SocketListener(sock)])
