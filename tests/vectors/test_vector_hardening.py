"""Hostile vector files and hostile servers against the vector tools.

A vector file is data from anywhere: whatever it says, loading it either builds the
vector or reports it invalid with the file and the reason, within a few MiB of traced
memory (a repeat is measured before it is multiplied out). A server under replay may be
hostile too: whatever it answers (a huge Content-Length and a dribble, silence, an
endless stream), replay ends within its deadlines with a clear failure and holds at most
``max_answer`` bytes. And what either says reaches the terminal escaped.

These attacks target the tools, not a wscompat server, so the servers here are raw trio
listeners on loopback that misbehave on purpose.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from wscompat.vectors.expect import Match, match
from wscompat.vectors.format import (
    MAX_PAUSE,
    MAX_VECTOR_BYTES,
    LoadLimits,
    VectorError,
    check,
    load,
)
from wscompat.vectors.replay import ReplaySettings, replay_all, replay_vector
from wscompat.vectors.report import Outcome

ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
REQUEST = ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
ANSWER = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
HANDSHAKE = [{"send": REQUEST}, {"expect_head": ANSWER, "vary": ["Date", "Server"]}]
LOAD_PEAK = 4 * 2**20
"""Traced bytes loading a small hostile file may cost, besides three copies of the file
(its bytes as read and joined, and as text)."""
MAX_ANSWER = 2**20
"""The replay cap these tests run with (the default is 16 MiB)."""
ANSWER_PEAK = 3 * MAX_ANSWER + 4 * 2**20
"""Traced bytes a replay against a flooding server may cost: the capped buffer, its
growth, and the reads in flight."""
ANSI = "\x1b[31mRED\x1b[0m\x1b]0;title\x07\u202eevil\u009b2J"
"""An SGR colour, an OSC title set ended by BEL, a right-to-left override, a C1 CSI."""


def vector(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "hostile", "draft": "rfc6455", "source": "a test of the loader's limits",
        "provenance": {"kind": "handwritten", "date": "2026-12-01"},
        "steps": list(HANDSHAKE), "end": {"eof": False},
    }
    raw.update(changes)
    return raw


def write(tmp_path: Path, raw: dict[str, Any] | str, name: str = "hostile") -> Path:
    path = tmp_path / "rfc6455" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(raw if isinstance(raw, str) else json.dumps(raw), encoding="utf-8")
    return path


@contextmanager
def traced_peak(bound: int) -> Iterator[None]:
    """Fail unless the traced memory allocated inside stays under ``bound`` bytes."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < bound, f"peak {peak} bytes"


# -- the loader -----------------------------------------------------------------------------

HUGE = 300_000_000
REPEAT = {"repeat": "00", "count": HUGE}
TOO_BIG = f"the data expands to {HUGE} bytes, more than the limit of {MAX_VECTOR_BYTES}"
HALF = MAX_VECTOR_BYTES // 2 + 1
COUNT = "count is a whole number from 0"
PAUSE = f"pause is a number of seconds from 0 to {MAX_PAUSE:g}"

