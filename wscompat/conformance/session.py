"""What every case's client session shares, RFC 6455 or legacy: its wire log, the
notification the steps wait on, how the client drops or fails the connection, and the
run that connects, opens, plays and closes within the case's budget: over TCP
(:func:`drive`), or over an extended CONNECT stream on an HTTP/2 connection of its own
(:func:`drive_h2`), where dropping the connection resets the stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import trio

from wscompat.conformance.timing import Timing
from wscompat.conformance.verdict import Observation
from wscompat.conformance.wire import Side, Target
from wscompat.trio.http2_client import H2Client, open_h2_client

__all__ = ["Playable", "SessionBase", "drive", "drive_h2"]

Link = TypeVar("Link")


class SessionBase:
    """The state both sessions keep for the observation and their own steps."""

    def __init__(self, stream: trio.abc.Stream, timing: Timing, *, obs: Observation,
                 started: float) -> None:
        self.stream = stream
        self.timing = timing
        self.obs = obs
        self.started = started
        self.ended = trio.Event()
        self._changed = trio.Event()

    def log(self, side: Side, what: str, data: bytes = b"", *, text: bool = False) -> None:
        self.obs.wire.add(trio.current_time() - self.started, side, what, data, text=text)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _end(self) -> None:
        if not self.ended.is_set():
            self.ended.set()
            self._notify()

    async def drop(self) -> None:
        """Close TCP from the client side."""
        if not self.ended.is_set():
            self.obs.dropped_by_client = True
            self.log("note", "the client closes TCP")
            self._end()
            await trio.aclose_forcefully(self.stream)

    async def _fail(self, problem: str) -> None:
        if self.obs.server_error is None:
            self.obs.server_error = problem
        self.log("note", f"the client fails the connection: {problem}")
        await self.drop()


class Playable(Protocol):
    """An opened session: its reader runs beside its steps."""

    async def read_loop(self) -> None: ...

    async def play(self) -> None: ...


async def drive(
    target: Target, opening: Callable[[trio.SocketStream], Awaitable[Playable | None]], *,
    timing: Timing, obs: Observation, started: float, seconds: float,
    errors: tuple[type[BaseException], ...],
) -> None:
    """Connect, open the session (``opening``: None when there is nothing to play), play
    it beside its reader, all within ``seconds``; the ``errors`` of connecting and
    opening are the observation's handshake error, never raised."""
    stream: trio.SocketStream | None = None
    with trio.move_on_after(seconds) as deadline:
        try:
            with trio.fail_after(timing.connect_timeout):
                stream = await trio.open_tcp_stream(target.host, target.port)
        except errors as exc:
            obs.handshake_error = str(exc) or type(exc).__name__
        else:
            await _open_and_play(stream, opening, obs, errors)
    if deadline.cancelled_caught:
        obs.timed_out = True
    if stream is not None:
        await trio.aclose_forcefully(stream)
    obs.duration = trio.current_time() - started


async def drive_h2(
    target: Target, opening: Callable[[H2Client], Awaitable[Playable | None]], *,
    timing: Timing, obs: Observation, started: float, seconds: float,
    errors: tuple[type[BaseException], ...],
) -> None:
    """:func:`drive` over HTTP/2 with prior knowledge: ``opening`` opens the session's
    stream on a new connection; the connection ends (GOAWAY) with the case."""
    with trio.move_on_after(seconds) as deadline:
        opened = False
        try:
            async with open_h2_client(target.host, target.port,
                                      timeout=timing.connect_timeout) as client:
                opened = True
                await _open_and_play(client, opening, obs, errors)
        except errors as exc:
            if opened:
                raise
            obs.handshake_error = str(exc) or type(exc).__name__
    if deadline.cancelled_caught:
        obs.timed_out = True
    obs.duration = trio.current_time() - started


async def _open_and_play(link: Link, opening: Callable[[Link], Awaitable[Playable | None]],
                         obs: Observation, errors: tuple[type[BaseException], ...]) -> None:
    try:
        session = await opening(link)
    except errors as exc:
        obs.handshake_error = str(exc) or type(exc).__name__
        return
    if session is not None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.read_loop)
            await session.play()
            nursery.cancel_scope.cancel()
