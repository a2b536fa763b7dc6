"""What an operator relies on: the health check, graceful shutdown, Prometheus metrics
and the log lines, each against a real server over loopback."""

from __future__ import annotations

import json
import logging
from functools import partial

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import wscompat
from wscompat.cli import echo
from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.logformat import JsonFormatter
from wscompat.metrics import Metrics
from wscompat.trio.client import connect
from wscompat.trio.metrics_port import serve_metrics
from wscompat.trio.server import State

from ..conftest import Starter
from ..rawclient import UPGRADE13, open_rfc6455, read_to_eof, read_until

HOST = "127.0.0.1"


async def http(port: int, request: bytes) -> bytes:
    """Send one request, return everything the server wrote until it closed."""
    stream = await trio.open_tcp_stream(HOST, port)
    await stream.send_all(request)
    with trio.fail_after(5):
        return await read_to_eof(stream)


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def state(server: wscompat.Server) -> State:
    """The server's state, read anew (not narrowed by an earlier assertion)."""
    return server.state


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


# -- health ---------------------------------------------------------------------------


async def test_health_check_answers_get_and_head(start_server: Starter) -> None:
    server = await start_server()
    answer = await http(server.port, get("/healthz"))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body(answer) == b"ok\n"
    assert b"Cache-Control: no-store\r\n" in answer
    answer = await http(server.port, get("/healthz?probe=1", "HEAD"))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 3\r\n" in answer and body(answer) == b""
    # Any other plain request is still the 426 page; HEAD elsewhere still 405.
    assert status(await http(server.port, get("/"))) == 426
    assert status(await http(server.port, get("/", "HEAD"))) == 405


async def test_websocket_clients_of_the_health_path_are_served(start_server: Starter) -> None:
    server = await start_server()
    for draft in (Draft.HIXIE76, Draft.RFC6455):
        async with connect(f"ws://{HOST}:{server.port}/healthz", draft=draft) as ws:
            await ws.send("still a WebSocket path")
            assert await ws.receive() == "still a WebSocket path"


async def test_health_path_can_move_or_be_turned_off(start_server: Starter) -> None:
    server = await start_server(health_path="/lb/alive")
    assert status(await http(server.port, get("/lb/alive"))) == 200
    assert status(await http(server.port, get("/healthz"))) == 426
    server = await start_server(health_path=None)
    assert status(await http(server.port, get("/healthz"))) == 426
    with pytest.raises(ValueError, match="health_path"):
        wscompat.ServerOptions(health_path="healthz")


# -- graceful shutdown ----------------------------------------------------------------


async def test_shutdown_answers_503_until_the_last_connection_is_gone(
    nursery: trio.Nursery,
) -> None:
    """A peer that never answers the close keeps the server closing for close_timeout;
    meanwhile the health check and new upgrades get 503, then the server is gone."""
    server: wscompat.Server = await nursery.start(
        partial(wscompat.serve, echo, HOST, 0, close_timeout=1.5)
    )
    port = server.port
    stubborn = await open_rfc6455(port)
    async with connect(f"ws://{HOST}:{port}/", draft=Draft.HIXIE76) as legacy:
        await legacy.send("x")
        assert await legacy.receive() == "x"
        done = trio.Event()

        async def shut() -> None:
            await server.shutdown()
            done.set()

        nursery.start_soon(shut)
        await trio.sleep(0.2)
        assert server.state is State.CLOSING
        answer = await http(port, get("/healthz"))
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"Retry-After: 5\r\n" in answer
        assert status(await http(port, UPGRADE13)) == 503
        with pytest.raises(wscompat.ConnectionClosed):
            await legacy.receive()  # hixie-76 got its 0xFF 0x00
    with trio.fail_after(5):
        frame = await read_until(stubborn, b"shutting down")
    assert frame.endswith(b"\x88\x16\x03\xe9server shutting down")  # 1001
    with trio.fail_after(5):
        await done.wait()
    assert state(server) is State.CLOSED
    with pytest.raises(OSError, match="onnect"):  # refused: nobody listens any more
        await trio.open_tcp_stream(HOST, port)


