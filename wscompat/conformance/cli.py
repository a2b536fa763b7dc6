"""``wscompat conform URL``: the conformance catalogue against any WebSocket server.

Plays the selected cases one after the other, prints a line for each case that is not
OK (``-v``: every case), then the verdicts counted per section; ``--json`` prints one
JSON document instead, and ``--html DIR`` also writes a report to open in a browser.
``--http2`` plays the RFC 6455 cases over HTTP/2 (RFC 8441, prior knowledge), each on
an extended CONNECT stream of an HTTP/2 connection of its own.
Exit status: 0 when no case FAILED (OK, NON-STRICT, INFORMATIONAL and UNIMPLEMENTED
pass), 1 when one did or the server cannot be reached, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import trio
from tqdm import tqdm

import wscompat
from wscompat.conformance.cases import Sizes
from wscompat.conformance.catalogue import AnyCase, catalogue, select
from wscompat.conformance.report import RunInfo, printable, row, summary, to_json, write_html
from wscompat.conformance.runner import has_http2_form, reachable, reachable_h2, run_all
from wscompat.conformance.timing import Timing
from wscompat.conformance.verdict import Result, Verdict
from wscompat.conformance.wire import Target, parse_url

__all__ = ["COMMANDS", "add_commands", "run"]

COMMANDS = frozenset({"conform"})
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_EXAMPLES = """examples:
  wscompat conform ws://127.0.0.1:8080/                      the whole catalogue
  wscompat conform ws://127.0.0.1:8080/ --cases '1.*,7.9.*'  sections or cases by pattern
  wscompat conform ws://127.0.0.1:8080/ --cases hixie-76 --html report/
  wscompat conform ws://127.0.0.1:8080/ --json > conform.json
  wscompat conform --list --cases 12.1                       what a selection holds
  wscompat conform ws://127.0.0.1:8080/ --http2              over HTTP/2 (RFC 8441)

