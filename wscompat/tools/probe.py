"""``wscompat probe URL``: which generations, extensions and answers a server has.

Each question is one connection of its own, answered within ``timeout`` seconds;
:data:`PARALLEL` are asked at once, in the order below, and the whole probe ends by its
``deadline`` (questions still open or unasked then are reported as such). The questions:

* one per draft: the handshake a client of that generation sent, checked as that
  client checked the answer (:class:`~wscompat.protocol.handshake.client.ClientHandshake`),
  then the draft's close. hixie-76's head goes out without key3 first: a server whose
  101 comes before key3 works behind an HTTP proxy, which holds key3 back until it has
  seen the answer (docs/drafts/hixie-76.md, proxy mode);
* the Flash socket policy file on the same port, asked over plain TCP as Flash does;
* one RFC 6455 handshake per compression extension offered alone, and one offering
  two subprotocols, to see what the server accepts and echoes;
* refusals: an unknown ``Sec-WebSocket-Version`` (the status, and the versions the
  answer lists) and a plain GET;
* TLS on the port: a TLS handshake, its certificate checked for ``wss://`` URLs.

The report is one JSON-ready dict (:func:`probe`), which :func:`render` turns into
the table, so both say the same. A server's bytes are untrusted: whatever of them is
kept goes through :func:`~wscompat.tools.common.printable`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected, ProtocolViolation, WebSocketError
from wscompat.protocol.connection import ClientConnection, ConnectionSettings
from wscompat.protocol.handshake.client import ClientHandshake
from wscompat.tools.client import COMPRESSION_NAMES, extension_factories
from wscompat.tools.common import (
    HEAD_LIMIT,
    CannotConnect,
    Target,
    TLSFailed,
    connect_stream,
    error_text,
    printable,
    split_head,
    status_line,
)

__all__ = [
    "DRAFT_NAMES",
    "PARALLEL",
    "ProbeSettings",
    "ask_all",
    "probe",
    "render",
    "speaks",
]

Record = dict[str, Any]

PARALLEL = 4
"""Questions asked at once: quick, yet polite to a server that limits connections."""
EARLY_SHARE = 0.5
"""Share of the timeout a hixie-76 question waits for the 101 head before sending key3."""
PROBE_SUBPROTOCOLS = ("wscompat-probe", "chat")
NO_CLOSE = "none in this draft"
"""A draft answer's ``closing`` on hixie-75, which closes by closing TCP."""
UNKNOWN_VERSION = 99
POLICY_REQUEST = b"<policy-file-request/>\0"
POLICY_MARK = b"<cross-domain-policy"
RECEIVE_SIZE = 65536
BODY_LIMIT = 300
"""Characters of a refusal's body kept as evidence."""
TABLE_BODY = 80
"""The longest first line of a refusal's body the table shows."""
DRAFT_NAMES = tuple(d.value for d in Draft)
ECHO_FIELDS = frozenset(name.lower() for name in (
    "WebSocket-Origin", "WebSocket-Location", "WebSocket-Protocol",
    "Sec-WebSocket-Origin", "Sec-WebSocket-Location", "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions",
))
"""Response fields that answer the request: what a draft's client checks."""
REFUSAL_LABELS = {
    "unknown-version": f"unknown version ({UNKNOWN_VERSION})",
    "plain-get": "plain GET (no Upgrade)",
    "no-protocol": "CONNECT without :protocol",
}
SHOWN_SETTINGS = ("MAX_CONCURRENT_STREAMS", "INITIAL_WINDOW_SIZE", "MAX_FRAME_SIZE",
                  "MAX_HEADER_LIST_SIZE")
"""The server SETTINGS the table shows (the report has them all)."""
_STATUS = re.compile(rb"HTTP/\d\.\d (\d{3})")
_ALLOW = re.compile(rb"<allow-access-from\s([^>]*?)\s*/?>")


@dataclass(frozen=True)
class ProbeSettings:
    """One probe, as the command line describes it."""

    target: Target
    origin: str | None = None
    timeout: float = 3.0
    deadline: float = 30.0
    ssl_context: ssl.SSLContext | None = None
    """For wss:// URLs: the context to check the certificate with (None: the system's)."""


Question = Callable[[Record], Awaitable[None]]
"""A question: it fills in the record it is given."""


class _Unanswered(Exception):
    """A question got no usable answer; the message says why."""


