"""Test vectors: whole recorded exchanges kept as JSON data, checked offline.

A vector says what a client sends (in order, possibly in chunks and with pauses), what an
echo server must send back, which messages the application sees, and how the exchange
ends. :func:`check` runs one through the sans-I/O core with the echo application,
without sockets or clocks, and reports the first difference byte for byte. The format is
documented in ``docs/vectors.md``; the same files can be replayed against any server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wscompat.drafts import Draft, parse_drafts
from wscompat.options import ServerOptions, UpgradeRequest
from wscompat.protocol.connection import Phase, ServerConnection
from wscompat.protocol.framing import Message, State
from wscompat.vectors.expect import Match, match

__all__ = [
    "Result", "Vector", "VectorError", "check", "decode_data", "load", "load_all", "vector_files",
]

DRAFT_DIRS = {d.value: d for d in Draft}


class VectorError(ValueError):
    """A vector file does not follow the format."""


EXPECTATIONS = frozenset({"expect", "expect_head", "expect_close", "expect_status", "expect_eof"})
"""Step kinds that compare server bytes."""


@dataclass(frozen=True)
class Step:
    kind: str  # send, send_eof, pause, or one of EXPECTATIONS
    data: bytes = b""
    chunks: tuple[int, ...] = ()
    seconds: float = 0.0
    code: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    vary: tuple[str, ...] = ()

    def match(self, received: bytes, *, eof: bool) -> Match:
        """Compare server bytes not yet accounted for with this expectation."""
        return match(self.kind, received, expected=self.data, code=self.code,
                     headers=self.headers, vary=self.vary, eof=eof)


@dataclass(frozen=True)
class Vector:
    path: Path
    name: str
    draft: Draft
    source: str
    description: str
    steps: tuple[Step, ...]
    events: tuple[str | bytes, ...] | None
    end: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"


def decode_data(spec: Any) -> bytes:
    """Bytes from a data spec: a string (UTF-8), ``{"hex": ...}``, ``{"repeat": hex,
    "count": n}``, or a list of these concatenated."""
    if isinstance(spec, str):
        return spec.encode("utf-8")
    if isinstance(spec, list):
        return b"".join(decode_data(item) for item in spec)
    if isinstance(spec, dict):
        if set(spec) == {"hex"}:
            return bytes.fromhex(spec["hex"])
        if set(spec) == {"repeat", "count"}:
            return bytes.fromhex(spec["repeat"]) * int(spec["count"])
    raise VectorError(f"not a data spec: {spec!r}")


def _event(spec: Any) -> str | bytes:
    if isinstance(spec, dict) and set(spec) == {"text"}:
        return str(spec["text"])
    if isinstance(spec, dict) and set(spec) == {"binary"}:
        return decode_data(spec["binary"])
    raise VectorError(f"an event is {{'text': str}} or {{'binary': data}}, not {spec!r}")


_STEP_KEYS = {"send", "send_eof", "pause", *EXPECTATIONS}
_EXTRA_KEYS = {"chunks": "send", "headers": "expect_status", "vary": "expect_head"}


def _step(spec: Any) -> Step:
    if not isinstance(spec, dict) or len(set(spec) & _STEP_KEYS) != 1:
        raise VectorError(f"a step has exactly one of {sorted(_STEP_KEYS)}: {spec!r}")
    for extra, owner in _EXTRA_KEYS.items():
        if extra in spec and owner not in spec:
            raise VectorError(f"{extra} belong to a {owner} step")
    unknown = set(spec) - _STEP_KEYS - set(_EXTRA_KEYS)
    if unknown:
        raise VectorError(f"unknown step keys {sorted(unknown)}")
    if "send" in spec:
        chunks = tuple(int(n) for n in spec.get("chunks", ()))
        return Step("send", decode_data(spec["send"]), chunks=chunks)
    if "expect_head" in spec:
        head = decode_data(spec["expect_head"])
        if not head.endswith(b"\r\n\r\n"):
            raise VectorError("expect_head is a whole HTTP head ending with a blank line")
        vary = tuple(str(name) for name in spec.get("vary", ()))
        return Step("expect_head", head, vary=vary)
    if "expect_close" in spec:
        return Step("expect_close", code=int(spec["expect_close"]))
    if "expect_status" in spec:
        headers = tuple((str(k), str(v)) for k, v in dict(spec.get("headers", {})).items())
        return Step("expect_status", code=int(spec["expect_status"]), headers=headers)
    if "expect" in spec:
        return Step("expect", decode_data(spec["expect"]))
    if "pause" in spec:
        return Step("pause", seconds=float(spec["pause"]))
    if spec.get("expect_eof") is True:
        return Step("expect_eof")
    if spec.get("send_eof") is True:
        return Step("send_eof")
    raise VectorError(f"unknown step {spec!r}")


_ALLOWED_KEYS = {
    "$schema", "name", "draft", "source", "description", "steps", "events", "end", "options",
}
_END_KEYS = {"close_code", "status", "eof"}


def load(path: str | Path) -> Vector:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise VectorError(f"{path}: {exc}") from None
    try:
        return _parse(path, raw)
    except (VectorError, KeyError, TypeError, ValueError, RecursionError) as exc:
        raise VectorError(f"{path}: {exc}") from None


def _parse(path: Path, raw: Any) -> Vector:
    if not isinstance(raw, dict):
        raise VectorError("a vector is a JSON object")
    unknown = set(raw) - _ALLOWED_KEYS
    if unknown:
        raise VectorError(f"unknown keys {sorted(unknown)}")
    for key in ("name", "draft", "source", "steps", "end"):
        if key not in raw:
            raise VectorError(f"missing {key!r}")
    if not str(raw["source"]).strip():
        raise VectorError("source must name where the vector comes from")
    if raw["draft"] not in DRAFT_DIRS:
        raise VectorError(f"draft is one of {sorted(DRAFT_DIRS)}, not {raw['draft']!r}")
    draft = DRAFT_DIRS[raw["draft"]]
    end = dict(raw["end"])
    if not end or set(end) - _END_KEYS:
        raise VectorError(f"end takes {sorted(_END_KEYS)}")
    events = None if "events" not in raw else tuple(_event(e) for e in raw["events"])
    options = dict(raw.get("options", {}))
    unknown_options = set(options) - ServerOptions.names()
    if unknown_options:
        raise VectorError(f"unknown server options {sorted(unknown_options)}")
    for name, value in options.items():
        _check_option(name, value)
    steps = tuple(_step(s) for s in raw["steps"])
    if not steps:
        raise VectorError("a vector has at least one step")
    kinds = [step.kind for step in steps]
    if "send_eof" in kinds and "send" in kinds[kinds.index("send_eof"):]:
        raise VectorError("nothing can be sent after send_eof")
    return Vector(
        path=path,
        name=str(raw["name"]),
        draft=draft,
        source=str(raw["source"]),
        description=str(raw.get("description", "")),
        steps=steps,
        events=events,
        end=end,
        options=options,
    )


def vector_files(paths: Iterable[str | Path]) -> list[Path]:
    """The given files, and every ``*.json`` under the given directories (sorted), the
    schema excepted. Raises FileNotFoundError for a path that does not exist."""
    found: list[Path] = []
    for path in paths:
        root = Path(path)
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found.extend(f for f in sorted(root.rglob("*.json")) if f.name != "schema.json")
        else:
            raise FileNotFoundError(f"no such file or directory: {root}")
    return found


def load_all(paths: Iterable[str | Path]) -> Iterator[Vector]:
    """Every vector under the given files and directories, sorted by path."""
    for file in vector_files(paths):
        yield load(file)


# -- offline check ------------------------------------------------------------------------


@dataclass
class Result:
    vector: Vector
    ok: bool
    problem: str = ""
    expected: bytes = b""
    """The bytes the failing step expected (exact and head expectations only)."""
    actual: bytes = b""
    """The server's bytes from where the failing step started reading."""
    step: int = 0
    """The failing step, counted from 1; 0 when the end of the exchange differs."""
    offset: int = 0
    """Where in the server's whole output the difference starts."""


