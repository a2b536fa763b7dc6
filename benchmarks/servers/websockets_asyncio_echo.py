"""Echo server on the ``websockets`` asyncio implementation, the benchmark's reference.

Compression and keepalive pings are off: the load client never negotiates
permessage-deflate, and an unsolicited ping would break its byte-exact echo check.
``--deflate`` turns permessage-deflate on with zlib's defaults (15-bit window, level 6,
memLevel 8), as wscompat's, for ``bench_compression.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from websockets.asyncio.server import ServerConnection, serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory


async def echo(ws: ServerConnection) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    async for message in ws:
        await ws.send(message)


async def main(port: int, max_size: int, deflate: bool = False) -> None:
    extensions = [ServerPerMessageDeflateFactory()] if deflate else None
    async with serve(
        echo, "127.0.0.1", port, max_size=max_size, compression=None, ping_interval=None,
        extensions=extensions,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-size", type=int, required=True)
    parser.add_argument("--deflate", action="store_true", help="accept permessage-deflate")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.port, args.max_size, args.deflate))
