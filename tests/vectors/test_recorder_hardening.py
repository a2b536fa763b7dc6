"""``wscompat serve --record`` against careless and hostile clients: its caps stop it
cleanly, its work is linear in what it records, its files are private, and no secret
of a redacted kind reaches a file, whatever line form carried it."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import wscompat
from wscompat.drafts import Draft
from wscompat.protocol.handshake.client import ClientHandshake
from wscompat.trio.client import connect
from wscompat.vectors import recording
from wscompat.vectors.format import check, load

from ..conftest import Starter
from ..framing_helpers import client_frame
from ..rawclient import read_to_eof
from ..trio.test_hostile_drafts import (
    ECHO_BOUND,
    HOST,
    arena,
    chorus,
    close_code,
    open_fds,
    open_raw,
    server_frames,
)

CLOSE = client_frame(8, (1000).to_bytes(2, "big"))


def _files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("recorded-*.json"))


async def _settled(directory: Path, count: int, quiet: float = 0.3) -> list[Path]:
    """The files once there are ``count`` of them and no more come for ``quiet`` seconds."""
    with trio.fail_after(15):
        while len(_files(directory)) < count:
            await trio.sleep(0.02)
    await trio.sleep(quiet)
    return _files(directory)


async def _quiet(directory: Path, quiet: float = 0.5) -> None:
    """Return once no file has come for ``quiet`` seconds."""
    with trio.fail_after(15):
        count = -1
        while count != len(_files(directory)):
            count = len(_files(directory))
            await trio.sleep(quiet)


def _texts_with(directory: Path, marker: str) -> list[str]:
    texts = (path.read_text(encoding="utf-8") for path in _files(directory))
    return [text for text in texts if marker in text]


async def _talk(port: int, data: bytes) -> bytes:
    """Send ``data`` and a half-close on a new connection; what came back until EOF."""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(HOST, port)
        await stream.send_all(data)
        await stream.send_eof()
        answer = await read_to_eof(stream)
        await stream.aclose()
    return answer


def _request(draft: Draft, port: int, path: str = "/", **kwargs: Any) -> bytes:
    return ClientHandshake(draft, HOST, path, port=port, **kwargs).request()


def _closing(draft: Draft) -> bytes:
    """What closes an open connection of ``draft`` cleanly (hixie-75: the half-close)."""
    return {Draft.HIXIE75: b"", Draft.HIXIE76: b"\xff\x00"}.get(draft, CLOSE)


def _stopped(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "recording stopped" in r.getMessage()]


# -- caps ---------------------------------------------------------------------------------


async def test_the_file_cap_stops_recording_and_says_so_once(
    start_server: Starter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wscompat.record")
    server = await start_server(record_dir=str(tmp_path), record_max_files=3)
    upgrade = _request(Draft.RFC6455, server.port) + CLOSE
    for _ in range(2):
        assert (await _talk(server.port, upgrade)).startswith(b"HTTP/1.1 101 ")
    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(_talk, server.port, upgrade)
    assert len(await _settled(tmp_path, 3, quiet=0.5)) == 3
    assert _stopped(caplog) == [
        f"recording stopped: 3 files written to {tmp_path}, as many as record_max_files allows"
    ]
    # Serving goes on, unrecorded.
    assert (await _talk(server.port, upgrade)).startswith(b"HTTP/1.1 101 ")
    assert len(await _settled(tmp_path, 3)) == 3
    assert len(_stopped(caplog)) == 1


async def test_the_byte_cap_stops_recording_before_the_file_that_would_pass_it(
    start_server: Starter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wscompat.record")
    cap = 5000
    server = await start_server(record_dir=str(tmp_path), record_max_bytes=cap)
    padded = _request(Draft.RFC6455, server.port, extra_headers=(("X-Pad", "p" * 900),))
    for _ in range(5):
        assert (await _talk(server.port, padded + CLOSE)).startswith(b"HTTP/1.1 101 ")
    files = await _settled(tmp_path, 2)
    sizes = [path.stat().st_size for path in files]
    assert len(files) == 2, sizes
    assert sum(sizes) <= cap < sum(sizes) + min(sizes)
    [message] = _stopped(caplog)
    assert message.startswith(f"recording stopped: {sum(sizes)} bytes written to {tmp_path}")
    assert message.endswith(f"would pass record_max_bytes ({cap})")


# -- linear work --------------------------------------------------------------------------


def _dribbled_frame(draft: Draft, size: int) -> bytes:
    if draft is Draft.HIXIE75:
        return b"\x00" + b"a" * (size - 2) + b"\xff"
    return client_frame(2, bytes(range(256)) * (size // 256))


@pytest.mark.parametrize("draft", [Draft.HIXIE75, Draft.RFC6455], ids=str)
async def test_a_dribbled_frame_is_recorded_in_linear_work(
    start_server: Starter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, draft: Draft
) -> None:
    """1 MB in 1 KiB pieces: the frame boundary search reads each byte a bounded number
    of times (it read the whole frame again on each piece: a thousand times here)."""
    calls, examined = 0, 0
    real = recording.frame_end

    def counted(d: Draft, data: bytes | bytearray, pos: int) -> int | None:
        nonlocal calls, examined
        calls += 1
        examined += len(data) - pos  # the most it can read
        return real(d, data, pos)

    monkeypatch.setattr(recording, "frame_end", counted)
    server = await start_server(record_dir=str(tmp_path), max_message_size=2**20)
    frame = _dribbled_frame(draft, 1_000_000)
    with trio.fail_after(30):
        stream = await open_raw(server.port, draft, "/dribble")
        for start in range(0, len(frame), 1024):
            await stream.send_all(frame[start : start + 1024])
            await trio.sleep(0)
        echo = b""
        # hybi: the echo is unmasked (4 bytes fewer); hixie: the same bytes
        while len(echo) < len(frame) - (0 if draft is Draft.HIXIE75 else 4):
            chunk = await stream.receive_some(1 << 20)
            assert chunk
            echo += chunk
        await stream.send_all(_closing(draft))
        await stream.send_eof()
        await read_to_eof(stream)
        await stream.aclose()
    [path] = await _settled(tmp_path, 1)
    assert examined <= 4 * 2 * len(frame), (calls, examined)
    assert calls <= 100, (calls, examined)
    raw = json.loads(path.read_text(encoding="utf-8"))
    sent = [step["send"] for step in raw["steps"] if "send" in step]
    assert {"hex": frame.hex(" ")} in [piece for spec in sent for piece in
                                        (spec if isinstance(spec, list) else [spec])]


# -- files ----------------------------------------------------------------------------------


async def test_folders_are_0700_and_files_0600_under_a_permissive_umask(
    start_server: Starter, tmp_path: Path
) -> None:
    directory = tmp_path / "made" / "here"
    old = os.umask(0)
    try:
        server = await start_server(record_dir=str(directory))
        await _talk(server.port, _request(Draft.RFC6455, server.port) + CLOSE)
        [path] = await _settled(directory, 1)
    finally:
        os.umask(old)
    assert path.parent == directory / "rfc6455"
    for folder in (tmp_path / "made", directory, directory / "rfc6455"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for file in (path, directory / "schema.json"):  # the schema the recordings point at
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


# -- redaction --------------------------------------------------------------------------------

Case = Callable[[int], tuple[bytes, int]]
"""Builds a request for a server's port: (the bytes to send, the status answered)."""


