"""``wscompat vectors check`` and ``wscompat replay``: the vector corpus from a shell or CI.

(``vectors import``, ``export`` and ``show`` live in :mod:`.commands`, added here.)

Both print one table per draft, the details of every failure with a byte-level diff,
and a summary; ``--json`` prints the same as one JSON document. Exit status: 0 when
everything passed, 1 when a vector failed (or could not be read), 2 for a usage error.
Vector files and servers may be hostile: each file is loaded within the limits of
:class:`~wscompat.vectors.format.LoadLimits` and dropped once used, replay runs within its
deadlines, and what they say is printed escaped (:func:`~wscompat.vectors.report.printable`).
"""

from __future__ import annotations

import argparse
import json
import math
import ssl
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import trio
from tqdm import tqdm

from wscompat.cliparse import positive_byte_count
from wscompat.drafts import Draft
from wscompat.vectors.commands import TOOLS, add_tools, run_tool
from wscompat.vectors.corpus import corpus_dir
from wscompat.vectors.format import (
    MAX_FILE_BYTES,
    MAX_PAUSE,
    MAX_VECTOR_BYTES,
    LoadLimits,
    Vector,
    VectorError,
    check,
    load,
    vector_files,
)
from wscompat.vectors.replay import (
    FAILING,
    MAX_ANSWER,
    RUN_DEADLINE,
    STATUSES,
    VECTOR_DEADLINE,
    CannotConnect,
    ReplaySettings,
    parse_url,
    replay_all,
    ssl_text,
)
from wscompat.vectors.report import DIFF_LIMIT, Outcome, printable, render, to_json

__all__ = ["COMMANDS", "UsageError", "add_commands", "check_outcomes", "run"]

COMMANDS = ("vectors", "replay")
CHECK_STATUSES = ("pass", "fail")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command line cannot be carried out (exit status 2)."""


class _OptionsAnywhere(argparse.ArgumentParser):
    """A subcommand's parser that takes its options anywhere among its positional
    arguments (``replay URL --timeout 1 DIR``), where plain argparse fills every
    positional at their first run and refuses what follows the option. The parent
    parser hands a subcommand its arguments through ``parse_known_args``."""

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:  # parse_known_intermixed_args calls back here
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


_CHECK_EXAMPLES = """examples:
  wscompat vectors check                        every vector of the corpus shipped
                                                with wscompat
  wscompat vectors check vectors/hixie-76       one draft
  wscompat vectors check my-vector.json --bytewise
  wscompat vectors check --json > report.json   for CI

exit status: 0 all passed, 1 a vector failed or is invalid, 2 usage error
"""

_REPLAY_EXAMPLES = """examples:
  wscompat replay ws://127.0.0.1:8080/                     every vector without options
  wscompat replay ws://127.0.0.1:8080/ vectors/rfc6455     one draft
  wscompat replay ws://127.0.0.1:8080/ --server-options '{"max_message_size": 64}'
                                                   the vectors written for that option
  wscompat replay wss://chat.example:443/ --cafile ca.pem  over TLS, with a private CA

The server should echo every message (text as text, binary as binary): that is what
the vectors' expected frames are. Requests are sent as recorded, Host and path included.

A progress bar is shown on standard error when it is a terminal. The first connection
that cannot be made (refused, an unknown host, a failed TLS handshake) ends the run
with one line saying why.

