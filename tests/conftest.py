"""Shared fixtures: a real wscompat server on a loopback port, per test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

import wscompat
from wscompat.cli import echo
from wscompat.trio import connection
from wscompat.trio.server import Handler

Starter = Callable[..., Awaitable[wscompat.Server]]


@pytest.fixture(autouse=True, scope="session")
def _scrub_shared_reads() -> None:
    """Every test runs with the shared read buffers overwritten after each read, so a
    view of one kept past its read shows as corrupt data in whatever test keeps it."""
    connection.SCRUB_READS = True


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> Starter:
    """Start ``wscompat.serve(handler, "127.0.0.1", 0, **options)``; stopped after the test."""

    async def start(
        handler: Handler = echo, host: str = "127.0.0.1", **options: Any
    ) -> wscompat.Server:
        server: wscompat.Server = await nursery.start(
            lambda task_status: wscompat.serve(
                handler, host, 0, task_status=task_status, **options
            )
        )
        return server

    return start


@pytest.fixture
async def echo_server(start_server: Starter) -> wscompat.Server:
    return await start_server(echo)