class _EchoSession:
    """A whole server connection without I/O: the protocol connection and the echo
    application, driven exactly as the trio server drives them."""

    def __init__(self, options: ServerOptions) -> None:
        self.proto = ServerConnection(options.settings)
        self.out = bytearray()
        self.eof = False
        self.events: list[str | bytes] = []
        self.status: int | None = None

    @property
    def close_code(self) -> int | None:
        return self.proto.close_code

    @property
    def opened(self) -> bool:
        return self.proto.framer is not None

    def feed(self, data: bytes) -> None:
        if self.eof:
            return
        self.proto.receive_data(data)
        self._pump()

    def feed_eof(self) -> None:
        if self.opened and not self.eof:
            self.proto.receive_eof()
            self._pump()
        self.eof = True

    def _pump(self) -> None:
        proto = self.proto
        if proto.phase is Phase.DECIDE:
            proto.accept(proto.choose_subprotocol(proto.upgrade_request()))
        for event in proto.events():
            if isinstance(event, Message):
                self.events.append(event.data)
                if proto.state is State.OPEN:
                    if isinstance(event.data, str):
                        proto.send_text(event.data)
                    else:
                        proto.send_binary(event.data)
        self.out += proto.data_to_send()
        if proto.phase in (Phase.REFUSED, Phase.TLS):
            self.status = proto.rejection.status if proto.rejection else None
            self.eof = True
        elif proto.eof_wanted:
            self.eof = True