async def probe(settings: ProbeSettings) -> Record:
    """Ask every question; the report, with ``drafts`` mapping each draft's name to
    its answer (``supported`` and the evidence)."""
    asked = _Questions(settings)
    questions: dict[tuple[str, str], Question] = {}
    for draft in Draft:
        questions["drafts", draft.value] = partial(asked.draft, draft)
    questions["policy_file", ""] = asked.policy
    for name in COMPRESSION_NAMES:
        questions["compression", name] = partial(asked.compression, name)
    questions["subprotocol", ""] = asked.subprotocol
    questions["refusals", "unknown-version"] = asked.unknown_version
    questions["refusals", "plain-get"] = asked.plain_get
    questions["tls", ""] = asked.tls
    return await ask_all(settings, questions)


async def ask_all(settings: ProbeSettings,
                  questions: dict[tuple[str, str], Question]) -> Record:
    """Ask ``questions``, keyed by (group, name), :data:`PARALLEL` at once and in their
    order, within the deadline; the report: each group maps names to answers (a group
    of one question, name ``""``, is that answer)."""
    answers: dict[tuple[str, str], Record] = {
        key: {"supported": False, "error": f"not asked within the probe's deadline "
              f"({settings.deadline:g} s)"}
        for key in questions
    }
    queue = iter(questions)  # shared by the askers: each question once, drafts first
    start = trio.current_time()

    async def asker() -> None:
        for key in queue:
            answers[key] = record = {"supported": False, "error": "not answered within the "
                                     f"probe's deadline ({settings.deadline:g} s)"}
            await _timed(questions[key], record, settings.timeout)

    with trio.move_on_after(settings.deadline):
        async with trio.open_nursery() as nursery:
            for _ in range(PARALLEL):
                nursery.start_soon(asker)
    report: Record = {
        "url": settings.target.url,
        "timeout": settings.timeout,
        "seconds": round(trio.current_time() - start, 3),
    }
    for group, _ in questions:
        report.setdefault(group, {})
    for (group, name), answer in answers.items():
        if answer["supported"]:  # a draft whose close the deadline cut short
            answer["error"] = None
        if name:
            report[group][name] = answer
        else:
            report[group] = answer
    return report


def speaks(report: Record) -> list[str]:
    """The drafts the report found supported."""
    return [name for name, answer in report["drafts"].items() if answer["supported"]]