def _with_lines(request: bytes, lines: bytes) -> bytes:
    """``request`` with raw header ``lines`` (the last without its line end) last."""
    head, _, rest = request.partition(b"\r\n\r\n")
    return head + b"\r\n" + lines + b"\r\n\r\n" + rest


def crlf(port: int) -> tuple[bytes, int]:
    headers = (("Cookie", "session=SECRET-COOKIE"), ("Authorization", "Bearer SECRET-BEARER"),
               ("Proxy-Authorization", "Basic SECRET-PROXY"), ("X-Api-Key", "SECRET-APIKEY"),
               ("X-Auth-Token", "SECRET-AUTHTOKEN"))
    return _request(Draft.RFC6455, port, extra_headers=headers) + CLOSE, 101


def bare_lf(port: int) -> tuple[bytes, int]:
    request, _ = crlf(port)
    head, _, rest = request.partition(b"\r\n\r\n")
    return head.replace(b"\r\n", b"\n").replace(b"SECRET-", b"SECRET-LF-") + b"\n\n" + rest, 101


def obs_fold(port: int) -> tuple[bytes, int]:
    lines = (b"X-Api-Key: first-part\r\n  SECRET-FOLDED-KEY\r\n"
             b"Cookie: a=b;\r\n\tsession=SECRET-FOLDED-COOKIE\r\n"
             b"X-Other: fine\r\n Authorization: Bearer SECRET-FOLDED-AS-FIELD\r\n")
    return _with_lines(_request(Draft.RFC6455, port), lines[:-2]), 400


