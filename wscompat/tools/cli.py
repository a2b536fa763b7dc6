"""``wscompat client`` and ``wscompat probe`` on the command line.

Exit status: 0 on success; 1 when an expectation failed, the handshake was refused or
the server could not be reached (``client``), or no draft was spoken (``probe``); 2 for
a usage error.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
import textwrap
from functools import partial
from typing import Any

import trio

from wscompat.drafts import Draft
from wscompat.tools.client import (
    COMPRESSION_NAMES,
    ClientOptions,
    Console,
    default_origin,
    run_client,
)
from wscompat.tools.common import UsageError, parse_target, printable, tls_context
from wscompat.tools.probe import ProbeSettings, probe, render, speaks
from wscompat.tools.probe_http2 import probe_http2

__all__ = ["COMMANDS", "add_commands", "run"]

COMMANDS: frozenset[str] = frozenset({"client", "probe"})
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
WIDTH = 84
"""Columns of the help's description paragraphs (the examples are laid out by hand)."""
_DRAFTS = {d.short: d for d in Draft} | {d.value: d for d in Draft}
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

_CLIENT_EXAMPLES = """examples:
  wscompat client ws://127.0.0.1:8080/                   interactive: lines in, messages out
  wscompat client ws://127.0.0.1:8080/ --draft 76 --send hello --expect hello
  wscompat client ws://127.0.0.1:8080/ --send-binary 00ff --expect-binary 00ff -v
  wscompat client wss://chat.example/ --subprotocol chat --compression permessage-deflate
  wscompat client wss://chat.example/ --http2 --send hi --expect hi     over HTTP/2

Messages received are printed on standard output, text as '< text' (controls
escaped) and binary as '< [binary, N bytes] hex'; -v prints the handshake's bytes
('>' sent, '<' received) and what was agreed on standard error.

exit status: 0 success, 1 an expectation failed, the handshake was refused or the
connection ended abnormally, 2 usage error
"""

_PROBE_EXAMPLES = """examples:
  wscompat probe ws://127.0.0.1:8080/
  wscompat probe ws://127.0.0.1:8080/ --json > probe.json
  wscompat probe wss://chat.example/ --cafile ca.pem --timeout 5
  wscompat probe ws://127.0.0.1:8080/ --http2             WebSocket over HTTP/2

Every question is one connection, answered within --timeout; four are asked at once,
drafts first, and the whole probe ends by --deadline.

exit status: 0 the server speaks at least one draft, 1 none (or it cannot be
reached), 2 usage error
"""


def _draft(text: str) -> Draft:
    try:
        return _DRAFTS[text.strip().lower()]
    except KeyError:
        known = ", ".join(d.short for d in Draft)
        raise argparse.ArgumentTypeError(f"{text!r}: give one of {known}") from None


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0")
    return seconds


def _quiet(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds, 0 or more")
    return seconds


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _TOKEN.match(name) or "\r" in value or "\n" in value:
        raise argparse.ArgumentTypeError(f"{text!r}: give 'Name: value'")
    return name, value


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not hex, e.g. 00ff or '00 ff'") from None


def _add_common(parser: argparse.ArgumentParser, timeout: float) -> None:
    parser.add_argument("url", help="ws://host:port/path or wss://host:port/path")
    origin = parser.add_mutually_exclusive_group()
    origin.add_argument("--origin", metavar="ORIGIN",
                        help="the Origin to send (default: the URL's own, http://host:port, "
                        "as a page from that host would)")
    origin.add_argument("--no-origin", dest="origin", action="store_const", const="",
                        help="send no Origin")
    parser.add_argument("--timeout", type=_seconds, default=timeout, metavar="SECONDS",
                        help="time each answer may take (default: %(default)s)")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--cafile", metavar="PEM",
                     help="with wss://: the CA certificates (PEM) to check the server's "
                     "certificate with, instead of the system's")
    tls.add_argument("--insecure", action="store_true",
                     help="with wss://: do not check the server's certificate or name")
    parser.add_argument("--http2", action="store_true",
                        help="over HTTP/2 (RFC 8441): wss:// offers ALPN h2 alone, ws:// "
                        "speaks HTTP/2 with prior knowledge; RFC 6455 only")


