"""``wscompat`` on the command line: serve an echo server or your own handler."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import ssl
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import trio

from wscompat.drafts import Draft, parse_drafts
from wscompat.options import ServerOptions, UpgradeRequest
from wscompat.protocol.extensions import COMPRESSION_MODES
from wscompat.trio.connection import Connection
from wscompat.trio.server import Handler, serve, serve_policy
from wscompat.vectors.cli import COMMANDS as VECTOR_COMMANDS
from wscompat.vectors.cli import add_commands as add_vector_commands
from wscompat.vectors.cli import run as run_vector_command

__all__ = ["DERIVED_OPTIONS", "RENAMED_FLAGS", "SERVE_FLAGS", "echo", "main", "serve_flag_problems"]

logger = logging.getLogger("wscompat.cli")


async def echo(ws: Connection) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    async for message in ws:
        await ws.send(message)


def _bytes(text: str) -> int:
    """``1048576``, ``64KiB``, ``16MiB`` (or ``k``, ``m``, ``g``): a number of bytes."""
    number = text.strip().lower()
    units = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "k": 2**10, "m": 2**20, "g": 2**30}
    factor = 1
    for suffix, unit in units.items():
        if number.endswith(suffix):
            number, factor = number[: -len(suffix)], unit
            break
    try:
        size = int(float(number) * factor) if factor > 1 else int(number)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a byte count (e.g. 65536, 64KiB, 16MiB)"
        ) from None
    if size < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a byte count cannot be negative")
    return size


def _size(text: str) -> int | None:
    """A byte count such as ``1048576``, ``64KiB`` or ``16MiB``; ``none`` for no limit."""
    if text.strip().lower() in ("none", "0", "unlimited"):
        return None
    return _bytes(text)


def _positive_bytes(text: str) -> int:
    """A byte count of at least 1, for sizes that have no "no limit" value."""
    size = _bytes(text)
    if size < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1 byte")
    return size


def _count(text: str) -> int | None:
    return None if text.strip().lower() == "none" else int(text)


def _seconds(text: str) -> float | None:
    return None if text.strip().lower() == "none" else float(text)


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _drafts(text: str) -> frozenset[Draft]:
    try:
        return parse_drafts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _draft_list(drafts: frozenset[Draft]) -> str:
    """``drafts`` as ``--drafts`` takes them, in protocol order (``75,76,7,8,13``)."""
    return ",".join(draft.short for draft in Draft if draft in drafts)


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

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 and action.const is False:
            # A flag that turns a default-on option off states that default in its help;
            # "(default: True)" next to it would read as the flag being on.
            return action.help
        if action.default is None and action.help and "default" in action.help:
            return action.help  # the help says in words what happens without the flag
        return super()._get_help_string(action)


DERIVED_OPTIONS: dict[str, tuple[str, ...]] = {
    "select_subprotocol": ("--app", "--subprotocols"),
    "process_request": (),
    "ssl_context": ("--certfile", "--keyfile"),
    "policy": ("--policy-file",),
}
"""ServerOptions fields that have no flag of their own, each with the flags it is built
from (none: set from Python only). Without ``--app`` or ``--subprotocols`` the echo
server accepts the first subprotocol offered; ``--certfile``/``--keyfile`` build the SSL
context; ``--policy-file`` is read into ``policy``."""

SERVE_FLAGS = frozenset(
    {"host", "port", "app", "certfile", "keyfile", "policy_port", "policy_file", "log_level"}
)
"""``wscompat serve`` flags (by ``dest``) that are not a ServerOptions field: every other
flag's ``dest`` is the name of the field it sets."""

RENAMED_FLAGS: dict[str, str] = {"record_dir": "--record"}
"""Fields whose flag is not ``--field-name`` (or ``--no-field-name``)."""


