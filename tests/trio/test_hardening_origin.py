"""Origins built to make a pattern match slow, and plain connections to a server that
requires TLS, over real loopback sockets.

The origin attacks run beside the chorus of well-behaved clients of every draft from
``test_hostile_drafts``: an origin check that took seconds (a regular expression
backtracking over 1,500 dots did) would stall every connection of the server, and the
chorus would see it. The chorus sends ``Origin: http://localhost``, so the allow-list
holds that origin beside the pattern under attack.
"""

from __future__ import annotations

import ssl
from collections import Counter

import pytest
import trio

from wscompat.drafts import Draft
from wscompat.options import ServerOptions
from wscompat.protocol.connection import ServerConnection
from wscompat.protocol.handshake import HandshakeSettings, Phase, ServerHandshake
from wscompat.protocol.handshake.client import ClientHandshake
from wscompat.protocol.http import error_response
from wscompat.protocol.sniff import POLICY_REQUEST
from wscompat.trio.client import connect

from ..conftest import Starter
from .test_hostile_drafts import ECHO_BOUND, HOST, arena, chorus, read_to_eof

ATTACKED = "https://*.*.*.example.com"
ORIGINS = ("http://localhost", ATTACKED)
HEAD_ROOM = 32768
"""max_head_size for the origin attacks: room for a 16 KiB origin in a request head."""
ROUNDS = 3
ANSWER_BOUND = 1.0
"""Seconds an attacker may wait for its 403: the checks take microseconds."""


def malformed(origin: str) -> bytes:
    shown = f"{origin[:64]!a}" + ("..." if len(origin) > 64 else "")
    return f"malformed origin {shown}\n".encode()


ATTACKS = {
    "1,500 dots": "https://" + "." * 1500,
    "16 KiB of dots": "https://" + "." * 16384,
    "8,000 labels": "https://" + "a." * 8000 + "example.com",
    "labels of stars": "https://" + "*." * 4000 + "example.com",
}

FIRST = "1,500 dots"


async def attack(port: int, draft: Draft, origin: str) -> tuple[bytes, float]:
    """One request of ``draft`` carrying ``origin``: the whole answer, and how long it took."""
    request = ClientHandshake(draft, HOST, "/attack", port=port, origin=origin).request()
    began = trio.current_time()
    stream = await trio.open_tcp_stream(HOST, port)
    try:
        await stream.send_all(request)
        answer = await read_to_eof(stream)
    finally:
        await stream.aclose()
    return answer, trio.current_time() - began


async def test_origins_built_to_backtrack_are_refused_at_once(start_server: Starter) -> None:
    """Every draft, four origins each, three rounds (after one 1,500-dot origin per draft
    alone): each attacker gets 403 naming its malformed origin within a second, the
    handler never runs for one, and the chorus keeps echoing within ECHO_BOUND."""
    per_round = len(Draft) * len(ATTACKS)
    a = await arena(start_server, per_round, origins=ORIGINS, max_head_size=HEAD_ROOM)
    answers: Counter[tuple[Draft, str, bool]] = Counter()
    slowest = 0.0

    async def attacker(draft: Draft, name: str) -> None:
        nonlocal slowest
        origin = ATTACKS[name]
        answer, took = await attack(a.port, draft, origin)
        slowest = max(slowest, took)
        refused = answer.startswith(b"HTTP/1.1 403 Forbidden\r\n") and answer.endswith(
            b"\r\n\r\n" + malformed(origin))
        answers[(draft, name, refused)] += 1

    async with chorus(a.port) as c:
        with trio.fail_after(30):
            # One at a time first: a check that blocks the server fails here in seconds,
            # before a 16 KiB origin could block it for hours.
            for draft in Draft:
                await attacker(draft, FIRST)
                assert slowest < ANSWER_BOUND, f"{draft}: {slowest:.3f} s for the 403"
            for _ in range(ROUNDS):
                async with trio.open_nursery() as nursery:
                    for draft in Draft:
                        for name in ATTACKS:
                            nursery.start_soon(attacker, draft, name)
                await c.advance(1)
        await c.advance()
    assert answers == Counter({(d, name, True): ROUNDS + (name == FIRST)
                               for d in Draft for name in ATTACKS})
    assert slowest < ANSWER_BOUND, f"an attacker waited {slowest:.3f} s for its 403"
    assert c.slowest < ECHO_BOUND, f"the chorus waited {c.slowest:.3f} s for an echo"
    assert a.hostile_closes() == Counter()
    await a.released()