async def test_drain_time_keeps_serving_while_the_health_check_fails(
    nursery: trio.Nursery,
) -> None:
    server: wscompat.Server = await nursery.start(
        partial(wscompat.serve, echo, HOST, 0, drain_time=1.0)
    )
    nursery.start_soon(server.shutdown)
    await trio.sleep(0.1)
    assert server.state is State.DRAINING
    assert status(await http(server.port, get("/healthz"))) == 503
    async with connect(f"ws://{HOST}:{server.port}/", draft=Draft.HYBI08) as ws:
        await ws.send("during the drain")
        assert await ws.receive() == "during the drain"
    with trio.fail_after(5):
        await server.shutdown()  # a second call waits for the first
    assert state(server) is State.CLOSED


# -- metrics --------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(page: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = await http(port, get("/metrics"))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/plain; version=" in answer
    return samples(body(answer).decode())


async def test_metrics_count_every_draft(start_server: Starter) -> None:
    server = await start_server(metrics=True, origins=["http://ok.example"])
    port = server.port
    for draft in (Draft.HIXIE75, Draft.HIXIE76, Draft.HYBI07, Draft.HYBI08, Draft.RFC6455):
        async with connect(f"ws://{HOST}:{port}/", draft=draft,
                           origin="http://ok.example") as ws:
            for _ in range(3):
                await ws.send("hello")
                assert await ws.receive() == "hello"
    with pytest.raises(HandshakeRejected):
        async with connect(f"ws://{HOST}:{port}/", draft=Draft.HYBI08,
                           origin="http://evil.example"):
            pass
    policy = await http(port, b"<policy-file-request/>\x00")
    assert b"cross-domain-policy" in policy
    # One held open: its gauge is 1 and what it did shows before it ends.
    async with connect(f"ws://{HOST}:{port}/", draft=Draft.HIXIE76,
                       origin="http://ok.example") as held:
        await held.send("live")
        assert await held.receive() == "live"
        page = await scrape(port)
        assert value(page, "wscompat_connections_open", draft="hixie-76",
                     transport="plain") == 1
        assert value(page, "wscompat_messages_received_total", draft="hixie-76") == 4
    await trio.sleep(0.2)
    page = await scrape(port)
    for name in ("hixie-75", "hybi-07", "rfc6455"):
        assert value(page, "wscompat_handshakes_total", draft=name, outcome="accepted",
                     transport="plain") == 1
        assert value(page, "wscompat_messages_received_total", draft=name) == 3
        assert value(page, "wscompat_messages_sent_total", draft=name) == 3
        assert value(page, "wscompat_bytes_received_total", draft=name) > 15
        assert value(page, "wscompat_connections_open", draft=name, transport="plain") == 0
    assert value(page, "wscompat_handshakes_total", draft="hixie-76", outcome="accepted",
                 transport="plain") == 2
    assert value(page, "wscompat_handshakes_total", draft="hybi-08", outcome="403",
                 transport="plain") == 1
    assert value(page, "wscompat_closes_total", draft="rfc6455", code="1000", by="peer") == 1
    assert value(page, "wscompat_policy_requests_total", port="websocket") == 1
    assert value(page, "wscompat_plain_requests_total", path="/metrics") >= 1


async def test_metrics_are_off_unless_asked(start_server: Starter) -> None:
    server = await start_server()
    assert status(await http(server.port, get("/metrics"))) == 426


async def test_metrics_on_a_port_of_their_own(
    start_server: Starter, nursery: trio.Nursery
) -> None:
    metrics = Metrics()
    server = await start_server(metrics=False)
    server.metrics = metrics  # as serve(metrics=...) does
    listeners = await nursery.start(partial(serve_metrics, HOST, 0, metrics,
                                            sync=server.sync_metrics))
    metrics_port = listeners[0].socket.getsockname()[1]
    async with connect(f"ws://{HOST}:{server.port}/", draft=Draft.RFC6455) as ws:
        await ws.send(b"\x00" * 100)
        await ws.receive()
        page = await scrape(metrics_port)
        assert value(page, "wscompat_bytes_received_total", draft="rfc6455") >= 100
    assert status(await http(server.port, get("/metrics"))) == 426  # not on the public port
    assert status(await http(metrics_port, get("/"))) == 404
    assert status(await http(metrics_port, get("/metrics", "POST"))) == 405
    head = await http(metrics_port, get("/metrics", "HEAD"))
    assert status(head) == 200 and body(head) == b""


# -- logs -----------------------------------------------------------------------------