def add_commands(sub: Any) -> None:
    """Add ``client`` and ``probe`` to the ``wscompat`` subcommands."""
    formatter = argparse.RawDescriptionHelpFormatter
    c = sub.add_parser(
        "client", help="talk to a WebSocket server as a client of any draft",
        description=textwrap.fill(
            "Connect to a WebSocket server as a client of one draft. Without --send or "
            "--expect, each line of standard input is sent as a text message and the "
            "connection is closed at its end; messages received are printed as they "
            "arrive.", WIDTH),
        formatter_class=formatter, epilog=_CLIENT_EXAMPLES,
    )
    _add_common(c, 5.0)
    c.add_argument("--draft", type=_draft, default=Draft.RFC6455, metavar="75|76|7|8|13",
                   help="the generation to speak (default: 13, RFC 6455)")
    c.add_argument("--subprotocol", action="append", default=[], metavar="NAME",
                   help="offer a subprotocol (repeat to offer several, in order)")
    c.add_argument("--header", action="append", type=_header, default=[],
                   metavar="'NAME: VALUE'", help="add a header field to the request")
    c.add_argument("--compression", action="append", default=[], choices=COMPRESSION_NAMES,
                   help="offer a compression extension (repeat for several, in order of "
                   "preference; hybi drafts only)")
    c.add_argument("--send", dest="sends", action="append", default=[], metavar="TEXT",
                   help="send a text message (repeatable; standard input is then not read)")
    c.add_argument("--send-binary", dest="sends", action="append", type=_hex, metavar="HEX",
                   help="send a binary message given in hex")
    c.add_argument("--expect", dest="expects", action="append", default=[], metavar="TEXT",
                   help="expect this text message next, within --timeout (repeatable, in "
                   "order); exit 1 otherwise")
    c.add_argument("--expect-binary", dest="expects", action="append", type=_hex,
                   metavar="HEX", help="expect this binary message next, given in hex")
    c.add_argument("--linger", type=_quiet, default=0.5, metavar="SECONDS",
                   help="unless something is --expect-ed: after the last message sent, "
                   "wait until the server has sent nothing for this long before closing, "
                   "so that its replies are printed (default: %(default)s)")
    c.add_argument("-v", "--verbose", action="store_true",
                   help="print the handshake's bytes both ways, and what was agreed")

    p = sub.add_parser(
        "probe", help="find which drafts, extensions and answers a server has",
        description=textwrap.fill(
            "Ask a WebSocket server, one connection per question, which generations it "
            "speaks (hixie-75, hixie-76 and whether it works behind an HTTP proxy, "
            "hybi-07, hybi-08, RFC 6455), whether it serves the Flash policy file, which "
            "compression extensions it accepts, whether it echoes a subprotocol, how it "
            "refuses, and whether the port speaks TLS.", WIDTH),
        formatter_class=formatter, epilog=_PROBE_EXAMPLES,
    )
    _add_common(p, 3.0)
    p.add_argument("--deadline", type=_seconds, default=30.0, metavar="SECONDS",
                   help="time the whole probe may take (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON report instead")


def run(args: argparse.Namespace) -> int:
    """Carry out ``client`` or ``probe``; the exit status."""
    try:
        if args.command == "client":
            return _client(args)
        return _probe(args)
    except UsageError as exc:
        print(f"wscompat {args.command}: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _origin(args: argparse.Namespace, target: Any) -> str | None:
    if args.origin is None:
        return default_origin(target)
    return args.origin or None


def _context(args: argparse.Namespace, secure: bool) -> Any:
    if not (args.cafile or args.insecure):
        return None
    if not secure:
        raise UsageError("--cafile and --insecure are for wss:// URLs")
    return tls_context(args.cafile, args.insecure)


def _client(args: argparse.Namespace) -> int:
    target = parse_target(args.url)
    options = ClientOptions(
        target, args.draft, origin=_origin(args, target),
        subprotocols=tuple(args.subprotocol), headers=tuple(args.header),
        compression=tuple(args.compression), sends=tuple(args.sends),
        expects=tuple(args.expects), timeout=args.timeout, linger=args.linger,
        verbose=args.verbose,
        ssl_context=_context(args, target.secure), http2=args.http2,
    )
    options.check()
    for stream, errors in ((sys.stdin, "replace"), (sys.stdout, "backslashreplace")):
        if isinstance(stream, io.TextIOWrapper):  # bytes the locale cannot say
            stream.reconfigure(errors=errors)
    console = Console(sys.stdout, sys.stderr)
    return trio.run(partial(run_client, options, console, sys.stdin))


def _probe(args: argparse.Namespace) -> int:
    target = parse_target(args.url)
    settings = ProbeSettings(target, origin=_origin(args, target), timeout=args.timeout,
                             deadline=args.deadline,
                             ssl_context=_context(args, target.secure))
    report = trio.run(probe_http2 if args.http2 else probe, settings)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report), end="")
    return EXIT_OK if speaks(report) else EXIT_FAILED