exit status: 0 all answered as expected (skipped ones aside), 1 a vector was answered
differently or not at all, or the server could not be reached, 2 usage error
"""


def _add_load_limits(parser: argparse.ArgumentParser, size: Any) -> None:
    parser.add_argument("--max-file-size", type=size, default=MAX_FILE_BYTES, metavar="BYTES",
                        help="largest vector file read (default: %(default)s)")
    parser.add_argument("--max-vector-size", type=size, default=MAX_VECTOR_BYTES,
                        metavar="BYTES", help="bytes all of one vector's data may expand to, "
                        "repeats included (default: %(default)s)")
    parser.add_argument("--max-pause", type=float, default=MAX_PAUSE, metavar="SECONDS",
                        help="longest pause step (default: %(default)s)")


def add_commands(sub: Any) -> None:
    """Add ``vectors`` and ``replay`` to the ``wscompat`` subcommands."""
    size = positive_byte_count
    formatter = argparse.RawDescriptionHelpFormatter
    vectors = sub.add_parser(
        "vectors", help="work with test vectors (see docs/vectors.md)",
        description="Work with test vectors: recorded exchanges kept as JSON data.",
    )
    vsub = vectors.add_subparsers(dest="vectors_command", required=True,
                                  parser_class=_OptionsAnywhere)
    c = vsub.add_parser(
        "check", help="run vectors offline through wscompat's sans-I/O core",
        description="Run every vector through wscompat's sans-I/O core with the echo "
        "application, without sockets, and report per draft.",
        formatter_class=formatter, epilog=_CHECK_EXAMPLES,
    )
    c.add_argument("paths", nargs="*", metavar="PATH",
                   help="vector files or directories (default: the corpus shipped with "
                   "wscompat)")
    c.add_argument("--bytewise", action="store_true",
                   help="also deliver every send one byte at a time")
    c.add_argument("--json", action="store_true", help="print a JSON report instead")
    _add_load_limits(c, size)
    add_tools(vsub, formatter)

    r = sub.add_parser(
        "replay", help="play vectors against any running server over real sockets",
        description="Play the client side of each vector against a running server and "
        "report which vectors it answers as expected, differently, or not at all.",
        formatter_class=formatter, epilog=_REPLAY_EXAMPLES,
    )
    r.__class__ = _OptionsAnywhere  # made by the parent's add_parser, as a plain parser
    r.add_argument("url", help="ws://host:port/ or wss://host:port/ of the server")
    r.add_argument("paths", nargs="*", metavar="PATH",
                   help="vector files or directories (default: the corpus shipped with "
                   "wscompat)")
    r.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS",
                   help="time each expected answer may take (default: %(default)s)")
    r.add_argument("--settle", type=float, default=0.2, metavar="SECONDS",
                   help="silence that confirms nothing follows the last expectation "
                   "(default: %(default)s)")
    r.add_argument("--jobs", type=int, default=8, metavar="N",
                   help="vectors replayed at once, each on its own connection "
                   "(default: %(default)s)")
    r.add_argument("--server-options", default="{}", metavar="JSON",
                   help="options the server was started with, as in a vector's "
                   "\"options\"; only vectors with exactly these options are replayed "
                   "(default: {}, the vectors without options)")
    r.add_argument("--vector-deadline", type=float, default=VECTOR_DEADLINE,
                   metavar="SECONDS", help="time one vector may take in all, pauses "
                   "included (default: %(default)s)")
    r.add_argument("--run-deadline", type=float, default=RUN_DEADLINE, metavar="SECONDS",
                   help="time the whole run may take (default: %(default)s)")
    r.add_argument("--max-answer", type=size, default=MAX_ANSWER, metavar="BYTES",
                   help="server bytes held for one vector before it fails "
                   "(default: %(default)s)")
    tls = r.add_mutually_exclusive_group()
    tls.add_argument("--cafile", metavar="PEM",
                     help="with wss://: the CA certificates (PEM) to check the server's "
                     "certificate with, instead of the system's")
    tls.add_argument("--insecure", action="store_true",
                     help="with wss://: do not check the server's certificate or name")
    r.add_argument("--json", action="store_true", help="print a JSON report instead")
    _add_load_limits(r, size)


def run(args: argparse.Namespace) -> int:
    """Carry out ``vectors check`` or ``replay``; the exit status."""
    try:
        if args.command == "replay":
            return _replay(args)
        if args.vectors_command in TOOLS:
            return run_tool(args)
        return _check(args)
    except UsageError as exc:
        print(f"wscompat {args.command}: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


def _files(paths: Sequence[str]) -> list[Path]:
    """The vector files named, or by default every one of the corpus shipped."""
    try:
        roots = list(paths) or [str(corpus_dir())]
        files = vector_files(roots)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if not files:
        raise UsageError(f"no vector files under {', '.join(roots)}")
    return files


def _draft_of(path: Path) -> str:
    names = {d.value for d in Draft}
    return path.parent.name if path.parent.name in names else "(unknown)"


def _limits(args: argparse.Namespace) -> LoadLimits:
    if not (math.isfinite(args.max_pause) and args.max_pause >= 0):
        raise UsageError("--max-pause is a number of seconds, 0 or more")
    return LoadLimits(file_bytes=args.max_file_size, vector_bytes=args.max_vector_size,
                      pause=args.max_pause)


def _load(file: Path, limits: LoadLimits) -> Vector | Outcome:
    """The vector in ``file``, or a failed outcome saying why it is not one."""
    try:
        return load(file, limits)
    except VectorError as exc:
        problem = f"invalid vector: {str(exc).removeprefix(f'{file}: ')}"
        return Outcome(f"{file.parent.name}/{file.stem}", _draft_of(file),
                       "(not a valid vector)", str(file), "fail", problem)


def check_outcomes(vectors: Sequence[Vector], *, bytewise: bool = False) -> list[Outcome]:
    """Check each vector whole and, with ``bytewise``, one byte at a time as well."""
    outcomes = []
    for vector in vectors:
        outcome = Outcome(vector.id, vector.generation, vector.name, str(vector.path), "pass")
        for one_byte in (False, True) if bytewise else (False,):
            result = check(vector, bytewise=one_byte)
            if not result.ok:
                how = " (one byte at a time)" if one_byte else ""
                outcome.status, outcome.problem = "fail", result.problem + how
                outcome.step = result.step
                outcome.expected = result.expected[:DIFF_LIMIT]
                outcome.actual = result.actual[:DIFF_LIMIT]
                break
        outcomes.append(outcome)
    return outcomes


def _check(args: argparse.Namespace) -> int:
    limits = _limits(args)
    outcomes = []
    for file in _files(args.paths):  # one vector in memory at a time
        loaded = _load(file, limits)
        outcomes += (check_outcomes([loaded], bytewise=args.bytewise)
                     if isinstance(loaded, Vector) else [loaded])
    outcomes.sort(key=lambda o: o.id)
    ok = all(o.status == "pass" for o in outcomes)
    how = "whole and one byte at a time" if args.bytewise else "whole"
    if args.json:
        report = to_json("check", outcomes, CHECK_STATUSES, ok=ok, extra={"bytewise":
                                                                          args.bytewise})
        print(json.dumps(report, indent=2))
    else:
        title = (f"wscompat vectors check: {len(outcomes)} vectors through the sans-I/O "
                 f"core, {how}")
        print(render(outcomes, CHECK_STATUSES, failing=("fail",), title=title), end="")
    return EXIT_OK if ok else EXIT_FAILED


def _replay(args: argparse.Namespace) -> int:
    try:
        host, port, secure = parse_url(args.url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        server_options = json.loads(args.server_options)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--server-options is not JSON: {exc}") from None
    if not isinstance(server_options, dict):
        raise UsageError("--server-options is a JSON object, e.g. '{\"max_message_size\": 64}'")
    seconds = (args.timeout, args.settle, args.vector_deadline, args.run_deadline)
    if not all(math.isfinite(s) for s in seconds):
        raise UsageError("times are finite numbers of seconds")
    if (args.timeout <= 0 or args.jobs < 1 or args.settle < 0 or args.vector_deadline <= 0
            or args.run_deadline <= 0):
        raise UsageError("--timeout, --vector-deadline and --run-deadline must be positive, "
                         "--jobs at least 1, --settle not negative")
    context = _ssl_context(args, secure)
    limits = _limits(args)
    files = _files(args.paths)
    with_events = 0
    for file in files:  # all valid before any is replayed; each loaded again in its turn
        loaded = _load(file, limits)
        if isinstance(loaded, Outcome):
            raise UsageError(f"{loaded.path}: {loaded.problem} (wscompat vectors check "
                             "lists every invalid file)")
        with_events += loaded.events is not None
    settings = ReplaySettings(host, port, secure, timeout=args.timeout, settle=args.settle,
                              jobs=args.jobs, server_options=server_options,
                              vector_deadline=args.vector_deadline,
                              run_deadline=args.run_deadline, max_answer=args.max_answer,
                              limits=limits, ssl_context=context)
    with _Progress(len(files)) as progress:
        try:
            outcomes = trio.run(partial(replay_all, files, settings, progress))
        except CannotConnect as exc:
            progress.close()
            print(f"wscompat replay: {printable(str(exc))}", file=sys.stderr)
            return EXIT_FAILED
    outcomes.sort(key=lambda o: o.id)
    ok = not any(o.status in FAILING for o in outcomes)
    notes = replay_notes(with_events, outcomes)
    if args.json:
        extra = {"url": args.url, "timeout": args.timeout, "server_options": server_options,
                 "vector_deadline": args.vector_deadline, "run_deadline": args.run_deadline,
                 "max_answer": args.max_answer, "notes": notes}
        print(json.dumps(to_json("replay", outcomes, STATUSES, ok=ok, extra=extra), indent=2))
    else:
        title = (f"wscompat replay {args.url}: {len(outcomes)} vectors, "
                 f"{args.timeout:g} s per expected answer")
        print(render(outcomes, STATUSES, failing=FAILING, title=title, notes=notes), end="")
    return EXIT_OK if ok else EXIT_FAILED


def _ssl_context(args: argparse.Namespace, secure: bool) -> ssl.SSLContext | None:
    """The client TLS context that ``--cafile`` or ``--insecure`` ask for (None: the
    system's CAs)."""
    if not (args.cafile or args.insecure):
        return None
    if not secure:
        raise UsageError("--cafile and --insecure are for wss:// URLs")
    if args.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=args.cafile)
    except ssl.SSLError as exc:
        raise UsageError(f"--cafile {args.cafile}: {ssl_text(exc)}") from None
    except OSError as exc:
        raise UsageError(f"--cafile {args.cafile}: {exc.strerror or exc}") from None


class _Progress:
    """Replay's progress bar: on standard error when it is a terminal, else nothing.
    Called with each outcome; the bar is gone once the run ends, before the report."""

    def __init__(self, total: int) -> None:
        self.bar = (tqdm(total=total, file=sys.stderr, unit="vector", desc="replay",
                         leave=False, dynamic_ncols=True)
                    if sys.stderr.isatty() else None)
        self.failing = 0

    def __call__(self, outcome: Outcome) -> None:
        if self.bar is not None:
            self.failing += outcome.status in FAILING
            self.bar.set_postfix_str(f"{self.failing} failing", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def replay_notes(with_events: int, outcomes: Sequence[Outcome]) -> list[str]:
    """What a reader of a replay report should keep in mind (``with_events``: how many
    vectors list the messages the application receives)."""
    notes = ["Expected frames are echoes: the server is assumed to send every message "
             "back (text as text, binary as binary)."]
    if with_events:
        notes.append(f"{with_events} vectors also list the messages the application "
                     "receives; replay cannot see those and does not compare them.")
    skipped = sum(1 for o in outcomes if o.status == "skipped")
    if skipped:
        notes.append(f"{skipped} vectors were skipped: they need a server started with "
                     "other options (see --server-options).")
    return notes