@pytest.mark.parametrize("draft", list(Draft), ids=str)
async def test_the_attacked_pattern_still_admits_its_origins(
    start_server: Starter, draft: Draft
) -> None:
    """Three labels before example.com get in; two or four do not."""
    server = await start_server(origins=ORIGINS)
    with trio.fail_after(10):
        async with connect(f"ws://{HOST}:{server.port}/", draft=draft,
                           origin="https://a.b.c.example.com") as ws:
            await ws.send("in")
            assert await ws.receive() == "in"
        for origin in ("https://a.b.example.com", "https://a.b.c.d.example.com"):
            answer, _ = await attack(server.port, draft, origin)
            assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
            assert answer.endswith(f"\r\n\r\norigin {origin} not allowed\n".encode())


# -- require_tls ---------------------------------------------------------------------------

REFUSAL = error_response(403, "TLS required: connect with wss://")
PAGE_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n\r\n"
GARBAGE = b"\x00\x01\x02 hello\r\n\r\n"




def offline_answer(options: ServerOptions, data: bytes) -> tuple[bytes, Phase]:
    """What the sans-I/O handshake answers to ``data`` on a plain connection, as
    ``wscompat vectors check`` drives it."""
    proto = ServerConnection(options.settings)
    proto.receive_data(data)
    return proto.data_to_send(), proto.handshake.phase


async def plain_answer(port: int, data: bytes) -> bytes:
    stream = await trio.open_tcp_stream(HOST, port)
    try:
        await stream.send_all(data)
        with trio.fail_after(5):
            return await read_to_eof(stream)
    finally:
        await stream.aclose()


async def test_require_tls_answers_plain_connections_with_a_refusal_only(
    start_server: Starter, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """Plain HTTP of any kind gets 403 with the reason; a plain policy request or garbage
    gets nothing; the server answers exactly what the sans-I/O handshake answers; and
    wss clients of every draft are served as before."""
    server = await start_server(ssl_context=server_context, require_tls=True)
    options = ServerOptions(ssl_context=server_context, require_tls=True)
    upgrades = [ClientHandshake(d, HOST, "/", port=server.port).request() for d in Draft]
    for data in [*upgrades, PAGE_REQUEST, b"POST /x HTTP/1.1\r\nHost: h\r\n\r\n"]:
        answer = await plain_answer(server.port, data)
        assert answer == REFUSAL, answer
        assert answer.endswith(b"\r\n\r\nTLS required: connect with wss://\n")
        assert offline_answer(options, data) == (REFUSAL, Phase.CLOSE)
    for data in (POLICY_REQUEST, b"<policy-file-request/>", GARBAGE):
        assert await plain_answer(server.port, data) == b""
        assert offline_answer(options, data) == (b"", Phase.CLOSE)
    for draft in Draft:
        with trio.fail_after(10):
            async with connect(f"wss://{HOST}:{server.port}/tls", draft=draft,
                               ssl_context=client_context) as ws:
                assert ws.secure
                await ws.send(f"over TLS, {draft}")
                assert await ws.receive() == f"over TLS, {draft}"


async def test_without_require_tls_plain_clients_are_served(
    start_server: Starter, server_context: ssl.SSLContext
) -> None:
    """The same server without require_tls: the policy file and the plain page answer."""
    server = await start_server(ssl_context=server_context)
    assert (await plain_answer(server.port, POLICY_REQUEST)).startswith(b"<?xml")
    assert (await plain_answer(server.port, PAGE_REQUEST)).startswith(
        b"HTTP/1.1 426 Upgrade Required\r\n")


def test_require_tls_is_decided_by_the_sniffer() -> None:
    """The refusal comes as soon as the first bytes say what the connection is, before
    any request head is parsed; a TLS ClientHello still goes on to TLS, and connections
    that came over TLS are not refused."""
    settings = HandshakeSettings(require_tls=True)
    hs = ServerHandshake(settings)
    hs.receive_data(b"GET ")
    assert (hs.phase, hs.data_to_send(), hs.request) == (Phase.CLOSE, REFUSAL, None)
    assert hs.rejection is not None and hs.rejection.status == 403
    hs = ServerHandshake(settings)
    hs.receive_data(b"<policy-file-request")
    assert hs.phase is Phase.SNIFF
    hs.receive_data(b"/>\x00")
    assert (hs.phase, hs.data_to_send(), hs.rejection) == (Phase.CLOSE, b"", None)
    hs = ServerHandshake(settings)
    hs.receive_data(b"\x16\x03\x01\x02\x00")
    assert (hs.phase, hs.data_to_send()) == (Phase.TLS, b"")
    with pytest.raises(ValueError, match="require_tls needs an ssl_context"):
        ServerOptions(require_tls=True)
    options = ServerOptions(require_tls=True, ssl_context=ssl.create_default_context(
        ssl.Purpose.CLIENT_AUTH))
    assert options.settings.handshake.require_tls
    assert not options.settings.handshake_secure.require_tls
    assert options.settings.handshake_secure.secure
    assert not ServerOptions().settings.handshake.require_tls