def lone_cr(port: int) -> tuple[bytes, int]:
    lines = b"X-Note: a\rAuthorization: Bearer SECRET-AFTER-CR\rX-Api-Key: SECRET-CR-KEY"
    return _with_lines(_request(Draft.RFC6455, port), lines), 400


def query(draft: Draft) -> Case:
    def build(port: int) -> tuple[bytes, int]:
        path = "/feed?access_token=SECRET-QUERY-TOKEN&room=SECRET-QUERY-ROOM;SECRET-BARE"
        return _request(draft, port, path) + _closing(draft), 101
    return build


def subprotocol(draft: Draft) -> Case:
    """A Kubernetes-style bearer token offered as a subprotocol, which the echo server
    chooses and so repeats in its 101."""
    def build(port: int) -> tuple[bytes, int]:
        offer = ("base64url.bearer.authorization.k8s.io.SECRET-K8S-TOKEN", "v4.channel.k8s.io")
        return _request(draft, port, subprotocols=offer) + _closing(draft), 101
    return build


def pipelined_after_refusal(port: int) -> tuple[bytes, int]:
    refused = _request(Draft.RFC6455, port).replace(b"Version: 13", b"Version: 25")
    return refused + b"GET / HTTP/1.1\r\nHost: x\r\nCookie: SECRET-PIPELINED\r\n\r\n", 426


def quoted_in_an_error(port: int) -> tuple[bytes, int]:
    """The 400 for a malformed request line quotes it, query and all."""
    return (b"GET /x?t=SECRET-QUOTED-QUERY HTTP/1.1 junk\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n"), 400


def url_credentials(port: int) -> tuple[bytes, int]:
    request = _request(Draft.HIXIE75, port, "/creds")
    target = f"ws://user:SECRET-PASSWORD@{HOST}:{port}/creds".encode()
    return request.replace(b"GET /creds ", b"GET " + target + b" ", 1), 101


REDACTION_CASES: dict[str, Case] = {
    "crlf": crlf,
    "bare-lf": bare_lf,
    "obs-fold": obs_fold,
    "lone-cr": lone_cr,
    **{f"query-{d}": query(d) for d in Draft},
    **{f"subprotocol-{d}": subprotocol(d) for d in Draft},
    "pipelined-after-refusal": pipelined_after_refusal,
    "quoted-in-an-error": quoted_in_an_error,
    "url-credentials": url_credentials,
}
CHECKABLE = set(REDACTION_CASES) - {"obs-fold", "lone-cr"}
"""Cases whose redacted vector the offline check still passes (the 400 for a folded line
or a stray CR quotes its offset, which the redaction moves)."""
ECHOED = {"quoted-in-an-error", "url-credentials", "query-hixie-75", "query-hixie-76",
          *(f"subprotocol-{d}" for d in Draft)}
"""Cases whose answer repeats a secret of the request."""


def _first_text(raw: dict[str, Any], *kinds: str) -> str:
    """The text of the first step of one of ``kinds`` (its first piece, if in pieces)."""
    value = next(step[kind] for step in raw["steps"] for kind in kinds if kind in step)
    text = value[0] if isinstance(value, list) else value
    assert isinstance(text, str)
    return text