def _add_serve_arguments(s: argparse.ArgumentParser) -> None:
    d = ServerOptions()

    def option(name: str, *flags: str, **kwargs: Any) -> None:
        """The flag for field ``name``: ``--name-with-dashes`` unless ``flags`` says
        otherwise, its default taken from ServerOptions."""
        kwargs.setdefault("default", getattr(d, name))
        s.add_argument(*(flags or ("--" + name.replace("_", "-"),)), dest=name, **kwargs)

    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; '' or '*' for every IPv4 and IPv6 address")
    s.add_argument("--port", type=int, default=8080, help="TCP port (0 picks a free one)")
    s.add_argument("--app", metavar="MODULE:FUNCTION",
                   help="async handler(ws) to serve instead of the echo server")
    option("drafts", type=_drafts, default=_draft_list(d.drafts), metavar="LIST",
           help="drafts to accept, e.g. 75,76,7,8,13; others get 426")
    option("subprotocols", type=_names, metavar="A,B",
           help="subprotocols to accept (client's order decides); by default the "
           "echo server accepts whatever the client offers first")
    option("max_message_size", type=_size, metavar="BYTES",
           help="largest message received (1009 above); 'none' = no limit")
    option("max_frame_size", type=_size, metavar="BYTES",
           help="largest hybi frame received (1009 above); 'none' = only the message limit")
    option("max_queue", type=int, metavar="N",
           help="messages held for the handler before reading pauses")
    option("max_queue_bytes", type=_positive_bytes, metavar="BYTES",
           help="bytes of messages held for the handler before reading pauses")
    option("read_size", type=_positive_bytes, metavar="BYTES",
           help="bytes asked of the socket per read: the most one connection reads "
           "before others are served")
    option("write_limit", type=_bytes, metavar="BYTES",
           help="bytes queued for a peer before send() waits for it to read "
           "(backpressure)")
    option("max_head_size", type=_positive_bytes, metavar="BYTES",
           help="largest request head (431 above)")
    option("max_headers", type=int, metavar="N",
           help="most header fields in a request (431 above)")
    option("handshake_timeout", type=float, metavar="SECONDS",
           help="time allowed to complete the opening handshake")
    option("max_connections", type=_count, metavar="N",
           help="connections served at once, handshakes included (503 above); "
           "'none' = no limit")
    option("idle_timeout", type=_seconds, metavar="SECONDS",
           help="close connections that received nothing for this long (1001); "
           "'none' = never")
    option("ping_interval", type=_seconds, metavar="SECONDS",
           help="keepalive ping interval on drafts that have ping; 'none' = no pings")
    option("tcp_keepalive", type=_seconds, metavar="SECONDS",
           help="TCP keepalive idle time on hixie connections, which have no ping; "
           "'none' = off")
    option("ping_timeout", type=float, metavar="SECONDS",
           help="drop a peer whose keepalive pong is this late (1011)")
    option("origins", type=_names, metavar="LIST",
           help="allowed origins, comma-separated; '*' stands for one host label "
           "(https://app.example,https://*.example.com), '*' alone for any origin but "
           "null; others, and malformed origins, get 403")
    option("allow_missing_origin", "--refuse-missing-origin", "--no-allow-missing-origin",
           action="store_false",
           help="refuse requests that carry no origin (403); by default they are "
           "accepted and hixie answers echo 'null'")
    s.add_argument("--certfile", metavar="PEM",
                   help="TLS certificate chain: serve wss:// on the same port as ws://")
    s.add_argument("--keyfile", metavar="PEM", help="TLS private key (if not in --certfile)")
    option("require_tls", action="store_true",
           help="with --certfile: refuse plain connections (HTTP gets 403, a policy "
           "request or anything else is closed unanswered)")
    option("tls_handshake_timeout", type=float, metavar="SECONDS",
           help="with --certfile: time allowed for a client's TLS handshake, before the "
           "WebSocket handshake starts")
    option("log_payloads", action="store_true",
           help="log the start of every message at debug level (payloads may be private)")
    option("log_query", action="store_true",
           help="log request paths with their query string (queries often carry tokens; "
           "by default a path is logged as /chat?…)")
    option("compression", choices=list(COMPRESSION_MODES),
           help="compression extensions accepted when a client offers them")
    option("compress_min_size", type=_bytes, metavar="BYTES",
           help="send shorter messages uncompressed")
    option("compression_window_bits", type=int, choices=range(9, 16), metavar="9-15",
           help="LZ77 window of the server's compressor (lower saves memory)")
    option("compression_level", type=int, choices=range(10), metavar="0-9",
           help="zlib level of the server's compressor (1 fastest, 9 smallest)")
    option("compression_memory_level", type=int, choices=range(1, 10), metavar="1-9",
           help="zlib memLevel of the server's compressor (lower saves memory)")
    option("close_timeout", type=float, metavar="SECONDS",
           help="time allowed for the peer's part of the closing handshake")
    option("secure", action="store_true",
           help="say wss:// in hixie locations (behind a TLS-terminating proxy)")
    option("hixie76_early_head", action=argparse.BooleanOptionalAction,
           help="send the hixie-76 101 head before key3 arrives (HTTP-mode proxies hold "
           "key3 back until they see it); --no-hixie76-early-head waits for key3")
    option("hixie_binary", choices=["error", "base64"],
           help="what sending bytes to a text-only hixie client does")
    s.add_argument("--policy-port", type=int, default=None, metavar="PORT",
                   help="also answer Flash socket policy requests on this port (Flash asks "
                   "843 first); the WebSocket port always answers them")
    s.add_argument("--policy-file", metavar="PATH",
                   help="cross-domain policy XML to send; by default every domain may "
                   "connect to every port")
    option("record_dir", "--record", metavar="DIR",
           help="write each connection as a test vector under DIR/<draft>/ "
           "(credentials, subprotocols and query values redacted); see docs/vectors.md")
    option("record_frames", type=int, metavar="N",
           help="with --record: frames kept each way after the handshake")
    _add_record_arguments(option)
    s.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="logging verbosity")


