"""``wscompat serve --record``: real clients' exchanges become vector files that pass the
offline check and replay, with credentials redacted and the frame count honoured."""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import trio
import websocket
from websockets.sync.client import connect as ws_connect

import wscompat
from wscompat.cli import echo
from wscompat.drafts import Draft
from wscompat.vectors.corpus import corpus_dir
from wscompat.vectors.format import check, load
from wscompat.vectors.recording import frame_end
from wscompat.vectors.replay import ReplaySettings, replay_vector

from ..rawclient import read_to_eof
from ..test_cli import start

Starter = Callable[..., Awaitable[wscompat.Server]]
SECRETS = ("session=s3cr3t-cookie", "Bearer s3cr3t-token", "Basic s3cr3t-proxy")


async def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(data)
    answer = await read_to_eof(stream)
    await stream.aclose()
    return answer


async def _recording_server(start_server: Starter, directory: Path, **options: Any) -> int:
    server = await start_server(echo, record_dir=str(directory),
                                select_subprotocol=lambda _, offered: offered[0], **options)
    return server.port


async def _one_file(directory: Path) -> Path:
    """The vector the server writes once its side of the connection is over."""
    with trio.fail_after(10):
        while not (found := sorted(directory.rglob("recorded-*.json"))):
            await trio.sleep(0.02)
    assert len(found) == 1, found
    return found[0]


async def _passes(path: Path, start_server: Starter) -> None:
    """Checked offline (whole and byte by byte) and replayed against a fresh server."""
    vector = load(path)
    for bytewise in (False, True):
        result = check(vector, bytewise=bytewise)
        assert result.ok, (result.problem, result.expected[:100], result.actual[:100])
    server = await start_server(echo, select_subprotocol=lambda _, offered: offered[0])
    outcome = await replay_vector(vector, ReplaySettings("127.0.0.1", server.port))
    assert outcome.status == "expected", (outcome.problem, outcome.diff)


def _websockets_client(port: int) -> None:
    headers = {"Cookie": SECRETS[0], "Authorization": SECRETS[1],
               "Proxy-Authorization": SECRETS[2]}
    with ws_connect(f"ws://127.0.0.1:{port}/private?x=1", additional_headers=headers) as ws:
        ws.send("Hello")
        assert ws.recv() == "Hello"
        ws.send(b"\x00\xff")
        assert ws.recv() == b"\x00\xff"


async def test_a_websockets_client_is_recorded_redacted_and_checkable(
    start_server: Starter, tmp_path: Path
) -> None:
    port = await _recording_server(start_server, tmp_path)
    await trio.to_thread.run_sync(_websockets_client, port)
    path = await _one_file(tmp_path)
    assert path.parent == tmp_path / "rfc6455" and path.name.startswith("recorded-")
    text = path.read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in text
    raw = json.loads(text)
    request = raw["steps"][0]["send"]
    assert "\r\nCookie: [redacted]\r\n" in request
    assert "\r\nAuthorization: [redacted]\r\n" in request
    assert "\r\nProxy-Authorization: [redacted]\r\n" in request
    assert "Cookie, Authorization, Proxy-Authorization redacted" in raw["description"]
    assert raw["source"].startswith("recorded from Python/") and "websockets/" in raw["source"]
    assert raw["steps"][1]["vary"] == ["Date", "Server"]
    assert raw["steps"][-1] == {"expect_eof": True}
    assert raw["end"] == {"close_code": 1000, "eof": True}
    await _passes(path, start_server)


def _websocket_client(port: int, messages: int) -> None:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/many", timeout=10)
    try:
        for index in range(messages):
            ws.send(f"message {index}")
            assert ws.recv() == f"message {index}"
    finally:
        ws.close()


