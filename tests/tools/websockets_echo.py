"""An echo server on the ``websockets`` asyncio implementation, a peer for the tools
tests: RFC 6455 only, permessage-deflate on (the library's default), and the
subprotocol ``chat`` chosen when offered (and none, rather than a refusal,
otherwise).

    python tests/tools/websockets_echo.py PORT      (0 picks a free port)

Prints ``listening PORT`` once it accepts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence

from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def chat_if_offered(ws: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """``chat`` when the client offers it; no subprotocol (not a refusal) otherwise."""
    return Subprotocol("chat") if "chat" in offered else None


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port, select_subprotocol=chat_if_offered) as server:
        sockets = list(server.sockets)
        print(f"listening {sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1])))