def _add_record_arguments(option: Callable[..., None]) -> None:
    """The --record flags past the first two: its caps and what it redacts."""
    option("record_max_files", type=int, metavar="N",
           help="with --record: files written before recording stops (logged once)")
    option("record_max_bytes", type=_bytes, metavar="BYTES",
           help="with --record: bytes of files written before recording stops (logged once)")
    option("record_plain", action="store_true",
           help="with --record: also record plain HTTP requests (no WebSocket upgrade)")
    option("record_redact", type=_names, metavar="LIST",
           help="with --record: header fields whose values are redacted, comma-separated "
           "(replaces the list; '' redacts none)")
    option("record_redact_query", "--no-record-redact-query", action="store_false",
           help="with --record: keep the request's query values (redacted by default)")


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
    _add_serve_arguments(s)
    add_vector_commands(sub)
    return parser


def _options(args: argparse.Namespace) -> ServerOptions:
    """The ServerOptions of a parsed ``serve`` command line: every field with a flag of
    its own is that flag's value; the fields in DERIVED_OPTIONS are built here."""
    kwargs: dict[str, Any] = {
        name: getattr(args, name) for name in ServerOptions.names() - DERIVED_OPTIONS.keys()
    }
    if args.certfile is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
        kwargs["ssl_context"] = context
    elif args.require_tls or args.keyfile:
        raise ValueError("--require-tls and --keyfile need --certfile")
    if args.require_tls and args.policy_port is not None:
        raise ValueError("--policy-port answers over plain TCP: it cannot go with --require-tls")
    if args.policy_file is not None:
        with open(args.policy_file, encoding="utf-8") as file:
            kwargs["policy"] = file.read()
    if args.subprotocols is None and args.app is None:
        kwargs["select_subprotocol"] = _first_offered
    return ServerOptions(**kwargs)


def _first_offered(_: UpgradeRequest, offered: Sequence[str]) -> str | None:
    return offered[0] if offered else None


def serve_flag_problems() -> list[str]:
    """How ``wscompat serve`` and ServerOptions disagree; empty when they agree.

    Every ServerOptions field must have exactly one flag whose ``dest`` is the field's
    name, or be listed in DERIVED_OPTIONS (and then have none); every other flag must be
    in SERVE_FLAGS; each flag is ``--field-name`` (``--no-field-name`` for an option that
    is on by default) unless listed in RENAMED_FLAGS; the command line without flags gives
    ServerOptions' defaults; and every boolean flag changes its field's default.
    """
    s = argparse.ArgumentParser()
    _add_serve_arguments(s)
    actions = [a for a in s._actions if a.dest != "help"]
    fields = ServerOptions.names()
    defaults = ServerOptions()
    parsed = s.parse_args([])
    problems: list[str] = []
    option_strings = {o for a in actions for o in a.option_strings}

    for action in actions:
        if action.dest not in fields and action.dest not in SERVE_FLAGS:
            problems.append(f"{'/'.join(action.option_strings)} sets {action.dest!r}, "
                            "neither a ServerOptions field nor in SERVE_FLAGS")
    for name in sorted(SERVE_FLAGS - {a.dest for a in actions}):
        problems.append(f"SERVE_FLAGS names {name!r}, which no flag sets")
    for name, flags in DERIVED_OPTIONS.items():
        if name not in fields:
            problems.append(f"DERIVED_OPTIONS names {name!r}, not a ServerOptions field")
        problems.extend(f"DERIVED_OPTIONS: {name} is built from {flag}, which does not exist"
                        for flag in flags if flag not in option_strings)
    for name in sorted(RENAMED_FLAGS.keys() - fields):
        problems.append(f"RENAMED_FLAGS names {name!r}, not a ServerOptions field")

    for name in sorted(fields):
        mine = [a for a in actions if a.dest == name]
        if name in DERIVED_OPTIONS:
            if mine:
                problems.append(f"{name} is in DERIVED_OPTIONS but also has a flag")
            continue
        if len(mine) != 1:
            problems.append(f"{name} has {len(mine)} flags, not one")
            continue
        action, default = mine[0], getattr(defaults, name)
        dashed = name.replace("_", "-")
        expected = {RENAMED_FLAGS[name]} if name in RENAMED_FLAGS else {
            f"--{dashed}", f"--no-{dashed}"}
        if not expected & set(action.option_strings):
            problems.append(f"{name}'s flag is {'/'.join(action.option_strings)}, "
                            f"expected one of {sorted(expected)}")
        if getattr(parsed, name) != default:
            problems.append(f"{name}: the command line defaults to {getattr(parsed, name)!r}, "
                            f"ServerOptions to {default!r}")
        if isinstance(default, bool):
            flag = f"--no-{dashed}" if default else action.option_strings[0]
            if default and flag not in action.option_strings:
                problems.append(f"{name} defaults to True but has no {flag} flag")
            elif getattr(s.parse_args([flag]), name) is default:
                problems.append(f"{flag} does not change {name} from its default {default}")
    return problems


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
