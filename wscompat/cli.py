"""``wscompat`` on the command line: serve an echo server or your own handler."""

from __future__ import annotations

import argparse
import errno
import importlib
import importlib.metadata
import inspect
import logging
import math
import os
import socket
import ssl
import stat
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from wscompat.cliparse import byte_count, positive_byte_count
from wscompat.conformance.cli import COMMANDS as CONFORM_COMMANDS
from wscompat.conformance.cli import add_commands as add_conform_commands
from wscompat.conformance.cli import run as run_conform_command
from wscompat.drafts import Draft, DraftSet, parse_drafts
from wscompat.gateway.cli import COMMANDS as GATEWAY_COMMANDS
from wscompat.gateway.cli import add_commands as add_gateway_commands
from wscompat.gateway.cli import run as run_gateway_command
from wscompat.logformat import LOG_FORMATS, formatter
from wscompat.options import ServerOptions, UpgradeRequest
from wscompat.protocol.extensions import COMPRESSION_MODES
from wscompat.protocol.handshake.origin import validate_patterns
from wscompat.tools.cli import COMMANDS as TOOL_COMMANDS
from wscompat.tools.cli import add_commands as add_tool_commands
from wscompat.tools.cli import run as run_tool_command
from wscompat.trio.connection import Connection
from wscompat.trio.running import ListenError, is_async_callable, run
from wscompat.trio.server import Handler
from wscompat.trio.streams import bind_listeners
from wscompat.vectors.cli import COMMANDS as VECTOR_COMMANDS
from wscompat.vectors.cli import add_commands as add_vector_commands
from wscompat.vectors.cli import run as run_vector_command
from wscompat.workers import WORKER_ENV, Supervisor, worker_argv, worker_count

__all__ = [
    "DERIVED_OPTIONS", "RENAMED_FLAGS", "SERVE_FLAGS", "StartupError", "UsageError", "echo", "main",
    "serve_flag_problems",
]


async def echo(ws: Connection) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    async for message in ws:
        await ws.send(message)


class UsageError(Exception):
    """A flag's value is wrong: exit status 2, under the subcommand's usage line."""


class StartupError(Exception):
    """The flags are right but what they name fails (a file that cannot be read, a
    handler module that raises): exit status 1, one line."""


EXIT_FAILED, EXIT_INTERRUPTED = 1, 130
MAX_PORT = 65535
MAX_KEEPIDLE = 32767
"""The largest TCP keepalive idle time Linux takes (seconds)."""
MAX_FILE_BYTES = 2**20
"""The most read of a certificate, key or policy file: each is a few KiB at most."""
def _size(text: str) -> int | None:
    """A byte count such as ``1048576``, ``64KiB`` or ``16MiB``; ``none`` for no limit."""
    if text.strip().lower() in ("none", "0", "unlimited"):
        return None
    try:
        return byte_count(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or 'none' for no limit") from None


def _integer(text: str, least: int, *, none: bool = False) -> int | None:
    if none and text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < least:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least {least}"
                                         + (", or 'none' for no limit" if none else ""))
    return value


def _count(text: str) -> int:
    """A positive count (of messages, headers, files)."""
    value = _integer(text, 1)
    assert value is not None
    return value


def _optional_count(text: str) -> int | None:
    """A positive count, or ``none`` for no limit."""
    return _integer(text, 1, none=True)


def _frames(text: str) -> int:
    """Frames kept by the recorder: 0 keeps the handshake only."""
    value = _integer(text, 0)
    assert value is not None
    return value