async def test_log_lines_say_transport_subprotocol_and_user_agent(
    start_server: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(log_open=True, subprotocols=["chat"])
    agent = 'Kiosk/1.0 "lobby"\x1b[31m'
    with caplog.at_level(logging.INFO, "wscompat.server"):
        async with connect(f"ws://{HOST}:{server.port}/lobby", draft=Draft.HIXIE76,
                           subprotocols=("chat",),
                           extra_headers=(("User-Agent", agent),)) as ws:
            await ws.send("hi")
            await ws.receive()
            await trio.sleep(0.05)
            opened = [r for r in caplog.records if getattr(r, "event", None) == "opened"]
            assert len(opened) == 1
        await trio.sleep(0.1)
    closed = [r for r in caplog.records if getattr(r, "event", None) == "closed"]
    assert len(closed) == 1
    line = closed[0].getMessage()
    assert " /lobby hixie-76 plain " in line
    assert " proto=chat " in line
    assert line.endswith(' ua="Kiosk/1.0 \\x22lobby\\x22\\x1b[31m"')
    assert "\x1b" not in line
    assert "opened" in opened[0].getMessage() and "proto=chat" in opened[0].getMessage()
    entry = json.loads(JsonFormatter().format(closed[0]))
    assert entry["event"] == "closed" and entry["draft"] == "hixie-76"
    assert entry["transport"] == "plain" and entry["subprotocol"] == "chat"
    assert entry["messages_in"] == 1 and entry["messages_out"] == 1
    assert entry["close"] == 1000 and entry["path"] == "/lobby"
    assert entry["level"] == "info" and entry["time"].endswith("Z")


async def test_no_open_line_unless_asked(
    start_server: Starter, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server()
    with caplog.at_level(logging.INFO, "wscompat.server"):
        async with connect(f"ws://{HOST}:{server.port}/") as ws:
            await ws.send("hi")
            await ws.receive()
        await trio.sleep(0.1)
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("opened") == 0 and events.count("closed") == 1


# -- an Acceptance hands its context to the handler -----------------------------------


class Backend:
    """Stands for what a gateway opens while deciding: it must be closed exactly once."""

    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def test_an_acceptance_hands_its_context_and_subprotocol(start_server: Starter) -> None:
    made: list[Backend] = []

    async def decide(upgrade: wscompat.UpgradeRequest) -> wscompat.Acceptance:
        backend = Backend()
        made.append(backend)
        return wscompat.Acceptance(subprotocol=upgrade.offered_subprotocols[-1],
                                   context=backend)

    async def handler(ws: wscompat.Connection) -> None:
        assert isinstance(ws.context, Backend)
        await ws.send(f"{ws.subprotocol} {made.index(ws.context)}")

    server = await start_server(handler, process_request=decide)
    for draft, offered in ((Draft.RFC6455, ("a", "b")), (Draft.HIXIE76, ("only",))):
        async with connect(f"ws://{HOST}:{server.port}/", draft=draft,
                           subprotocols=offered) as ws:
            assert ws.subprotocol == offered[-1]
            assert await ws.receive() == f"{offered[-1]} {len(made) - 1}"
    assert [b.closed for b in made] == [0, 0]  # the handler owned them


async def test_a_context_is_closed_when_the_handshake_never_completes(
    start_server: Starter,
) -> None:
    """hixie-76 decides on the head; a client that never sends key3 leaves the
    decision's context behind, and the server closes it."""
    made: list[Backend] = []

    async def decide(upgrade: wscompat.UpgradeRequest) -> wscompat.Acceptance:
        made.append(Backend())
        return wscompat.Acceptance(context=made[-1])

    server = await start_server(process_request=decide, handshake_timeout=0.5,
                                hixie76_early_head=False)
    stream = await trio.open_tcp_stream(HOST, server.port)
    await stream.send_all(
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
        b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nOrigin: http://o\r\n\r\n"
    )  # and no key3
    with trio.fail_after(5):
        while not made or made[0].closed == 0:
            await trio.sleep(0.05)
    assert [b.closed for b in made] == [1]
    await stream.aclose()


async def test_peers_cannot_make_a_series_per_close_code(start_server: Starter) -> None:
    """Every label value is from a small set the server chooses: application close codes
    are counted by thousand."""
    server = await start_server(metrics=True)
    for code in (1000, 3001, 3999, 4000, 4321):
        async with connect(f"ws://{HOST}:{server.port}/") as ws:
            await ws.close(code)
    await trio.sleep(0.2)
    page = await scrape(server.port)
    codes = {dict(labels)["code"]: n for (name, labels), n in page.items()
             if name == "wscompat_closes_total"}
    assert codes == {"1000": 1, "3xxx": 2, "4xxx": 2}
