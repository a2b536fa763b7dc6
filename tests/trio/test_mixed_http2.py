"""Every generation on one port at the same time, RFC 8441 included: a hixie-75, a
hixie-76, a hybi-08 and an RFC 6455 client over HTTP/1.1 (the last one the
``websockets`` library, in a thread) and two RFC 8441 WebSockets on one HTTP/2
connection (``h2``, tests/trio/h2client.py), all exchanging messages at once.

"At once" is made certain, not left to scheduling: every handler holds its echo of the
middle message until all six WebSockets have reached it, so each one is open and half
way through its exchange while the others are too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
from websockets.sync.client import connect as ws_connect

import wscompat
from wscompat.drafts import Draft
from wscompat.trio.client import connect

from ..conftest import Starter
from .h2client import open_h2

TEXTS = ["ascii", "中文字符", "emoji 😀🎉🚀", "", "x" * 5000, "mixed 中文 and 😀 " * 50]
BINARIES = [bytes(range(256)) * 16, b"", bytes(i % 251 for i in range(65536))]
MIDDLE = 4
"""The message whose echo waits for every WebSocket to reach it."""
CLIENTS = 6
TIMEOUT = 60.0
"""Seconds for the whole exchange: generous, on a loaded two-core machine."""


def messages_for(binary: bool, tag: str) -> list[str | bytes]:
    """What one client sends: texts (each tagged, so no two clients send the same),
    and binary messages where the draft has them."""
    out: list[str | bytes] = [f"{tag}: {t}" for t in TEXTS]
    if binary:
        out += [tag.encode() + b + tag.encode() for b in BINARIES]
    return out


@dataclass
class Seen:
    """One WebSocket as the server's handler saw it."""

    draft: Draft
    http_version: str
    generation: str
    remote: tuple[str, int] | None
    received: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None


@dataclass
class Meeting:
    """The server's side: echo everything, holding the echo of message ``MIDDLE``
    until all ``CLIENTS`` WebSockets have reached it."""

    seen: dict[str, Seen] = field(default_factory=dict)
    waiting: int = 0
    all_here: trio.Event = field(default_factory=trio.Event)
    most_open: int = 0
    open_now: int = 0

    async def handler(self, ws: wscompat.Connection) -> None:
        seen = self.seen[ws.path] = Seen(ws.draft, ws.http_version, ws.generation, ws.remote)
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            async for message in ws:
                seen.received.append(message)
                if len(seen.received) == MIDDLE + 1:
                    self.waiting += 1
                    if self.waiting == CLIENTS:
                        self.all_here.set()
                    await self.all_here.wait()
                await ws.send(message)
        finally:
            self.open_now -= 1
            seen.close_code = ws.close_code


@dataclass
class Clients:
    """The six clients, and what each sent, got back and saw of its handshake."""

    port: int
    sent: dict[str, list[str | bytes]] = field(default_factory=dict)
    echoed: dict[str, list[str | bytes]] = field(default_factory=dict)
    handshakes: dict[str, tuple[str, str]] = field(default_factory=dict)

    def _start(self, path: str, binary: bool, tag: str) -> tuple[list[str | bytes],
                                                                  list[str | bytes]]:
        self.sent[path] = messages_for(binary, tag)
        self.echoed[path] = []
        return self.sent[path], self.echoed[path]

    async def http1(self, draft: Draft) -> None:
        """wscompat's own client, speaking ``draft``."""
        path = f"/{draft.value}"
        messages, answers = self._start(path, draft.caps.binary, draft.value)
        async with connect(f"ws://127.0.0.1:{self.port}{path}", draft=draft,
                           open_timeout=TIMEOUT) as ws:
            self.handshakes[path] = (ws.draft.value, ws.http_version)
            for message in messages:
                await ws.send(message)
                answers.append(await ws.receive())

    def rfc6455_thread(self) -> None:
        """The websockets library's own client: an independent RFC 6455 peer."""
        path = "/websockets-rfc6455"
        messages, answers = self._start(path, True, "rfc6455")
        with ws_connect(f"ws://127.0.0.1:{self.port}{path}", open_timeout=TIMEOUT,
                        close_timeout=TIMEOUT, max_size=1 << 20) as ws:
            assert ws.response is not None
            self.handshakes[path] = (ws.response.headers.get("Upgrade", ""), "1.1")
            for message in messages:
                ws.send(message)
                answers.append(ws.recv(timeout=TIMEOUT))

    async def rfc8441_pair(self) -> None:
        """Two RFC 8441 WebSockets on one HTTP/2 connection, chatting side by side."""
        async with open_h2(self.port) as client:
            sockets = [await client.websocket(f"/rfc8441/{i}") for i in range(2)]

            async def chat(i: int) -> None:
                ws, path = sockets[i], f"/rfc8441/{i}"
                messages, answers = self._start(path, True, f"h2 stream {ws.sid}")
                for message in messages:
                    await ws.send(message)
                    answers.append(await ws.receive())
                closed = await ws.close(1000, f"done {i}")
                assert (closed.code, closed.reason) == (1000, f"done {i}")
                assert ws.side.ended and ws.side.reset is None
                self.handshakes[path] = (str(ws.side.status), "2")

            async with trio.open_nursery() as nursery:
                for i in range(2):
                    nursery.start_soon(chat, i)
            assert client.goaway is None