def _port(text: str) -> int:
    """A TCP port, 0 to 65535; 0 has the system pick a free one."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port: give 0 to {MAX_PORT} (0 picks a free one)"
        )
    return port


def _number_of_seconds(text: str, *, none: str | None = None, most: float = math.inf) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= most or math.isinf(seconds):
        limit = "" if math.isinf(most) else f" up to {most:g}"
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a number of seconds above 0{limit}"
            + (f", or 'none' for {none}" if none else "")
        )
    return seconds


def _seconds(text: str) -> float:
    """A time limit in seconds, above 0 and finite."""
    return _number_of_seconds(text)


def _idle_seconds(text: str) -> float | None:
    none = "no idle timeout"
    return None if text.strip().lower() == "none" else _number_of_seconds(text, none=none)


def _ping_seconds(text: str) -> float | None:
    none = "no pings"
    return None if text.strip().lower() == "none" else _number_of_seconds(text, none=none)


def _keepalive_seconds(text: str) -> float | None:
    """TCP keepalive idle time: whole seconds for the kernel, 1 to its limit."""
    if text.strip().lower() == "none":
        return None
    seconds = _number_of_seconds(text, none="off", most=MAX_KEEPIDLE)
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the kernel counts whole seconds, from 1")
    return seconds


def _health_path(text: str) -> str | None:
    if text.strip().lower() == "none":
        return None
    if not text.startswith("/") or "?" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: a path such as /healthz, or 'none'")
    return text


def _drain_seconds(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0.0") else _number_of_seconds(text)


def _workers(text: str) -> int:
    try:
        return worker_count(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a number of processes (1 or more), or 'auto'") from None


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _subprotocols(text: str) -> list[str]:
    names = _names(text)
    for name in names:
        if not all("!" <= char <= "~" for char in name):
            raise argparse.ArgumentTypeError(
                f"{name!r}: a subprotocol is printable ASCII without spaces"
            )
    return names


def _origins(text: str) -> list[str]:
    patterns = _names(text)
    try:
        validate_patterns(patterns)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return patterns


def _drafts(text: str) -> DraftSet:
    try:
        return parse_drafts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _draft_list(drafts: frozenset[Draft], *, http2: bool = False) -> str:
    """``drafts`` as ``--drafts`` takes them, in protocol order (``75,76,7,8,13,h2``)."""
    return ",".join([*(draft.short for draft in Draft if draft in drafts),
                     *(["h2"] if http2 else [])])


class _OnOff(argparse.Action):
    """``--http2 [on|off]`` and ``--no-http2``; remembers that it was given, since an
    explicit choice outranks what ``--drafts`` implies."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if option_string is not None and option_string.startswith("--no-"):
            if values is not None:
                parser.error(f"argument {option_string}: takes no value")
            value = False
        else:
            value = values is None or values == "on"
        setattr(namespace, self.dest, value)
        setattr(namespace, f"{self.dest}_given", True)


def _host(text: str) -> str:
    """An address or name; ``[::1]`` as URLs write it is taken for ``::1``."""
    if text.startswith("[") and text.endswith("]"):
        return text[1:-1]
    return text


def _file(text: str) -> str:
    """A path to a file that exists; whether it can be read is found out by reading it."""
    try:
        mode = os.stat(text).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise argparse.ArgumentTypeError(f"{text!r}: no such file") from None
    except (OSError, ValueError):
        return text  # reading it says why
    if stat.S_ISDIR(mode):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    return text


def _directory(text: str) -> str:
    """A folder to write into: one that exists, or a path where one can be made."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    return text


def _read(flag: str, path: str) -> bytes:
    """A small file's bytes, or a StartupError naming ``flag`` and ``path``."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise StartupError(f"{flag} {path!r}: cannot read it: {_reason(exc)}") from None
    if len(data) > MAX_FILE_BYTES:
        raise StartupError(f"{flag} {path!r}: larger than {MAX_FILE_BYTES} bytes")
    return data


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _load_app(spec: str) -> Handler:
    """The handler ``--app module:function`` names, once it is known to be an async
    function of one argument: anything else would fail on every connection."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(
            f"argument --app: {spec!r} is not MODULE:FUNCTION (e.g. chat:handler)"
        )
    if "" not in sys.path:
        sys.path.insert(0, "")  # the current folder, as ``python -m`` has it
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise UsageError(
                f"argument --app: {spec!r}: no module named {exc.name!r} (run from its "
                "folder, or put that on PYTHONPATH)"
            ) from None
        raise StartupError(_import_failure(spec, exc)) from None
    except Exception as exc:
        raise StartupError(_import_failure(spec, exc)) from None
    handler: Any = module
    for name in attr.split("."):
        try:
            handler = getattr(handler, name)
        except AttributeError:
            raise UsageError(
                f"argument --app: {spec!r}: {module_name} has no {attr!r}"
            ) from None
    if not is_async_callable(handler):
        raise UsageError(
            f"argument --app: {spec!r} is not an async function: the handler must be "
            "an 'async def handler(ws)' (or an object whose __call__ is one)"
        )
    try:
        inspect.signature(handler).bind(None)
    except TypeError:
        raise UsageError(
            f"argument --app: {spec!r} must take one argument, the connection"
        ) from None
    except ValueError:
        pass  # no signature to check
    return handler  # type: ignore[no-any-return]


def _import_failure(spec: str, exc: Exception) -> str:
    """``--app``'s module raised on import: what and where, on one line."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames and not isinstance(exc, SyntaxError):  # a SyntaxError says where itself
        where = f" at {frames[-1].filename}:{frames[-1].lineno}"
    module_name = spec.partition(":")[0]
    return f"--app {spec!r}: importing {module_name} failed{where}: {type(exc).__name__}: {exc}"


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
    {"host", "port", "app", "certfile", "keyfile", "policy_port", "policy_file", "log_level",
     "log_format", "metrics_port", "metrics_host", "workers"}
)
"""``wscompat serve`` flags (by ``dest``) that are not a ServerOptions field: every other
flag's ``dest`` is the name of the field it sets."""

