"""``wscompat`` on the command line: serve an echo server or your own handler."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

import trio

from wscompat.drafts import parse_drafts
from wscompat.options import ServerOptions, UpgradeRequest
from wscompat.protocol.extensions import COMPRESSION_MODES
from wscompat.trio.connection import Connection
from wscompat.trio.server import Handler, serve, serve_policy
from wscompat.vectors.cli import COMMANDS as VECTOR_COMMANDS
from wscompat.vectors.cli import add_commands as add_vector_commands
from wscompat.vectors.cli import run as run_vector_command

__all__ = ["echo", "main"]

logger = logging.getLogger("wscompat.cli")


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


def _count(text: str) -> int | None:
    return None if text.strip().lower() == "none" else int(text)


def _seconds(text: str) -> float | None:
    return None if text.strip().lower() == "none" else float(text)


def _load_app(spec: str) -> Handler:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise argparse.ArgumentTypeError("--app takes module:function, e.g. myapp:handler")
    sys.path.insert(0, "")
    handler = getattr(importlib.import_module(module_name), attr)
    if not callable(handler):
        raise argparse.ArgumentTypeError(f"{spec} is not callable")
    return handler  # type: ignore[no-any-return]


_EXAMPLES = """examples:
  wscompat serve --port 8080                    echo server for every draft on port 8080
  wscompat serve --drafts 13,8 --port 8080      only RFC 6455 and hybi-08 clients
  wscompat serve --app chat:handler             serve async def handler(ws) from chat.py
  wscompat serve --policy-port 843              also answer Flash policy requests on 843
  wscompat serve --max-message-size 16MiB       accept messages of up to 16 MiB
  wscompat serve --compress-min-size 256        compress only messages of 256 bytes or more
  wscompat serve --record captured/             write each connection as a test vector

Each connection is logged on one line: remote address, path, draft, origin, duration,
bytes in and out, close code, who closed and the negotiated extension.
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option list, examples kept as written."""


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
        formatter_class=_HelpFormatter,
        epilog=_EXAMPLES,
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
    s.add_argument("--max-connections", type=_count, default=d.max_connections, metavar="N",
                   help="connections served at once, handshakes included (503 above); "
                   "'none' = no limit")
    s.add_argument("--idle-timeout", type=_seconds, default=d.idle_timeout, metavar="SECONDS",
                   help="close connections that received nothing for this long (1001)")
    s.add_argument("--ping-interval", type=_seconds, default=d.ping_interval,
                   metavar="SECONDS", help="keepalive ping interval on drafts that have ping")
    s.add_argument("--ping-timeout", type=float, default=d.ping_timeout, metavar="SECONDS",
                   help="drop a peer whose keepalive pong is this late (1011)")
    s.add_argument("--origins", metavar="LIST",
                   help="allowed origins, comma-separated, '*' as a wildcard "
                   "(https://app.example,https://*.example.com); others get 403")
    s.add_argument("--refuse-missing-origin", action="store_true",
                   help="refuse requests that carry no origin (403)")
    s.add_argument("--certfile", metavar="PEM",
                   help="TLS certificate chain: serve wss:// on the same port as ws://")
    s.add_argument("--keyfile", metavar="PEM", help="TLS private key (if not in --certfile)")
    s.add_argument("--require-tls", action="store_true",
                   help="with --certfile: refuse plain ws:// connections")
    s.add_argument("--log-payloads", action="store_true",
                   help="log the start of every message at debug level (payloads may be "
                   "private)")
    s.add_argument("--compression", choices=list(COMPRESSION_MODES), default=d.compression,
                   help="compression extensions accepted when a client offers them")
    s.add_argument("--compress-min-size", type=_size, default=d.compress_min_size,
                   metavar="BYTES", help="send shorter messages uncompressed")
    s.add_argument("--compression-window-bits", type=int, choices=range(9, 16),
                   default=d.compression_window_bits, metavar="9-15",
                   help="LZ77 window of the server's compressor (lower saves memory)")
    s.add_argument("--compression-level", type=int, choices=range(10),
                   default=d.compression_level, metavar="0-9",
                   help="zlib level of the server's compressor (1 fastest, 9 smallest)")
    s.add_argument("--compression-memory-level", type=int, choices=range(1, 10),
                   default=d.compression_memory_level, metavar="1-9",
                   help="zlib memLevel of the server's compressor (lower saves memory)")
    s.add_argument("--close-timeout", type=float, default=d.close_timeout, metavar="SECONDS",
                   help="time allowed for the peer's part of the closing handshake")
    s.add_argument("--secure", action="store_true",
                   help="say wss:// in hixie locations (behind a TLS-terminating proxy)")
    s.add_argument("--hixie-binary", choices=["error", "base64"], default=d.hixie_binary,
                   help="what sending bytes to a text-only hixie client does")
    s.add_argument("--policy-port", type=int, default=None, metavar="PORT",
                   help="also answer Flash socket policy requests on this port (Flash asks "
                   "843 first); the WebSocket port always answers them")
    s.add_argument("--policy-file", metavar="PATH",
                   help="cross-domain policy XML to send (default: allow every domain, "
                   "every port)")
    s.add_argument("--record", metavar="DIR",
                   help="write each connection as a test vector under DIR/<draft>/ (Cookie "
                   "and Authorization redacted); see docs/vectors.md")
    s.add_argument("--record-frames", type=int, default=d.record_frames, metavar="N",
                   help="with --record: frames kept each way after the handshake")
    s.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="logging verbosity")
    add_vector_commands(sub)
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
        "hixie_binary": args.hixie_binary,
        "max_connections": args.max_connections,
        "idle_timeout": args.idle_timeout,
        "ping_interval": args.ping_interval,
        "ping_timeout": args.ping_timeout,
        "allow_missing_origin": not args.refuse_missing_origin,
        "require_tls": args.require_tls,
        "log_payloads": args.log_payloads,
        "compression": args.compression,
        "compress_min_size": args.compress_min_size or 0,
        "compression_window_bits": args.compression_window_bits,
        "compression_level": args.compression_level,
        "compression_memory_level": args.compression_memory_level,
        "record_dir": args.record,
        "record_frames": args.record_frames,
    }
    if args.origins is not None:
        kwargs["origins"] = [o.strip() for o in args.origins.split(",") if o.strip()]
    if args.certfile is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
        kwargs["ssl_context"] = context
    elif args.require_tls or args.keyfile:
        raise ValueError("--require-tls and --keyfile need --certfile")
    if args.policy_file is not None:
        with open(args.policy_file, encoding="utf-8") as file:
            kwargs["policy"] = file.read()
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
    if args.command in VECTOR_COMMANDS:
        return run_vector_command(args)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        options = _options(args)
        handler = echo if args.app is None else _load_app(args.app)
    except (ValueError, OSError, argparse.ArgumentTypeError, ImportError, AttributeError) as exc:
        parser.error(str(exc))
    host = None if args.host in ("", "*") else args.host
    trio.run(partial(_serve_all, handler, host, args.port, options, args.policy_port))
    return 0


async def _serve_all(
    handler: Handler, host: str | None, port: int, options: ServerOptions,
    policy_port: int | None,
) -> None:
    """Serve until SIGINT or SIGTERM, then close every connection the way its draft
    closes (1001, ``0xFF 0x00`` or a plain TCP close) within ``close_timeout``."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            if policy_port is not None:
                await nursery.start(partial(serve_policy, host, policy_port, options.policy))
            await nursery.start(partial(serve, handler, host, port, options=options))
            async for signum in signals:
                logger.info("%s received: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
