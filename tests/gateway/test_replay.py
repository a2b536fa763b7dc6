"""The recorded vectors replayed against the gateway in front of an echo backend (the
``websockets`` asyncio server), one gateway per distinct set of server options, give
the results they give against ``wscompat serve``: every vector as expected.

The gateway answers every handshake itself, the backend only echoes; what could differ
is what crosses the backend leg (messages re-framed, closes mapped, subprotocols chosen
by the backend), and the vectors show it does not: the backend chooses the first
subprotocol offered, as ``wscompat serve`` does, and the ``subprotocols`` option narrows
what is offered to it, so a hixie offer outside it is still refused 400."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import trio

from wscompat.gateway import GatewayConfig, RouteTable, serve_gateway
from wscompat.vectors.format import server_options
from wscompat.vectors.replay import ReplaySettings, replay_all
from wscompat.vectors.report import Outcome

from ..vectors.test_replay import CORPUS, FAST, _failures, _groups
from .conftest import PY_BACKEND, Backend


@pytest.fixture(scope="module")
def first_offered_backend() -> Iterator[Backend]:
    """The echo backend choosing the first subprotocol offered, as ``wscompat serve``."""
    backend = Backend([sys.executable, str(PY_BACKEND), "--first-subprotocol"],
                      "the websockets backend (first subprotocol)")
    yield backend
    backend.stop()


async def test_the_corpus_replays_through_the_gateway(
    nursery: trio.Nursery, first_offered_backend: Backend
) -> None:
    outcomes: list[Outcome] = []
    config = GatewayConfig(RouteTable.of(first_offered_backend.url))
    with trio.fail_after(60):
        for group in _groups().values():
            options = server_options(group[0])
            server = await nursery.start(
                lambda task_status, o=options: serve_gateway(
                    config, "127.0.0.1", 0, options=o, task_status=task_status))
            settings = ReplaySettings("127.0.0.1", server.port,
                                      server_options=group[0].options,
                                      **FAST)  # type: ignore[arg-type]
            outcomes += await replay_all(group, settings)
    assert len(outcomes) == len(CORPUS)
    assert all(o.status == "expected" for o in outcomes), _failures(outcomes)
