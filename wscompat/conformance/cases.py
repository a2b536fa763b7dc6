"""The Autobahn|Testsuite fuzzing-client catalogue, sections 1-7, 9 and 10, as data.

Each :class:`Case` says how the client opens (``handshake``), what it puts on the wire
(``steps``), when it gives up (``end`` after ``after`` seconds), and what a conforming
RFC 6455 server does in reply (``expect``). One runner plays every case, so the
catalogue can be read and checked against Autobahn's case descriptions line by line,
and a case is one table row. Sections 12 and 13 (permessage-deflate) are built in
:mod:`.compression`, the drafts Autobahn never covered in :mod:`.legacy`.

Section 9 (limits and performance) is scaled by :class:`Sizes`: by default payload sizes
are divided by 16 and round-trip counts by 10, so the section takes seconds, not
minutes. ``autobahn(Sizes.full())`` restores Autobahn's sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from wscompat.conformance.wire import BINARY, CLOSE, CONT, PING, PONG, TEXT, Frame, Handshake

__all__ = [
    "BINARY", "CLOSE", "CONT", "PING", "PONG", "TEXT",
    "Case", "Echoes", "Event", "Expect", "Frame", "Handshake", "Pause", "RoundTrip", "Send",
    "SendPart", "Sizes", "Step", "autobahn", "largest_message", "section",
]


# -- what goes on the wire -----------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Write frames back to back in one write. ``sync``: one write per frame, with a
    short gap; ``chop``: each frame written in pieces of that many octets."""

    frames: tuple[Frame, ...]
    sync: bool = False
    chop: int | None = None


@dataclass(frozen=True)
class SendPart:
    """Write only the octets of ``frame`` carrying payload ``[start:end]`` (the header
    goes with the part at 0), so one frame can arrive in timed pieces (6.4.3, 6.4.4)."""

    frame: Frame
    start: int
    end: int


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds`` (scaled by the runner). With a ``mark``: if the connection is
    still open, record ``Event.timeout(mark)`` and go on, else stop playing steps."""

    seconds: float
    mark: str | None = None


@dataclass(frozen=True)
class RoundTrip:
    """Send ``frame`` and wait for a message back before sending it again, ``count``
    times (9.7, 9.8 measure round-trip latency this way)."""

    frame: Frame
    count: int


@dataclass(frozen=True)
class Echoes:
    """Send ``count`` messages of ``size`` octets, cut in turn from the data set named
    ``data`` (wrapping around, as Autobahn does), each after the echo of the one before;
    each is compressed with the permessage-deflate the handshake agreed and cut into
    frames of ``fragment`` octets of compressed payload (0: one frame). Each echo is
    compared as it arrives, so nothing grows with ``count``; when every one came back
    as sent, the client records ``Event.echoed(count)`` (sections 12 and 13)."""

    data: str
    size: int
    count: int
    binary: bool
    fragment: int = 0


Step = Send | SendPart | Pause | RoundTrip | Echoes


# -- what comes back -------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Something the client observed, compared as a sequence the way Autobahn does."""

    kind: Literal["message", "ping", "pong", "timeout", "echoed"]
    data: bytes = b""
    binary: bool = False

    @classmethod
    def message(cls, data: bytes | str, *, binary: bool = False) -> Event:
        return cls("message", _b(data), binary)

    @classmethod
    def pong(cls, data: bytes | str = b"") -> Event:
        return cls("pong", _b(data))

    @classmethod
    def timeout(cls, mark: str) -> Event:
        """The connection was still open when a marked pause ended."""
        return cls("timeout", mark.encode())

    @classmethod
    def echoed(cls, count: int) -> Event:
        """Every message of an :class:`Echoes` step came back as sent."""
        return cls("echoed", str(count).encode())


@dataclass(frozen=True)
class Expect:
    """A conforming server's behaviour: Autobahn's ``expected`` and ``expectedClose``."""

    ok: tuple[Event, ...]
    """Events that earn OK."""
    non_strict: tuple[Event, ...] | None = None
    """Events that earn NON-STRICT (allowed by the RFC, less than the best behaviour)."""
    closed_by_client: bool = True
    """Who starts the closing handshake: the client, or the server failing the connection."""
    codes: tuple[int, ...] = (1000,)
    """Close codes the server may send (no code at all is always accepted)."""
    require_clean: bool = True
    """The closing handshake must complete (a close frame from the server)."""
    auto_close: bool = True
    """Close as soon as every expected event list matches (Autobahn's finishWhenDone);
    False where the case closes by itself (Autobahn's suppressClose)."""
    wrong_endpoint_fatal: bool = False
    """The server must be the one closing, or the events count for nothing (UTF-8 cases:
    a server that never fails did not detect the invalid text at all)."""
    wrong_code_fatal: bool = False
    """A close code outside ``codes`` fails the case outright (section 7)."""
    informational: bool = False
    """The RFC leaves the outcome open; the case is reported, never judged."""