def _no_secret(path: Path) -> str:
    """The file's text, once checked to hold no secret, as text or as hex."""
    text = path.read_text(encoding="utf-8")
    assert "SECRET" not in text
    for secret in (b"SECRET", b"SECRET-"):
        assert secret.hex(" ") not in text and secret.hex() not in text
    return text


@pytest.mark.parametrize("case", list(REDACTION_CASES))
async def test_no_secret_reaches_the_file(start_server: Starter, tmp_path: Path,
                                          case: str) -> None:
    server = await start_server(record_dir=str(tmp_path),
                                select_subprotocol=lambda _, offered: offered[0])
    data, status = REDACTION_CASES[case](server.port)
    assert b"SECRET" in data
    answer = await _talk(server.port, data)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    if case in ECHOED:
        assert b"SECRET" in answer  # the server repeated it: the answer is redacted too
    [path] = await _settled(tmp_path, 1)
    text = _no_secret(path)
    raw = json.loads(text)
    if case == "pipelined-after-refusal":
        assert [step for step in raw["steps"] if "send" in step] == [
            {"send": data[: data.index(b"\r\n\r\n") + 4].decode()}]
    else:
        assert "redacted." in raw["description"]
    if case.startswith("subprotocol"):  # both ways, as a token the server takes
        assert "Protocol: redacted\r\n" in _first_text(raw, "send")
        assert "Protocol: redacted\r\n" in _first_text(raw, "expect_head", "expect")
    if case in CHECKABLE:
        vector = load(path)
        for bytewise in (False, True):
            result = check(vector, bytewise=bytewise)
            assert result.ok, (result.problem, result.expected[:200], result.actual[:200])


async def test_a_redaction_list_of_ones_own(start_server: Starter, tmp_path: Path) -> None:
    """The list replaces the default one; query values can be kept."""
    server = await start_server(record_dir=str(tmp_path), record_redact=["x-custom-secret"],
                                record_redact_query=False)
    headers = (("X-Custom-Secret", "SECRET-CUSTOM"), ("Cookie", "kept-cookie"))
    request = _request(Draft.RFC6455, server.port, "/q?kept=value", extra_headers=headers)
    assert (await _talk(server.port, request + CLOSE)).startswith(b"HTTP/1.1 101 ")
    [path] = await _settled(tmp_path, 1)
    text = _no_secret(path)
    request_text = _first_text(json.loads(text), "send")
    assert "\r\nX-Custom-Secret: [redacted]\r\n" in request_text
    assert "\r\nCookie: kept-cookie\r\n" in request_text
    assert request_text.startswith("GET /q?kept=value HTTP/1.1\r\n")
    assert json.loads(text)["description"].endswith(" X-Custom-Secret redacted.")


# -- what is recorded -------------------------------------------------------------------------


async def test_record_frames_0_records_only_the_handshake(
    start_server: Starter, tmp_path: Path
) -> None:
    server = await start_server(record_dir=str(tmp_path), record_frames=0)
    with trio.fail_after(10):
        async with connect(f"ws://{HOST}:{server.port}/none") as ws:
            for message in ("one", b"two", "three"):
                await ws.send(message)
                assert await ws.receive() == message
    [path] = await _settled(tmp_path, 1)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert [next(iter(step)) for step in raw["steps"]] == ["send", "expect_head"]
    assert raw["steps"][0]["send"].endswith("\r\n\r\n")
    assert raw["end"] == {"eof": False}
    assert "keeping the handshake and no frames" in raw["description"]
    assert check(load(path), bytewise=True).ok


async def test_plain_requests_leave_no_file_unless_asked_for(
    start_server: Starter, tmp_path: Path
) -> None:
    plain = b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"
    skipped = await start_server(record_dir=str(tmp_path / "default"))
    kept = await start_server(record_dir=str(tmp_path / "plain"), record_plain=True)
    for server in (skipped, kept):
        assert (await _talk(server.port, plain)).startswith(b"HTTP/1.1 426 ")
    [path] = await _settled(tmp_path, 1)
    assert path.parent == tmp_path / "plain" / "rfc6455"
    assert json.loads(path.read_text(encoding="utf-8"))["end"] == {"status": 426}


