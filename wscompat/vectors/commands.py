"""``wscompat vectors import``, ``export`` and ``show``: captures in, captures and views out.

The commands' parsers and what they do; :mod:`.cli` adds them under ``wscompat vectors``.
Exit status: 0 done, 1 a file could not be read or written (or a capture held no
WebSocket exchange), 2 a usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from wscompat.vectors.capture import NO_REDACTION, CaptureInfo, Exchange, exchange_vector
from wscompat.vectors.corpus import SCHEMA_NAME, corpus_dir, schema_bytes
from wscompat.vectors.format import Vector, VectorError, load, vector_files
from wscompat.vectors.har import HarError, looks_like_har, read_har
from wscompat.vectors.recording import DEFAULT_REDACTION
from wscompat.vectors.report import printable

__all__ = ["TOOLS", "add_tools", "run_tool"]

TOOLS = ("import", "export", "show")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_IMPORT_EXAMPLES = """examples:
  wscompat vectors import session.pcapng --out imported     every WebSocket connection
  wscompat vectors import lo.pcap --port 8080 --out imported   only those to port 8080
  wscompat vectors import chrome.har --out imported --redact   a DevTools HAR export

Each connection becomes imported/<draft>/imported-<capture>-<n>.json, byte for byte
(HAR files keep messages, not frames: see docs/vectors.md). Check the result with
wscompat vectors check imported, replay it with wscompat replay URL imported.
"""

_EXPORT_EXAMPLES = """examples:
  wscompat vectors export --pcap hello.pcapng rfc6455/frame-text-hello
  wscompat vectors export --pcap mine.pcapng vectors/hixie-76/my-vector.json

Open the file in Wireshark (or tshark -r hello.pcapng -Y websocket).
"""

_SHOW_EXAMPLES = """examples:
  wscompat vectors show rfc6455/frame-text-hello
  wscompat vectors show --html handshakes.html hixie-75/handshake-draft-example \\
      hixie-76/handshake-draft-example hybi-07/handshake-draft-example \\
      hybi-08/handshake-draft-example rfc6455/handshake-rfc-example

A VECTOR is a file, a directory of them, or a corpus name such as rfc6455/close-1000.
"""


def add_tools(vsub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add ``import``, ``export`` and ``show`` to ``wscompat vectors``."""
    i = vsub.add_parser(
        "import", help="turn pcap, pcapng and HAR captures into vector files",
        description="Turn the WebSocket connections in packet captures (pcap, pcapng) and "
        "browser HAR exports into vector files, one per connection.",
        formatter_class=formatter, epilog=_IMPORT_EXAMPLES)
    i.add_argument("captures", nargs="+", metavar="CAPTURE",
                   help="pcap, pcapng or HAR files")
    i.add_argument("--out", required=True, metavar="DIR",
                   help="directory the vectors are written under, by draft")
    i.add_argument("--port", type=int, metavar="P",
                   help="only connections to this server port (default: every connection "
                   "that starts with an HTTP request)")
    i.add_argument("--redact", action="store_true",
                   help="redact secrets from requests as wscompat serve --record does "
                   "(cookies, credentials, query values); default: byte for byte")
    e = vsub.add_parser(
        "export", help="write a vector as a pcapng capture",
        description="Write a vector as a pcapng capture of one synthetic TCP connection "
        "carrying its bytes, for Wireshark and tshark.",
        formatter_class=formatter, epilog=_EXPORT_EXAMPLES)
    e.add_argument("vector", metavar="VECTOR", help="a vector file or corpus name")
    e.add_argument("--pcap", required=True, metavar="FILE", help="the pcapng file to write")
    s = vsub.add_parser(
        "show", help="render vectors readably, or side by side as an HTML page",
        description="Render vectors step by step: heads line by line, frames decoded for "
        "each vector's draft. With --html, one page with a column per vector.",
        formatter_class=formatter, epilog=_SHOW_EXAMPLES)
    s.add_argument("vectors", nargs="+", metavar="VECTOR",
                   help="vector files, directories, or corpus names")
    s.add_argument("--html", metavar="FILE",
                   help="write an HTML page with the vectors side by side instead")


class _Failed(Exception):
    """The command cannot go on (exit status 1); the message says why."""


def run_tool(args: argparse.Namespace) -> int:
    """Carry out ``vectors import``, ``export`` or ``show``; the exit status."""
    command = args.vectors_command
    try:
        if command == "import":
            return _import(args)
        if command == "export":
            return _export(args)
        return _show(args)
    except _Failed as exc:
        print(f"wscompat vectors {command}: {printable(str(exc))}", file=sys.stderr)
        return EXIT_FAILED


