"""Play one legacy case (hixie-75, hixie-76, or a hybi-07/08 refusal) over raw TCP.

The client opens as the case's :class:`~.legacy.Opening` says (key3 with the head,
late or in pieces), reads the answer as the draft's client would (:mod:`.wire` checks
it), then writes the steps while a reader task parses the server's hixie frames. It
answers a server's ``0xFF 0x00`` with its own, and ends by closing TCP itself unless
the server did first. Both directions go to the case's wire log, decoded as frames.
"""

from __future__ import annotations

import trio

from wscompat.conformance.cases import Event, Pause
from wscompat.conformance.legacy import LegacyCase, Receive, Write, judge_legacy
from wscompat.conformance.session import SessionBase, drive
from wscompat.conformance.timing import Timing, budget
from wscompat.conformance.verdict import Observation, Result
from wscompat.conformance.wire import (
    Handshake,
    HandshakeError,
    HixieFrame,
    HixieParser,
    ProtocolError,
    Side,
    Target,
    case_key,
    check_hixie_answer,
    hixie76_answer,
    hixie_request,
    hybi_request,
    omit_fields,
    parse_head,
    split_head,
)

__all__ = ["run_legacy"]

READ_SIZE = 65536
CLOSE = b"\xff\x00"


class _LegacySession(SessionBase):
    def __init__(self, case: LegacyCase, stream: trio.abc.Stream, target: Target, *,
                 timing: Timing, obs: Observation, started: float) -> None:
        super().__init__(stream, timing, obs=obs, started=started)
        self.case = case
        self.target = target
        self.parser = HixieParser()
        self.written = HixieParser()
        """Parses what the client writes, only to log it as frames."""
        self.close_sent = False
        self.reset = False
        """The connection ended with a reset, not a FIN (what was unread is lost)."""

    def _log_frame(self, side: Side, frame: HixieFrame) -> None:
        shows_text = frame.kind == "text"
        if shows_text:
            try:
                frame.payload.decode("utf-8")
            except UnicodeDecodeError:
                shows_text = False
        self.log(side, frame.describe(), frame.payload, text=shows_text)

    async def _write(self, data: bytes, *, log: bool = True) -> bool:
        if self.ended.is_set():
            return False
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        if log:
            self.written.feed(data)
            while (frame := self.written.next()) is not None:
                self._log_frame("client", frame)
        return True

    # the opening handshake ---------------------------------------------------------------

    def _request(self) -> tuple[bytes, bytes]:
        """The request head and what follows it (key3 for hixie-76)."""
        opening = self.case.opening
        draft = opening.draft
        if draft == "hybi-07" or draft == "hybi-08":  # noqa: PLR1714 (narrows the Literal)
            version = 7 if draft == "hybi-07" else 8
            head = hybi_request(self.target, case_key(self.case.id),
                                Handshake(version, "Sec-WebSocket-Origin"))
            return omit_fields(head, opening.omit), b""
        head = hixie_request(draft, self.target, key1=opening.key1, key2=opening.key2,
                             content_length=opening.content_length, omit=opening.omit)
        return head, opening.key3 if opening.draft == "hixie-76" else b""

    async def open(self) -> bytes | None:
        """Write the request, read the answer; the octets after it, or None when there
        is no connection to go on with (refused, or a wrong answer)."""
        opening = self.case.opening
        head, key3 = self._request()
        self.log("client", "opening handshake", head, text=True)
        late = opening.key3_delay is not None or opening.key3_chop is not None
        first = head if late else head + key3 + opening.with_head
        if key3 and not late:
            self.log("client", "key3", key3)
        sent = await self._write(first, log=False)
        if sent and late:
            if opening.key3_delay is not None:
                seconds = opening.key3_delay * self.timing.pause_scale
                self.log("note", f"pause {seconds:g} s before key3")
                await trio.sleep(seconds)
            self.log("client", "key3" + (f" (written in pieces of {opening.key3_chop} octets)"
                                         if opening.key3_chop else ""), key3)
            chop = opening.key3_chop or len(key3)
            for i in range(0, len(key3), chop):
                await self._write(key3[i : i + chop], log=False)
                await trio.sleep(0)
            await self._write(opening.with_head, log=False)
        if opening.with_head:
            self.written.feed(opening.with_head)
            while (frame := self.written.next()) is not None:
                self._log_frame("client", frame)
        return await self._answer(key3)

    async def _answer(self, key3: bytes) -> bytes | None:
        opening = self.case.opening
        buf = b""
        parts: tuple[bytes, bytes] | None = None
        with trio.move_on_after(self.timing.connect_timeout):
            while (parts := split_head(buf)) is None:
                data = await self._receive()
                if not data:
                    if buf:
                        self.log("server", "part of an answer, then TCP closed", buf)
                        raise HandshakeError("connection closed in the middle of the answer")
                    how = "reset" if self.reset else "closed"
                    self.log("note", f"the server {how} TCP without answering")
                    self.obs.refused = f"connection {how} without an answer"
                    return None
                buf += data
        if parts is None:
            if buf:
                self.log("server", "part of an answer", buf)
            raise HandshakeError(f"no complete answer in {self.timing.connect_timeout:g} s")
        head, rest = parts
        self.log("server", "handshake answer", head, text=True)
        parsed = parse_head(head)
        if parsed.status != 101:
            self.obs.refused = parsed.status_line
            return None
        if not self.case.expect.accept or opening.draft not in ("hixie-75", "hixie-76"):
            return rest
        problem = check_hixie_answer(opening.draft, head, self.target)
        if problem:
            raise HandshakeError(problem)
        if opening.draft == "hixie-75":
            return rest
        with trio.move_on_after(self.timing.connect_timeout):
            while len(rest) < 16:
                data = await self._receive()
                if not data:
                    break
                rest += data
        self.log("server", "the challenge's answer", rest[:16])
        if len(rest) < 16:
            raise HandshakeError("no 16-octet answer to the challenge after the head")
        if rest[:16] != hixie76_answer(opening.key1, opening.key2, key3):
            raise HandshakeError(f"the challenge's answer is {rest[:16].hex()}, not the MD5 "
                                 "the draft gives")
        return rest[16:]

    async def _receive(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(READ_SIZE))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.reset = True
            return b""

    # after the handshake ---------------------------------------------------------------

    async def read_loop(self) -> None:
        try:
            while True:
                while (frame := self.parser.next()) is not None:
                    await self._on_frame(frame)
                    if self.ended.is_set():
                        return
                data = await self._receive()
                if not data:
                    if not self.obs.dropped_by_client:
                        self.obs.server_dropped = True
                        self.log("note", "the server closed TCP")
                    return
                self.parser.feed(data)
        except ProtocolError as exc:
            await self._fail(str(exc))
        finally:
            self._end()

    async def _on_frame(self, frame: HixieFrame) -> None:
        self._log_frame("server", frame)
        if self.obs.close_received:
            return
        hixie76 = self.case.opening.draft == "hixie-76"
        if hixie76 and frame.is_close:
            self.obs.close_received = self.obs.clean = True
            self.obs.closed_by_client = self.close_sent
            self._notify()
            if not self.close_sent:
                self.close_sent = True
                await self._write(CLOSE)
            return
        if frame.kind != "text":
            await self._fail(f"server sent a {frame.kind} frame of type 0x{frame.type:02X}")
            return
        try:
            frame.payload.decode("utf-8")
        except UnicodeDecodeError:
            await self._fail("server sent a text frame that is not UTF-8")
            return
        self.obs.events.append(Event.message(frame.payload))
        self._notify()

    async def play(self) -> None:
        for step in self.case.steps:
            if self.ended.is_set() or self.obs.close_received:
                break
            if isinstance(step, Write):
                if step.closing:
                    self.close_sent = True
                chop = step.chop or len(step.data) or 1
                for i in range(0, len(step.data), chop):
                    if not await self._write(step.data[i : i + chop]):
                        break
                    await trio.sleep(0)
            elif isinstance(step, Receive):
                with trio.move_on_after(self.case.after * self.timing.wait_scale):
                    while not self.ended.is_set() and len(self.obs.events) < step.count:
                        await self._changed.wait()
            else:
                await self._pause(step)
        await self._finish()

    async def _pause(self, step: Pause) -> None:
        self.log("note", f"pause {step.seconds * self.timing.pause_scale:g} s")
        with trio.move_on_after(step.seconds * self.timing.pause_scale):
            await self.ended.wait()

    async def _finish(self) -> None:
        """Wait for what the case expects (the echoes; after a close, the server's
        ``0xFF 0x00`` and its TCP close), then close TCP if the server has not."""
        expected = len(self.case.expect.messages)
        if self.close_sent:
            stages = [lambda: self.obs.close_received, self.ended.is_set]
            for done in stages:
                with trio.move_on_after(self.timing.close_timeout):
                    while not done() and not self.ended.is_set():
                        await self._changed.wait()
        else:
            with trio.move_on_after(self.case.after * self.timing.wait_scale):
                while not self.ended.is_set() and (
                        self.case.expect.informational or len(self.obs.events) < expected):
                    await self._changed.wait()
            if not self.ended.is_set():
                await trio.sleep(min(0.05, self.timing.close_timeout))  # anything more?
        await self.drop()


async def run_legacy(case: LegacyCase, target: Target, timing: Timing) -> Result:
    """Connect, open, play and judge a legacy case within its :func:`~.timing.budget`."""
    obs = Observation()
    started = trio.current_time()

    async def opening(stream: trio.SocketStream) -> _LegacySession | None:
        session = _LegacySession(case, stream, target, timing=timing, obs=obs,
                                 started=started)
        leftover = await session.open()
        if leftover is None or not case.expect.accept:
            return None
        session.parser.feed(leftover)
        return session

    await drive(target, opening, timing=timing, obs=obs, started=started,
                seconds=budget(case, timing), errors=(OSError, trio.TooSlowError, HandshakeError))
    return judge_legacy(case, obs)
