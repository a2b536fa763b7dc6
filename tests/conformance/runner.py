"""Play one catalogue case against a WebSocket server over raw TCP, and judge it.

The client is written from RFC 6455 directly (handshake, masking, frame parsing), not
on a WebSocket library: the cases put malformed frames on the wire and must see exactly
what comes back. It reacts the way Autobahn's client does: it answers the server's Ping
and Close, closes with 1000 once the expected events have arrived, and fails the
connection if the server breaks the protocol.

Judging follows Autobahn's two checks, the events received and the closing behaviour,
then folds them into one verdict (see :func:`judge`) so a test can assert on it.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import math
from dataclasses import dataclass, field

import trio

from .cases import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Case,
    Event,
    Expect,
    Frame,
    Pause,
    RoundTrip,
    Send,
    SendPart,
)

__all__ = ["Closing", "Observation", "Result", "Timing", "Verdict", "budget", "judge", "run_case"]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
READ_SIZE = 65536
MAX_HEAD = 16384
MAX_FRAME = 2**30
"""The client gives up on a frame longer than this rather than buffer it."""
WIRE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


class Verdict(enum.Enum):
    """Autobahn's case verdicts. UNIMPLEMENTED is kept for reports that line up with
    Autobahn's; it marks compression cases there, and no case here produces it."""

    OK = "OK"
    NON_STRICT = "NON-STRICT"
    INFORMATIONAL = "INFORMATIONAL"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    FAILED = "FAILED"


class Closing(enum.Enum):
    """Autobahn's separate judgement of the closing behaviour."""

    OK = "OK"
    WRONG_CODE = "WRONG CODE"
    FAILED_BY_CLIENT = "FAILED BY CLIENT"
    UNCLEAN = "UNCLEAN"
    FAILED = "FAILED"
    INFORMATIONAL = "INFORMATIONAL"


@dataclass(frozen=True)
class Timing:
    """How long the client waits. Autobahn's values are the defaults; ``pause_scale``
    shortens the deliberate pauses (5.19, 5.20, 6.4.x) for fast local runs."""

    pause_scale: float = 1.0
    wait_scale: float = 1.0
    """Scales each case's ``after``: how long to wait for the expected events."""
    close_timeout: float = 1.0
    """For the server's Close after ours, and for its TCP close after the handshake."""
    sync_gap: float = 0.001
    """Pause after each frame written on its own (``Send(sync=True)``)."""
    connect_timeout: float = 5.0
    margin: float = 5.0
    """Added to a case's natural length to make its hard deadline (see :func:`budget`)."""


@dataclass
class Observation:
    """What the client saw, in the terms Autobahn judges."""

    events: list[Event] = field(default_factory=list)
    handshake_error: str | None = None
    server_error: str | None = None
    """The server broke the protocol (masked frame, bad close code...): the client failed."""
    close_received: bool = False
    close_code: int | None = None
    close_reason: str = ""
    closed_by_client: bool = False
    """The client's Close went out before the server's (Autobahn's closedByMe)."""
    clean: bool = False
    """A valid Close came from the server, completing the closing handshake."""
    server_dropped: bool = False
    """The server closed TCP (FIN or reset)."""
    dropped_by_client: bool = False
    """The client closed TCP itself: the server did not, in time."""
    timed_out: bool = False
    """The whole case ran into its :func:`budget`."""
    duration: float = 0.0


@dataclass(frozen=True)
class Result:
    case: Case
    verdict: Verdict
    behavior: Verdict
    closing: Closing
    observation: Observation
    reason: str

    @property
    def detail(self) -> str:
        """One line: why the verdict, and what was seen."""
        return f"{self.reason}; {describe_observation(self.observation)}"

    def explain(self) -> str:
        """Expected against observed, for a failure message."""
        return (
            f"case {self.case.id}: {self.case.description}\n"
            f"  expected: {describe_expectation(self.case.expect)}\n"
            f"  observed: {describe_observation(self.observation)}\n"
            f"  verdict:  {self.verdict.value} ({self.reason}; events "
            f"{self.behavior.value}, closing {self.closing.value})"
        )