async def _timed(question: Question, record: Record, timeout: float) -> None:
    """Ask one question within ``timeout``, its answer filled into ``record``: a
    question sets ``supported`` once it has its answer, and only a draft's close (whose
    ``closing`` then stays "not answered") may still be running when time is up."""
    start = trio.current_time()
    with trio.move_on_after(timeout) as late:
        try:
            await question(record)
        except (_Unanswered, CannotConnect) as exc:
            record.update(supported=False, error=str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            record.update(supported=False, error=f"connection failed: {error_text(exc)}")
        except WebSocketError as exc:  # frames that broke the draft's rules
            record.update(supported=False, error=f"protocol error: {printable(str(exc))}")
    if record["supported"]:
        record["error"] = None
    elif late.cancelled_caught:
        record["error"] = f"no answer within {timeout:g} s"
    record["seconds"] = round(trio.current_time() - start, 3)


class _Questions:
    """The questions, each on a connection of its own, each filling in its record."""

    def __init__(self, settings: ProbeSettings) -> None:
        self.settings = settings
        self.target = settings.target

    def _handshake(self, draft: Draft, subprotocols: tuple[str, ...] = (),
                   compression: tuple[str, ...] = ()) -> ClientHandshake:
        t = self.target
        return ClientHandshake(draft, t.host, t.resource, port=t.port, secure=t.secure,
                               origin=self.settings.origin, subprotocols=subprotocols,
                               extensions=extension_factories(compression))

    # -- the drafts --------------------------------------------------------------------

    async def draft(self, draft: Draft, record: Record) -> None:
        if draft is Draft.HIXIE76:
            record["early_head"] = False
        await self._upgrade(self._handshake(draft), record, close=True)

    async def _upgrade(self, handshake: ClientHandshake, record: Record, *,
                       close: bool = False) -> None:
        """Run ``handshake`` and, with ``close``, the draft's close after it."""
        proto = ClientConnection(handshake, ConnectionSettings())
        head, key3 = split_head(proto.request())
        stream = await connect_stream(self.target, self.settings.ssl_context)
        received = bytearray()
        try:
            await stream.send_all(head)
            if key3:
                record["early_head"] = early = await self._early_head(stream, received)
                if early or b"\r\n\r\n" not in received:  # a 101 waiting, or no answer yet
                    with contextlib.suppress(trio.BrokenResourceError):
                        await stream.send_all(key3)  # (a server that closed: read below)
            try:
                if received:
                    proto.receive_data(bytes(received))
                while proto.framer is None:
                    data = await _receive(stream)
                    if not data:
                        proto.receive_eof()  # raises HandshakeRejected
                    received += data
                    proto.receive_data(data)
            except HandshakeRejected as exc:
                record.update(_head_evidence(bytes(received)))
                record.update(supported=False, error=_rejection(exc, bytes(received)))
                return
            result = proto.result
            assert result is not None
            record.update(_head_evidence(bytes(received)))
            record.update(supported=True, subprotocol=result.subprotocol,
                          extensions=result.headers.get("Sec-WebSocket-Extensions"))
            if close:
                record["closing"] = "not answered"
                record["closing"] = await self._close(stream, proto)
        finally:
            await trio.aclose_forcefully(stream)

    async def _early_head(self, stream: trio.abc.Stream, received: bytearray) -> bool:
        """Read, for a share of the timeout, what comes before key3: True when a
        complete 101 head did."""
        with trio.move_on_after(self.settings.timeout * EARLY_SHARE):
            while b"\r\n\r\n" not in received and len(received) < HEAD_LIMIT:
                data = await _receive(stream)
                if not data:
                    break
                received += data
        return b"\r\n\r\n" in received and _status(bytes(received)) == 101

    async def _close(self, stream: trio.abc.Stream, proto: ClientConnection) -> str:
        """The draft's closing handshake, started by us: whether the server answered."""
        if not proto.handshake.draft.caps.close_handshake:
            return NO_CLOSE
        proto.send_close(1000, "probe done")
        await stream.send_all(proto.data_to_send())
        while proto.close_code is None:
            data = await _receive(stream)
            try:
                if data:
                    proto.receive_data(data)
                else:
                    proto.receive_eof()
            except ProtocolViolation as exc:
                return f"broke the protocol: {printable(exc.reason)}"
            proto.events()
            if not data:
                break
        return "answered" if proto.close_code not in (None, 1006) else "not answered"

    # -- the policy file ---------------------------------------------------------------

    async def policy(self, record: Record) -> None:
        stream = await connect_stream(self.target, None, tls=False)
        answer = bytearray()
        try:
            await stream.send_all(POLICY_REQUEST)
            while b"\0" not in answer and len(answer) < HEAD_LIMIT:
                data = await _receive(stream)
                if not data:
                    break
                answer += data
        finally:
            await trio.aclose_forcefully(stream)
        record["answer"] = printable(bytes(answer).decode("latin-1"), 300)
        if POLICY_MARK in answer:
            allowed = [printable(a.decode("latin-1"), 200) for a in _ALLOW.findall(answer)]
            allowed = [f"allow-access-from {a}" for a in allowed]
            record.update(supported=True, allow=allowed)
        elif not answer:
            record["error"] = "closed without an answer"
        elif _status(bytes(answer)) is not None:
            record["error"] = f"answered {status_line(bytes(answer))}"
        else:
            record["error"] = "answered something else"

    # -- extensions and subprotocols ---------------------------------------------------

    async def compression(self, name: str, record: Record) -> None:
        await self._upgrade(self._handshake(Draft.RFC6455, compression=(name,)), record)
        if record["supported"] and not record["extensions"]:
            record.update(supported=False,
                          error="not accepted (101 without Sec-WebSocket-Extensions)")

    async def subprotocol(self, record: Record) -> None:
        record["offered"] = list(PROBE_SUBPROTOCOLS)
        handshake = self._handshake(Draft.RFC6455, subprotocols=PROBE_SUBPROTOCOLS)
        await self._upgrade(handshake, record)
        if record["supported"] and not record["subprotocol"]:
            record.update(supported=False,
                          error="none echoed (101 without Sec-WebSocket-Protocol)")

    # -- refusals ----------------------------------------------------------------------

    async def unknown_version(self, record: Record) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        record["sent"] = f"Sec-WebSocket-Version: {UNKNOWN_VERSION}"
        fields = ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                  record["sent"]]
        if self.settings.origin is not None:
            fields.append(f"Origin: {self.settings.origin}")
        await self._ask(fields, record)

    async def plain_get(self, record: Record) -> None:
        record["sent"] = "GET without Upgrade"
        await self._ask(["Accept: text/html", "Connection: close"], record)

    async def _ask(self, fields: list[str], record: Record) -> None:
        """Send a request with these header fields: its answer's status and the versions
        it lists. ``supported`` means that an HTTP answer came."""
        host = self._handshake(Draft.RFC6455).host
        lines = [f"GET {self.target.resource} HTTP/1.1", f"Host: {host}", *fields]
        stream = await connect_stream(self.target, self.settings.ssl_context)
        received = bytearray()
        try:
            await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            while b"\r\n\r\n" not in received and len(received) < HEAD_LIMIT:
                data = await _receive(stream)
                if not data:
                    break
                received += data
        finally:
            await trio.aclose_forcefully(stream)
        if _status(bytes(received)) is None:
            raise _Unanswered("closed without an HTTP answer" if not received
                              else "answered something other than HTTP")
        record.update(_head_evidence(bytes(received)))
        versions: list[int] = []
        for name, value in _fields(bytes(received)):
            if name.lower() == "sec-websocket-version":
                versions += [int(v) for v in re.findall(r"\d+", value)]
        record.update(supported=True, versions=versions)

    # -- TLS ---------------------------------------------------------------------------

    async def tls(self, record: Record) -> None:
        if self.target.secure:
            context = self.settings.ssl_context or ssl.create_default_context()
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            stream = await connect_stream(self.target, context, tls=True)
        except TLSFailed as exc:
            raise _Unanswered(f"no TLS handshake: {exc.reason}") from None
        try:
            assert isinstance(stream, trio.SSLStream)
            cipher = stream.cipher()
            record.update(supported=True, version=stream.version(),
                          cipher=cipher[0] if cipher else None,
                          verified=context.verify_mode != ssl.CERT_NONE)
        finally:
            await trio.aclose_forcefully(stream)


