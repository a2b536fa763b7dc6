"""Play one Autobahn-catalogue case against a WebSocket server over raw TCP.

The client is written from RFC 6455 directly (:mod:`.wire`), not on a WebSocket
library: the cases put malformed frames on the wire and must see exactly what comes
back. It reacts the way Autobahn's client does: it answers the server's Ping and Close,
closes with 1000 once the expected events have arrived, and fails the connection if the
server breaks the protocol. Everything it writes and reads goes to the case's wire log.
The legacy drafts' cases are played by :mod:`.legacy_runner`; :func:`play` takes either.

With ``http2`` each case runs over an extended CONNECT stream (RFC 8441) on an HTTP/2
connection of its own, opened with prior knowledge: the same frames go in the stream's
DATA frames, the server ending its side of the stream (END_STREAM) stands for its TCP
close, and the client's drop resets the stream. The drafts before RFC 6455 have no
HTTP/2 form, so their cases are not played that way.

Every case has a hard deadline (:func:`budget`), so nothing hangs whatever the server
does, and the masking keys and the handshake key are derived from the case id, so a
case writes the same octets every time.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

import trio

from wscompat.conformance.cases import Case, Echoes, Event, Pause, RoundTrip, Send, SendPart
from wscompat.conformance.compression import messages
from wscompat.conformance.legacy import LegacyCase
from wscompat.conformance.legacy_runner import run_legacy
from wscompat.conformance.session import SessionBase, drive, drive_h2
from wscompat.conformance.timing import Timing, budget
from wscompat.conformance.verdict import Observation, Result, expected_lists, judge, same
from wscompat.conformance.wire import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Deflater,
    Frame,
    FrameParser,
    HandshakeError,
    Inflater,
    ProtocolError,
    Received,
    Refused,
    Side,
    Target,
    agree,
    case_key,
    check_hybi_response,
    check_server_frame,
    describe_frame,
    encode_frame,
    hybi_request,
    parse_head,
    split_head,
    valid_close_code,
)
from wscompat.errors import HandshakeRejected
from wscompat.trio.http2_client import H2Client, open_h2_client

__all__ = ["Timing", "budget", "handshake_h2", "has_http2_form", "play", "reachable",
           "reachable_h2", "run_all", "run_case"]

READ_SIZE = 65536

def _frame_line(f: Frame | Received, *, masked: bool) -> str:
    line = describe_frame(f.opcode, fin=f.fin, rsv=f.rsv, masked=masked, size=len(f.payload))
    if f.opcode == CLOSE and len(f.payload) >= 2:
        line += f": code {int.from_bytes(f.payload[:2], 'big')}"
    return line


def _shows_as_text(f: Frame | Received) -> bool:
    if f.opcode not in (TEXT, CONT, CLOSE) or f.rsv:
        return False
    try:
        f.payload[2 if f.opcode == CLOSE else 0 :].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return f.opcode != CLOSE or len(f.payload) == 0


class _Session(SessionBase):
    """The client side of one case: a reader task and the steps, sharing the state."""

    def __init__(self, case: Case, stream: trio.abc.Stream, timing: Timing, *,
                 obs: Observation, started: float, deflater: Deflater | None) -> None:
        super().__init__(stream, timing, obs=obs, started=started)
        self.case = case
        self.parser = FrameParser()
        self.deflater = deflater
        self.inflater = Inflater() if deflater is not None else None
        self._lock = trio.StrictFIFOLock()
        self._masks: dict[str, int] = {}
        self._part_keys: dict[int, bytes] = {}
        self._message: list[bytes] = []
        self._message_opcode: int | None = None
        self._message_compressed = False
        self._echo: tuple[bytes, bool] | None = None
        """The message an :class:`Echoes` step waits for: compared, not recorded."""
        self.messages = 0
        self.close_sent_at: float | None = None
        self.close_received_at: float | None = None
        self.after_at: float | None = None

    # state --------------------------------------------------------------------------

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

    def _log_frame(self, frame: Frame, how: str = "") -> None:
        self.log("client", _frame_line(frame, masked=True) + how, frame.payload,
                 text=_shows_as_text(frame))

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
        self._log_frame(frame, " (in reply)")
        await self._write(encode_frame(frame, self._mask_key(reply=True)),
                          wait=self.timing.close_timeout)

    async def send_close(self, code: int | None) -> None:
        frame = Frame(CLOSE, b"" if code is None else code.to_bytes(2, "big"), closing=True)
        self._closing(frame)
        self._log_frame(frame)
        await self._write(encode_frame(frame, self._mask_key(reply=True)))

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
                    self.log("note", "the server closed TCP")
                    return
                self.parser.feed(data)
        except ProtocolError as exc:
            await self._fail(str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if not self.obs.dropped_by_client:
                self.obs.server_dropped = True
                self.log("note", "the connection broke (reset by the server)")
        finally:
            self._end()
            await trio.aclose_forcefully(self.stream)

    async def _on_frame(self, f: Received) -> None:
        self.log("server", _frame_line(f, masked=f.masked), f.payload, text=_shows_as_text(f))
        if self.close_received_at is not None:
            return  # nothing the server sends after its Close counts
        problem = check_server_frame(f, compressed_ok=self.inflater is not None)
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
            self._message_compressed = bool(f.rsv & 4)
        self._message.append(f.payload)
        if not f.fin:
            return True
        data, binary = b"".join(self._message), self._message_opcode == BINARY
        self._message, self._message_opcode = [], None
        if self._message_compressed and self.inflater is not None:
            try:
                data = self.inflater.inflate(data)
            except ProtocolError as exc:
                await self._fail(str(exc))
                return False
            self.log("note", f"the server's message inflates to {len(data)} octets")
        if not binary:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                await self._fail("server sent a text message that is not UTF-8")
                return False
        if self._echo is None or self._echo != (data, binary):
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
        if all(same(self.obs.events, expected) for expected in expected_lists(ex)):
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
                self.log("note", f"pause {step.seconds * self.timing.pause_scale:g} s")
                with trio.move_on_after(step.seconds * self.timing.pause_scale):
                    await self.ended.wait()
                if step.mark is not None:
                    if not self.open:
                        break
                    self.obs.events.append(Event.timeout(step.mark))
            elif isinstance(step, RoundTrip):
                await self._round_trip(step)
            else:
                await self._echoes(step)
        await self._finish()

    async def _send(self, step: Send) -> None:
        encoded = [encode_frame(f, self._mask_key()) for f in step.frames]
        how = (f" (written in pieces of {step.chop} octets)" if step.chop
               else " (written on its own)" if step.sync else "")
        if step.chop is None and not step.sync:
            for f in step.frames:
                self._closing(f)
                self._log_frame(f)
            await self._write(b"".join(encoded))
            return
        for f, data in zip(step.frames, encoded, strict=True):
            self._closing(f)
            self._log_frame(f, how)
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
        what = _frame_line(step.frame, masked=True)
        self.log("client", f"part of {what}: payload octets {step.start} to {step.end}",
                 step.frame.payload[step.start : step.end])
        await self._write(data[start : header + step.end])

    async def _round_trip(self, step: RoundTrip) -> None:
        """Autobahn starts the case's timer before the first message, so the round trips
        and the wait after them share one ``after``."""
        self.after_at = trio.current_time() + self.case.after * self.timing.wait_scale
        for _ in range(step.count):
            before = self.messages
            self._log_frame(step.frame)
            if not await self._write(encode_frame(step.frame, self._mask_key())):
                return
            if not await self._wait_for_message(before):
                return

    async def _wait_for_message(self, before: int) -> bool:
        """Wait for a message after ``before`` until ``after_at``; False if none came."""
        assert self.after_at is not None
        with trio.move_on_at(self.after_at):
            while self.messages == before and not self.server_closed:
                await self._changed.wait()
        return self.messages != before

    async def _echoes(self, step: Echoes) -> None:
        """Sections 12 and 13. Without permessage-deflate agreed the case cannot run:
        the client closes at once (Autobahn's UNIMPLEMENTED)."""
        if self.deflater is None:
            self.log("note", "permessage-deflate not agreed: the case cannot run")
            await self.send_close(1000)
            return
        self.after_at = trio.current_time() + self.case.after * self.timing.wait_scale
        opcode = BINARY if step.binary else TEXT
        for message in messages(step.data, step.size, step.count):
            self._echo = (message, step.binary)
            payload = self.deflater.compress(message)
            size = step.fragment or len(payload) or 1
            parts = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
            frames = [Frame(opcode if i == 0 else CONT, part, fin=i == len(parts) - 1,
                            rsv=4 if i == 0 else 0) for i, part in enumerate(parts)]
            for f in frames:
                self._log_frame(f, f" (part of a compressed message of {len(message)} octets)"
                                if len(frames) > 1 else
                                f" (a compressed message of {len(message)} octets)")
            before, events = self.messages, len(self.obs.events)
            if not await self._write(b"".join(encode_frame(f, self._mask_key())
                                              for f in frames)):
                return
            if not await self._wait_for_message(before) or len(self.obs.events) != events:
                return
        self._echo = None
        self.obs.events.append(Event.echoed(step.count))
        self._notify()
        await self._finish_when_done()

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


async def handshake(stream: trio.abc.Stream, target: Target, case: Case,
                    session_log: Observation, started: float) -> tuple[bytes, Deflater | None]:
    """The hybi-family opening handshake; the octets read past the response head, and
    the compressor permessage-deflate needs, if it was agreed."""
    key = case_key(case.id)
    request = hybi_request(target, key, case.handshake)
    session_log.wire.add(trio.current_time() - started, "client", "opening handshake",
                         request, text=True)
    await stream.send_all(request)
    buf = b""
    while (parts := split_head(buf)) is None:
        data = await stream.receive_some(4096)
        if not data:
            raise HandshakeError("connection closed during the handshake")
        buf += data
    head, rest = parts
    session_log.wire.add(trio.current_time() - started, "server", "handshake answer", head,
                         text=True)
    agreement = check_hybi_response(parse_head(head), key, case.handshake)
    if agreement is None:
        return rest, None
    session_log.extensions = agreement.header
    return rest, Deflater(agreement)


async def handshake_h2(client: H2Client, target: Target, case: Case,
                       session_log: Observation,
                       started: float) -> tuple[trio.abc.Stream, Deflater | None]:
    """The opening handshake as an extended CONNECT (RFC 8441); the stream of the
    WebSocket's bytes, and the compressor permessage-deflate needs, if it was agreed.
    The answer is checked here as :func:`check_hybi_response` checks a 101."""
    hs = case.handshake
    extra = [("sec-websocket-extensions", hs.offer)] if hs.offer is not None else []
    try:
        stream = await client.open_websocket(
            target.resource, authority=target.host_header, origin=target.origin,
            extra_headers=extra, check=False)
    except HandshakeRejected as exc:
        _log_fields(session_log, started, "client", "opening handshake (HTTP/2)",
                    client.session.last_request)
        if exc.status == 0:
            raise HandshakeError(exc.reason) from None
        line = f"HTTP/2 {exc.status} {exc.reason}"
        session_log.wire.add(trio.current_time() - started, "server", "handshake answer",
                             line.encode(), text=True)
        raise Refused(line) from None
    _log_fields(session_log, started, "client", "opening handshake (HTTP/2)",
                stream.request_headers)
    _log_fields(session_log, started, "server", "handshake answer",
                [(":status", str(stream.status)), *stream.response_headers])
    if stream.response_headers.get("sec-websocket-protocol") is not None:
        await stream.aclose()
        raise HandshakeError("the server chose a subprotocol the client did not offer")
    answered = stream.response_headers.joined("sec-websocket-extensions")
    if answered is None:
        return stream, None
    if hs.offer is None:
        await stream.aclose()
        raise HandshakeError(f"the server agreed extensions the client did not offer: "
                             f"{answered!r}")
    agreement = agree(hs.offer, answered)
    session_log.extensions = agreement.header
    return stream, Deflater(agreement)


def _log_fields(obs: Observation, started: float, side: Side, what: str,
                fields: Sequence[tuple[str, str]]) -> None:
    text = "".join(f"{name}: {value}\r\n" for name, value in fields)
    obs.wire.add(trio.current_time() - started, side, what, text.encode("utf-8"), text=True)


async def run_case(case: Case, target: Target, timing: Timing | None = None, *,
                   http2: bool = False) -> Result:
    """Connect, handshake, play the case and judge it; never raises for server faults
    and never runs past the case's :func:`budget`."""
    timing = timing or Timing()
    obs = Observation(link="the HTTP/2 stream" if http2 else "TCP")
    started = trio.current_time()

    async def opening(stream: trio.SocketStream) -> _Session | None:
        try:
            with trio.fail_after(timing.connect_timeout):
                leftover, deflater = await handshake(stream, target, case, obs, started)
        except Refused as exc:
            obs.refused = exc.status_line
            return None
        session = _Session(case, stream, timing, obs=obs, started=started,
                           deflater=deflater)
        session.parser.feed(leftover)
        return session

    async def opening_h2(client: H2Client) -> _Session | None:
        try:
            with trio.fail_after(timing.connect_timeout):
                stream, deflater = await handshake_h2(client, target, case, obs, started)
        except Refused as exc:
            obs.refused = exc.status_line
            return None
        return _Session(case, stream, timing, obs=obs, started=started, deflater=deflater)

    errors = (OSError, trio.TooSlowError, trio.BrokenResourceError, HandshakeError)
    if http2:
        await drive_h2(target, opening_h2, timing=timing, obs=obs, started=started,
                       seconds=budget(case, timing), errors=(*errors, HandshakeRejected))
    else:
        await drive(target, opening, timing=timing, obs=obs, started=started,
                    seconds=budget(case, timing), errors=errors)
    return judge(case, obs)


async def play(case: Case | LegacyCase, target: Target, timing: Timing | None = None, *,
               http2: bool = False) -> Result:
    """Either catalogue's case, played and judged (an RFC 6455 one over HTTP/2 with
    ``http2``)."""
    if http2 and not has_http2_form(case):
        raise ValueError(f"{case.id}: the drafts before RFC 6455 have no HTTP/2 form")
    if isinstance(case, LegacyCase):
        return await run_legacy(case, target, timing or Timing())
    return await run_case(case, target, timing, http2=http2)


def has_http2_form(case: Case | LegacyCase) -> bool:
    """The case can run over HTTP/2: an RFC 6455 one (the hixie drafts and hybi-07/08
    never ran over HTTP/2; RFC 8441 carries version 13)."""
    return isinstance(case, Case) and case.handshake.version == 13


async def run_all(cases: Sequence[Case | LegacyCase], target: Target, timing: Timing | None = None,
                  on_result: Callable[[Result], None] | None = None, *,
                  http2: bool = False) -> list[Result]:
    """Every case, one after the other on a connection of its own, as Autobahn runs
    them; ``on_result`` hears of each as it ends."""
    results = []
    for case in cases:
        result = await play(case, target, timing, http2=http2)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


async def reachable(target: Target, timing: Timing) -> str | None:
    """Why no TCP connection to the server can be opened, or None if one can."""
    try:
        with trio.fail_after(timing.connect_timeout):
            stream = await trio.open_tcp_stream(target.host, target.port)
    except OSError as exc:
        return exc.strerror or str(exc)
    except trio.TooSlowError:
        return f"no connection in {timing.connect_timeout:g} s"
    await trio.aclose_forcefully(stream)
    return None


async def reachable_h2(target: Target, timing: Timing) -> str | None:
    """Why no WebSocket over HTTP/2 can be opened on the server (no connection, no
    HTTP/2 with prior knowledge, no extended CONNECT in its SETTINGS), or None."""
    try:
        async with open_h2_client(target.host, target.port,
                                  timeout=timing.connect_timeout) as client:
            if not client.extended_connect:
                return ("it speaks HTTP/2 but does not support WebSocket over it (its "
                        "SETTINGS do not enable the extended CONNECT of RFC 8441)")
    except OSError as exc:
        return exc.strerror or str(exc)
    except trio.TooSlowError:
        return f"no HTTP/2 connection in {timing.connect_timeout:g} s"
    except HandshakeRejected as exc:
        return exc.reason
    return None