RENAMED_FLAGS: dict[str, str] = {"record_dir": "--record"}
"""Fields whose flag is not ``--field-name`` (or ``--no-field-name``)."""


def _add_http2_arguments(option: Callable[..., None]) -> None:
    """The HTTP/2 (RFC 8441) flags of ``serve`` and ``proxy``."""
    option("http2", "--http2", "--no-http2", action=_OnOff, nargs="?", choices=["on", "off"],
           metavar="on|off",
           help="serve HTTP/2 on the same port (ALPN h2 with TLS, the preface in cleartext) "
           "and WebSocket over it (RFC 8441); '--http2 off' or --no-http2 turns it off; "
           "by default on when --drafts names h2 (as it does by default)")
    option("h2_max_streams", type=_count, metavar="N",
           help="streams one HTTP/2 connection may have open at once")
    option("h2_max_header_list", type=positive_byte_count, metavar="BYTES",
           help="decoded header bytes in one HTTP/2 request")
    option("h2_stream_window", type=positive_byte_count, metavar="BYTES",
           help="receive window of each HTTP/2 stream: bytes a client may send a WebSocket "
           "that is not read")
    option("h2_flood_limit", type=_count, metavar="N",
           help="HTTP/2 frames of each flood kind (RST_STREAM, SETTINGS, PING, PRIORITY, "
           "empty) allowed at once, refilled at N/10 per second; past it, GOAWAY")


