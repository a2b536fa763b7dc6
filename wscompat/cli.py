"""``wscompat`` on the command line: serve an echo server or your own handler."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

import trio

from .connection import Connection
from .drafts import parse_drafts
from .options import ServerOptions, UpgradeRequest
from .server import Handler, serve

__all__ = ["echo", "main"]


async def echo(ws: Connection) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    async for message in ws:
        await ws.send(message)


def _size(text: str) -> int | None:
    """A byte count such as ``1048576``, ``64KiB`` or ``16MiB``; ``none`` for no limit."""
    text = text.strip().lower()
    if text in ("none", "0", "unlimited"):
        return None
    units = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "k": 2**10, "m": 2**20, "g": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def _load_app(spec: str) -> Handler:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise argparse.ArgumentTypeError("--app takes module:function, e.g. myapp:handler")
    sys.path.insert(0, "")
    handler = getattr(importlib.import_module(module_name), attr)
    if not callable(handler):
        raise argparse.ArgumentTypeError(f"{spec} is not callable")
    return handler  # type: ignore[no-any-return]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wscompat",
        description="One WebSocket server for every generation of client: hixie-75, "
        "hixie-76/hybi-00, hybi-07, hybi-08 and RFC 6455, plus the Flash socket policy file.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "serve",
        help="run a server (an echo server unless --app is given)",
        description="Serve WebSocket clients of every generation on one port. Without --app "
        "every message is echoed back (text as text, binary as binary) at every path.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = ServerOptions()
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; '' or '*' for every IPv4 and IPv6 address")
    s.add_argument("--port", type=int, default=8080, help="TCP port (0 picks a free one)")
    s.add_argument("--app", metavar="MODULE:FUNCTION",
                   help="async handler(ws) to serve instead of the echo server")
    s.add_argument("--drafts", default="all", metavar="LIST",
                   help="drafts to accept, e.g. 75,76,7,8,13; others get 426")
    s.add_argument("--subprotocols", metavar="A,B",
                   help="subprotocols to accept (client's order decides); by default the "
                   "echo server accepts whatever the client offers first")
    s.add_argument("--max-message-size", type=_size, default=d.max_message_size,
                   metavar="BYTES", help="largest message received (1009 above); 'none' = no limit")
    s.add_argument("--max-frame-size", type=_size, default=d.max_frame_size, metavar="BYTES",
                   help="largest hybi frame received (1009 above)")
    s.add_argument("--max-queue", type=int, default=d.max_queue, metavar="N",
                   help="messages held for the handler before reading pauses")
    s.add_argument("--max-head-size", type=_size, default=d.max_head_size, metavar="BYTES",
                   help="largest request head (431 above)")
    s.add_argument("--max-headers", type=int, default=d.max_headers, metavar="N",
                   help="most header fields in a request (431 above)")
    s.add_argument("--handshake-timeout", type=float, default=d.handshake_timeout,
                   metavar="SECONDS", help="time allowed to complete the opening handshake")
    s.add_argument("--close-timeout", type=float, default=d.close_timeout, metavar="SECONDS",
                   help="time allowed for the peer's part of the closing handshake")
    s.add_argument("--secure", action="store_true",
                   help="say wss:// in hixie locations (behind a TLS-terminating proxy)")
    s.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="logging verbosity")
    return parser


def _options(args: argparse.Namespace) -> ServerOptions:
    kwargs: dict[str, Any] = {
        "drafts": parse_drafts(args.drafts),
        "max_message_size": args.max_message_size,
        "max_frame_size": args.max_frame_size,
        "max_queue": args.max_queue,
        "max_head_size": args.max_head_size,
        "max_headers": args.max_headers,
        "handshake_timeout": args.handshake_timeout,
        "close_timeout": args.close_timeout,
        "secure": args.secure,
    }
    if args.subprotocols is not None:
        kwargs["subprotocols"] = [p.strip() for p in args.subprotocols.split(",") if p.strip()]
    elif args.app is None:
        kwargs["select_subprotocol"] = _first_offered
    return ServerOptions(**kwargs)


def _first_offered(_: UpgradeRequest, offered: Sequence[str]) -> str | None:
    return offered[0] if offered else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        options = _options(args)
        handler = echo if args.app is None else _load_app(args.app)
    except (ValueError, argparse.ArgumentTypeError, ImportError, AttributeError) as exc:
        parser.error(str(exc))
    host = None if args.host in ("", "*") else args.host
    try:
        trio.run(partial(serve, handler, host, args.port, options=options))
    except KeyboardInterrupt:
        return 0
    return 0