@dataclass(frozen=True)
class Case:
    id: str
    description: str
    steps: tuple[Step, ...]
    expect: Expect
    end: Literal["close", "kill"] = "kill"
    """After the steps, if the connection is still open ``after`` seconds later: start
    the closing handshake (Autobahn's closeAfter) or drop TCP (killAfter)."""
    after: float = 1.0
    handshake: Handshake = field(default_factory=Handshake)

    @property
    def section(self) -> str:
        return section(self.id)


def section(case_id: str) -> str:
    """``7`` for ``7.9.1``, ``hixie-76`` for ``hixie-76.3``."""
    return case_id.split(".", 1)[0]


@dataclass(frozen=True)
class Sizes:
    """Scale of sections 9, 12 and 13: payload sizes are divided by ``divisor`` and
    message counts by ``count_divisor``; frame and chop sizes stay as Autobahn has them
    (a fragment is never larger than its message)."""

    divisor: int = 16
    count_divisor: int = 10

    @classmethod
    def full(cls) -> Sizes:
        return cls(1, 1)


# -- building blocks -------------------------------------------------------------------


def _b(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


def frame(opcode: int, payload: bytes | str = b"", *, fin: bool = True, rsv: int = 0) -> Frame:
    return Frame(opcode, _b(payload), fin, rsv)


def close_frame(code: int | None = None, reason: bytes | str = b"") -> Frame:
    """A Close starting the closing handshake; ``code=None`` sends the reason octets alone."""
    head = b"" if code is None else code.to_bytes(2, "big")
    return Frame(CLOSE, head + _b(reason), closing=True)


def fragmented(opcode: int, payload: bytes, size: int) -> tuple[Frame, ...]:
    """A message in frames of ``size`` payload octets (Autobahn's fragmentSize)."""
    if len(payload) <= size:
        return (Frame(opcode, payload),)
    parts = [payload[i : i + size] for i in range(0, len(payload), size)]
    last = len(parts) - 1
    return tuple(
        Frame(opcode if i == 0 else CONT, part, fin=i == last) for i, part in enumerate(parts)
    )


_patterns: dict[tuple[bytes, int], bytes] = {}


def repeat(pattern: bytes, length: int) -> bytes:
    """``pattern`` repeated to ``length`` octets (Autobahn's payload_len); shared, since
    section 9 uses the same large payloads many times."""
    key = (pattern, length)
    if key not in _patterns:
        _patterns[key] = (pattern * (length // len(pattern) + 1))[:length]
    return _patterns[key]


def send(*frames: Frame, sync: bool = False, chop: int | None = None) -> Send:
    return Send(tuple(frames), sync, chop)


def echo(*events: Event) -> Expect:
    """The server answers with these events; the client then closes with 1000."""
    return Expect(ok=tuple(events))


def fails(
    code: int = 1002, *, ok: tuple[Event, ...] = (), non_strict: tuple[Event, ...] | None = None
) -> Expect:
    """The server fails the connection with ``code`` (a plain TCP close is accepted too)."""
    return Expect(ok, non_strict, closed_by_client=False, codes=(code,), require_clean=False)


def fails_utf8(
    *, ok: tuple[Event, ...] = (), non_strict: tuple[Event, ...] | None = None
) -> Expect:
    return Expect(ok, non_strict, closed_by_client=False, codes=(1007,), require_clean=False,
                  wrong_endpoint_fatal=True)


def closes(*codes: int, clean: bool = True) -> Expect:
    """Section 7: the client closes and the server must answer with one of ``codes``."""
    return Expect((), codes=codes, require_clean=clean, auto_close=False, wrong_code_fatal=True)


HELLO = "Hello, world!"


# -- the catalogue, section by section -------------------------------------------------


def _section1() -> Iterator[Case]:
    for sub, opcode, fill, kind in ((1, TEXT, b"*", "text"), (2, BINARY, b"\xfe", "binary")):
        binary = opcode == BINARY
        for i, n in enumerate((0, 125, 126, 127, 128, 65535, 65536), 1):
            yield Case(f"1.{sub}.{i}", f"Send a {kind} message with a payload of {n} octets.",
                       (send(Frame(opcode, fill * n)),),
                       echo(Event.message(fill * n, binary=binary)), after=10 if n > 128 else 1)
        payload = fill * 65536
        yield Case(f"1.{sub}.8", f"Send a {kind} message of 65536 octets in 997-octet chops.",
                   (send(Frame(opcode, payload), chop=997),),
                   echo(Event.message(payload, binary=binary)), after=10)


def _section2() -> Iterator[Case]:
    pings: list[tuple[str, bytes]] = [
        ("without payload", b""),
        ("with a small text payload", HELLO.encode()),
        ("with a small binary (non UTF-8) payload", b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"),
        ("with a binary payload of 125 octets", b"\xfe" * 125),
    ]
    for i, (what, payload) in enumerate(pings, 1):
        yield Case(f"2.{i}", f"Send a Ping {what}.", (send(frame(PING, payload)),),
                   echo(Event.pong(payload)), end="close")
    yield Case("2.5", "Send a Ping with a binary payload of 126 octets (control frames "
               "carry at most 125).", (send(frame(PING, b"\xfe" * 126)),), fails(1002))
    yield Case("2.6", "Send a Ping with 125 octets of payload, written octet by octet.",
               (send(frame(PING, b"\xfe" * 125), chop=1),), echo(Event.pong(b"\xfe" * 125)),
               end="close", after=2)
    unsolicited = b"unsolicited pong payload"
    yield Case("2.7", "Send an unsolicited Pong without payload, then Close; nothing comes "
               "back but the Close.", (send(frame(PONG), close_frame(1000)),), echo(),
               end="close")
    yield Case("2.8", "Send an unsolicited Pong with payload, then Close; nothing comes back "
               "but the Close.", (send(frame(PONG, unsolicited), close_frame(1000)),), echo(),
               end="close")
    yield Case("2.9", "Send an unsolicited Pong with payload, then a Ping with payload; only "
               "the Ping is answered.",
               (send(frame(PONG, unsolicited), frame(PING, "ping payload")),),
               echo(Event.pong("ping payload")), end="close")
    ten = [f"payload-{i}".encode() for i in range(10)]
    for case_id, chop, how in (("2.10", None, ""), ("2.11", 1, ", written octet by octet")):
        yield Case(case_id, f"Send 10 Pings with payload{how}; every one is answered (more "
                   "than the RFC requires, which allows answering only the last).",
                   (send(*(frame(PING, p) for p in ten), chop=chop),),
                   echo(*(Event.pong(p) for p in ten)), end="close", after=3)


def _then_fail(first: Frame, bad: Frame, *, sync: bool = False,
               chop: int | None = None) -> tuple[tuple[Step, ...], Expect]:
    """A valid text message, then a bad frame, then a Ping: the echo of the first may
    come back (OK) or not (NON-STRICT); the Ping is never answered."""
    steps: tuple[Step, ...] = (send(first, bad, frame(PING), sync=sync, chop=chop),)
    return steps, fails(1002, ok=(Event.message(HELLO),), non_strict=())


def _section3() -> Iterator[Case]:
    yield Case("3.1", "Send a small text message with RSV = 1.",
               (send(frame(TEXT, HELLO, rsv=1)),), fails(1002))
    how = {2: "", 3: ", frame by frame", 4: ", octet by octet"}
    for rsv in (2, 3, 4):
        steps, expect = _then_fail(frame(TEXT, HELLO), frame(TEXT, HELLO, rsv=rsv),
                                   sync=rsv == 3, chop=1 if rsv == 4 else None)
        yield Case(f"3.{rsv}", f"Send a small text message, then again with RSV = {rsv}, then "
                   f"a Ping{how[rsv]}.", steps, expect)
    yield Case("3.5", "Send a small binary message with RSV = 5.",
               (send(frame(BINARY, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", rsv=5)),), fails(1002))
    # Autobahn's code for 3.6 writes a binary frame; its description says Ping, as here.
    yield Case("3.6", "Send a Ping with RSV = 6.", (send(frame(PING, HELLO, rsv=6)),),
               fails(1002))
    yield Case("3.7", "Send a Close with RSV = 7.", (send(frame(CLOSE, rsv=7)),), fails(1002))


def _section4() -> Iterator[Case]:
    for sub, kind, opcodes in ((1, "non-control", (3, 4, 5, 6, 7)),
                               (2, "control", (11, 12, 13, 14, 15))):
        for i, opcode in enumerate(opcodes, 1):
            if i == 1:
                yield Case(f"4.{sub}.1", f"Send a frame with reserved {kind} opcode {opcode}.",
                           (send(frame(opcode)),), fails(1002))
            elif i == 2:
                yield Case(f"4.{sub}.2", f"Send a frame with reserved {kind} opcode {opcode} "
                           "and a payload.", (send(frame(opcode, "reserved opcode payload")),),
                           fails(1002))
            else:
                payload = b"" if i == 3 else HELLO.encode()
                chop = 1 if i == 5 else None
                steps, expect = _then_fail(frame(TEXT, HELLO), frame(opcode, payload), chop=chop)
                extra = " and a payload" if payload else ""
                octets = ", octet by octet" if chop else ""
                yield Case(f"4.{sub}.{i}", f"Send a small text message, then a frame with "
                           f"reserved {kind} opcode {opcode}{extra}, then a Ping{octets}.",
                           steps, expect)


def _section5() -> Iterator[Case]:
    for case_id, opcode, name in (("5.1", PING, "Ping"), ("5.2", PONG, "Pong")):
        yield Case(case_id, f"Send a {name} in 2 fragments (control frames cannot be "
                   "fragmented).", (send(frame(opcode, "fragment1", fin=False),
                                         frame(CONT, "fragment2")),), fails(1002))
    ways: tuple[tuple[str, bool, int | None], ...] = (
        ("", False, None), (", frame by frame", True, None), (", octet by octet", False, 1))
    two = (frame(TEXT, "fragment1", fin=False), frame(CONT, "fragment2"))
    for n, (how, sync, chop) in enumerate(ways, 3):
        yield Case(f"5.{n}", f"Send a text message in 2 fragments{how}.",
                   (send(*two, sync=sync, chop=chop),),
                   echo(Event.message("fragment1fragment2")), end="close")
    with_ping = (two[0], frame(PING, "ping payload"), two[1])
    for n, (how, sync, chop) in enumerate(ways, 6):
        yield Case(f"5.{n}", f"Send a text message in 2 fragments with a Ping between "
                   f"them{how}.", (send(*with_ping, sync=sync, chop=chop),),
                   echo(Event.pong("ping payload"), Event.message("fragment1fragment2")),
                   end="close")
    for first, fin in ((9, True), (12, False)):
        orphan = frame(CONT, "non-continuation payload", fin=fin)
        for n, (how, sync, chop) in enumerate(ways, first):
            yield Case(f"5.{n}", f"Send a continuation frame with FIN = {fin} when there is "
                       f"nothing to continue, then a text message{how}.",
                       (send(orphan, frame(TEXT, HELLO), sync=sync, chop=chop),), fails(1002))
    yield Case("5.15", "Send a text message in 2 fragments, then a continuation frame with "
               "FIN = false with nothing to continue, then a text message.",
               (send(frame(TEXT, "fragment1", fin=False), frame(CONT, "fragment2"),
                     frame(CONT, "fragment3", fin=False), frame(TEXT, "fragment4")),),
               fails(1002, ok=(Event.message("fragment1fragment2"),), non_strict=()))
    for case_id, fin in (("5.16", False), ("5.17", True)):
        group = (frame(CONT, "fragment1", fin=fin), frame(TEXT, "fragment2", fin=False),
                 frame(CONT, "fragment3"))
        yield Case(case_id, f"Twice: a continuation frame with FIN = {fin} with nothing to "
                   "continue, then a text message in 2 fragments.",
                   (send(*group, *group),), fails(1002))
    yield Case("5.18", "Send a text message in 2 fragments, both with the text opcode.",
               (send(frame(TEXT, "fragment1", fin=False), frame(TEXT, "fragment2")),),
               fails(1002))
    parts = [f"fragment{i}" for i in range(1, 6)]
    pongs = ("pongme 1!", "pongme 2!")
    for case_id, sync in (("5.19", False), ("5.20", True)):
        how = ", every frame written on its own" if sync else ""
        yield Case(
            case_id,
            "Send a text message in 5 fragments: 2 fragments and a Ping, a 1 s pause, then "
            f"2 fragments, a Ping and the last fragment{how}; each Ping is answered at once.",
            (send(frame(TEXT, parts[0], fin=False), frame(CONT, parts[1], fin=False),
                  frame(PING, pongs[0]), sync=sync),
             Pause(1.0),
             send(frame(CONT, parts[2], fin=False), frame(CONT, parts[3], fin=False),
                  frame(PING, pongs[1]), frame(CONT, parts[4]), sync=sync)),
            echo(Event.pong(pongs[0]), Event.pong(pongs[1]), Event.message("".join(parts))),
            end="close")


KOSME = bytes.fromhex("cebae1bdb9cf83cebcceb5")
"""κόσμε, the Greek word of Markus Kuhn's UTF-8 decoder test."""
INVALID_KOSME = KOSME + bytes.fromhex("eda080") + b"edited"
"""κόσμε, an encoded surrogate (invalid from its 2nd octet, the 13th), then "edited"."""
FAIL_FAST = KOSME + bytes.fromhex("f4908080") + b"edited"
"""κόσμε, then U+110000 (above the Unicode range; invalid at octet 13), then "edited"."""


def _section6_fixed() -> Iterator[Case]:
    yield Case("6.1.1", "Send a text message of length 0.", (send(frame(TEXT)),),
               echo(Event.message("")), end="close")
    yield Case("6.1.2", "Send a text message in 3 fragments, each of length 0.",
               (send(frame(TEXT, fin=False), frame(CONT, fin=False), frame(CONT)),),
               echo(Event.message("")), end="close")
    middle = "middle frame payload"
    yield Case("6.1.3", "Send a text message in 3 fragments, the first and last empty.",
               (send(frame(TEXT, fin=False), frame(CONT, middle, fin=False), frame(CONT)),),
               echo(Event.message(middle)), end="close")
    mixed = "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!".encode()
    head, tail = mixed[:15], mixed[15:]  # split between ä and ü, on a code point boundary
    yield Case("6.2.1", "Send a valid UTF-8 text message in one frame.",
               (send(Frame(TEXT, mixed)),), echo(Event.message(mixed)), end="close")
    yield Case("6.2.2", "Send a valid UTF-8 text message in 2 fragments split on a code "
               "point boundary.", (send(Frame(TEXT, head, fin=False), Frame(CONT, tail)),),
               echo(Event.message(mixed)), end="close")
    for case_id, payload in (("6.2.3", mixed), ("6.2.4", KOSME)):
        yield Case(case_id, "Send a valid UTF-8 text message in 1-octet fragments, so "
                   "fragments end inside code points.", (send(*fragmented(TEXT, payload, 1)),),
                   echo(Event.message(payload)), end="close")
    yield Case("6.3.1", "Send an invalid UTF-8 text message in one frame.",
               (send(Frame(TEXT, INVALID_KOSME)),), fails_utf8())
    yield Case("6.3.2", "Send an invalid UTF-8 text message in 1-octet fragments.",
               (send(*fragmented(TEXT, INVALID_KOSME, 1)),), fails_utf8())
    # 6.4.x: the server must fail as soon as the text can no longer be valid, during the
    # second pause (OK); failing only at the end of the message is NON-STRICT.
    fail_fast = fails_utf8(ok=(Event.timeout("A"),),
                           non_strict=(Event.timeout("A"), Event.timeout("B")))
    for case_id, cut1, cut2 in (("6.4.1", 11, 15), ("6.4.2", 12, 13)):
        p1, p2, p3 = FAIL_FAST[:cut1], FAIL_FAST[cut1:cut2], FAIL_FAST[cut2:]
        yield Case(case_id, f"Send an invalid UTF-8 text message in 3 fragments with 1 s "
                   f"pauses: {p1.hex()} | {p2.hex()} | {p3.hex()}; the 2nd makes it invalid.",
                   (send(Frame(TEXT, p1, fin=False)), Pause(1.0, "A"),
                    send(Frame(CONT, p2, fin=False)), Pause(1.0, "B"), send(Frame(CONT, p3))),
                   fail_fast)
    for case_id, cut1, cut2, like in (("6.4.3", 11, 15, "6.4.1"), ("6.4.4", 12, 13, "6.4.2")):
        whole = Frame(TEXT, FAIL_FAST)
        yield Case(case_id, f"As {like}, but one frame written in 3 pieces with 1 s pauses.",
                   (SendPart(whole, 0, cut1), Pause(1.0, "A"), SendPart(whole, cut1, cut2),
                    Pause(1.0, "B"), SendPart(whole, cut2, len(FAIL_FAST))), fail_fast)


def _hex(*items: str) -> list[bytes]:
    return [bytes.fromhex(item) for item in items]


def _all(valid: bool, sequences: list[bytes]) -> list[tuple[bytes, bool]]:
    return [(payload, valid) for payload in sequences]


def _utf8_groups() -> list[tuple[str, list[tuple[bytes, bool]]]]:
    """Markus Kuhn's UTF-8 decoder test as Autobahn groups it into 6.5 to 6.23:
    (title, [(payload, valid)])."""
    continuation_missing = _hex("c0", "e080", "f08080", "f8808080", "fc80808080",
                                "df", "efbf", "f7bfbf", "fbbfbfbf", "fdbfbfbfbf")
    lonely = [b"".join(bytes((b, 0x20)) for b in range(lo, hi))
              for lo, hi in ((0xC0, 0xDF), (0xE0, 0xEF), (0xF0, 0xF7), (0xF8, 0xFB),
                             (0xFC, 0xFD))]
    high = ("eda080", "edadbf", "edae80", "edafbf")
    noncharacters = _hex("efbfbe", "efbfbf") + [
        bytes((lead, second, 0xBF, last))
        for lead in (0xF0, 0xF1, 0xF2, 0xF3, 0xF4)
        for second in (0x8F, 0x9F, 0xAF, 0xBF)
        if lead != 0xF4 or second == 0x8F  # F4 9F.. and up are above U+10FFFF
        for last in (0xBE, 0xBF)
        if (lead, second) != (0xF0, 0x8F)  # overlong
    ]
    # A prefix of κόσμε is valid when it ends on a code point boundary.
    prefixes = [(KOSME[:n], n in (2, 5, 7, 9, 11)) for n in range(1, len(KOSME) + 1)]
    return [
        ("Some valid UTF-8 sequences", _all(True, [
            b"hello$world", b"hello\xc2\xa2world", b"hello\xe2\x82\xacworld",
            b"hello\xf0\xa4\xad\xa2world", KOSME])),
        ("All prefixes of a valid UTF-8 string that contains multi-byte code points",
         prefixes),
        ("First possible sequence of a certain length",
         _all(True, _hex("00", "c280", "e0a080", "f0908080"))),
        ("First possible sequence length 5/6 (invalid codepoints)",
         _all(False, _hex("f888808080", "fc8480808080"))),
        ("Last possible sequence of a certain length",
         _all(True, _hex("7f", "dfbf", "efbfbf", "f48fbfbf"))),
        ("Last possible sequence length 4/5/6 (invalid codepoints)",
         _all(False, _hex("f7bfbfbf", "fbbfbfbfbf", "fdbfbfbfbfbf"))),
        ("Other boundary conditions",
         _all(True, _hex("ed9fbf", "ee8080", "efbfbd", "f48fbfbf"))
         + _all(False, _hex("f4908080"))),
        ("Unexpected continuation bytes", _all(False, [
            *_hex("80", "bf", "80bf", "80bf80", "80bf80bf", "80bf80bf80", "80bf80bf80bf"),
            bytes(range(0x80, 0xBF))])),
        ("Lonely start characters", _all(False, lonely)),
        ("Sequences with last continuation byte missing", _all(False, continuation_missing)),
        ("Concatenation of incomplete sequences",
         _all(False, [b"".join(continuation_missing)])),
        ("Impossible bytes", _all(False, _hex("fe", "ff", "fefeffff"))),
        ("Examples of an overlong ASCII character",
         _all(False, _hex("c0af", "e080af", "f08080af", "f8808080af", "fc80808080af"))),
        ("Maximum overlong sequences",
         _all(False, _hex("c1bf", "e09fbf", "f08fbfbf", "f887bfbfbf", "fc83bfbfbfbf"))),
        ("Overlong representation of the NUL character",
         _all(False, _hex("c080", "e08080", "f0808080", "f880808080", "fc8080808080"))),
        ("Single UTF-16 surrogates", _all(False, _hex(*high, "edb080", "edbe80", "edbfbf"))),
        ("Paired UTF-16 surrogates", _all(False, [
            bytes.fromhex(h + low) for h in high for low in ("edb080", "edbfbf")])),
        ("Non-character code points (valid UTF-8)", _all(True, noncharacters)),
        ("Unicode specials (i.e. replacement char)", _all(True, _hex(
            "efbfb9", "efbfba", "efbfbb", "efbfbc", "efbfbd", "efbfbe", "efbfbf"))),
    ]


def utf8_sequences() -> Iterator[tuple[str, str, bytes, bool]]:
    """(case id, group title, payload, valid) for 6.5 to 6.23."""
    for group, (title, sequences) in enumerate(_utf8_groups(), 5):
        for n, (payload, valid) in enumerate(sequences, 1):
            yield f"6.{group}.{n}", title, payload, valid


def _section6() -> Iterator[Case]:
    yield from _section6_fixed()
    for case_id, title, payload, valid in utf8_sequences():
        what = "valid" if valid else "invalid"
        yield Case(case_id, f"{title}: send a text message with {what} UTF-8 payload "
                   f"{payload.hex()} in one frame.", (send(Frame(TEXT, payload)),),
                   echo(Event.message(payload)) if valid else fails_utf8(), after=0.5)


def _section7() -> Iterator[Case]:
    hello = "Hello World!"
    normal = closes(1000)
    yield Case("7.1.1", "Send a text message, then close.", (send(frame(TEXT, hello)),),
               Expect((Event.message(hello),), wrong_code_fatal=True))
    yield Case("7.1.2", "Send two Close frames; the second is ignored.",
               (send(close_frame(1000), frame(CLOSE)),), normal)
    yield Case("7.1.3", "Send a Ping after the Close; no Pong comes back.",
               (send(close_frame(1000), frame(PING)),), normal)
    yield Case("7.1.4", "Send a text message after the Close; it is not echoed.",
               (send(close_frame(1000), frame(TEXT, hello)),), normal)
    yield Case("7.1.5", "Send a first fragment, then Close, then the last fragment.",
               (send(frame(TEXT, "fragment1", fin=False), close_frame(1000),
                     frame(CONT, "fragment2")),), normal)
    big = repeat(b"BAsd7&jh23", 256 * 2**10)
    yield Case("7.1.6", "Send a 256 KiB text message, a small text message, Close and a "
               "Ping, back to back; whether the messages come back before the Close is "
               "implementation-defined.",
               (send(Frame(TEXT, big), frame(TEXT, hello), close_frame(1000), frame(PING)),),
               Expect((Event.message(hello),), (), auto_close=False, informational=True))
    yield Case("7.3.1", "Send a Close with an empty payload (no code, no reason).",
               (send(close_frame()),), normal)
    yield Case("7.3.2", "Send a Close with a 1-octet payload.", (send(close_frame(None, "a")),),
               closes(1002, clean=False))
    yield Case("7.3.3", "Send a Close with code 1000 and no reason.",
               (send(close_frame(1000)),), normal)
    yield Case("7.3.4", "Send a Close with code 1000 and a reason.",
               (send(close_frame(1000, hello)),), normal)
    yield Case("7.3.5", "Send a Close with code 1000 and a reason of 123 octets (the most).",
               (send(close_frame(1000, "*" * 123)),), normal)
    yield Case("7.3.6", "Send a Close with code 1000 and a reason of 124 octets (payload of "
               "126, too long for a control frame).", (send(close_frame(1000, "*" * 124)),),
               closes(1002, clean=False))
    yield Case("7.5.1", "Send a Close with code 1000 and an invalid UTF-8 reason.",
               (send(close_frame(1000, INVALID_KOSME)),), closes(1002, 1007, clean=False))
    valid = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999)
    for i, code in enumerate(valid, 1):
        yield Case(f"7.7.{i}", f"Send a Close with valid code {code}.",
                   (send(close_frame(code)),), closes(1000, code))
    invalid = (0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999)
    for i, code in enumerate(invalid, 1):
        yield Case(f"7.9.{i}", f"Send a Close with invalid code {code}.",
                   (send(close_frame(code)),), closes(1002, clean=False))
    for i, code in enumerate((5000, 65535), 1):
        yield Case(f"7.13.{i}", f"Send a Close with code {code}; the RFC does not say what "
                   "follows.", (send(close_frame(code)),),
                   Expect((), codes=(1000, code, 1002), require_clean=False, auto_close=False,
                          informational=True))


TEXT_PATTERN = b"BAsd7&jh23"
BINARY_PATTERN = b"\x00\xfe\x23\xfa\xf0"
KIB, MIB = 2**10, 2**20


def _section9(sizes: Sizes) -> Iterator[Case]:
    def scaled(n: int) -> int:
        return max(n // sizes.divisor, 1)

    def wait(seconds: float, divisor: int) -> float:
        """Autobahn's wait for the echo, scaled like the work it waits for."""
        return max(seconds / divisor, 5.0) if divisor > 1 else seconds

    def size_name(n: int) -> str:
        return f"{n // MIB} MiB" if n >= MIB and n % MIB == 0 else (
            f"{n // KIB} KiB" if n >= KIB and n % KIB == 0 else f"{n} octets")

    big = ((64 * KIB, 10), (256 * KIB, 10), (1 * MIB, 100), (4 * MIB, 100), (8 * MIB, 100),
           (16 * MIB, 100))
    for sub, opcode, pattern, kind in ((1, TEXT, TEXT_PATTERN, "text"),
                                       (2, BINARY, BINARY_PATTERN, "binary")):
        for i, (n, seconds) in enumerate(big, 1):
            payload = repeat(pattern, scaled(n))
            yield Case(f"9.{sub}.{i}", f"Send a {kind} message of {size_name(len(payload))}.",
                       (send(Frame(opcode, payload)),),
                       echo(Event.message(payload, binary=opcode == BINARY)),
                       end="close", after=wait(seconds, sizes.divisor))
    pieces = (64, 256, KIB, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB, 4 * MIB)
    for sub, opcode, kind in ((3, TEXT, "text"), (4, BINARY, "binary")):
        for i, size in enumerate(pieces, 1):
            fill = b"\xfe" if (sub, i) == (4, 1) else b"*"
            payload = repeat(fill, scaled(4 * MIB))
            yield Case(f"9.{sub}.{i}", f"Send a {kind} message of {size_name(len(payload))} "
                       f"in fragments of {size_name(size)}.",
                       (send(*fragmented(opcode, payload, size)),),
                       echo(Event.message(payload, binary=opcode == BINARY)),
                       end="close", after=wait(100, sizes.divisor))
    chops = (64, 128, 256, 512, 1024, 2048)
    for sub, opcode, pattern, kind in ((5, TEXT, TEXT_PATTERN, "text"),
                                       (6, BINARY, BINARY_PATTERN, "binary")):
        for i, chop in enumerate(chops, 1):
            payload = repeat(pattern, scaled(MIB))
            yield Case(f"9.{sub}.{i}", f"Send a {kind} message of {size_name(len(payload))} "
                       f"written in chops of {chop} octets.",
                       (send(Frame(opcode, payload), chop=chop),),
                       echo(Event.message(payload, binary=opcode == BINARY)),
                       end="close", after=wait(1000, sizes.divisor))
    count = max(1000 // sizes.count_divisor, 1)
    rtts = ((0, 60), (16, 60), (64, 60), (256, 120), (1024, 240), (4096, 480))
    for sub, opcode, fill, kind in ((7, TEXT, b"*", "text"), (8, BINARY, b"\xfe", "binary")):
        for i, (n, seconds) in enumerate(rtts, 1):
            payload = fill * n
            yield Case(f"9.{sub}.{i}", f"Send {count} {kind} messages of {n} octets, each "
                       "after the echo of the one before (round-trip time).",
                       (RoundTrip(Frame(opcode, payload), count),),
                       echo(*[Event.message(payload, binary=opcode == BINARY)] * count),
                       end="close", after=wait(seconds, sizes.count_divisor))


def _section10() -> Iterator[Case]:
    payload = b"*" * 65536
    yield Case("10.1.1", "Send a text message of 65536 octets in frames of 1300 octets "
               "(Autobahn's autoFragmentSize).", (send(*fragmented(TEXT, payload, 1300)),),
               echo(Event.message(payload)), after=10)


def autobahn(sizes: Sizes | None = None) -> list[Case]:
    """Every case of sections 1-7, 9 and 10, in Autobahn's order."""
    parts: Iterable[Iterator[Case]] = (
        _section1(), _section2(), _section3(), _section4(), _section5(), _section6(),
        _section7(), _section9(sizes or Sizes()), _section10(),
    )
    return [case for part in parts for case in part]


def largest_message(cases: Iterable[Case]) -> int:
    """An upper bound on the largest message any case sends (a whole Send step counts
    as one), so a server's size limit can be set to it."""
    largest = 0
    for case in cases:
        for step in case.steps:
            if isinstance(step, Send):
                largest = max(largest, sum(len(f.payload) for f in step.frames))
            elif isinstance(step, RoundTrip | SendPart):
                largest = max(largest, len(step.frame.payload))
            elif isinstance(step, Echoes):
                largest = max(largest, step.size)
    return largest