def _add_serve_arguments(s: argparse.ArgumentParser) -> None:
    d = ServerOptions()

    def option(name: str, *flags: str, **kwargs: Any) -> None:
        """The flag for field ``name``: ``--name-with-dashes`` unless ``flags`` says
        otherwise, its default taken from ServerOptions."""
        kwargs.setdefault("default", getattr(d, name))
        s.add_argument(*(flags or ("--" + name.replace("_", "-"),)), dest=name, **kwargs)

    s.add_argument("--host", type=_host, default="127.0.0.1",
                   help="address to listen on; '' or '*' for every IPv4 and IPv6 address")
    s.add_argument("--port", type=_port, default=8080, help="TCP port (0 picks a free one)")
    s.add_argument("--app", metavar="MODULE:FUNCTION",
                   help="async handler(ws) to serve instead of the echo server")
    option("drafts", type=_drafts, default=_draft_list(d.drafts, http2=d.http2),
           metavar="LIST",
           help="drafts to accept, e.g. 75,76,7,8,13,h2 (h2: RFC 8441, WebSocket over "
           "HTTP/2); others get 426")
    _add_http2_arguments(option)
    option("subprotocols", type=_subprotocols, metavar="A,B",
           help="subprotocols to accept (client's order decides); by default the "
           "echo server accepts whatever the client offers first")
    option("max_message_size", type=_size, metavar="BYTES",
           help="largest message received (1009 above); 'none' = no limit")
    option("max_frame_size", type=_size, metavar="BYTES",
           help="largest hybi frame received (1009 above); 'none' = only the message limit")
    option("max_queue", type=_count, metavar="N",
           help="messages held for the handler before reading pauses")
    option("max_queue_bytes", type=positive_byte_count, metavar="BYTES",
           help="bytes of messages held for the handler before reading pauses")
    option("read_size", type=positive_byte_count, metavar="BYTES",
           help="bytes asked of the socket per read: the most one connection reads "
           "before others are served")
    option("write_limit", type=byte_count, metavar="BYTES",
           help="bytes queued for a peer before send() waits for it to read "
           "(backpressure)")
    option("max_head_size", type=positive_byte_count, metavar="BYTES",
           help="largest request head (431 above)")
    option("max_headers", type=_count, metavar="N",
           help="most header fields in a request (431 above)")
    option("handshake_timeout", type=_seconds, metavar="SECONDS",
           help="time allowed to complete the opening handshake")
    option("max_connections", type=_optional_count, metavar="N",
           help="connections served at once, handshakes included (503 above); "
           "'none' = no limit")
    option("idle_timeout", type=_idle_seconds, metavar="SECONDS",
           help="close connections that received nothing for this long (1001); "
           "'none' = never")
    option("ping_interval", type=_ping_seconds, metavar="SECONDS",
           help="keepalive ping interval on drafts that have ping; 'none' = no pings")
    option("tcp_keepalive", type=_keepalive_seconds, metavar="SECONDS",
           help="TCP keepalive idle time on hixie connections, which have no ping; "
           "'none' = off")
    option("ping_timeout", type=_seconds, metavar="SECONDS",
           help="drop a peer whose keepalive pong is this late (1011)")
    option("origins", type=_origins, metavar="LIST",
           help="allowed origins, comma-separated; '*' stands for one host label "
           "(https://app.example,https://*.example.com), '*' alone for any origin but "
           "null; others, and malformed origins, get 403")
    option("allow_missing_origin", "--refuse-missing-origin", "--no-allow-missing-origin",
           action="store_false",
           help="refuse requests that carry no origin (403); by default they are "
           "accepted and hixie answers echo 'null'")
    s.add_argument("--certfile", type=_file, metavar="PEM",
                   help="TLS certificate chain: serve wss:// on the same port as ws://")
    s.add_argument("--keyfile", type=_file, metavar="PEM",
                   help="TLS private key (if not in --certfile)")
    option("require_tls", action="store_true",
           help="with --certfile: refuse plain connections (HTTP gets 403, a policy "
           "request or anything else is closed unanswered)")
    option("tls_handshake_timeout", type=_seconds, metavar="SECONDS",
           help="with --certfile: time allowed for a client's TLS handshake, before the "
           "WebSocket handshake starts")
    option("log_payloads", action="store_true",
           help="log the start of every message at debug level (payloads may be private)")
    option("log_query", action="store_true",
           help="log request paths with their query string (queries often carry tokens; "
           "by default a path is logged as /chat?…)")
    option("compression", choices=list(COMPRESSION_MODES),
           help="compression extensions accepted when a client offers them")
    option("compress_min_size", type=byte_count, metavar="BYTES",
           help="send shorter messages uncompressed")
    option("compression_window_bits", type=int, choices=range(9, 16), metavar="9-15",
           help="LZ77 window of the server's compressor (lower saves memory)")
    option("compression_level", type=int, choices=range(10), metavar="0-9",
           help="zlib level of the server's compressor (1 fastest, 9 smallest)")
    option("compression_memory_level", type=int, choices=range(1, 10), metavar="1-9",
           help="zlib memLevel of the server's compressor (lower saves memory)")
    option("close_timeout", type=_seconds, metavar="SECONDS",
           help="time allowed for the peer's part of the closing handshake")
    option("secure", action="store_true",
           help="say wss:// in hixie locations (behind a TLS-terminating proxy)")
    option("hixie76_early_head", action=argparse.BooleanOptionalAction,
           help="send the hixie-76 101 head before key3 arrives (HTTP-mode proxies hold "
           "key3 back until they see it); --no-hixie76-early-head waits for key3")
    option("hixie_binary", choices=["error", "base64"],
           help="what sending bytes to a text-only hixie client does")
    s.add_argument("--policy-port", type=_port, default=None, metavar="PORT",
                   help="also answer Flash socket policy requests on this port (Flash asks "
                   "843 first); the WebSocket port always answers them")
    s.add_argument("--policy-file", type=_file, metavar="PATH",
                   help="cross-domain policy XML to send; by default every domain may "
                   "connect to every port")
    option("record_dir", "--record", type=_directory, metavar="DIR",
           help="write each connection as a test vector under DIR/<draft>/, DIR made if "
           "missing (credentials, subprotocols and query values redacted); see "
           "docs/vectors.md")
    option("record_frames", type=_frames, metavar="N",
           help="with --record: frames kept each way after the handshake")
    _add_record_arguments(option)
    _add_operations_arguments(s, option)
    s.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="logging verbosity")
    s.add_argument("--log-format", default="text", choices=list(LOG_FORMATS),
                   help="text lines, or one JSON object per line for log shippers")


