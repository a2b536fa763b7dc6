"""Echo server on ``trio-websocket``.

Its message queue is raised from 1 to 16 to match the other servers; its other
settings, the 4 KiB read size included, are the library's defaults.
"""

from __future__ import annotations

import argparse
import contextlib
from functools import partial

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket


async def echo(request: WebSocketRequest) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    ws = await request.accept()
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.send_message(await ws.get_message())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-size", type=int, required=True)
    args = parser.parse_args()
    run = partial(
        serve_websocket, echo, "127.0.0.1", args.port, ssl_context=None,
        max_message_size=args.max_size, message_queue_size=16,
    )
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run)
