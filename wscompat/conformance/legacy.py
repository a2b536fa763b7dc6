"""wscompat's own catalogue for the drafts Autobahn never covered, as data.

Autobahn speaks RFC 6455 only. These cases cover what shipped before it:

- ``hixie-75.*``: the handshake (the 85 octets hixie-75 clients compare literally,
  ``WebSocket-Origin`` and ``WebSocket-Location``) and the framing: ``0x00 text 0xFF``
  echoed, other sentinel and length-prefixed frames discarded, ``0xFF 0x00`` being no
  close in this draft, frames split across writes or sent with the handshake.
- ``hixie-76.*``: the key1/key2/key3 challenge and its MD5 answer (key3 with the head,
  later as through an HTTP proxy, in pieces, with ``Content-Length: 8``), the same
  framing, the closing handshake (``0xFF 0x00`` answered with ``0xFF 0x00`` and a TCP
  close) and the refusals of invalid keys.
- ``hybi-07.*`` and ``hybi-08.*``: the handshakes of Firefox 6 (version 7) and of Chrome
  14-15 and Firefox 7-10 (version 8, ``Sec-WebSocket-Origin``; hybi-11/12's ``Origin``),
  then a short RFC 6455 session on them (plain :class:`~.cases.Case` objects, played by
  the Autobahn runner), and the refusal of requests without a key.

Each :class:`LegacyCase` (the hixie cases and the refusals) says how the client opens
(:class:`Opening`), what it writes, and what a conforming server does (:class:`LegacyExpect`);
:func:`judge_legacy` gives the same :class:`~.verdict.Result` as Autobahn's cases. A
server that refuses a draft's handshake with an HTTP status (or closes without
answering) gets UNIMPLEMENTED for that draft's cases: it does not speak the draft.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from wscompat.conformance.cases import (
    BINARY,
    PING,
    TEXT,
    Case,
    Event,
    Handshake,
    Pause,
    close_frame,
    closes,
    echo,
    fails,
    frame,
    send,
)
from wscompat.conformance.verdict import Closing, Observation, Result, Verdict, describe_events

__all__ = ["LegacyCase", "LegacyExpect", "Opening", "Receive", "Write", "judge_legacy", "legacy"]

LegacyDraft = Literal["hixie-75", "hixie-76", "hybi-07", "hybi-08"]

# draft-hixie-76 section 1.3's example: its answer is 8jKS'y:G*Co,Wxa-.
KEY1 = "4 @1  46546xW%0l 1 5"
KEY2 = "12998 5 Y3 1  .P00"
KEY3 = b"^n:ds[4U"


@dataclass(frozen=True)
class Opening:
    """How the client opens a legacy case."""

    draft: LegacyDraft
    key1: str = KEY1
    key2: str = KEY2
    key3: bytes = KEY3
    key3_delay: float | None = None
    """hixie-76: write key3 this long after the head (as an HTTP proxy holds it back);
    None: in the same write."""
    key3_chop: int | None = None
    """hixie-76: write key3 in pieces of this many octets."""
    content_length: bool = False
    """hixie-76: send ``Content-Length: 8`` (Perl's Protocol::WebSocket does)."""
    omit: tuple[str, ...] = ()
    """Header fields left out (refusal cases)."""
    with_head: bytes = b""
    """Octets written in the same write as the handshake (after key3)."""


@dataclass(frozen=True)
class Write:
    """Write octets after the handshake, in one write or in pieces of ``chop``.
    ``closing``: these octets are the client's ``0xFF 0x00`` (hixie-76)."""

    data: bytes
    chop: int | None = None
    closing: bool = False


@dataclass(frozen=True)
class Receive:
    """Wait until ``count`` text frames in all have come back (or the case's ``after``
    has passed), so what follows is written after them."""

    count: int


LegacyStep = Write | Pause | Receive


@dataclass(frozen=True)
class LegacyExpect:
    accept: bool = True
    """The handshake must succeed (False: the server must refuse it)."""
    messages: tuple[bytes, ...] = ()
    """The text frames the server sends back, in order (UTF-8 payloads)."""
    close: Literal["client", "handshake"] = "client"
    """``client``: the server keeps the connection open until the client closes TCP;
    ``handshake``: the client sent ``0xFF 0x00``, the server answers it and closes TCP."""
    informational: bool = False
    """The draft leaves the outcome open; reported, never judged."""


@dataclass(frozen=True)
class LegacyCase:
    id: str
    description: str
    opening: Opening
    steps: tuple[LegacyStep, ...]
    expect: LegacyExpect
    after: float = 1.0
    """How long after the steps the client waits for the expected frames."""

    @property
    def section(self) -> str:
        return self.id.split(".", 1)[0]


def text(payload: bytes | str) -> bytes:
    """A hixie text frame."""
    data = payload.encode() if isinstance(payload, str) else payload
    return b"\x00" + data + b"\xff"


HELLO = "Hello, world!"
KOSME = "\u03ba\u1f79\u03c3\u03bc\u03b5"
UTF8 = f"{KOSME} \U0001f600 \u4e2d\u6587".encode()
BIG = bytes(0x41 + i % 26 for i in range(65536))
INVALID = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"
CLOSE = b"\xff\x00"


def _echo(*messages: bytes | str) -> LegacyExpect:
    return LegacyExpect(messages=tuple(m.encode() if isinstance(m, str) else m
                                       for m in messages))


def _framing(draft: LegacyDraft, first: int) -> Iterator[LegacyCase]:
    """The framing cases hixie-75 and hixie-76 share, numbered from ``first``."""
    opening = Opening(draft)
    rows: list[tuple[str, tuple[LegacyStep, ...], LegacyExpect, float]] = [
        ("Send a text frame with a UTF-8 payload of several scripts and an emoji.",
         (Write(text(UTF8)),), _echo(UTF8), 1.0),
        ("Send an empty text frame (0x00 0xFF).", (Write(text(b"")),), _echo(b""), 1.0),
        ("Send two text frames in one write.", (Write(text("one") + text("two")),),
         _echo("one", "two"), 1.0),
        ("Send a text frame written octet by octet.", (Write(text(HELLO), chop=1),),
         _echo(HELLO), 2.0),
        ("Send a text frame of 65536 octets.", (Write(text(BIG)),), _echo(BIG), 5.0),
        ("Send a length-prefixed frame (type 0x80, 5 octets), then a text frame: the "
         "first is discarded.", (Write(b"\x80\x05hello" + text(HELLO)),), _echo(HELLO), 1.0),
        ("Send a length-prefixed frame with a two-octet length (type 0x80, 200 octets), "
         "then a text frame: the first is discarded.",
         (Write(b"\x80\x81\x48" + b"x" * 200 + text(HELLO)),), _echo(HELLO), 1.0),
        ("Send a sentinel frame of type 0x01, then a text frame: the first is discarded.",
         (Write(b"\x01ignored\xff" + text(HELLO)),), _echo(HELLO), 1.0),
        ("Send a text frame with invalid UTF-8 (an encoded surrogate); the draft does not "
         "say what the server does.", (Write(text(INVALID)),),
         LegacyExpect(informational=True), 1.0),
    ]
    for n, (description, steps, expect, after) in enumerate(rows, first):
        yield LegacyCase(f"{draft}.{n}", description, opening, steps, expect, after)


def _hixie75() -> Iterator[LegacyCase]:
    yield LegacyCase(
        "hixie-75.1", "Open with the draft's handshake (Origin, no keys): the answer's first "
        "85 octets are compared literally, WebSocket-Origin and WebSocket-Location exactly; "
        "then send a text frame.", Opening("hixie-75"), (Write(text(HELLO)),), _echo(HELLO))
    yield LegacyCase(
        "hixie-75.2", "Send a text frame in the same write as the handshake.",
        Opening("hixie-75", with_head=text(HELLO)), (), _echo(HELLO))
    yield LegacyCase(
        "hixie-75.3", "Send 0xFF 0x00 (a close in hixie-76, an empty length-prefixed frame "
        "in hixie-75), then a text frame: the connection stays open and the text is echoed.",
        Opening("hixie-75"), (Write(CLOSE + text(HELLO)),), _echo(HELLO))
    yield from _framing("hixie-75", 4)
    yield LegacyCase(
        "hixie-75.13", "Open without Connection: Upgrade: the server must refuse.",
        Opening("hixie-75", omit=("Connection",)), (), LegacyExpect(accept=False))


def _hixie76() -> Iterator[LegacyCase]:
    cases: list[tuple[str, Opening]] = [
        ("Open with the draft's example (key1, key2, key3 in the same write); the answer "
         "must carry the MD5 of the challenge, then send a text frame.", Opening("hixie-76")),
        ("Open with key3 written 0.5 s after the head, as an HTTP proxy holds it back; "
         "the server may answer the head first.", Opening("hixie-76", key3_delay=0.5)),
        ("Open with key3 written octet by octet.", Opening("hixie-76", key3_chop=1)),
        ("Open with Content-Length: 8 before key3 (as Perl's Protocol::WebSocket does).",
         Opening("hixie-76", content_length=True)),
        ("Open with other keys, of many spaces and symbols.",
         Opening("hixie-76", key1="18x 6]8vM;54 *(5:  {   U1]8  z [  8",
                 key2="1_ tx7X d  <  nw  334J702) 7]o}` 0", key3=b"Tm[K T2u")),
        ("Open with a key3 of octets above 0x7F.",
         Opening("hixie-76", key1="30  ;- 5=5 u 4 1  7336",
                 key2=":2 8 G(  07A 93Ql 3 *20 Ox0G'w",
                 key3=bytes.fromhex("5d9fb0670fe4fa75"))),
        ("Send a text frame in the same write as key3.",
         Opening("hixie-76", with_head=text(HELLO))),
    ]
    for n, (description, opening) in enumerate(cases, 1):
        steps: tuple[LegacyStep, ...] = () if opening.with_head else (Write(text(HELLO)),)
        yield LegacyCase(f"hixie-76.{n}", description, opening, steps, _echo(HELLO))
    yield from _framing("hixie-76", 8)
    opening = Opening("hixie-76")
    yield LegacyCase("hixie-76.17", "Send 0xFF 0x00: the server answers 0xFF 0x00 and "
                     "closes TCP.", opening, (Write(CLOSE, closing=True),),
                     LegacyExpect(close="handshake"))
    yield LegacyCase("hixie-76.18", "Send a text frame and, once it is echoed, 0xFF 0x00: "
                     "the server answers 0xFF 0x00 and closes TCP.", opening,
                     (Write(text(HELLO)), Receive(1), Write(CLOSE, closing=True)),
                     LegacyExpect(messages=(HELLO.encode(),), close="handshake"))
    yield LegacyCase("hixie-76.19", "Send 0xFF 0x00 and then a text frame: the text after "
                     "the close is not echoed.", opening,
                     (Write(CLOSE + text(HELLO), closing=True),),
                     LegacyExpect(close="handshake"))
    yield LegacyCase("hixie-76.20", "Send a text frame and 0xFF 0x00 in one write; whether "
                     "the text is echoed before the server's 0xFF 0x00 is the server's "
                     "choice (as in Autobahn's 7.1.6).", opening,
                     (Write(text(HELLO) + CLOSE, closing=True),),
                     LegacyExpect(close="handshake", informational=True))
    refusals = [
        ("a key without spaces", Opening("hixie-76", key1="4146546015")),
        ("a key whose number is not a multiple of its spaces",
         Opening("hixie-76", key1="4 @1  46546xW%0l 1 6")),
        ("Sec-WebSocket-Key1 without Sec-WebSocket-Key2",
         Opening("hixie-76", omit=("Sec-WebSocket-Key2",))),
    ]
    for n, (what, bad) in enumerate(refusals, 21):
        yield LegacyCase(f"hixie-76.{n}", f"Open with {what}: the server must refuse.",
                         bad, (), LegacyExpect(accept=False))


def _hybi(draft: Literal["hybi-07", "hybi-08"]) -> Iterator[Case | LegacyCase]:
    version = 7 if draft == "hybi-07" else 8
    opening = Handshake(version=version, origin_header="Sec-WebSocket-Origin")
    client = "Firefox 6" if version == 7 else "Chrome 14-15 and Firefox 7-10"
    pong = "ping payload"
    rows: list[tuple[str, Case]] = [
        (f"Open as {client} did (Sec-WebSocket-Version: {version}, Sec-WebSocket-Origin), "
         "then send a text message.",
         Case("", "", (send(frame(TEXT, HELLO)),), echo(Event.message(HELLO)))),
        ("Send a binary message of 256 octets.",
         Case("", "", (send(frame(BINARY, bytes(range(256)))),),
              echo(Event.message(bytes(range(256)), binary=True)))),
        ("Send a Ping with a payload; the Pong echoes it.",
         Case("", "", (send(frame(PING, pong)),), echo(Event.pong(pong)), end="close")),
        ("Send a text message in 2 fragments with a Ping between them.",
         Case("", "", (send(frame(TEXT, "fragment1", fin=False), frame(PING, pong),
                            frame(0, "fragment2")),),
              echo(Event.pong(pong), Event.message("fragment1fragment2")), end="close")),
        ("Send a Close with code 1000 and a reason; the server answers 1000.",
         Case("", "", (send(close_frame(1000, "bye")),), closes(1000))),
        ("Send a text message with RSV1 set and no extension agreed: the server fails "
         "the connection (1002).", Case("", "", (send(frame(TEXT, HELLO, rsv=4)),),
                                        fails(1002))),
    ]
    for n, (description, case) in enumerate(rows, 1):
        yield Case(f"{draft}.{n}", description, case.steps, case.expect, case.end,
                   case.after, opening)
    n = len(rows) + 1
    if version == 8:
        yield Case(f"{draft}.{n}", "Open with Sec-WebSocket-Version: 8 and Origin (as "
                   "hybi-11 and -12 did), then send a text message.",
                   (send(frame(TEXT, HELLO)),), echo(Event.message(HELLO)),
                   handshake=Handshake(version=8))
        n += 1
    yield LegacyCase(f"{draft}.{n}", f"Open with Sec-WebSocket-Version: {version} and no "
                     "Sec-WebSocket-Key: the server must refuse.",
                     Opening(draft, omit=("Sec-WebSocket-Key",)), (),
                     LegacyExpect(accept=False))


def legacy() -> list[Case | LegacyCase]:
    """Every legacy case: hixie-75, hixie-76, hybi-07, hybi-08."""
    return [*_hixie75(), *_hixie76(), *_hybi("hybi-07"), *_hybi("hybi-08")]


# -- judging ----------------------------------------------------------------------------


def describe_legacy(ex: LegacyExpect) -> str:
    if not ex.accept:
        return "the handshake refused (a status other than 101, or no answer)"
    if ex.informational:
        return "the draft's handshake, then anything (informational)"
    echoed = describe_events([Event.message(m) for m in ex.messages])
    end = ("0xFF 0x00 answered with 0xFF 0x00, then TCP closed by the server"
           if ex.close == "handshake" else "the connection open until the client closes TCP")
    return f"the draft's handshake, then text frames {echoed}, then {end}"


def judge_legacy(case: LegacyCase, obs: Observation) -> Result:
    """OK when the server answers as the draft says; UNIMPLEMENTED when it refuses a
    draft it does not speak; NON-STRICT when it leaves TCP open after the hixie-76
    closing handshake, or neither accepts nor refuses a request it must refuse."""
    ex = case.expect
    expected = describe_legacy(ex)

    def result(verdict: Verdict, why: str, closing: Closing = Closing.OK) -> Result:
        return Result(case, expected, verdict, verdict, closing, obs, why)

    if not ex.accept:
        if obs.refused is not None:
            return result(Verdict.OK, "refused, as it must be")
        if obs.handshake_error is None:
            return result(Verdict.FAILED, "the server accepted a handshake it must refuse",
                          Closing.FAILED)
        return result(Verdict.NON_STRICT, f"neither accepted nor refused: "
                      f"{obs.handshake_error}", Closing.FAILED_BY_CLIENT)
    if obs.refused is not None:
        return result(Verdict.UNIMPLEMENTED, f"the server does not speak "
                      f"{case.opening.draft}: {obs.refused}", Closing.INFORMATIONAL)
    if obs.handshake_error is not None:
        return result(Verdict.FAILED, f"no WebSocket connection: {obs.handshake_error}",
                      Closing.FAILED)
    if ex.informational:
        return result(Verdict.INFORMATIONAL, "outcome left to the implementation",
                      Closing.INFORMATIONAL)
    if obs.timed_out:
        return result(Verdict.FAILED, "the case ran into its deadline", Closing.FAILED)
    if obs.server_error:
        return result(Verdict.FAILED, f"the client failed the connection: {obs.server_error}",
                      Closing.FAILED)
    if obs.events != [Event.message(m) for m in ex.messages]:
        return result(Verdict.FAILED, "the frames received differ from the expected ones")
    if ex.close == "client":
        if obs.close_received or obs.server_dropped:
            return result(Verdict.FAILED, "the server closed the connection", Closing.FAILED)
        return result(Verdict.OK, "as expected")
    if not obs.close_received:
        return result(Verdict.FAILED, "no 0xFF 0x00 answered the client's", Closing.UNCLEAN)
    if not obs.server_dropped:
        return result(Verdict.NON_STRICT, "the server left TCP open after the closing "
                      "handshake", Closing.FAILED_BY_CLIENT)
    return result(Verdict.OK, "as expected")
