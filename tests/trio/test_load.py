"""Load: 5,000 connections of every draft held idle at once by one process, then one echo each.

Server and clients share this process, so about 10,000 descriptors are open at the peak;
the soft RLIMIT_NOFILE is raised towards the hard limit for the test. Memory per idle
connection is measured by ``benchmarks/bench_idle.py``, not asserted here: a timed test is
no place for a figure that depends on the machine.
"""

from __future__ import annotations

import resource
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack

import pytest
import trio

import wscompat
from wscompat.drafts import Draft
from wscompat.trio.client import connect

from ..conftest import Starter

PER_DRAFT = 1000
TOTAL = PER_DRAFT * len(Draft)
DESCRIPTORS = 2 * TOTAL + 500
"""Both ends of every connection, plus what pytest and trio hold."""


@pytest.fixture
def enough_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard >= DESCRIPTORS, (
        f"this test needs {DESCRIPTORS} descriptors; the hard limit is {hard}"
    )
    if soft != resource.RLIM_INFINITY and soft < DESCRIPTORS:
        resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("enough_descriptors")
async def test_5000_idle_connections_then_one_echo_each(start_server: Starter) -> None:
    """1,000 clients per draft connect (100 handshakes at a time) and stay idle until all
    5,000 are open; then each sends one distinct message at once and must get it back."""
    served: Counter[Draft] = Counter()

    async def handler(ws: wscompat.Connection) -> None:
        served[ws.draft] += 1
        async for message in ws:
            await ws.send(message)

    server = await start_server(handler, handshake_timeout=60)
    url = f"ws://127.0.0.1:{server.port}/load"
    limiter = trio.CapacityLimiter(100)
    all_open = trio.Event()
    go = trio.Event()
    opened = 0
    echoed: Counter[Draft] = Counter()
    wrong: list[str] = []

    async def client(draft: Draft, index: int) -> None:
        nonlocal opened
        async with AsyncExitStack() as stack:
            async with limiter:
                ws = await stack.enter_async_context(
                    connect(f"{url}?{index}", draft=draft, open_timeout=60)
                )
            opened += 1
            if opened == TOTAL:
                all_open.set()
            await go.wait()
            message = f"{draft} client {index}: ü€😀"
            await ws.send(message)
            answer = await ws.receive()
            if answer == message:
                echoed[draft] += 1
            else:
                wrong.append(f"{draft} #{index}: {answer!r}")

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for index in range(PER_DRAFT):
                for draft in Draft:
                    nursery.start_soon(client, draft, index)
            await all_open.wait()
            # Every connection is open and idle on the server, none has sent anything.
            assert server.active == TOTAL
            assert len(server.connections) == TOTAL
            assert served == Counter(dict.fromkeys(Draft, PER_DRAFT))
            await trio.sleep(0.5)
            assert server.active == TOTAL
            go.set()
    assert wrong == []
    assert echoed == Counter(dict.fromkeys(Draft, PER_DRAFT))
    with trio.fail_after(30):
        while server.active:
            await trio.sleep(0.05)