# -- RFC 6455 on the wire --------------------------------------------------------------


def apply_mask(data: bytes, key: bytes) -> bytes:
    """XOR with the repeated 4-octet key, done on integers so megabytes stay fast."""
    if not data:
        return b""
    n = len(data)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little"
    )


def encode_frame(frame: Frame, key: bytes) -> bytes:
    n = len(frame.payload)
    b0 = (0x80 if frame.fin else 0) | (frame.rsv & 7) << 4 | frame.opcode & 0x0F
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = bytes((b0, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + key + apply_mask(frame.payload, key)


@dataclass(frozen=True)
class Received:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes


class ProtocolError(Exception):
    pass


class FrameParser:
    """Incremental parser of the server's frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray) -> None:
        self._buf += data

    def next(self) -> Received | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        n, pos = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, pos = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, pos = int.from_bytes(buf[2:10], "big"), 10
            if n > MAX_FRAME:
                raise ProtocolError(f"server frame of {n} octets")
        masked = bool(buf[1] & 0x80)
        key = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            key, pos = bytes(buf[pos : pos + 4]), pos + 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos : pos + n])
        b0 = buf[0]
        del buf[: pos + n]
        if masked:
            payload = apply_mask(payload, key)
        return Received(bool(b0 & 0x80), b0 >> 4 & 7, b0 & 0x0F, masked, payload)


def check_server_frame(f: Received) -> str | None:
    """What is wrong with a server frame, if anything (RFC 6455 section 5)."""
    if f.masked:
        return "server sent a masked frame"
    if f.rsv:
        return f"server frame has RSV bits {f.rsv}"
    if f.opcode not in (CONT, TEXT, BINARY, CLOSE, PING, PONG):
        return f"server frame has reserved opcode {f.opcode}"
    if f.opcode >= CLOSE and (not f.fin or len(f.payload) > 125):
        return "server sent a fragmented or oversized control frame"
    return None


def valid_close_code(code: int) -> bool:
    return code in WIRE_CODES or 3000 <= code <= 4999


class HandshakeError(Exception):
    pass


def _key(case_id: str) -> str:
    return base64.b64encode(hashlib.sha256(f"{case_id}/key".encode()).digest()[:16]).decode()


async def handshake(stream: trio.abc.Stream, host: str, port: int, key: str) -> bytes:
    """The RFC 6455 client handshake; returns the octets read past the response head."""
    request = (
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\nOrigin: http://{host}:{port}\r\n\r\n"
    )
    await stream.send_all(request.encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise HandshakeError("response head too large")
        data = await stream.receive_some(4096)
        if not data:
            raise HandshakeError("connection closed during the handshake")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "101":
        raise HandshakeError(f"handshake refused: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    if headers.get("sec-websocket-accept") != accept:
        raise HandshakeError("wrong Sec-WebSocket-Accept")
    if headers.get("upgrade", "").lower() != "websocket":
        raise HandshakeError("response lacks Upgrade: websocket")
    return rest


# -- one connection, played ------------------------------------------------------------


class _Session:
    """The client side of one case: a reader task and the steps, sharing the state."""

    def __init__(self, case: Case, stream: trio.abc.Stream, timing: Timing) -> None:
        self.case = case
        self.stream = stream
        self.timing = timing
        self.obs = Observation()
        self.parser = FrameParser()
        self.ended = trio.Event()
        self._changed = trio.Event()
        self._lock = trio.StrictFIFOLock()
        self._masks: dict[str, int] = {}
        self._part_keys: dict[int, bytes] = {}
        self._message: list[bytes] = []
        self._message_opcode: int | None = None
        self.messages = 0
        self.close_sent_at: float | None = None
        self.close_received_at: float | None = None
        self.after_at: float | None = None

    # state --------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @property
    def server_closed(self) -> bool:
        return self.close_received_at is not None or self.ended.is_set()

    @property
    def open(self) -> bool:
        return not self.server_closed and self.close_sent_at is None

    def _mask_key(self, *, reply: bool = False) -> bytes:
        """Deterministic per case, so a failing case replays octet for octet; frames the
        client writes in reaction to the server draw from their own sequence, so the
        scripted frames keep their keys whatever the server does."""
        kind = "reply" if reply else "step"
        self._masks[kind] = n = self._masks.get(kind, 0) + 1
        return hashlib.sha256(f"{self.case.id}/{kind}/{n}".encode()).digest()[:4]

    def _closing(self, frame: Frame) -> None:
        if frame.closing and self.close_sent_at is None:
            self.close_sent_at = trio.current_time()
            self.obs.closed_by_client = self.close_received_at is None
            self._notify()

    # writing --------------------------------------------------------------------------

    async def _write(self, data: bytes, *, wait: float = math.inf) -> bool:
        if self.ended.is_set():
            return False
        with trio.move_on_after(wait):
            async with self._lock:
                try:
                    await self.stream.send_all(data)
                    return True
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return False
        return False

    async def _reply(self, frame: Frame) -> None:
        """Written from the reader: never wait long behind a large write of the steps."""
        await self._write(encode_frame(frame, self._mask_key(reply=True)),
                          wait=self.timing.close_timeout)

    async def send_close(self, code: int | None) -> None:
        frame = Frame(CLOSE, b"" if code is None else code.to_bytes(2, "big"), closing=True)
        self._closing(frame)
        await self._write(encode_frame(frame, self._mask_key(reply=True)))

    async def drop(self) -> None:
        """Close TCP from the client side."""
        if not self.ended.is_set():
            self.obs.dropped_by_client = True
            self._end()
            await trio.aclose_forcefully(self.stream)

    def _end(self) -> None:
        if not self.ended.is_set():
            self.ended.set()
            self._notify()

    # reading --------------------------------------------------------------------------

    async def read_loop(self) -> None:
        try:
            while True:
                while (frame := self.parser.next()) is not None:
                    await self._on_frame(frame)
                    if self.ended.is_set():
                        return
                data = await self.stream.receive_some(READ_SIZE)
                if not data:
                    self.obs.server_dropped = True
                    return
                self.parser.feed(data)
        except ProtocolError as exc:
            await self._fail(str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if not self.obs.dropped_by_client:
                self.obs.server_dropped = True
        finally:
            self._end()
            await trio.aclose_forcefully(self.stream)

    async def _fail(self, problem: str) -> None:
        if self.obs.server_error is None:
            self.obs.server_error = problem
        await self.drop()

    async def _on_frame(self, f: Received) -> None:
        if self.close_received_at is not None:
            return  # nothing the server sends after its Close counts
        problem = check_server_frame(f)
        if problem:
            await self._fail(problem)
            return
        if f.opcode == CLOSE:
            await self._on_close(f.payload)
            return
        if f.opcode == PING:
            self.obs.events.append(Event("ping", f.payload))
            await self._reply(Frame(PONG, f.payload))
        elif f.opcode == PONG:
            self.obs.events.append(Event.pong(f.payload))
        elif not await self._on_data(f):
            return
        self._notify()
        await self._finish_when_done()

    async def _on_data(self, f: Received) -> bool:
        """Assemble messages; False when the frame ended the connection."""
        if f.opcode == CONT and self._message_opcode is None:
            await self._fail("server sent a continuation frame with no message to continue")
            return False
        if f.opcode != CONT:
            if self._message_opcode is not None:
                await self._fail("server started a message inside a fragmented one")
                return False
            self._message_opcode = f.opcode
        self._message.append(f.payload)
        if not f.fin:
            return True
        data, binary = b"".join(self._message), self._message_opcode == BINARY
        self._message, self._message_opcode = [], None
        if not binary:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                await self._fail("server sent a text message that is not UTF-8")
                return False
        self.obs.events.append(Event.message(data, binary=binary))
        self.messages += 1
        return True

    async def _on_close(self, payload: bytes) -> None:
        code: int | None = None
        reason = ""
        if len(payload) == 1:
            await self._fail("server sent a Close with a 1-octet payload")
            return
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not valid_close_code(code):
                await self._fail(f"server sent invalid close code {code}")
                return
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                await self._fail("server sent a close reason that is not UTF-8")
                return
        self.close_received_at = trio.current_time()
        self.obs.close_received, self.obs.clean = True, True
        self.obs.close_code, self.obs.close_reason = code, reason
        self._notify()
        if self.close_sent_at is None:  # the server started it: echo its code
            self.close_sent_at = trio.current_time()
            await self._reply(Frame(CLOSE, payload[:2]))

    async def _finish_when_done(self) -> None:
        """Autobahn's finishWhenDone: close at once when every expected list matches."""
        ex = self.case.expect
        if not (ex.auto_close and ex.closed_by_client) or self.close_sent_at is not None:
            return
        if all(_same(self.obs.events, expected) for expected in _expected_lists(ex)):
            await self.send_close(ex.codes[0])

    # the steps --------------------------------------------------------------------------

    async def play(self) -> None:
        for step in self.case.steps:
            if self.server_closed:
                break
            if isinstance(step, Send):
                await self._send(step)
            elif isinstance(step, SendPart):
                await self._send_part(step)
            elif isinstance(step, Pause):
                with trio.move_on_after(step.seconds * self.timing.pause_scale):
                    await self.ended.wait()
                if step.mark is not None:
                    if not self.open:
                        break
                    self.obs.events.append(Event.timeout(step.mark))
            else:
                await self._round_trip(step)
        await self._finish()

    async def _send(self, step: Send) -> None:
        encoded = [encode_frame(f, self._mask_key()) for f in step.frames]
        if step.chop is None and not step.sync:
            for f in step.frames:
                self._closing(f)
            await self._write(b"".join(encoded))
            return
        for f, data in zip(step.frames, encoded, strict=True):
            self._closing(f)
            if step.chop is None:
                if not await self._write(data):
                    return
                await trio.sleep(self.timing.sync_gap)
                continue
            for i in range(0, len(data), step.chop):
                if not await self._write(data[i : i + step.chop]):
                    return
                await trio.sleep(0)

    async def _send_part(self, step: SendPart) -> None:
        key = self._part_keys.setdefault(id(step.frame), self._mask_key())
        data = encode_frame(step.frame, key)
        header = len(data) - len(step.frame.payload)
        start = 0 if step.start == 0 else header + step.start
        self._closing(step.frame)
        await self._write(data[start : header + step.end])

    async def _round_trip(self, step: RoundTrip) -> None:
        """Autobahn starts the case's timer before the first message, so the round trips
        and the wait after them share one ``after``."""
        self.after_at = trio.current_time() + self.case.after * self.timing.wait_scale
        for _ in range(step.count):
            before = self.messages
            if not await self._write(encode_frame(step.frame, self._mask_key())):
                return
            with trio.move_on_at(self.after_at) as scope:
                while self.messages == before and not self.server_closed:
                    await self._changed.wait()
            if scope.cancelled_caught or self.messages == before:
                return

    async def _finish(self) -> None:
        """Autobahn's timers: closeAfter/killAfter from the case, then the close timeouts
        (our Close unanswered; the server not closing TCP after the handshake)."""
        after = self.after_at or trio.current_time() + self.case.after * self.timing.wait_scale
        limit = self.timing.close_timeout
        while not self.ended.is_set():
            timers = [(after, "after")]
            if self.close_sent_at is not None and self.close_received_at is None:
                timers.append((self.close_sent_at + limit, "no close reply"))
            if self.close_received_at is not None:
                timers.append((self.close_received_at + limit, "no TCP close"))
            when, why = min(timers)
            if trio.current_time() >= when:
                if why == "after" and self.case.end == "close":
                    if self.close_sent_at is None:
                        await self.send_close(1000)
                    after = math.inf
                    continue
                await self.drop()
                return
            changed = self._changed
            with trio.move_on_at(when):
                await changed.wait()


def _expected_lists(ex: Expect) -> list[tuple[Event, ...]]:
    return [ex.ok] if ex.non_strict is None else [ex.ok, ex.non_strict]


def _same(events: list[Event], expected: tuple[Event, ...]) -> bool:
    return len(events) == len(expected) and all(a == b for a, b in zip(events, expected,
                                                                       strict=True))


def budget(case: Case, timing: Timing) -> float:
    """The longest a case can take against any server: connecting, its pauses, its wait
    for the expected events, two close timeouts, and a margin for large writes."""
    pauses = sum(step.seconds for step in case.steps if isinstance(step, Pause))
    return (timing.connect_timeout + pauses * timing.pause_scale
            + case.after * timing.wait_scale + 2 * timing.close_timeout + timing.margin)


async def run_case(case: Case, host: str, port: int, timing: Timing | None = None) -> Result:
    """Connect, handshake, play the case and judge it; never raises for server faults
    and never runs past the case's :func:`budget`."""
    timing = timing or Timing()
    obs = Observation()
    started = trio.current_time()
    stream: trio.SocketStream | None = None
    with trio.move_on_after(budget(case, timing)) as deadline:
        try:
            with trio.fail_after(timing.connect_timeout):
                stream = await trio.open_tcp_stream(host, port)
                leftover = await handshake(stream, host, port, _key(case.id))
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, HandshakeError) as exc:
            obs.handshake_error = str(exc) or type(exc).__name__
        else:
            session = _Session(case, stream, timing)
            obs = session.obs
            session.parser.feed(leftover)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.read_loop)
                await session.play()
                nursery.cancel_scope.cancel()
    if deadline.cancelled_caught:
        obs.timed_out = True
    if stream is not None:
        await trio.aclose_forcefully(stream)
    obs.duration = trio.current_time() - started
    return judge(case, obs)