def _add_operations_arguments(s: argparse.ArgumentParser, option: Callable[..., None]) -> None:
    """Health, metrics, shutdown, processes: what running it in production needs."""
    option("proxy_protocol", action="store_true",
           help="every connection begins with a PROXY protocol header (v1 or v2, "
           "haproxy's send-proxy) giving the client's address; others are closed")
    option("health_path", type=_health_path, metavar="PATH",
           help="plain GET/HEAD here answers 200 while serving, 503 while shutting down; "
           "'none' = off")
    option("metrics", action="store_true",
           help="serve Prometheus metrics at /metrics on the WebSocket port")
    s.add_argument("--metrics-port", type=_port, default=None, metavar="PORT",
                   help="serve the metrics on this port only (not on the WebSocket port)")
    s.add_argument("--metrics-host", type=_host, default="127.0.0.1", metavar="HOST",
                   help="with --metrics-port: the address it listens on; '' or '*' for "
                   "every address")
    option("drain_time", type=_drain_seconds, metavar="SECONDS",
           help="on SIGINT/SIGTERM, answer the health check 503 for this long while still "
           "serving, then close connections")
    option("log_open", action="store_true",
           help="also log a line when a connection opens")
    option("reuse_port", action="store_true",
           help="listen with SO_REUSEPORT, so that other processes can share the port")
    s.add_argument("--workers", type=_workers, default=1, metavar="N",
                   help="server processes sharing the port (SO_REUSEPORT), supervised; "
                   "'auto' = one per CPU")


def _add_record_arguments(option: Callable[..., None]) -> None:
    """The --record flags past the first two: its caps and what it redacts."""
    option("record_max_files", type=_count, metavar="N",
           help="with --record: files written before recording stops (logged once)")
    option("record_max_bytes", type=byte_count, metavar="BYTES",
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
    parser.add_argument("--version", action="version", version=f"wscompat {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "serve",
        help="run a server (an echo server unless --app is given)",
        description="Serve WebSocket clients of every generation on one port. Without --app "
        "every message is echoed back (text as text, binary as binary) at every path.",
        formatter_class=_HelpFormatter,
        epilog=_EXAMPLES,
        usage="%(prog)s [options]",  # one line above an error, not forty
    )
    _add_serve_arguments(s)
    add_gateway_commands(sub)
    add_vector_commands(sub)
    add_conform_commands(sub)
    add_tool_commands(sub)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("wscompat")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        from wscompat import __version__  # noqa: PLC0415

        return __version__


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    ) -> argparse.ArgumentParser:
    """The (sub)parser of the command ``args`` were parsed for, whose usage line an
    error about its flags goes under (``wscompat vectors check``, not ``wscompat``)."""
    while True:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subparsers[0].dest, None) if subparsers else None
        if name is None or name not in subparsers[0].choices:
            return parser
        parser = subparsers[0].choices[name]


