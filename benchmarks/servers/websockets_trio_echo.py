"""Echo server on the ``websockets`` trio implementation (``websockets.trio``).

Same settings as the asyncio reference: no compression, no keepalive pings.
"""

from __future__ import annotations

import argparse
import contextlib
from functools import partial

import trio
from websockets.trio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    async for message in ws:
        await ws.send(message)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-size", type=int, required=True)
    args = parser.parse_args()
    run = partial(
        serve, echo, args.port, host="127.0.0.1", max_size=args.max_size,
        compression=None, ping_interval=None,
    )
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run)
