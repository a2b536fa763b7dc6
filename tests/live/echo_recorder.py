"""The server's side of the HTTP/2 live tests: an echo handler that records, for each
WebSocket, what it received and how it closed, and lets a test wait until the handlers
have returned (a client may finish before the server's side of its close has run)."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

import wscompat

HANDLER_TIMEOUT = 10.0
"""How long the server's handlers may take to return once the client is done."""


@dataclass(kw_only=True)
class Echoed:
    """What a handler received on one WebSocket, and how it closed."""

    messages: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: str = ""


class EchoRecorder:
    """Echoes and records; counts the handlers that returned."""

    def __init__(self) -> None:
        self.ended = 0
        """Handlers that returned."""
        self._progress = trio.Event()

    async def echo(self, ws: wscompat.Connection, seen: Echoed, *, rounds: int | None = None,
                   close: tuple[int, str] | None = None) -> None:
        """Echo ``rounds`` messages and close with ``close``, or echo until the client
        closes; ``seen`` gets each message and the close, and the handler is counted."""
        try:
            if rounds is None:
                async for message in ws:
                    seen.messages.append(message)
                    await ws.send(message)
            else:
                for _ in range(rounds):
                    message = await ws.receive()
                    seen.messages.append(message)
                    await ws.send(message)
                if close is not None:
                    await ws.close(*close)
        finally:
            seen.close_code, seen.close_reason = ws.close_code, ws.close_reason
            seen.closed_by = ws.stats.closed_by
            self.ended += 1
            self._progress.set()
            self._progress = trio.Event()

    async def wait_ended(self, count: int, timeout: float = HANDLER_TIMEOUT) -> None:
        """Until ``count`` handlers have returned."""
        with trio.fail_after(timeout):
            while self.ended < count:
                await self._progress.wait()