_LIST_OPTIONS = {"drafts", "subprotocols", "origins"}
_NOT_DATA = {"select_subprotocol", "process_request", "ssl_context", "record_dir"}
_NUMBER_OR_NULL = {"max_frame_size", "idle_timeout", "ping_interval", "max_message_size",
                   "max_connections"}
_DEFAULTS = ServerOptions()


def _check_option(name: str, value: Any) -> None:
    """JSON types for the options a vector may set, so a hand-written file gets a clear
    error here rather than a failure deep inside the server."""
    if name in _NOT_DATA:
        raise VectorError(f"option {name} cannot be set from a vector")
    if name in _LIST_OPTIONS:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        wanted = "a list of strings"
    elif name in _NUMBER_OR_NULL:
        ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        wanted = "a number or null"
    else:
        default = getattr(_DEFAULTS, name)
        if isinstance(default, bool):
            ok, wanted = isinstance(value, bool), "true or false"
        elif isinstance(default, int | float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            wanted = "a number"
        else:
            ok, wanted = isinstance(value, str), "a string"
    if not ok:
        raise VectorError(f"option {name} must be {wanted}, not {value!r}")
    if name == "drafts":
        try:
            parse_drafts(",".join(value))
        except ValueError as exc:
            raise VectorError(f"option drafts: {exc}") from None


def server_options(vector: Vector) -> ServerOptions:
    """The vector's ``options`` as ServerOptions (``drafts`` given as a list of names).

    Without ``subprotocols`` the echo application accepts the first one offered, as
    ``wscompat serve`` does.
    """
    options: dict[str, Any] = {"select_subprotocol": _first_offered, **vector.options}
    if "subprotocols" in options:
        del options["select_subprotocol"]
    if "drafts" in options:
        options["drafts"] = parse_drafts(",".join(options["drafts"]))
    return ServerOptions(**options)


def _first_offered(_: UpgradeRequest, offered: Sequence[str]) -> str | None:
    return offered[0] if offered else None


def check(vector: Vector, *, bytewise: bool = False) -> Result:
    """Run a vector offline; with ``bytewise`` every send arrives one byte at a time."""
    options = server_options(vector)
    session = _EchoSession(options)
    read = 0
    for number, step in enumerate(vector.steps, 1):
        if step.kind == "send":
            for piece in _pieces(step, bytewise):
                session.feed(piece)
        elif step.kind == "send_eof":
            session.feed_eof()
        elif step.kind in EXPECTATIONS:
            pending = bytes(session.out[read:])
            found = step.match(pending, eof=session.eof)
            if not found.done:
                problem = ("expected the server to close the connection"
                           if step.kind == "expect_eof" else
                           f"the server sent only {len(pending)} more bytes and then waited")
                return _failure(vector, step, number, offset=read, problem=problem,
                                pending=pending)
            if found.problem:
                return _failure(vector, step, number, offset=read + found.offset,
                                problem=found.problem, pending=pending)
            read += found.consumed
    if vector.steps and vector.steps[-1].kind != "expect_eof" and read < len(session.out):
        return Result(vector, False, "unexpected bytes after the last expectation",
                      b"", bytes(session.out[read:]), step=len(vector.steps), offset=read)
    return _check_end(vector, session)


def _failure(vector: Vector, step: Step, number: int, *, offset: int, problem: str,
             pending: bytes) -> Result:
    expected = step.data if step.kind in ("expect", "expect_head") else b""
    return Result(vector, False, problem, expected, pending, step=number, offset=offset)


def _pieces(step: Step, bytewise: bool) -> Iterator[bytes]:
    data = step.data
    if bytewise:
        yield from (data[i : i + 1] for i in range(len(data)))
        return
    pos = 0
    for size in step.chunks:
        yield data[pos : pos + size]
        pos += size
    if pos < len(data):
        yield data[pos:]


def _check_end(vector: Vector, session: _EchoSession) -> Result:
    if vector.events is not None and tuple(session.events) != vector.events:
        return Result(vector, False, f"application saw {_short(session.events)}, "
                      f"expected {_short(list(vector.events))}")
    end = vector.end
    if "status" in end and session.status != end["status"]:
        return Result(vector, False, f"status {session.status}, expected {end['status']}")
    if "close_code" in end:
        if session.close_code is None and session.opened and not session.eof:
            session.feed_eof()
        if session.close_code != end["close_code"]:
            return Result(
                vector, False, f"close code {session.close_code}, expected {end['close_code']}"
            )
    if "eof" in end and session.eof != end["eof"]:
        return Result(vector, False, f"server closed: {session.eof}, expected {end['eof']}")
    return Result(vector, True)


def _short(events: list[str | bytes]) -> str:
    return repr([e if len(e) <= 40 else f"<{type(e).__name__} of {len(e)}>" for e in events])
