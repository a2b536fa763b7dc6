"""``wscompat proxy``: the gateway on the command line.

It takes every ``wscompat serve`` flag (the same listener, limits, TLS, origin policy,
drafts, logging, metrics and workers; ``--app`` excepted: the backend is the
application) and its own: where to go (``--upstream``, ``--route``), how to get there
(``--upstream-timeout``, ``--upstream-cafile``, ``--upstream-compression``), what the
backend is told (``--forward-headers``, ``--trust-forwarded``) and what crosses
(``--hixie-binary`` gains ``drop``, ``--upstream-failure-code``).
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Sequence
from typing import Any

from wscompat.gateway.headers import DEFAULT_FORWARD, HeaderPolicy
from wscompat.gateway.proxy import Gateway, GatewayConfig
from wscompat.gateway.routes import RouteTable, parse_route, parse_upstream
from wscompat.options import ServerOptions
from wscompat.trio.server import Handler

__all__ = ["COMMANDS", "add_commands", "run"]

COMMANDS = ("proxy",)
EXIT_FAILED, EXIT_INTERRUPTED = 1, 130

_EXAMPLES = """examples:
  wscompat proxy --upstream ws://127.0.0.1:9000/      every draft in front of one backend
  wscompat proxy --upstream ws://10.0.0.5:9000/ --route /vnc=tcp://10.0.0.6:5900
                                                   one path to a VNC server, websockify style
  wscompat proxy --upstream wss://app.internal/ --upstream-cafile ca.pem
  wscompat proxy --route /chat=ws://10.0.0.5:9000/ --route /feed=ws+unix:/run/feed.sock
                                                   no default: other paths get 404

