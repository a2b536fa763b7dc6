"""Echo server on the ``websockets`` asyncio implementation, the benchmark's reference.

Compression and keepalive pings are off: the load client never negotiates
permessage-deflate, and an unsolicited ping would break its byte-exact echo check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    async for message in ws:
        await ws.send(message)


async def main(port: int, max_size: int) -> None:
    async with serve(
        echo, "127.0.0.1", port, max_size=max_size, compression=None, ping_interval=None
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-size", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.port, args.max_size))
