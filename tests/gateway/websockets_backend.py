"""A backend for the gateway tests on the ``websockets`` asyncio server (RFC 6455 only).

    python websockets_backend.py [--port N] [--unix PATH] [--tls PEM] [--first-subprotocol]

Prints ``listening PORT`` (or ``listening PATH``) once it accepts connections; with
``--tls`` it serves wss:// with the certificate and key in PEM. What a
connection gets depends on its path:

``/headers...``    first a JSON text message: the path, the request's header fields, the
                   subprotocol chosen and the extensions agreed; then it echoes
``/reject/NNN``    refused with HTTP status NNN
``/slow-accept``   answered after 60 s (longer than any gateway waits)
``/close/NNNN``    echoes one message, then closes with code NNNN, reason "bye"
``/binary``        sends the bytes 00 01 02 first, then echoes
``/reset``         echoes one message, then resets the TCP connection
``/cut``           echoes one message, then writes half a frame and closes TCP
``/deaf``          never reads (its TCP window fills up)
``/flood/KEY``     sends 64 KiB binary messages as fast as it may, forever, counting
                   them under KEY
``/record/KEY``    echoes, and keeps how the connection closed (code, reason) under KEY
``/recorded/KEY``  one JSON text message: what is kept under KEY (null if nothing
                   after 5 s)
anything else      echoes: text as text, binary as binary

Subprotocols: ``superchat`` is chosen if offered, else ``chat``, else none; with
``--first-subprotocol``, the first one offered, as ``wscompat serve`` does. Keepalive
pings are off (the gateway's pings are answered by the library all the same).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import ssl
import struct
import sys
from collections.abc import Sequence

from websockets.asyncio.server import ServerConnection, serve, unix_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

FLOOD_MESSAGE = bytes(65536)
RECORDS: dict[str, object] = {}
"""What ``/record/KEY`` and ``/flood/KEY`` connections left, by KEY."""


FIRST_OFFERED = False


def select(conn: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    if FIRST_OFFERED:
        return offered[0] if offered else None
    for name in ("superchat", "chat"):
        if name in offered:
            return Subprotocol(name)
    return None


async def process_request(conn: ServerConnection, request: Request) -> Response | None:
    path = request.path
    if path.startswith("/reject/"):
        status = int(path.removeprefix("/reject/")[:3])
        return conn.respond(status, f"refused by the backend with {status}\n")
    if path.startswith("/slow-accept"):
        await asyncio.sleep(60)
    return None


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request else "/"
    try:
        if path.startswith("/headers"):
            assert ws.request is not None
            await ws.send(json.dumps({
                "path": path,
                "headers": list(ws.request.headers.raw_items()),
                "subprotocol": ws.subprotocol,
                "extensions": [ext.name for ext in ws.protocol.extensions],
            }))
        elif path.startswith("/close/"):
            await ws.send(await ws.recv())
            await ws.close(int(path.removeprefix("/close/")[:4]), "bye")
            return
        elif path == "/binary":
            await ws.send(b"\x00\x01\x02")
        elif path in ("/reset", "/cut"):
            await ws.send(await ws.recv())
            transport = ws.transport
            if path == "/cut":
                transport.write(b"\x81\x7e\x01\x00" + b"x" * 10)  # 256 bytes announced
                await asyncio.sleep(0.05)
                transport.close()
            else:
                sock = transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            await asyncio.sleep(3600)  # the connection is gone; the library finds out
            return
        elif path == "/deaf":
            ws.transport.pause_reading()
            await asyncio.sleep(3600)
            return
        elif path.startswith("/flood/"):
            key = path.removeprefix("/flood/")
            RECORDS[key] = 0
            while True:
                await ws.send(FLOOD_MESSAGE)
                RECORDS[key] = int(str(RECORDS[key])) + 1
        elif path.startswith("/recorded/"):
            key = path.removeprefix("/recorded/")
            for _ in range(100):
                if key in RECORDS:
                    break
                await asyncio.sleep(0.05)
            await ws.send(json.dumps(RECORDS.get(key)))
            await ws.close()
            return
        elif path.startswith("/record/"):
            try:
                async for message in ws:
                    await ws.send(message)
            finally:
                RECORDS[path.removeprefix("/record/")] = {
                    "code": ws.close_code, "reason": ws.close_reason}
            return
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def main(port: int, unix: str | None, tls: str | None) -> None:
    subprotocols = [Subprotocol("superchat"), Subprotocol("chat")]
    if unix is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(unix)
        server = await unix_serve(
            handler, unix, process_request=process_request, select_subprotocol=select,
            subprotocols=subprotocols, ping_interval=None, max_size=2**24)
        print(f"listening {unix}", flush=True)
    else:
        context = None
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls)
        server = await serve(
            handler, "127.0.0.1", port, process_request=process_request,
            select_subprotocol=select, subprotocols=subprotocols, ping_interval=None,
            max_size=2**24, ssl=context)
        print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--unix")
    parser.add_argument("--tls", metavar="PEM")
    parser.add_argument("--first-subprotocol", action="store_true")
    args = parser.parse_args()
    FIRST_OFFERED = args.first_subprotocol
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.port, args.unix, args.tls))
    sys.exit(0)