HOSTILE: list[tuple[str, str, str]] = [
    # (label, the file's text, the reason it must give)
    ("the 116-byte repeat", json.dumps(vector(steps=[{"send": REPEAT}])), TOO_BIG),
    ("a repeat in an expectation", json.dumps(vector(steps=[{"expect": REPEAT}])), TOO_BIG),
    ("a repeat in an event", json.dumps(vector(events=[{"binary": REPEAT}])),
     f"the data expands to {HUGE + len(REQUEST) + len(ANSWER)} bytes"),
    ("a count past any memory", json.dumps(vector(steps=[{"send": {
        "repeat": "00" * 8, "count": 10**30}}])), f"{8 * 10**30} bytes, more than the limit"),
    ("nested repeats, each under the limit",
     json.dumps(vector(steps=[{"send": [[{"repeat": "00", "count": HALF}],
                                        [[{"repeat": "00", "count": HALF}]]]}])),
     f"the data expands to {2 * HALF} bytes"),
    ("repeats spread over steps and events",
     json.dumps(vector(steps=[{"send": {"repeat": "00", "count": HALF}}],
                       events=[{"binary": {"repeat": "00", "count": HALF}}])),
     f"the data expands to {2 * HALF} bytes"),
    ("a thousand repeats in a list",
     json.dumps(vector(steps=[{"send": [{"repeat": "ab", "count": 10**6}] * 1000}])),
     f"the data expands to {10**9} bytes"),
    ("a negative count", json.dumps(vector(steps=[{"send": {"repeat": "00", "count": -5}}])),
     f"{COUNT}, not -5"),
    ("a count as a string",
     json.dumps(vector(steps=[{"send": {"repeat": "00", "count": "300000000"}}])),
     f"{COUNT}, not '300000000'"),
    ("a count as a float",
     json.dumps(vector(steps=[{"send": {"repeat": "00", "count": 1e300}}])),
     f"{COUNT}, not 1e+300"),
    ("a count as a boolean",
     json.dumps(vector(steps=[{"send": {"repeat": "00", "count": True}}])), f"{COUNT}, not True"),
    ("a count as a list",
     json.dumps(vector(steps=[{"send": {"repeat": "00", "count": [3]}}])), f"{COUNT}, not [3]"),
    ("a count of 5000 digits",
     json.dumps(vector(steps=[{"send": {"repeat": "00", "count": 0}}])).replace(
         '"count": 0', '"count": ' + "9" * 5000), "Exceeds the limit (4300 digits)"),
    ("an empty pattern",
     json.dumps(vector(steps=[{"send": {"repeat": "", "count": HUGE}}])),
     "repeat needs at least one byte of hex"),
    ("a pattern that is not hex",
     json.dumps(vector(steps=[{"send": {"repeat": 7, "count": 1}}])), "hex is a string"),
    ("a pause of 1e300", json.dumps(vector(steps=[*HANDSHAKE, {"pause": 1e300}])),
     f"{PAUSE}, not 1e+300"),
    ("a pause over the limit", json.dumps(vector(steps=[*HANDSHAKE, {"pause": 61}])),
     f"{PAUSE}, not 61"),
    ("a negative pause", json.dumps(vector(steps=[*HANDSHAKE, {"pause": -1}])),
     f"{PAUSE}, not -1"),
    ("a pause as a string", json.dumps(vector(steps=[*HANDSHAKE, {"pause": "5"}])),
     f"{PAUSE}, not '5'"),
    ("a pause as a boolean", json.dumps(vector(steps=[*HANDSHAKE, {"pause": True}])),
     f"{PAUSE}, not True"),
    ("a NaN pause", json.dumps(vector(steps=[*HANDSHAKE, {"pause": 0}])).replace(
        '"pause": 0', '"pause": NaN'), "NaN is not a JSON number"),
    ("an Infinity pause", json.dumps(vector(steps=[*HANDSHAKE, {"pause": 0}])).replace(
        '"pause": 0', '"pause": Infinity'), "Infinity is not a JSON number"),
    ("a pause of 1e999 (infinity once parsed)",
     json.dumps(vector(steps=[*HANDSHAKE, {"pause": 0}])).replace('"pause": 0', '"pause": 1e999'),
     f"{PAUSE}, not inf"),
    ("a close code of 1e999", json.dumps(vector(steps=[*HANDSHAKE, {"expect_close": 0}])).replace(
        '"expect_close": 0', '"expect_close": 1e999'),
     "expect_close is a whole number from 1000 to 4999, not inf"),
    ("a status as a string", json.dumps(vector(steps=[{"send": REQUEST},
                                                      {"expect_status": "400"}])),
     "expect_status is a whole number from 100 to 599, not '400'"),
    ("chunks past the data", json.dumps(vector(steps=[{"send": "abc", "chunks": [2, 2]}])),
     "chunks add up to 4 bytes, more than the 3 sent"),
    ("chunks adding up past the data",
     json.dumps(vector(steps=[{"send": "abcd", "chunks": [2, 2, 1]}])),
     "chunks add up to 5 bytes, more than the 4 sent"),
    ("a negative chunk", json.dumps(vector(steps=[{"send": "abc", "chunks": [-1]}])),
     "a chunk is a whole number from 1 to 3, not -1"),
    ("an infinite option", json.dumps(vector(options={"max_message_size": 0})).replace(
        '"max_message_size": 0', '"max_message_size": -1e999'),
     "option max_message_size must be a number or null, not -inf"),
    ("a million empty arrays", json.dumps(vector(events=[])).replace(
        '"events": []', '"events": [' + ",".join(["[]"] * 1_000_000) + "]"),
     "more than 100000 JSON values"),
    ("half a million empty strings", json.dumps(vector(description="")).replace(
        '"description": ""', '"description": [' + ",".join(['""'] * 500_000) + "]"),
     "more than 100000 JSON values"),
]