def _options(args: argparse.Namespace) -> ServerOptions:
    """The ServerOptions of a parsed ``serve`` command line: every field with a flag of
    its own is that flag's value (one without keeps its default; serve_flag_problems
    reports it); the fields in DERIVED_OPTIONS are built here.

    UsageError for flags that do not go together, StartupError for a certificate, key
    or policy file that cannot be read or used."""
    fields = ServerOptions.names() - DERIVED_OPTIONS.keys()
    kwargs: dict[str, Any] = {name: value for name, value in vars(args).items() if name in fields}
    if args.certfile is None:
        for flag, given in (("--keyfile", args.keyfile), ("--require-tls", args.require_tls)):
            if given:
                raise UsageError(f"argument {flag}: needs --certfile")
    if args.require_tls and args.policy_port is not None:
        raise UsageError("argument --policy-port: answers over plain TCP: it cannot go with "
                         "--require-tls")
    if args.policy_port is not None and args.policy_port == args.port != 0:
        raise UsageError(f"argument --policy-port: {args.policy_port} is --port, which "
                         "answers policy requests itself")
    if args.certfile is not None:
        kwargs["ssl_context"] = _tls_context(args.certfile, args.keyfile)
    if args.policy_file is not None:
        kwargs["policy"] = _policy(args.policy_file)
    if args.subprotocols is None and args.app is None:
        kwargs["select_subprotocol"] = _first_offered
    if not getattr(args, "http2_given", False):
        kwargs["http2"] = getattr(args.drafts, "http2", True)
    try:
        return ServerOptions(**kwargs)
    except ValueError as exc:
        raise UsageError(_flag_named(str(exc))) from None


def _flag_named(message: str) -> str:
    """ServerOptions names a field first (``read_size must be ...``): say its flag."""
    field, _, rest = message.partition(" ")
    if field in ServerOptions.names() and field not in DERIVED_OPTIONS:
        flag = RENAMED_FLAGS.get(field, "--" + field.replace("_", "-"))
        return f"argument {flag}: {field} {rest}"
    return message