# -- judging --------------------------------------------------------------------------


def judge(case: Case, obs: Observation) -> Result:
    """Autobahn's verdict on the events and on the closing, folded into one.

    Events: OK if they equal ``expect.ok``, NON-STRICT if they equal ``expect.non_strict``,
    else FAILED. Closing, in Autobahn's order: FAILED when the wrong side started the
    closing handshake, UNCLEAN when a required handshake did not complete, WRONG CODE for
    a code outside ``expect.codes``, FAILED BY CLIENT when the client had to close TCP.
    Folded: a FAILED or UNCLEAN closing fails the case; WRONG CODE and FAILED BY CLIENT
    make it at most NON-STRICT, except that a server which never answered at all (no
    Close, no TCP close) fails it. A server the client had to fail fails the case.
    """
    ex = case.expect
    if obs.handshake_error is not None:
        return Result(case, Verdict.FAILED, Verdict.FAILED, Closing.FAILED, obs,
                      f"no WebSocket connection: {obs.handshake_error}")
    if ex.informational:
        return Result(case, Verdict.INFORMATIONAL, Verdict.INFORMATIONAL,
                      Closing.INFORMATIONAL, obs, "outcome left to the implementation")
    reasons: list[str] = []
    if _same(obs.events, ex.ok):
        behavior = Verdict.OK
    elif ex.non_strict is not None and _same(obs.events, ex.non_strict):
        behavior = Verdict.NON_STRICT
        reasons.append("events match the NON-STRICT list")
    else:
        behavior = Verdict.FAILED
        reasons.append("events differ from every expected list")
    closing = _judge_closing(ex, obs)
    if ex.wrong_endpoint_fatal and ex.closed_by_client != obs.closed_by_client:
        behavior = Verdict.FAILED
    if ex.wrong_code_fatal and closing is Closing.WRONG_CODE:
        behavior = Verdict.FAILED
    verdict, why = _fold(ex, obs, behavior, closing)
    reasons.append(why)
    text = "; ".join(r for r in reasons if r)
    if verdict is not Verdict.NON_STRICT:
        text = text.replace("events match the NON-STRICT list; ", "")
    return Result(case, verdict, behavior, closing, obs, text or "as expected")


