"""The client's context manager when the code inside it fails: the caller gets its own
exception, not a group around it, and the connection still closes cleanly, with no
second task reading the socket."""

from __future__ import annotations

import logging

import pytest
import trio

import wscompat
from wscompat.drafts import Draft

from ..conftest import Starter


class Boom(Exception):
    pass


@pytest.mark.parametrize("draft", [Draft.RFC6455, Draft.HIXIE76, Draft.HYBI08], ids=str)
@pytest.mark.parametrize("wait_first", [False, True], ids=["at-once", "after-an-echo"])
async def test_an_exception_in_the_block_comes_out_as_itself(
    start_server: Starter, caplog: pytest.LogCaptureFixture, draft: Draft, wait_first: bool,
) -> None:
    closes: list[int | None] = []
    done = trio.Event()

    async def handler(ws: wscompat.Connection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            closes.append(ws.close_code)
            done.set()

    server = await start_server(handler)
    with caplog.at_level(logging.INFO, "wscompat"), pytest.raises(Boom):
        async with wscompat.connect(f"ws://127.0.0.1:{server.port}/", draft=draft) as ws:
            await ws.send("x")
            if wait_first:
                assert await ws.receive() == "x"
            raise Boom  # before the reader task has even started, when not wait_first
    with trio.fail_after(5):
        await done.wait()
    assert closes == [1000]  # a clean closing handshake, whatever the block did
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures == [], [r.getMessage() for r in failures]