@pytest.mark.parametrize(("label", "text", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_vector_is_invalid_with_its_reason(
    tmp_path: Path, label: str, text: str, reason: str
) -> None:
    path = write(tmp_path, text)
    with traced_peak(LOAD_PEAK + 3 * len(text)), pytest.raises(VectorError) as error:
        load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: "), message
    assert reason in message, (label, message)
    assert len(message) < 500 + len(str(path)), "the reason quotes the file at length"


def test_the_limits_are_settable_and_the_edge_is_allowed(tmp_path: Path) -> None:
    """Exactly at each limit is fine; one past it is invalid."""
    raw = vector(steps=[{"send": {"repeat": "00", "count": 1000}}, {"pause": 2}])
    path = write(tmp_path, raw)
    assert len(load(path, LoadLimits(vector_bytes=1000, pause=2)).steps[0].data) == 1000
    with pytest.raises(VectorError, match="expands to 1000 bytes, more than the limit of 999"):
        load(path, LoadLimits(vector_bytes=999))
    with pytest.raises(VectorError, match=r"pause is a number of seconds from 0 to 1\.5, not 2"):
        load(path, LoadLimits(pause=1.5))
    size = path.stat().st_size
    assert load(path, LoadLimits(file_bytes=size)).name == "hostile"
    with pytest.raises(VectorError, match=f"larger than the limit of {size - 1} bytes"):
        load(path, LoadLimits(file_bytes=size - 1))
    with pytest.raises(VectorError, match="more than 5 JSON values"):
        load(path, LoadLimits(json_values=5))


def test_a_vector_of_the_largest_size_loads_and_checks(tmp_path: Path) -> None:
    """The limit is not a ban on big vectors: 1 MiB echoed through the offline check."""
    size = 2**20
    mask = "00 00 00 00"
    frame = [{"hex": f"82 ff {size:016x} {mask}"}, {"repeat": "5a", "count": size}]
    answer = [{"hex": f"82 7f {size:016x}"}, {"repeat": "5a", "count": size}]
    raw = vector(steps=[*HANDSHAKE, {"send": frame, "chunks": [7, 1000, 65536]},
                        {"expect": answer}],
                 events=[{"binary": {"repeat": "5a", "count": size}}],
                 options={"max_message_size": size})
    result = check(load(write(tmp_path, raw)))
    assert result.ok, result.problem


def test_many_expectations_on_a_large_output_check_in_linear_time(tmp_path: Path) -> None:
    """4 MiB of echoes taken by 2,048 expectations: each one reads only its own bytes (a
    copy of everything still pending per expectation made this take minutes)."""
    pieces, count = 2048, 2048
    frame = {"hex": f"82 fe {count:04x} 00 00 00 00"}
    sends = [{"send": [frame, {"repeat": "61", "count": count}]} for _ in range(pieces)]
    expects = [{"expect": [{"hex": f"82 7e {count:04x}"}, {"repeat": "61", "count": count}]}
               for _ in range(pieces)]
    raw = vector(steps=[*HANDSHAKE, *sends, *expects])
    vector_ = load(write(tmp_path, raw))
    started = time.monotonic()
    result = check(vector_)
    assert result.ok, result.problem
    assert time.monotonic() - started < 20


# -- matching in proportion to the bytes received -----------------------------------------


class CountingBuffer(bytearray):
    """A receive buffer that counts the bytes the matcher copies or searches."""

    touched = 0

    def __getitem__(self, key: Any) -> Any:
        result = super().__getitem__(key)
        if isinstance(key, slice):
            self.touched += len(result)
        return result

    def find(self, sub: Any, start: Any = 0, end: Any = sys.maxsize) -> int:
        self.touched += max(0, min(end, len(self)) - start)
        return super().find(sub, start, end)


def _dribble(kind: str, answer: bytes, piece: int, **expectation: Any) -> tuple[Match, int]:
    """Feed ``answer`` ``piece`` bytes at a time, asking again only as an undecided
    answer allows; the final answer and the bytes the matcher touched."""
    buffer = CountingBuffer()
    checked = needed = 0
    for start in range(0, len(answer), piece):
        buffer += answer[start : start + piece]
        if len(buffer) >= needed:
            found = match(kind, buffer, checked=checked, **expectation)
            if found.done:
                return found, buffer.touched
            checked, needed = found.checked, found.needed
    return match(kind, buffer, eof=True, checked=checked, **expectation), buffer.touched


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_matching_a_dribbled_answer_touches_each_byte_a_few_times(piece: int) -> None:
    body = b"x" * 20_000
    exact = bytes(range(256)) * 1024
    head = ANSWER.encode()[:-2] + b"X-Long: " + b"y" * 30_000 + b"\r\n\r\n"
    status = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 20000\r\n\r\n" + body
    for kind, answer, expectation in (
        ("expect", exact, {"expected": exact}),
        ("expect_head", head, {"expected": head}),
        ("expect_status", status, {"code": 400}),
    ):
        found, touched = _dribble(kind, answer, piece, **expectation)
        assert found.ok and found.consumed == len(answer), (kind, found)
        assert touched <= 4 * len(answer) + 64 * len(answer) // piece, (kind, touched)


def test_a_long_content_length_is_a_difference_not_a_crash() -> None:
    answer = b"HTTP/1.1 400 Bad Request\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n"
    found = match("expect_status", answer, code=400)
    assert found.done and found.problem == "Content-Length of 5000 digits"
    huge = match("expect_status", b"HTTP/1.1 400 x\r\nContent-Length: 10000000000\r\n\r\n",
                 code=400)
    assert not huge.done and huge.needed > 10**10


# -- replay against hostile servers -------------------------------------------------------

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def serve(nursery: trio.Nursery, handler: Handler) -> int:
    """Serve ``handler`` on a loopback port until the test ends; replay hanging up on it
    is expected, not an error."""

    async def hung_up_on(stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await handler(stream)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, hung_up_on, 0,
                                                      host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


async def read_head(stream: trio.SocketStream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        data += chunk


def settings(port: int, **changes: Any) -> ReplaySettings:
    base: dict[str, Any] = {"timeout": 0.5, "settle": 0.1, "max_answer": MAX_ANSWER}
    return ReplaySettings("127.0.0.1", port, **{**base, **changes})


def refusal(tmp_path: Path, name: str = "refusal") -> Path:
    return write(tmp_path, vector(steps=[{"send": REQUEST}, {"expect_status": 400},
                                         {"expect_eof": True}], end={"status": 400}), name)


async def replay_one(path: Path, replay: ReplaySettings, bound: float) -> tuple[Outcome, float]:
    """Replay the vector in ``path`` within ``bound`` seconds, memory traced; the outcome
    and how long it took."""
    vector = load(path)
    started = trio.current_time()
    with traced_peak(ANSWER_PEAK), trio.fail_after(bound):
        outcome = await replay_vector(vector, replay)
    return outcome, trio.current_time() - started


async def test_a_huge_content_length_fails_at_once(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async def announce_and_dribble(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 99999999999\r\n\r\n")
        with trio.move_on_after(30):
            while True:
                await stream.send_all(b"x")
                await trio.sleep(0.001)

    port = await serve(nursery, announce_and_dribble)
    outcome, took = await replay_one(refusal(tmp_path), settings(port, timeout=5), bound=10)
    assert outcome.status == "different" and outcome.step == 2
    assert outcome.problem == (f"expect_status: the answer needs at least "
                               f"{99999999999 + 57} bytes, more than the {MAX_ANSWER} "
                               "replay holds")
    assert took < 2  # decided on the head, not after the dribble or the timeout


async def test_a_content_length_of_5000_digits_is_different(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async def digits(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: "
                              + b"9" * 5000 + b"\r\n\r\n")
        await trio.sleep(30)

    port = await serve(nursery, digits)
    outcome, _ = await replay_one(refusal(tmp_path), settings(port), bound=10)
    assert outcome.status == "different"
    assert outcome.problem == "expect_status: Content-Length of 5000 digits"


async def test_a_body_dribbled_under_the_cap_ends_at_the_step_timeout(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async def dribble(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 500000\r\n\r\n")
        with trio.move_on_after(30):
            while True:
                await stream.send_all(b"x" * 100)
                await trio.sleep(0.001)

    port = await serve(nursery, dribble)
    outcome, took = await replay_one(refusal(tmp_path), settings(port, timeout=0.5), bound=10)
    assert outcome.status == "different" and outcome.step == 2
    assert outcome.problem.startswith("incomplete answer: only ")
    assert outcome.problem.endswith(" bytes within 0.5 s")
    assert 0.4 < took < 3


async def test_a_server_that_never_answers_meets_the_vector_deadline(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        with trio.move_on_after(30):
            while await stream.receive_some(65536):
                pass

    port = await serve(nursery, silent)
    paused = write(tmp_path, vector(steps=[{"send": REQUEST}, {"pause": MAX_PAUSE},
                                           {"expect": "never"}]), "paused")
    outcome, took = await replay_one(paused, settings(port, vector_deadline=0.5), bound=10)
    assert outcome.status == "no_answer" and outcome.step == 2
    assert outcome.problem == "the vector did not finish within its deadline of 0.5 s (at step 2)"
    assert took < 3


async def test_a_server_that_never_reads_meets_the_vector_deadline(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async def deaf(stream: trio.SocketStream) -> None:
        await trio.sleep(30)

    port = await serve(nursery, deaf)
    flood = write(tmp_path, vector(steps=[{"send": {"repeat": "00", "count": 32 * 2**20}},
                                          {"expect": "never"}]), "flood")
    outcome, took = await replay_one(flood, settings(port, vector_deadline=1), bound=10)
    assert outcome.status == "no_answer"
    assert outcome.problem == "the vector did not finish within its deadline of 1 s (at step 1)"
    assert took < 4


async def test_the_run_deadline_ends_every_vector(nursery: trio.Nursery, tmp_path: Path) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        with trio.move_on_after(30):
            while await stream.receive_some(65536):
                pass

    port = await serve(nursery, silent)
    files = [write(tmp_path, vector(steps=[{"send": REQUEST}, {"pause": 30}]), f"slow-{n}")
             for n in range(5)]
    with trio.fail_after(10):
        started = trio.current_time()
        outcomes = await replay_all(files, settings(port, jobs=2, run_deadline=0.5))
        took = trio.current_time() - started
    assert took < 3
    assert [o.id for o in outcomes] == [f"rfc6455/slow-{n}" for n in range(5)]
    assert {o.status for o in outcomes} == {"no_answer"}
    assert {o.problem for o in outcomes} == {"not finished within the run's deadline of 0.5 s"}


async def test_a_server_that_answers_forever_is_cut_at_the_cap(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    chunk = b"\x81\x7e\xff\xff" + b"a" * 65535

    async def endless(stream: trio.SocketStream) -> None:
        await read_head(stream)
        with trio.move_on_after(30):
            await stream.send_all(ANSWER.encode())
            while True:
                await stream.send_all(chunk)

    port = await serve(nursery, endless)
    handshake = write(tmp_path, vector(), "handshake")
    outcome, took = await replay_one(handshake, settings(port), bound=10)
    assert outcome.status == "different"
    assert outcome.problem == "unexpected bytes after the last expectation"
    assert f"the server sent more than {MAX_ANSWER} bytes that no expectation accounted for; " \
        "replay stopped reading" in outcome.notes
    assert len(outcome.actual) == 4096  # only what a report shows is kept
    assert took < 3

    # An expectation larger than the cap is refused before it is held whole.
    big = write(tmp_path, vector(steps=[*HANDSHAKE, {"expect": {"repeat": chunk.hex(),
                                                                "count": 64}}]))
    outcome, took = await replay_one(big, settings(port), bound=10)
    assert outcome.status == "different" and outcome.step == 3
    assert outcome.problem == (f"expect: the answer needs at least {MAX_ANSWER + 2} bytes, "
                               f"more than the {MAX_ANSWER} replay holds")

    # A head that never ends is given up at the head limit.
    async def endless_head(stream: trio.SocketStream) -> None:
        await read_head(stream)
        with trio.move_on_after(30):
            await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nX-Long: ")
            while True:
                await stream.send_all(b"y" * 4096)

    port = await serve(nursery, endless_head)
    outcome, took = await replay_one(handshake, settings(port), bound=10)
    assert outcome.status == "different" and outcome.step == 2
    assert outcome.problem == "expect_head: no complete HTTP head within 65536 bytes"


# -- what reaches the terminal -------------------------------------------------------------


def _raw_controls(text: str) -> list[str]:
    """Characters a terminal would act on, other than the report's own line ends."""
    return sorted({ch for ch in text if not ch.isprintable() and ch != "\n"})


async def _run(*argv: str) -> tuple[int, str, str]:
    command = [sys.executable, "-m", "wscompat", *argv]
    with trio.fail_after(60):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                      check=False, env=ENV)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_check_prints_hostile_names_and_reasons_escaped(tmp_path: Path) -> None:
    write(tmp_path, vector(name=f"name {ANSI}", description=ANSI), "named")
    write(tmp_path, vector(name="broken", steps=[{"sned": ANSI}]), "broken")
    write(tmp_path, vector(name=ANSI, steps=[{"send": REPEAT}]), "expanding")
    write(tmp_path, vector(name="ok"), f"file {ANSI}")
    code, out, err = await _run("vectors", "check", str(tmp_path))
    assert code == 1, out + err  # two invalid vectors
    assert _raw_controls(out + err) == []
    assert r"name \x1b[31mRED\x1b[0m\x1b]0;title\x07\u202eevil\x9b2J" in out
    assert r"file \x1b[31mRED" in out  # the file name, in the table and its path
    assert "invalid vector: a step has exactly one of" in out
    assert f"invalid vector: {TOO_BIG}" in out

    code, out, _ = await _run("vectors", "check", str(tmp_path), "--json")
    assert code == 1
    assert _raw_controls(out) == []
    names = {v["name"] for v in json.loads(out)["vectors"]}
    assert f"name {ANSI}" in names  # JSON keeps the text itself, escaped by JSON


async def test_the_limit_flags_reach_the_loader(tmp_path: Path) -> None:
    write(tmp_path, vector(steps=[{"send": {"repeat": "00", "count": 2048}}, {"pause": 2}]))
    code, out, err = await _run("vectors", "check", str(tmp_path), "--max-vector-size", "1KiB")
    assert code == 1, err
    assert "the data expands to 2048 bytes, more than the limit of 1024" in out
    code, out, err = await _run("vectors", "check", str(tmp_path), "--max-pause", "1")
    assert code == 1, err
    assert "pause is a number of seconds from 0 to 1, not 2" in out
    code, out, err = await _run("vectors", "check", str(tmp_path), "--max-file-size", "100")
    assert code == 1, err
    assert "the file is larger than the limit of 100 bytes" in out
    code, out, err = await _run("vectors", "check", str(tmp_path), "--max-pause", "nan")
    assert code == 2 and "--max-pause is a number of seconds" in err
    code, _, err = await _run("replay", "ws://127.0.0.1:1/", str(tmp_path),
                              "--run-deadline", "inf")
    assert code == 2 and "finite" in err


async def test_replay_prints_hostile_answers_escaped(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async def hostile(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(f"HTTP/1.1 101 {ANSI}\r\nX-Evil: {ANSI}\r\n\r\n".encode())
        await trio.sleep(30)

    port = await serve(nursery, hostile)
    write(tmp_path, vector(name=f"handshake {ANSI}"), "handshake")
    code, out, err = await _run("replay", f"ws://127.0.0.1:{port}/", str(tmp_path),
                                "--timeout", "1", "--settle", "0.1")
    assert code == 1, out + err
    assert _raw_controls(out + err) == []
    assert r"handshake \x1b[31mRED" in out
    assert "DIFFERENT rfc6455/handshake step 2: expect_head: status line" in out
    assert "+ HTTP/1.1 101 \\x1b[31mRED" in out  # the diff escapes the server's bytes

    bad = write(tmp_path, vector(steps=[{"sned": "x"}]), f"bad {ANSI}")
    code, out, err = await _run("replay", f"ws://127.0.0.1:{port}/", str(bad))
    assert code == 2
    assert _raw_controls(out + err) == []
    assert r"bad \x1b[31mRED" in err and "invalid vector" in err