def _tls_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    """The server's TLS context, or a StartupError naming both flags and saying which
    file lacks what: OpenSSL's own "PEM lib" names neither."""
    pair = f"--certfile {certfile!r} " + (
        "with no --keyfile" if keyfile is None else f"and --keyfile {keyfile!r}")
    cert = _read("--certfile", certfile)
    key = cert if keyfile is None else _read("--keyfile", keyfile)
    if b"CERTIFICATE-----" not in cert:  # BEGIN CERTIFICATE, or TRUSTED CERTIFICATE
        raise StartupError(f"{pair}: no PEM certificate in --certfile")
    if b"PRIVATE KEY-----" not in key:
        where = "--certfile: give the key with --keyfile" if keyfile is None else "--keyfile"
        raise StartupError(f"{pair}: no PEM private key in {where}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise StartupError(f"{pair}: the private key is not the certificate's") from None
        raise StartupError(f"{pair}: cannot load them: {exc.reason or exc}") from None
    except OSError as exc:
        raise StartupError(f"{pair}: cannot load them: {_reason(exc)}") from None
    return context


def _policy(path: str) -> str:
    """The policy file's text; NUL ends a policy answer, so it cannot be in one."""
    try:
        text = _read("--policy-file", path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StartupError(f"--policy-file {path!r}: not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})") from None
    if "\x00" in text:
        raise StartupError(f"--policy-file {path!r}: has a NUL byte, which would end the "
                           "answer early")
    return text


def _record_folder(path: str) -> None:
    """Make ``--record``'s folder if need be (0700, as the recorder makes folders) and
    check that a file can be written in it, before any connection is recorded."""
    missing: list[Path] = []
    folder = Path(path)
    while not folder.is_dir() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    try:
        for made in reversed(missing):
            made.mkdir(0o700, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".wscompat-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StartupError(f"--record {path!r}: cannot write there: {_reason(exc)}") from None


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
    """Run ``wscompat``; the exit status: 0 done (a server stopped by SIGINT or SIGTERM
    included), 1 a failure at start (one line ``wscompat: error: ...``), 2 a usage
    error (under the subcommand's usage line)."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    command = _command_parser(parser, args)
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command in VECTOR_COMMANDS:
        return run_vector_command(args)
    if args.command in TOOL_COMMANDS:
        return run_tool_command(args)
    if args.command in CONFORM_COMMANDS:
        return run_conform_command(args)
    if args.command in GATEWAY_COMMANDS:
        return run_gateway_command(args, list(sys.argv[1:] if argv is None else argv))
    try:
        _serve(args, list(sys.argv[1:] if argv is None else argv))
    except UsageError as exc:
        command.error(str(exc))
    except StartupError as exc:
        print(f"wscompat: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:  # Ctrl-C while starting, before signals are received
        return EXIT_INTERRUPTED
    return 0


App = Callable[[ServerOptions], tuple[Handler, ServerOptions]]
"""What a command serves, given the options its flags made: the handler and the options
it runs with (``wscompat proxy`` adds its backend's decision to them)."""


def _serve(args: argparse.Namespace, argv: list[str], app: App | None = None) -> None:
    """``wscompat serve`` (or another command that serves, with its ``app``): every flag
    checked, every file read, then :func:`run` (or the supervisor of ``--workers``
    processes, each of which runs the same command line)."""
    _setup_logging(args.log_level, args.log_format)
    options = _options(args)
    if args.metrics_port is not None and args.metrics_port != 0 and args.metrics_port in (
            args.port, args.policy_port):
        raise UsageError(f"argument --metrics-port: {args.metrics_port} is already taken by "
                         "--port or --policy-port")
    if app is not None:
        handler, options = app(options)
    else:
        handler = echo if args.app is None else _load_app(args.app)
    if options.record_dir is not None:
        _record_folder(options.record_dir)
    host = _any(args.host)
    try:
        if args.workers > 1:
            _supervise(args, argv, host, options)
            return
        run(handler, host, args.port, options=options, policy_port=args.policy_port,
            metrics_port=args.metrics_port, metrics_host=_any(args.metrics_host))
    except ListenError as exc:
        raise StartupError(_listen_failure(args, exc)) from None


def _any(host: str) -> str | None:
    """``''`` and ``*`` stand for every address, which the listeners take as None."""
    return None if host in ("", "*") else host


def _setup_logging(level: str, kind: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(kind, worker=os.environ.get(WORKER_ENV)))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def _supervise(args: argparse.Namespace, argv: list[str], host: str | None,
               options: ServerOptions) -> None:
    """Reserve every port (so ``--port 0`` is chosen once, and a port in use is one
    line here rather than N dying workers), then start and watch the workers."""
    ports = {"--port": (host, args.port), "--policy-port": (host, args.policy_port),
             "--metrics-port": (_any(args.metrics_host), args.metrics_port)}
    reserved = trio.run(_reserve, {flag: (h, p) for flag, (h, p) in ports.items()
                                   if p is not None})
    try:
        chosen = {flag: socks[0].getsockname()[1] for flag, socks in reserved.items()}
        supervisor = Supervisor(worker_argv(argv, chosen), args.workers,
                                metrics=options.metrics or args.metrics_port is not None)
        if trio.run(supervisor.run) != 0:
            raise StartupError("workers keep exiting right after they start: see the log")
    finally:
        for socks in reserved.values():
            for sock in socks:
                sock.close()


async def _reserve(
    ports: dict[str, tuple[str | None, int]],
) -> dict[str, list[socket.socket]]:
    reserved: dict[str, list[socket.socket]] = {}
    try:
        for flag, (host, port) in ports.items():
            try:
                reserved[flag] = await bind_listeners(host, port, reuse_port=True,
                                                      listen=False)
            except OSError as exc:
                raise ListenError(host, port, exc, policy=flag == "--policy-port",
                                  flag=flag) from None
    except BaseException:
        for socks in reserved.values():
            for sock in socks:
                sock.close()
        raise
    return reserved


def _listen_failure(args: argparse.Namespace, exc: ListenError) -> str:
    host_flag, host = ("--metrics-host", args.metrics_host) if exc.flag == "--metrics-port" \
        else ("--host", args.host)
    if exc.resolving:
        return f"{host_flag} {host!r}: cannot resolve it: {exc.strerror}"
    hint = ""
    if exc.errno == errno.EACCES and 0 < exc.port < 1024:
        hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    return f"{host_flag} {host!r} {exc.flag} {exc.port}: cannot listen: {exc.strerror}{hint}"