async def test_only_the_first_n_frames_each_way_are_kept(
    start_server: Starter, tmp_path: Path
) -> None:
    port = await _recording_server(start_server, tmp_path, record_frames=2)
    await trio.to_thread.run_sync(_websocket_client, port, 5)
    path = await _one_file(tmp_path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    frames_in = [s["send"] for s in raw["steps"][1:] if "send" in s]
    frames_out = [s["expect"] for s in raw["steps"] if "expect" in s]
    assert frames_in == [{"hex": frames_in[0]["hex"]}, {"hex": frames_in[1]["hex"]}]
    assert frames_out == [{"hex": "81 09 " + b"message 0".hex(" ")},
                          {"hex": "81 09 " + b"message 1".hex(" ")}]
    assert raw["end"] == {"eof": False}
    assert "the rest was left out" in raw["description"]
    assert raw["source"] == "recorded from a client that sent no User-Agent"
    await _passes(path, start_server)


async def test_a_refused_request_is_recorded_with_its_status(
    start_server: Starter, tmp_path: Path
) -> None:
    port = await _recording_server(start_server, tmp_path)
    request = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 25\r\n\r\n")
    with trio.fail_after(10):
        answer = await _exchange(port, request)
    assert answer.startswith(b"HTTP/1.1 426 ")
    path = await _one_file(tmp_path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert path.parent.name == "rfc6455"
    assert raw["end"] == {"status": 426}
    assert raw["steps"][1] == {"expect": answer.decode()}
    await _passes(path, start_server)


async def test_hixie76_with_key3_after_the_early_head(
    start_server: Starter, tmp_path: Path
) -> None:
    """The order of the exchange is kept: head, early 101 head, key3, the answer."""
    port = await _recording_server(start_server, tmp_path)
    head = (b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nUpgrade: WebSocket\r\n"
            b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nOrigin: http://example.com\r\n\r\n")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(head)
        got = b""
        while not got.endswith(b"\r\n\r\n"):
            got += await stream.receive_some(4096)
        await stream.send_all(b"^n:ds[4U")
        while not got.endswith(b"8jKS'y:G*Co,Wxa-"):
            got += await stream.receive_some(4096)
        await stream.send_all(b"\x00hi\xff")
        while not got.endswith(b"\x00hi\xff"):
            got += await stream.receive_some(4096)
        await stream.send_all(b"\xff\x00")
        while await stream.receive_some(4096):
            pass
        await stream.aclose()
    raw = json.loads((await _one_file(tmp_path)).read_text(encoding="utf-8"))
    kinds = [next(iter(step)) for step in raw["steps"]]
    assert kinds == ["send", "expect", "send", "expect", "send", "expect", "send", "expect",
                     "expect_eof"]
    assert raw["steps"][2] == {"send": {"hex": b"^n:ds[4U".hex(" ")}}
    assert raw["steps"][3] == {"expect": {"hex": b"8jKS'y:G*Co,Wxa-".hex(" ")}}
    assert raw["steps"][4:8] == [{"send": {"hex": "00 68 69 ff"}},
                                 {"expect": {"hex": "00 68 69 ff"}},
                                 {"send": {"hex": "ff 00"}}, {"expect": {"hex": "ff 00"}}]
    assert raw["end"] == {"close_code": 1000, "eof": True}
    await _passes(next(tmp_path.rglob("recorded-*.json")), start_server)


async def test_what_is_not_http_leaves_no_file(start_server: Starter, tmp_path: Path) -> None:
    port = await _recording_server(start_server, tmp_path)
    with trio.fail_after(10):
        answer = await _exchange(port, b"<policy-file-request/>\x00")
    assert b"cross-domain-policy" in answer
    await trio.sleep(0.2)
    assert not list(tmp_path.rglob("recorded-*.json"))


async def test_recordings_point_at_a_schema_that_exists(
    start_server: Starter, tmp_path: Path
) -> None:
    """Each recording's ``$schema`` resolves, from where the file is, to the schema
    shipped with wscompat, which the recording follows; a schema already in the
    directory is left as it is."""
    port = await _recording_server(start_server, tmp_path / "new")
    with trio.fail_after(10):
        await trio.to_thread.run_sync(_websocket_client, port, 1)
    path = await _one_file(tmp_path / "new")
    raw = json.loads(path.read_text(encoding="utf-8"))
    schema = path.parent / raw["$schema"]
    assert schema.resolve() == (tmp_path / "new" / "schema.json").resolve()
    assert schema.read_bytes() == (corpus_dir() / "schema.json").read_bytes()
    validator = jsonschema.Draft202012Validator(json.loads(schema.read_text(encoding="utf-8")))
    assert not list(validator.iter_errors(raw))

    mine = tmp_path / "kept"
    mine.mkdir()
    (mine / "schema.json").write_text("{}", encoding="utf-8")
    port = await _recording_server(start_server, mine)
    with trio.fail_after(10):
        await trio.to_thread.run_sync(_websocket_client, port, 1)
    await _one_file(mine)
    assert (mine / "schema.json").read_text(encoding="utf-8") == "{}"


def test_serve_record_on_the_command_line(tmp_path: Path) -> None:
    served = start("--record", str(tmp_path), "--record-frames", "1")
    try:
        thread = threading.Thread(target=partial(_websocket_client, served.ports["listening"], 2))
        thread.start()
        thread.join(20)
        found: list[Path] = []
        for _ in range(200):
            if found := list(tmp_path.rglob("recorded-*.json")):
                break
            threading.Event().wait(0.05)
    finally:
        served.proc.kill()
        served.proc.wait(timeout=10)
    assert len(found) == 1
    raw = json.loads(found[0].read_text(encoding="utf-8"))
    assert raw["end"] == {"eof": False}
    assert len([s for s in raw["steps"] if "expect" in s]) == 1
    assert check(load(found[0]), bytewise=True).ok


@pytest.mark.parametrize(
    ("draft", "data", "end"),
    [
        (Draft.HIXIE75, b"\x00hi\xff", 4),
        (Draft.HIXIE75, b"\x00hi", None),
        (Draft.HIXIE76, b"\xff\x00", 2),
        (Draft.HIXIE75, b"\x80\x82\x2c" + b"a" * 300, 303),
        (Draft.HIXIE75, b"\x80\x82\x2c" + b"a" * 299, None),
        (Draft.RFC6455, b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11),
        (Draft.RFC6455, b"\x82\x7e\x01\x00" + bytes(256), 260),
        (Draft.HYBI08, b"\x82\x7f" + (65536).to_bytes(8, "big") + bytes(65536), 65546),
        (Draft.HYBI07, b"\x82\x7f" + (65536).to_bytes(8, "big"), None),
    ],
)
def test_frame_boundaries(draft: Draft, data: bytes, end: int | None) -> None:
    assert frame_end(draft, data, 0) == end


async def test_behind_a_proxy_the_header_is_left_out(
    start_server: Starter, tmp_path: Path
) -> None:
    """With ``proxy_protocol``, the PROXY protocol header that comes first (here in two
    pieces) is not recorded: the vector holds the connection as the client made it,
    none of the addresses the header names, and passes against a server without the
    option."""
    port = await _recording_server(start_server, tmp_path, proxy_protocol=True)
    header = b"PROXY TCP4 203.0.113.99 198.51.100.1 56324 80\r\n"
    request = (b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
    hello = bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(header[:20])
        await trio.sleep(0.05)
        await stream.send_all(header[20:] + request + hello)
        got = b""
        while not got.endswith(b"\x81\x05Hello"):
            got += await stream.receive_some(4096)
        await stream.send_all(bytes.fromhex("88 82 37 fa 21 3d 34 12"))
        while await stream.receive_some(4096):
            pass
        await stream.aclose()
    path = await _one_file(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert "PROXY" not in text and "203.0.113.99" not in text
    raw = json.loads(text)
    first = raw["steps"][0]["send"]  # the head, and the frame that came with it
    assert (first[0] if isinstance(first, list) else first).startswith("GET /chat HTTP/1.1")
    assert "options" not in raw
    await _passes(path, start_server)
