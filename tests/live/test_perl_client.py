"""Perl's Protocol::WebSocket 0.26, a real legacy client, against a wscompat server.

For each draft the library can speak, ``perl_client.pl`` connects over loopback, sends
ASCII, CJK, emoji, empty and ~70 KiB text messages one at a time, checks each echo byte
for byte, runs the draft's closing handshake and prints what happened as JSON lines.
The test checks the client's report (handshake bytes recomputed here, every echo, the
server's close reply) and the server's own record of the same connection (detected
draft, messages in order, close code).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

import wscompat

from .legacy_helpers import (
    CLOSE_CODE,
    CLOSE_REASON,
    MESSAGES,
    PERL_DRAFTS,
    Recorder,
    check_close,
    check_echoes,
    check_handshake,
    require_perl_websocket,
    run_perl_client,
    short_name,
)

pytestmark = pytest.mark.live

Starter = Callable[..., Awaitable[wscompat.Server]]

TEST_TIMEOUT = 60.0


@pytest.mark.parametrize("perl_draft", list(PERL_DRAFTS), ids=short_name)
async def test_perl_client_round_trip(start_server: Starter, perl_draft: str) -> None:
    await require_perl_websocket()
    draft = PERL_DRAFTS[perl_draft]
    path = f"/perl/{perl_draft}?q=1"
    recorder = Recorder()
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(recorder.handler)
        run = await run_perl_client(server.port, perl_draft, MESSAGES, path=path)
        seen = await recorder.only()

    # The client's side.
    assert not run.errors, run
    assert run.returncode == 0, run
    assert run.one("done")["messages"] == len(MESSAGES)
    check_handshake(run, draft, server.port, path)
    check_echoes(run)
    check_close(run, draft)

    # The server's side of the same connection.
    assert seen.draft is draft
    assert seen.path == path
    assert seen.messages == MESSAGES, "every message arrived, in order, unchanged"
    assert seen.closed_by == "peer"
    assert seen.close_code == CLOSE_CODE
    if draft.caps.close_codes:
        assert seen.close_reason == CLOSE_REASON


@pytest.mark.parametrize(
    ("perl_draft", "header_name", "value"),
    [
        # hybi-00 requests carry Content-Length: 8 for key3 (browsers send none).
        ("draft-ietf-hybi-00", "Content-Length", "8"),
        # hybi-10 sends the hybi-04..10 origin header and version 8.
        ("draft-ietf-hybi-10", "Sec-WebSocket-Origin", "http://127.0.0.1:{port}"),
        ("draft-ietf-hybi-10", "Sec-WebSocket-Version", "8"),
        # Every draft, hybi included, sends "Upgrade: WebSocket" with a capital S.
        ("draft-ietf-hybi-17", "Upgrade", "WebSocket"),
        ("draft-hixie-75", "Origin", "http://127.0.0.1:{port}"),
    ],
    ids=["hybi-00-content-length", "hybi-10-sec-origin", "hybi-10-version",
         "hybi-17-upgrade-case", "hixie-75-origin"],
)
async def test_perl_request_quirks_are_accepted(
    start_server: Starter, perl_draft: str, header_name: str, value: str
) -> None:
    """The library's request peculiarities reach the server as sent, and are accepted."""
    await require_perl_websocket()
    recorder = Recorder()
    with trio.fail_after(TEST_TIMEOUT):
        server = await start_server(recorder.handler)
        run = await run_perl_client(server.port, perl_draft, ["quirk"])
        seen = await recorder.only()
    assert not run.errors, run
    assert run.returncode == 0, run
    assert seen.draft is PERL_DRAFTS[perl_draft]
    assert seen.header(header_name) == value.format(port=server.port)
    assert seen.messages == ["quirk"]