# -- an attack beside the chorus --------------------------------------------------------------

PLAIN_FLOOD = 200
DRIBBLED = 256 * 1024
PIECE = 512


async def dribble(port: int, draft: Draft) -> tuple[bytes, bytes]:
    """A 256 KiB message in 512-byte pieces; (the frame sent, what came back by EOF)."""
    frame = (b"\x00" + b"d" * (DRIBBLED - 2) + b"\xff" if draft in (Draft.HIXIE75,
             Draft.HIXIE76) else client_frame(2, b"d" * DRIBBLED))
    stream = await open_raw(port, draft, "/dribble")
    for start in range(0, len(frame), PIECE):
        await stream.send_all(frame[start : start + PIECE])
        await trio.sleep(0.0005)
    echo = b""
    want = DRIBBLED if draft in (Draft.HIXIE75, Draft.HIXIE76) else DRIBBLED + 10
    while len(echo) < want:
        chunk = await stream.receive_some(65536)
        assert chunk
        echo += chunk
    await stream.send_all(_closing(draft))
    await stream.send_eof()
    rest = await read_to_eof(stream)
    await stream.aclose()
    return frame, echo + rest


async def test_a_flood_of_plain_requests_and_dribbled_frames_while_recording(
    start_server: Starter, tmp_path: Path
) -> None:
    a = await arena(start_server, PLAIN_FLOOD + len(Draft), record_dir=str(tmp_path),
                    max_message_size=2**20)
    # The warm-up's own recordings are written by worker threads: the baseline is taken
    # again once they are all on disk, so no file being written is counted in it.
    await _quiet(tmp_path)
    a.fds = open_fds()
    plain = b"GET /plain-flood HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n"
    answers: Counter[bytes] = Counter()
    dribbled: dict[Draft, tuple[bytes, bytes]] = {}
    limiter = trio.CapacityLimiter(50)

    async def flooder() -> None:
        async with limiter:
            answers[await _talk(a.port, plain)] += 1

    async def dribbler(draft: Draft) -> None:
        dribbled[draft] = await dribble(a.port, draft)

    async with chorus(a.port) as c:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for draft in Draft:
                    nursery.start_soon(dribbler, draft)
                for _ in range(PLAIN_FLOOD):
                    nursery.start_soon(flooder)
        await c.advance()
        assert c.slowest < ECHO_BOUND, c.slowest
    [(answer, count)] = answers.items()
    assert count == PLAIN_FLOOD
    assert answer.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nUpgrade: websocket\r\n" in answer
    for draft, (frame, back) in dribbled.items():
        if draft in (Draft.HIXIE75, Draft.HIXIE76):
            closing = b"\xff\x00" if draft is Draft.HIXIE76 else b""
            assert back == frame + closing, draft
        else:
            frames, rest = server_frames(back)
            assert frames[0] == (2, b"d" * DRIBBLED) and rest == b""
            assert close_code(back) == 1000
    # Each dribbler left its file with the whole frame; the plain requests left none.
    with trio.fail_after(15):
        while len(dribbles := _texts_with(tmp_path, "GET /dribble ")) < len(Draft):
            await trio.sleep(0.05)
    await _quiet(tmp_path)
    assert len(dribbles) == len(Draft)
    assert _texts_with(tmp_path, "/plain-flood") == []
    assert all(" ".join(["64"] * (DRIBBLED - 2)) in t for t in dribbles)  # the echo
    assert a.hostile_closes() == Counter({("/dribble", 1000): len(Draft)})
    await a.released()


def test_options_have_their_documented_defaults() -> None:
    """The defaults docs/limits.md states and the recorder relies on."""
    options = wscompat.ServerOptions()
    assert (options.record_max_files, options.record_max_bytes) == (1000, 256 * 2**20)
    assert options.record_plain is False and options.record_redact_query is True
    assert {"cookie", "authorization", "proxy-authorization", "x-api-key",
            "sec-websocket-protocol", "websocket-protocol"} <= {
        name.lower() for name in options.record_redact}
