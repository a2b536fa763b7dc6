"""``wscompat serve --record`` with real legacy and browser clients: Chromium, and Perl's
Protocol::WebSocket on each draft it speaks. Each recording must say what the client
said (compared with the client's own report), pass the offline check whole and byte by
byte, and replay as expected against a fresh wscompat server."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from wscompat.vectors.format import check, load
from wscompat.vectors.replay import ReplaySettings, replay_vector

from .capture import (
    CAPTURE_TIMEOUT,
    PERL_MESSAGES,
    Capture,
    capture_chromium,
    capture_perl,
    start_recording_server,
)
from .legacy_helpers import PERL_DRAFTS, require_perl_websocket, short_name
from .test_chromium import chromium_path

pytestmark = pytest.mark.live


async def _verify(capture: Capture, nursery: trio.Nursery, tmp_path: Path) -> None:
    vector = load(capture.path)
    for bytewise in (False, True):
        result = check(vector, bytewise=bytewise)
        assert result.ok, (result.problem, result.expected[:80], result.actual[:80])
    server, _ = await start_recording_server(nursery, tmp_path / "replayed")
    outcome = await replay_vector(vector, ReplaySettings("127.0.0.1", server.port))
    assert outcome.status == "expected", (outcome.problem, outcome.diff)


@pytest.mark.parametrize("perl_draft", list(PERL_DRAFTS), ids=short_name)
async def test_perl_recording(tmp_path: Path, perl_draft: str) -> None:
    await require_perl_websocket()
    with trio.fail_after(CAPTURE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            server, _ = await start_recording_server(nursery, tmp_path / "recorded")
            capture = await capture_perl(server, tmp_path / "recorded", perl_draft)
            await _verify(capture, nursery, tmp_path)
            nursery.cancel_scope.cancel()
    vector = capture.vector
    assert vector["draft"] == PERL_DRAFTS[perl_draft].value
    assert vector["source"].startswith("recorded from Perl Protocol::WebSocket ")
    steps = vector["steps"]
    request = steps[0]["send"] if isinstance(steps[0]["send"], str) else steps[0]["send"][0]
    assert request.startswith(f"GET /record?client=perl&draft={perl_draft} HTTP/1.1\r\n")
    # One frame per message each way, plus the draft's close where it has one.
    sends = [s for s in steps if "send" in s]
    closing = {"draft-hixie-75": 0}.get(perl_draft, 1)
    assert len(sends) == 1 + len(PERL_MESSAGES) + closing, steps
    if perl_draft == "draft-hixie-75":
        assert {"send_eof": True} in steps  # its close is a TCP half-close
    assert steps[-1] == {"expect_eof": True}


async def test_chromium_recording(tmp_path: Path) -> None:
    chromium_path()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with trio.fail_after(CAPTURE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            server, peer = await start_recording_server(nursery, tmp_path / "recorded")
            capture = await capture_chromium(server, peer, tmp_path / "recorded", scratch)
            await _verify(capture, nursery, tmp_path)
            nursery.cancel_scope.cancel()
    vector = capture.vector
    request = vector["steps"][0]["send"]
    assert "Sec-WebSocket-Version: 13\r\n" in request
    assert "Sec-WebSocket-Protocol: chat, superchat\r\n" in request
    assert "HeadlessChrome/" in request
    assert vector["end"] == {"close_code": 1000, "eof": True}