Sections 1-7, 9, 10, 12 and 13 are Autobahn|Testsuite's (12 and 13: permessage-deflate);
hixie-75, hixie-76, hybi-07 and hybi-08 are the drafts before RFC 6455. The server must
echo every message back as it came, at the URL's path. Exit status: 0 when no case
FAILED, 1 when one did or the server cannot be reached, 2 for a usage error.
"""


class UsageError(Exception):
    """The command line cannot be carried out (exit status 2)."""


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of 0 or more")
    return value


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = subparsers.add_parser(
        "conform", help="run the conformance catalogue against any WebSocket server",
        description="Run Autobahn|Testsuite's case catalogue (sections 1-7, 9, 10, 12, 13) "
        "and wscompat's own for hixie-75, hixie-76, hybi-07 and hybi-08 against a running "
        "echo server, over raw TCP, and report a verdict per case.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EXAMPLES,
    )
    c.add_argument("url", nargs="?", help="ws://host:port/path of the server (an echo "
                   "server: every message is sent back as it came)")
    c.add_argument("--cases", action="append", default=[], metavar="PATTERNS",
                   help="comma-separated case ids, sections or shell patterns, e.g. "
                   "'1.*,7.9.*', 'hixie-76' or '12.1'; repeatable (default: every case)")
    c.add_argument("--list", action="store_true",
                   help="list the selected cases and exit, without connecting")
    c.add_argument("--full", action="store_true",
                   help="sections 9, 12 and 13 at Autobahn's sizes (messages up to 16 MiB, "
                   "1000 messages a case) instead of 1/16 of the sizes and 1/10 of the "
                   "counts")
    c.add_argument("--pause-scale", type=_scale, default=1.0, metavar="FACTOR",
                   help="scale the cases' deliberate pauses (Autobahn's 1 s in 5.19, 5.20 "
                   "and 6.4.x; hixie-76's late key3) (default: %(default)s)")
    c.add_argument("--json", action="store_true",
                   help="print one JSON document instead of the terminal report")
    c.add_argument("--html", type=Path, metavar="DIR",
                   help="also write an HTML report: DIR/index.html and a page per case")
    c.add_argument("-v", "--verbose", action="store_true",
                   help="print a line for every case, not only those that are not OK")
    c.add_argument("--http2", action="store_true",
                   help="play the RFC 6455 cases over HTTP/2 (RFC 8441): each case on an "
                   "extended CONNECT stream of a new HTTP/2 connection, with prior "
                   "knowledge; the drafts before RFC 6455 are left out")


def _patterns(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(p.strip() for value in values for p in value.split(",") if p.strip())


def run(args: argparse.Namespace) -> int:
    """Carry out ``conform``; the exit status."""
    try:
        return _conform(args)
    except UsageError as exc:
        print(f"wscompat conform: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("wscompat conform: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _conform(args: argparse.Namespace) -> int:
    patterns = _patterns(args.cases)
    cases = select(catalogue(Sizes.full() if args.full else Sizes()), patterns)
    if not cases:
        raise UsageError(f"no case matches {', '.join(patterns)} (--list shows them all)")
    if args.http2:
        cases = [case for case in cases if has_http2_form(case)]
        if not cases:
            raise UsageError("the drafts before RFC 6455 have no HTTP/2 form: select RFC "
                             "6455 cases with --http2")
    if args.list:
        for case in cases:
            print(f"{case.id:<14} {case.description}")
        return EXIT_OK
    if args.url is None:
        raise UsageError("the URL of the server is missing, e.g. ws://127.0.0.1:8080/")
    try:
        target = parse_url(args.url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.html is not None and args.html.exists() and not args.html.is_dir():
        raise UsageError(f"--html {args.html}: not a directory")
    timing = Timing(pause_scale=args.pause_scale)
    problem = trio.run(reachable_h2 if args.http2 else reachable, target, timing)
    if problem is not None:
        what = "open WebSockets over HTTP/2 on" if args.http2 else "connect to"
        print(f"wscompat conform: cannot {what} {target.host} port {target.port}: "
              f"{printable(problem)}", file=sys.stderr)
        return EXIT_FAILED
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    clock = time.monotonic()
    results = _play(cases, target, timing, args)
    info = RunInfo(args.url, started, time.monotonic() - clock, args.full, args.pause_scale,
                   patterns, wscompat.__version__, http2=args.http2)
    status = EXIT_FAILED if any(r.verdict is Verdict.FAILED for r in results) else EXIT_OK
    index = (write_html(results, info, args.html, status=status)
             if args.html is not None else None)
    if args.json:
        print(json.dumps(to_json(results, info, status=status,
                                 html_index=str(index) if index else None), indent=2))
        return status
    print(summary(results))
    failed = sum(r.verdict is Verdict.FAILED for r in results)
    over = " over HTTP/2" if args.http2 else ""
    print(f"\n{len(results)} cases{over} in {info.seconds:.1f} s, {failed} FAILED "
          f"({'Autobahn sizes' if args.full else 'scaled'} sections 9, 12 and 13)")
    for result in results:
        if result.verdict is Verdict.FAILED:
            print()
            for line in result.explain().splitlines():
                print(printable(line, limit=2000))
    if index is not None:
        print(f"\nHTML report: {index}")
    return status


def _play(cases: Sequence[AnyCase], target: Target, timing: Timing,
          args: argparse.Namespace) -> list[Result]:
    """Run the cases, with a line per case as it ends (not with ``--json``) and a
    progress bar on standard error when it is a terminal."""
    bar = (tqdm(total=len(cases), file=sys.stderr, unit="case", desc="conform", leave=False,
                dynamic_ncols=True) if sys.stderr.isatty() else None)
    if not args.json:
        print(f"{'case':<14} {'verdict':<13} {'time':>9}  why", flush=True)

    def heard(result: Result) -> None:
        if not args.json and (args.verbose or result.verdict is not Verdict.OK):
            line = row(result)
            if bar is not None:
                bar.write(line)
            else:
                print(line, flush=True)
        if bar is not None:
            bar.update(1)

    try:
        return trio.run(partial(run_all, cases, target, timing, heard, http2=args.http2))
    finally:
        if bar is not None:
            bar.close()