async def _receive(stream: trio.abc.Stream) -> bytes:
    try:
        return bytes(await stream.receive_some(RECEIVE_SIZE))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return b""


def _status(data: bytes) -> int | None:
    match = _STATUS.match(data)
    return int(match.group(1)) if match else None


def _fields(received: bytes) -> list[tuple[str, str]]:
    """The header fields of a response head, printable."""
    end = received.find(b"\r\n\r\n")
    head = received if end < 0 else received[:end]
    fields = []
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip():
            fields.append((printable(name.strip(), 100), printable(value.strip(), 300)))
    return fields


def _head_evidence(received: bytes) -> Record:
    """A response's status, its header fields, those that echo the request, and the
    start of a refusal's body (as far as it came with the head)."""
    fields = _fields(received)
    end = received.find(b"\r\n\r\n")
    body = received[end + 4:] if end >= 0 and _status(received) != 101 else b""
    return {
        "status": _status(received),
        "status_line": status_line(received) or None,
        "headers": [f"{name}: {value}" for name, value in fields],
        "echoed": {name: value for name, value in fields if name.lower() in ECHO_FIELDS},
        "body": printable(body.decode("latin-1"), BODY_LIMIT) if body else None,
    }


def _rejection(exc: HandshakeRejected, received: bytes) -> str:
    if exc.status == 101:
        return f"101 answer not valid: {printable(exc.reason)}"
    if exc.status == 0 and not received:
        return "closed without an answer"
    if exc.status == 0:
        return f"not a valid answer: {printable(exc.reason)}"
    return "refused"


# -- the table ---------------------------------------------------------------------------


