"""``wscompat vectors show``: the terminal rendering names every part of an exchange per
draft and prints nothing raw from a hostile vector; ``--html`` puts vectors side by side,
and headless Chromium opens the page: its screenshot shows a table, its DOM has a column
per vector and a row per step, and no markup from a vector."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import trio

from tests.docs.processes import environment, wscompat_executable
from tests.live.test_chromium import CHROMIUM_FLAGS, chromium_path, tail

ROOT = Path(__file__).parents[2]
BOUND = 60
CHROMIUM_BOUND = 90.0
HANDSHAKES = ["hixie-75/handshake-draft-example", "hixie-76/handshake-draft-example",
              "hybi-07/handshake-draft-example", "hybi-08/handshake-draft-example",
              "rfc6455/handshake-rfc-example"]
HOSTILE_NAME = "\x1b[2J\x1b]0;owned\x07<script>alert(1)</script>\u202eevil"


def _show(tmp_path: Path, *args: str) -> str:
    done = subprocess.run([wscompat_executable(), "vectors", "show", *args], cwd=tmp_path,
                          env=environment(), capture_output=True, text=True, timeout=BOUND,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _hostile(tmp_path: Path) -> Path:
    """A valid vector whose name and frames carry escape sequences and markup."""
    raw = json.loads((ROOT / "vectors/hixie-75/frame-text-echo.json").read_text())
    raw["name"] = HOSTILE_NAME
    raw["source"] = "a test of the views </td></tr></table><img src=x onerror=alert(1)>"
    payload = "\x1b[31m<b>red</b>\u202e".encode()
    raw["steps"][2] = {"send": {"hex": (b"\x00" + payload + b"\xff").hex()}}
    raw["steps"][3] = {"expect": {"hex": (b"\x00" + payload + b"\xff").hex()}}
    raw["events"] = [{"text": payload.decode()}]
    path = tmp_path / "hixie-75" / "hostile.json"
    path.parent.mkdir()
    path.write_text(json.dumps(raw))
    return path


def test_the_terminal_view_decodes_each_draft(tmp_path: Path) -> None:
    out = _show(tmp_path, "rfc6455/frame-fragmented-hello", "hixie-76/close-handshake-client",
                "rfc6455/close-with-reason", "rfc6455/reject-version-25")
    assert "rfc6455/frame-fragmented-hello: " in out
    assert "  1 → GET / HTTP/1.1" in out
    assert "  2 ← HTTP/1.1 101 Switching Protocols" in out
    assert "(Date, Server may differ or be missing)" in out
    assert 'text (not final, masked 37 fa 21 3d, 3 bytes): "Hel"' in out
    assert 'continuation (final, masked 37 fa 21 3d, 2 bytes): "lo"' in out
    assert 'text (final, unmasked, 5 bytes): "Hello"' in out
    assert "key3, the 8 bytes after the head: 5e 6e 3a 64 73 5b 34 55" in out
    assert "the 16-byte answer to the keys: 38 6a 4b 53" in out
    assert "closing handshake (ff 00)" in out
    assert "← the server closes the connection" in out
    assert re.search(r"close \(final, masked [0-9a-f ]+, \d+ bytes\): code 1001, ", out)
    assert "any HTTP response with status 426, Upgrade: websocket, " in out
    assert "specification, 2026-11-22, RFC 6455" in out
    assert "ends: refused with status 426" in out


def test_the_terminal_view_prints_nothing_raw(tmp_path: Path) -> None:
    out = _show(tmp_path, str(_hostile(tmp_path)))
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b[2J\\x1b]0;owned\\x07<script>" in out
    assert '"\\x1b[31m<b>red</b>\\u202e"' in out


def test_show_names_what_it_cannot_find(tmp_path: Path) -> None:
    done = subprocess.run([wscompat_executable(), "vectors", "show", "rfc6455/no-such"],
                          cwd=tmp_path, env=environment(), capture_output=True, text=True,
                          timeout=BOUND, check=False)
    assert done.returncode == 1
    assert "no vector file, directory or corpus vector named rfc6455/no-such" in done.stderr


class _Table(HTMLParser):
    """The side-by-side table as Chromium's DOM has it: header cells, rows, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.columns: list[str] = []
        self.rows: list[str] = []
        self.tags: list[str] = []
        self._where: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._where.append(tag)
        found = dict(attrs)
        if tag == "th" and "thead" in self._where and found.get("data-vector"):
            self.columns.append(str(found["data-vector"]))
        if tag == "tr" and "tbody" in self._where:
            self.rows.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._where:
            del self._where[len(self._where) - 1 - self._where[::-1].index(tag):]

    def handle_data(self, data: str) -> None:
        if "tbody" in self._where and self.rows:
            self.rows[-1] += data


def _pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of an 8-bit RGB or RGBA PNG, unfiltered (no imaging library
    needed)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        chunk = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    size = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * size
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            left = line[x - size] if x >= size else 0
            up = previous[x]
            corner = previous[x - size] if x >= size else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[x] = (line[x] + best) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


async def _chromium(tmp_path: Path, page: Path, *args: str) -> bytes:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home)}
    log = tmp_path / "chromium.log"
    command = [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
               page.as_uri()]
    with trio.fail_after(CHROMIUM_BOUND):
        done = await trio.run_process(command, cwd=tmp_path, env=env, check=False,
                                      capture_stdout=True, stderr=log.open("wb"))
    assert done.returncode == 0, f"Chromium exited {done.returncode}:\n{tail(log)}"
    return done.stdout


async def test_the_side_by_side_page_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "side.html"
    hostile = _hostile(tmp_path)
    said = _show(tmp_path, "--html", str(page), *HANDSHAKES, str(hostile))
    assert f"{page}: 6 vectors side by side" in said
    text = page.read_text()
    assert "<script>" not in text and "<img" not in text  # escaped, so never markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text

    dom = (await _chromium(tmp_path, page, "--dump-dom")).decode()
    table = _Table()
    table.feed(dom)
    assert table.columns == [*HANDSHAKES, "hixie-75/hostile"]
    assert "script" not in table.tags and "img" not in table.tags
    files = [ROOT / "vectors" / f"{name}.json" for name in HANDSHAKES] + [hostile]
    steps = max(len(json.loads(file.read_text())["steps"]) for file in files)
    assert len(table.rows) == steps + 1  # a row per step, then how each ends
    assert table.rows[0].startswith("step 1")
    first = table.rows[0]
    for request in ("GET /demo HTTP/1.1", "GET /chat HTTP/1.1", "Sec-WebSocket-Key1",
                    "Sec-WebSocket-Version: 7", "Sec-WebSocket-Version: 8",
                    "Sec-WebSocket-Version: 13"):
        assert request in first, request
    assert "101 Web Socket Protocol Handshake" in table.rows[1]  # hixie-75's wording
    assert "101 Switching Protocols" in table.rows[1]

    shot = tmp_path / "side.png"
    await _chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1600,1000",
                    "--hide-scrollbars")
    width, height, rows = _pixels(shot.read_bytes())
    assert (width, height) == (1600, 1000)
    colours = {row[x : x + 3] for row in rows[::8] for x in range(0, len(row), 3 * 8)}
    assert len(colours) > 20, "the screenshot is nearly blank"
    white = sum(1 for row in rows[::4] for x in range(0, len(row), 3 * 4)
                if row[x : x + 3] == b"\xff\xff\xff")
    sampled = (height // 4) * (width // 4)
    assert white < 0.9 * sampled, "the screenshot is mostly white: no table drawn"
