"""``wscompat vectors import`` on a HAR file as Chrome's DevTools save it: the upgrade
rebuilt from its header list, each message as one frame (binary ones from base64), what
HAR cannot carry said in the vector; the result checks offline and replays against a
real ``wscompat serve``."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import trio

from tests.docs.processes import environment, free_port, listening, started, wscompat_executable
from wscompat.vectors.format import decode_data

ROOT = Path(__file__).parents[2]
BOUND = 60
KEY = "X2kFcm3mwZEnUqO9cOEkTA=="
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BINARY = bytes(range(200))

# The request fields as the corpus's recording of Chromium 156 sent them.
REQUEST_FIELDS = [
    ("Host", "127.0.0.1:32843"), ("Connection", "Upgrade"), ("Pragma", "no-cache"),
    ("Cache-Control", "no-cache"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "HeadlessChrome/156.0.0.0 Safari/537.36"),
    ("Upgrade", "websocket"), ("Origin", "null"), ("Sec-WebSocket-Version", "13"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"), ("Accept-Language", "en-US,en;q=0.9"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
    ("Sec-WebSocket-Protocol", "chat, superchat"),
]


def _accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def _fields(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs]


def _entry(url: str, request: list[tuple[str, str]], response: list[tuple[str, str]],
           messages: list[dict[str, Any]], version: str = "HTTP/1.1") -> dict[str, Any]:
    return {
        "_resourceType": "websocket",
        "startedDateTime": "2026-12-01T10:20:30.123Z",
        "time": 12.5,
        "request": {"method": "GET", "url": url, "httpVersion": version,
                    "headers": _fields(request), "queryString": [], "cookies": [],
                    "headersSize": -1, "bodySize": 0},
        "response": {"status": 101, "statusText": "Switching Protocols",
                     "httpVersion": version, "headers": _fields(response), "cookies": [],
                     "content": {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "",
                     "headersSize": -1, "bodySize": 0},
        "cache": {}, "timings": {"send": 0, "wait": 0, "receive": 0},
        "_webSocketMessages": messages,
    }


def _har() -> dict[str, Any]:
    answer = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Accept", _accept(KEY)), ("Sec-WebSocket-Protocol", "chat"),
              ("Sec-WebSocket-Extensions", "permessage-deflate")]
    encoded = base64.b64encode(BINARY).decode()
    messages = [
        {"type": "send", "time": 1764584430.2, "opcode": 1, "data": "Hello from a HAR"},
        {"type": "receive", "time": 1764584430.21, "opcode": 1, "data": "Hello from a HAR"},
        {"type": "send", "time": 1764584430.3, "opcode": 2, "data": encoded},
        {"type": "receive", "time": 1764584430.31, "opcode": 2, "data": encoded},
    ]
    page = {"startedDateTime": "2026-12-01T10:20:30.000Z", "request": {
        "method": "GET", "url": "http://127.0.0.1:32843/", "httpVersion": "HTTP/1.1",
        "headers": []}, "response": {"status": 200, "headers": []}}
    hixie = _entry("ws://127.0.0.1:32843/old", [("Sec-WebSocket-Key1", "4 @1  46546xW%0l 1 5"),
                                                ("Sec-WebSocket-Key2", "12998 5 Y3 1  .P00"),
                                                ("Upgrade", "WebSocket"),
                                                ("Connection", "Upgrade"),
                                                ("Host", "127.0.0.1")], [], [])
    http2 = _entry("wss://example.com/h2", [(":method", "CONNECT")], [], [], version="h2")
    return {"log": {"version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"},
                    "pages": [], "entries": [
                        page,
                        _entry("ws://127.0.0.1:32843/record?client=chromium", REQUEST_FIELDS,
                               answer, messages),
                        hixie, http2]}}


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=environment(), capture_output=True, text=True,
                          timeout=BOUND, check=False)


async def test_a_chrome_har_imports_checks_and_replays(tmp_path: Path) -> None:
    har = tmp_path / "chrome.har"
    har.write_text(json.dumps(_har(), indent=1))
    out = tmp_path / "imported"
    done = _run([wscompat_executable(), "vectors", "import", str(har), "--out", str(out)],
                tmp_path)
    assert done.returncode == 0, done.stderr
    assert "passed over entry 3: a hixie-76 request, whose 8 key bytes" in done.stderr
    assert "passed over entry 4: a WebSocket over HTTP/2 or HTTP/3" in done.stderr
    files = sorted(out.glob("*/*.json"))
    assert [f.relative_to(out).as_posix() for f in files] == ["rfc6455/imported-chrome-1.json"]
    vector = json.loads(files[0].read_text())
    provenance = vector["provenance"]
    assert provenance["kind"] == "imported"
    assert provenance["capture"]["format"] == "har"
    assert provenance["capture"]["stream"] == (
        "entry 2 (ws://127.0.0.1:32843/record)")
    assert "HeadlessChrome/156" in provenance["client"]["user_agent"]
    assert "masked with 00 00 00 00" in vector["description"]
    assert "permessage-deflate" in vector["description"]  # the acceptance left out

    steps = vector["steps"]
    request = decode_data(steps[0]["send"])
    assert request.startswith(b"GET /record?client=chromium HTTP/1.1\r\nHost: 127.0.0.1:32843")
    assert b"Sec-WebSocket-Extensions" not in request
    assert "Sec-WebSocket-Extensions" not in steps[1]["expect_head"]
    sent = b"".join(decode_data(s["send"]) for s in steps[2:] if "send" in s)
    echoed = b"".join(decode_data(s["expect"]) for s in steps[2:] if "expect" in s)
    text = b"Hello from a HAR"
    assert sent == (bytes((0x81, 0x80 | len(text))) + b"\0\0\0\0" + text
                    + bytes((0x82, 0x80 | 126, 0, len(BINARY))) + b"\0\0\0\0" + BINARY)
    assert echoed == bytes((0x81, len(text))) + text + bytes((0x82, 126, 0, 200)) + BINARY

    check = _run([wscompat_executable(), "vectors", "check", str(out), "--bytewise"], tmp_path)
    assert check.returncode == 0, check.stdout
    port = free_port()
    serve = [wscompat_executable(), "serve", "--port", str(port)]
    async with started(serve, tmp_path, tmp_path / "serve.log") as server:
        await listening(server, port)
        replay = await trio.to_thread.run_sync(
            _run, [wscompat_executable(), "replay", f"ws://127.0.0.1:{port}/", str(out),
                   "--json"], tmp_path)
    report = json.loads(replay.stdout)
    assert report["ok"] is True and [v["status"] for v in report["vectors"]] == ["expected"]


def test_redact_keeps_secrets_out_of_an_import(tmp_path: Path) -> None:
    har = _har()
    entry = har["log"]["entries"][1]
    entry["request"]["url"] += "&token=s3cr3t-value"
    entry["request"]["headers"].append({"name": "Cookie", "value": "session=abcdef123"})
    path = tmp_path / "secret.har"
    path.write_text(json.dumps(har))
    done = _run([wscompat_executable(), "vectors", "import", str(path), "--out",
                 str(tmp_path / "out"), "--redact"], tmp_path)
    assert done.returncode == 0, done.stderr
    text = next((tmp_path / "out").glob("*/*.json")).read_text()
    assert "s3cr3t" not in text and "abcdef123" not in text
    assert "token=[redacted]" in text and "Cookie: [redacted]" in text