def _fold(ex: Expect, obs: Observation, behavior: Verdict,
          closing: Closing) -> tuple[Verdict, str]:
    if obs.timed_out:
        return Verdict.FAILED, "the case ran into its deadline"
    if obs.server_error:
        return Verdict.FAILED, f"the client failed the connection: {obs.server_error}"
    worse = Verdict.FAILED if behavior is Verdict.FAILED else Verdict.NON_STRICT
    if closing is Closing.FAILED:
        if not ex.closed_by_client:
            return Verdict.FAILED, "the client closed first: the server never failed it"
        if obs.close_received:
            return Verdict.FAILED, "the server closed first"
        return Verdict.FAILED, "the connection ended before the client could close it"
    if closing is Closing.UNCLEAN:
        return Verdict.FAILED, "the closing handshake did not complete"
    if closing is Closing.WRONG_CODE:
        return worse, f"close code {obs.close_code} is not one of {list(ex.codes)}"
    if closing is Closing.FAILED_BY_CLIENT:
        if not obs.close_received:
            return Verdict.FAILED, "the server never answered: no Close and no TCP close"
        return worse, "the server left TCP open after the closing handshake"
    return behavior, ""


def _judge_closing(ex: Expect, obs: Observation) -> Closing:
    if ex.closed_by_client != obs.closed_by_client:
        return Closing.FAILED
    if ex.require_clean and not obs.clean:
        return Closing.UNCLEAN
    if obs.close_code is not None and obs.close_code not in ex.codes:
        return Closing.WRONG_CODE
    if obs.dropped_by_client:
        return Closing.FAILED_BY_CLIENT
    return Closing.OK