# -- import ---------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _read(path: Path, port: int | None) -> tuple[str, list[tuple[str, Exchange]], list[str]]:
    """The capture's format, its exchanges with their names, and notes on the rest."""
    from wscompat.vectors.pcap import (  # noqa: PLC0415 (dpkt only when needed)
        CaptureError,
        capture_format,
        read_capture,
    )

    try:
        with path.open("rb") as file:
            head = file.read(64)
        kind = capture_format(head)
        if kind is not None:
            kind, exchanges = read_capture(path, port)
            named = [(f"TCP stream {e.client} → {e.server}", e) for e in exchanges]
            return kind, named, []
        if looks_like_har(head):
            found, skipped = read_har(path)
            return "har", found, skipped
    except (CaptureError, HarError) as exc:
        raise _Failed(str(exc)) from None
    except OSError as exc:
        raise _Failed(f"{path}: {exc.strerror or exc}") from None
    raise _Failed(f"{path}: not a pcap, pcapng or HAR file")


def _write_vector(vector: dict[str, Any], out: Path, stem: str) -> Path:
    folder = out / str(vector["draft"])
    folder.mkdir(parents=True, exist_ok=True)
    schema = out / SCHEMA_NAME
    if not schema.exists():
        schema.write_bytes(schema_bytes())
    path = folder / f"{stem}.json"
    data = (json.dumps(vector, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        with path.open("xb") as file:
            file.write(data)
    except FileExistsError:
        raise _Failed(f"{path} exists already: import into another --out, or remove "
                      "it") from None
    return path


def _import(args: argparse.Namespace) -> int:
    out = Path(args.out)
    redaction = DEFAULT_REDACTION if args.redact else NO_REDACTION
    written = 0
    for name in args.captures:
        path = Path(name)
        kind, exchanges, skipped = _read(path, args.port)
        info = CaptureInfo(path.name, kind, _sha256(path))
        for note in skipped:
            print(f"{printable(name)}: passed over {printable(note)}", file=sys.stderr)
        count = 0
        for stream, exchange in exchanges:
            vector = exchange_vector(exchange, info, stream=stream, redaction=redaction)
            if vector is None:
                continue
            count += 1
            file = _write_vector(vector, out, f"imported-{path.stem}-{count}")
            print(f"{file}: {printable(str(vector['name']), 200)}")
        if not count:
            print(f"{printable(name)}: no WebSocket or HTTP exchange found"
                  + (f" to port {args.port}" if args.port else ""), file=sys.stderr)
        written += count
    if not written:
        return EXIT_FAILED
    print(f"{written} vectors written under {out}")
    return EXIT_OK


# -- export and show --------------------------------------------------------------------


def resolve(name: str) -> list[Path]:
    """The vector files ``name`` stands for: a file, a directory, or a corpus name
    (``rfc6455/close-1000``)."""
    path = Path(name)
    if path.exists():
        return vector_files([path])
    try:
        packaged = corpus_dir() / f"{name.removesuffix('.json')}.json"
    except FileNotFoundError:
        packaged = None
    if packaged is not None and packaged.is_file() and ".." not in Path(name).parts:
        return [packaged]
    raise _Failed(f"no vector file, directory or corpus vector named {name}")


def _load(path: Path) -> Vector:
    try:
        return load(path)
    except VectorError as exc:
        raise _Failed(str(exc)) from None


def _export(args: argparse.Namespace) -> int:
    from wscompat.vectors.export import pcapng_bytes  # noqa: PLC0415 (needs dpkt)

    files = resolve(args.vector)
    if len(files) != 1:
        raise _Failed(f"{args.vector} names {len(files)} vectors; export writes one")
    vector = _load(files[0])
    try:
        Path(args.pcap).write_bytes(pcapng_bytes(vector))
    except OSError as exc:
        raise _Failed(f"{args.pcap}: {exc.strerror or exc}") from None
    print(f"{args.pcap}: {vector.id} as a pcapng capture")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    from wscompat.vectors.show import render_html, render_text  # noqa: PLC0415

    vectors = [_load(path) for name in args.vectors for path in resolve(name)]
    if args.html:
        page = render_html(vectors)
        try:
            Path(args.html).write_text(page, encoding="utf-8")
        except OSError as exc:
            raise _Failed(f"{args.html}: {exc.strerror or exc}") from None
        print(f"{args.html}: {len(vectors)} vectors side by side")
    else:
        sys.stdout.write(render_text(vectors))
    return EXIT_OK