PATHS = ["/hixie-75", "/hixie-76", "/hybi-08", "/websockets-rfc6455", "/rfc8441/0",
         "/rfc8441/1"]


async def test_every_generation_and_rfc8441_on_one_port_at_once(start_server: Starter) -> None:
    meeting = Meeting()
    server = await start_server(meeting.handler, max_message_size=1 << 20)
    clients = Clients(server.port)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for draft in (Draft.HIXIE75, Draft.HIXIE76, Draft.HYBI08):
                nursery.start_soon(clients.http1, draft)
            nursery.start_soon(trio.to_thread.run_sync, clients.rfc6455_thread)
            nursery.start_soon(clients.rfc8441_pair)
        # The handlers end once the clients' closes are read.
        while any(s.close_code is None for s in meeting.seen.values()):
            await trio.sleep(0.02)

    assert sorted(meeting.seen) == sorted(PATHS)
    assert meeting.all_here.is_set() and meeting.most_open == CLIENTS
    # Each handler saw the right generation, over the right HTTP version.
    generations = {path: (s.draft, s.http_version, s.generation)
                   for path, s in meeting.seen.items()}
    assert generations == {
        "/hixie-75": (Draft.HIXIE75, "1.1", "hixie-75"),
        "/hixie-76": (Draft.HIXIE76, "1.1", "hixie-76"),
        "/hybi-08": (Draft.HYBI08, "1.1", "hybi-08"),
        "/websockets-rfc6455": (Draft.RFC6455, "1.1", "rfc6455"),
        "/rfc8441/0": (Draft.RFC6455, "2", "rfc8441"),
        "/rfc8441/1": (Draft.RFC6455, "2", "rfc8441"),
    }
    assert clients.handshakes == {
        "/hixie-75": ("hixie-75", "1.1"),
        "/hixie-76": ("hixie-76", "1.1"),
        "/hybi-08": ("hybi-08", "1.1"),
        "/websockets-rfc6455": ("websocket", "1.1"),
        "/rfc8441/0": ("200", "2"),
        "/rfc8441/1": ("200", "2"),
    }
    # The two RFC 8441 WebSockets shared one TCP connection; every other had its own.
    remotes = [meeting.seen[path].remote for path in PATHS]
    assert remotes[4] == remotes[5]
    assert len(set(remotes)) == 5
    # Every message arrived as sent, and every echo came back as sent.
    for path in PATHS:
        assert meeting.seen[path].received == clients.sent[path], path
        assert clients.echoed[path] == clients.sent[path], path
    assert {path: len(clients.sent[path]) for path in PATHS} == {
        "/hixie-75": 6, "/hixie-76": 6, "/hybi-08": 9, "/websockets-rfc6455": 9,
        "/rfc8441/0": 9, "/rfc8441/1": 9,
    }
    # Closed as each generation closes (hixie-75 has only the TCP close): cleanly.
    codes = {path: meeting.seen[path].close_code for path in PATHS}
    assert codes == dict.fromkeys(PATHS, 1000), codes