# -- describing -------------------------------------------------------------------------


def describe_event(event: Event) -> str:
    if event.kind == "timeout":
        return f"open after pause {event.data.decode()}"
    data = event.data
    if event.kind == "message":
        kind = "binary" if event.binary else "text"
        if len(data) > 40:
            digest = hashlib.sha1(data).hexdigest()[:10]
            return f"{kind}({len(data)} octets, sha1 {digest})"
        return f"{kind}({data!r})"
    shown = repr(data) if len(data) <= 40 else f"{len(data)} octets"
    return f"{event.kind}({shown})"


def describe_events(events: list[Event] | tuple[Event, ...]) -> str:
    if len(events) > 6:
        head = ", ".join(describe_event(e) for e in events[:3])
        return f"[{head}, ... {len(events)} events in all]"
    return "[" + ", ".join(describe_event(e) for e in events) + "]"


def describe_expectation(ex: Expect) -> str:
    if ex.informational:
        return "anything (informational)"
    parts = [f"events {describe_events(ex.ok)} (OK)"]
    if ex.non_strict is not None:
        parts.append(f"or {describe_events(ex.non_strict)} (NON-STRICT)")
    who = "client closes" if ex.closed_by_client else "server fails the connection"
    codes = "/".join(str(c) for c in ex.codes)
    clean = "clean closing handshake" if ex.require_clean else "clean close not required"
    parts.append(f"then {who}, code {codes} or none, {clean}")
    return " ".join(parts)


def describe_observation(obs: Observation) -> str:
    if obs.handshake_error is not None:
        return f"handshake failed: {obs.handshake_error}"
    parts = [f"events {describe_events(obs.events)}"]
    if obs.close_received:
        code = "no code" if obs.close_code is None else str(obs.close_code)
        reason = f" {obs.close_reason!r}" if obs.close_reason else ""
        started = "after the client's" if obs.closed_by_client else "first"
        parts.append(f"server Close {code}{reason} ({started})")
    else:
        parts.append("no Close from the server")
    if obs.server_error:
        parts.append(f"client failed: {obs.server_error}")
    if obs.server_dropped:
        parts.append("TCP closed by the server")
    elif obs.dropped_by_client:
        parts.append("TCP closed by the client")
    if obs.timed_out:
        parts.append("deadline reached")
    parts.append(f"{obs.duration:.3f} s")
    return ", ".join(parts)