def render(report: Record) -> str:
    """The report as a table: one row per question, its answer and the evidence (the
    HTTP/2 probe's report too, which has an ``http2`` and a ``streams`` answer and no
    policy file or TLS question)."""
    rows: list[tuple[str, str, str]] = []
    extra = 0
    """Rows that are not questions of their own."""
    connection = report.get("http2")
    if connection is not None:
        rows.append((f"HTTP/2 ({connection.get('how') or 'not spoken'})", _yes(connection),
                     _settings_evidence(connection)))
    for name, answer in report["drafts"].items():
        rows.append((name, _yes(answer), _draft_evidence(answer)))
        if name == Draft.HIXIE76.value:
            rows.append(("hixie-76 via HTTP proxy", *_proxy_row(answer)))
            extra += 1
    policy = report.get("policy_file")
    if policy is not None:
        rows.append(("Flash policy file", _yes(policy),
                     "; ".join(policy.get("allow") or []) if policy["supported"]
                     else _why(policy)))
    for name, answer in report["compression"].items():
        rows.append((name, _yes(answer),
                     answer["extensions"] if answer["supported"] else _why(answer)))
    sub = report["subprotocol"]
    offered = ", ".join(sub.get("offered") or PROBE_SUBPROTOCOLS)
    rows.append(("subprotocol echo", _yes(sub),
                 f"chose {sub['subprotocol']} of {offered}" if sub["supported"]
                 else _why(sub)))
    for name, answer in report["refusals"].items():
        rows.append((REFUSAL_LABELS.get(name, name), *_refusal_row(answer)))
    streams = report.get("streams")
    if streams is not None:
        rows.append(("two WebSockets, one connection", _yes(streams),
                     f"streams {', '.join(map(str, streams['stream_ids']))} open at once"
                     if streams["supported"] else _why(streams)))
    tls = report.get("tls")
    if tls is not None:
        checked = "certificate checked" if tls.get("verified") else "certificate not checked"
        rows.append(("TLS on this port", _yes(tls),
                     f"{tls['version']}, {tls['cipher']}, {checked}" if tls["supported"]
                     else _why(tls)))
    widths = [max(len(row[i]) for row in [("question", "answer", ""), *rows])
              for i in range(2)]
    each = "HTTP/2 connection" if connection is not None else "connection"
    lines = [f"wscompat probe {printable(report['url'])}: {len(rows) - extra} questions, one "
             f"{each} each, {report['timeout']:g} s per question", ""]
    for row in [("question", "answer", "evidence"), *rows]:
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip())
    found = speaks(report)
    lines += ["", f"speaks: {', '.join(found)}" if found else "speaks: no draft"]
    return "\n".join(lines) + "\n"


def _settings_evidence(answer: Record) -> str:
    if not answer["supported"]:
        return _why(answer)
    settings = answer.get("settings") or {}
    shown = ", ".join(f"{name} {settings[name]}" for name in SHOWN_SETTINGS if name in settings)
    enabled = ("extended CONNECT enabled" if answer.get("extended_connect")
               else "no extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL is not 1)")
    return f"{enabled}; {shown}" if shown else enabled


def _yes(answer: Record) -> str:
    return "yes" if answer["supported"] else "no"


def _why(answer: Record) -> str:
    """Why a question's answer is no: the status line of a refusal (and its body's
    first line, if it is short text), or the error."""
    error = str(answer.get("error") or "no answer")
    line = answer.get("status_line")
    if not (line and error == "refused"):
        return error
    first = re.split(r"\\[rn]", str(answer.get("body") or ""), maxsplit=1)[0].strip()
    if first and not first.startswith("<") and len(first) <= TABLE_BODY:
        return f"{_short(line)}: {first}"
    return _short(line)


def _short(status: str) -> str:
    """A status line without its protocol version: ``426 Upgrade Required``."""
    return status.split(" ", 1)[1] if status.startswith("HTTP/") and " " in status else status


def _draft_evidence(answer: Record) -> str:
    if not answer["supported"]:
        return _why(answer)
    parts = [_short(answer.get("status_line") or "")]
    names = {name.lower() for name in answer.get("echoed", {})}
    if "sec-websocket-accept" in names:
        parts.append("accept key valid")
    elif "sec-websocket-location" in names or "websocket-location" in names:
        parts.append("origin and location echoed")
    closing = answer.get("closing")
    if closing and closing != NO_CLOSE:
        parts.append(f"close {closing}")
    ending = answer.get("stream_end")
    if ending:
        parts.append(f"then {ending}")
    return "; ".join(parts)


def _proxy_row(answer: Record) -> tuple[str, str]:
    if answer.get("early_head"):
        return "yes", "101 head sent before key3"
    if answer["supported"]:
        return "no", "no answer until key3 came"
    return "no", "hixie-76 not spoken"


def _refusal_row(answer: Record) -> tuple[str, str]:
    if not answer["supported"]:
        return "-", _why(answer)
    status = str(answer["status"])
    line = str(answer.get("status_line") or "")
    evidence = line.split(" ", 2)[2] if line.count(" ") >= 2 else line  # the reason phrase
    if answer["versions"]:
        evidence += "; Sec-WebSocket-Version: " + ", ".join(map(str, answer["versions"]))
    return status, evidence