The client gets its 101 only once the backend has accepted; a backend's refusal is the
client's (the same status), 502 when it cannot be reached, 504 when it is too slow.
See docs/gateway.md for the headers the backend gets and how closes map across drafts.
"""


def _upstream(text: str) -> str:
    try:
        parse_upstream(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _route(text: str) -> str:
    try:
        parse_route(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _header_names(text: str) -> list[str]:
    names = serve_cli._names(text)
    try:
        HeaderPolicy(tuple(names))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return names


def add_commands(sub: Any) -> None:
    """Add ``proxy`` to the ``wscompat`` subcommands."""
    p = sub.add_parser(
        "proxy",
        help="run a gateway: clients of every draft in front of an RFC 6455 or TCP backend",
        description="Serve WebSocket clients of every generation and carry each one to an "
        "existing backend over one RFC 6455 connection (or a TCP stream, websockify "
        "style), with no change to the backend.",
        formatter_class=serve_cli._HelpFormatter,
        epilog=_EXAMPLES,
        usage="%(prog)s --upstream URL [options]",
    )
    serve_cli._add_serve_arguments(p)
    for action in p._actions:
        if action.dest == "hixie_binary":
            action.choices = ["error", "base64", "drop"]
            action.help = ("a binary message from the backend to a text-only hixie client: "
                           "error closes both (the backend gets 1003), base64 sends it as "
                           "base64 text, drop leaves it out")
        elif action.dest == "app":
            action.help = argparse.SUPPRESS  # the backend is the application
        elif action.dest == "subprotocols":
            action.help = ("only these of a client's subprotocols are offered to the "
                           "backend (by default all); the backend chooses")
    g = p.add_argument_group("gateway")
    g.add_argument("--upstream", type=_upstream, metavar="URL",
                   help="the default backend: ws://, wss://, ws+unix:PATH[:/resource], "
                   "tcp://host:port or unix:PATH")
    g.add_argument("--route", type=_route, action="append", default=[],
                   metavar="PREFIX=URL",
                   help="paths under PREFIX go to URL (repeatable; the longest prefix wins; "
                   "the prefix is replaced by URL's path)")
    g.add_argument("--upstream-timeout", type=serve_cli._seconds, default=5.0,
                   metavar="SECONDS",
                   help="time to connect to the backend and complete its handshake (504 "
                   "after; kept under --handshake-timeout)")
    g.add_argument("--upstream-cafile", type=serve_cli._file, metavar="PEM",
                   help="CA certificates to check wss:// backends with, instead of the "
                   "system's")
    g.add_argument("--upstream-compression", action="store_true",
                   help="offer permessage-deflate to WebSocket backends")
    g.add_argument("--forward-headers", type=_header_names,
                   default=list(DEFAULT_FORWARD), metavar="LIST",
                   help="request fields passed to the backend as the client sent them, "
                   "comma-separated ('' passes none)")
    g.add_argument("--trust-forwarded", action="store_true",
                   help="keep and extend the client's X-Forwarded-* and Forwarded fields "
                   "(only behind a proxy of yours that sets them); by default they are "
                   "replaced")
    g.add_argument("--upstream-failure-code", type=int, choices=[1011, 1014], default=1011,
                   help="close code for an RFC 6455 client whose backend failed (hybi-07/08 "
                   "always get 1011)")
    p.set_defaults(command_parser=p)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """Carry out ``proxy``; the exit status (2 and the usage line for a usage error).
    ``argv`` is the command line, for ``--workers`` (``sys.argv[1:]`` by default)."""
    parser: argparse.ArgumentParser = args.command_parser
    try:
        _proxy(args, list(sys.argv[1:] if argv is None else argv))
    except serve_cli.UsageError as exc:
        parser.error(str(exc))
    except serve_cli.StartupError as exc:
        print(f"wscompat: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


def gateway_config(args: argparse.Namespace) -> GatewayConfig:
    """The gateway part of a parsed ``proxy`` command line (UsageError, StartupError)."""
    if args.app is not None:
        raise serve_cli.UsageError("argument --app: the backend is the application; "
                                   "'wscompat serve --app' runs a handler of your own")
    if args.upstream is None and not args.route:
        raise serve_cli.UsageError("give --upstream URL, or at least one --route PREFIX=URL")
    try:
        routes = RouteTable(None if args.upstream is None else parse_upstream(args.upstream),
                            [parse_route(text) for text in args.route])
    except ValueError as exc:
        raise serve_cli.UsageError(f"argument --route: {exc}") from None
    context = None
    if args.upstream_cafile is not None:
        serve_cli._read("--upstream-cafile", args.upstream_cafile)
        try:
            context = ssl.create_default_context(cafile=args.upstream_cafile)
        except (ssl.SSLError, OSError) as exc:
            raise serve_cli.StartupError(
                f"--upstream-cafile {args.upstream_cafile!r}: no usable CA certificate: "
                f"{getattr(exc, 'reason', None) or exc}") from None
    return GatewayConfig(
        routes,
        headers=HeaderPolicy(tuple(args.forward_headers), args.trust_forwarded),
        connect_timeout=args.upstream_timeout,
        upstream_ssl_context=context,
        upstream_compression=args.upstream_compression,
        hixie_binary=args.hixie_binary,
        failure_code=args.upstream_failure_code,
    )


def _proxy(args: argparse.Namespace, argv: list[str]) -> None:
    """As ``wscompat serve`` runs, with the gateway as the application; ``--workers``
    start ``wscompat proxy`` with the same command line."""
    config = gateway_config(args)
    server_args = argparse.Namespace(**vars(args))
    # The gateway sends nothing binary to hixie itself; the server option sees no "drop".
    server_args.hixie_binary = "base64" if args.hixie_binary == "base64" else "error"

    def app(options: ServerOptions) -> tuple[Handler, ServerOptions]:
        gateway = Gateway(config, options)
        return gateway.handler, gateway.options

    serve_cli._serve(server_args, argv, app)


# Last, and as a module: wscompat.cli imports this module to register ``proxy``, so
# whichever of the two is imported first, each finds the other's names at call time.
import wscompat.cli as serve_cli  # noqa: E402
