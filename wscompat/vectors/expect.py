"""Server bytes against one expectation of a vector, sans-I/O.

The offline checker and the network replay compare what a server said with the same
function, so a vector means the same thing in both. :func:`match` looks at the bytes
received since the previous expectation and answers: decided (consumed so many bytes,
with or without a difference) or undecided (more bytes are needed). Offline, undecided
means the server said nothing more; over a socket it means keep reading until a timeout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["HEAD_LIMIT", "Match", "head_lines", "match", "status_of"]

HEAD_LIMIT = 65536
"""Bytes of an HTTP response head read before giving up on finding its end."""


@dataclass(frozen=True)
class Match:
    """The outcome of comparing received bytes with one expectation."""

    done: bool
    """False while the expectation needs more bytes to be decided."""
    consumed: int = 0
    """Bytes of the server's output this expectation accounts for."""
    problem: str = ""
    """Empty when the bytes matched; otherwise what differs."""
    offset: int = 0
    """Where in the received bytes the difference starts."""

    @property
    def ok(self) -> bool:
        return self.done and not self.problem


_MORE = Match(False)


def match(
    kind: str,
    data: bytes,
    *,
    expected: bytes = b"",
    code: int = 0,
    headers: Iterable[tuple[str, str]] = (),
    vary: Iterable[str] = (),
    eof: bool = False,
) -> Match:
    """Compare ``data`` (server bytes not yet accounted for) with one expectation.

    ``kind`` is a step kind: ``expect``, ``expect_head``, ``expect_status``,
    ``expect_close`` or ``expect_eof``. ``eof`` says the server has closed, so nothing
    more will come and an incomplete answer is a difference, not a wait.
    """
    if kind == "expect":
        return _exact(data, expected, eof)
    if kind == "expect_head":
        return _head(data, expected, {v.lower() for v in vary}, eof)
    if kind == "expect_status":
        return _status(data, code, tuple(headers), eof)
    if kind == "expect_close":
        return _close(data, code, eof)
    if kind == "expect_eof":
        if data:
            return Match(True, 0, "unexpected bytes before the close")
        return Match(True) if eof else _MORE
    raise ValueError(f"not an expectation: {kind}")


def _exact(data: bytes, expected: bytes, eof: bool) -> Match:
    n = len(expected)
    got = data[:n]
    if got == expected:
        return Match(True, n)
    if expected.startswith(got):
        if eof:
            return Match(True, 0, f"connection closed after {len(got)} of {n} bytes", len(got))
        return _MORE
    offset = next(i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b)
    return Match(True, 0, f"server bytes differ at offset {offset}", offset)


def head_lines(head: bytes) -> list[bytes]:
    """The lines of an HTTP head without the blank line that ends it."""
    return head[: -4 if head.endswith(b"\r\n\r\n") else len(head)].split(b"\r\n")


def _name(line: bytes) -> str:
    return line.partition(b":")[0].strip().decode("latin-1").lower()


def _head(data: bytes, expected: bytes, vary: set[str], eof: bool) -> Match:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if eof or len(data) > HEAD_LIMIT:
            return Match(True, 0, "no complete HTTP head", 0)
        return _MORE
    got = data[: end + 4]
    want_lines, got_lines = head_lines(expected), head_lines(got)
    if want_lines[0] != got_lines[0]:
        return Match(True, 0, f"status line {_show(got_lines[0])}, expected "
                     f"{_show(want_lines[0])}", 0)
    want = [line for line in want_lines[1:] if _name(line) not in vary]
    have = [line for line in got_lines[1:] if _name(line) not in vary]
    for index in range(max(len(want), len(have))):
        a = want[index] if index < len(want) else None
        b = have[index] if index < len(have) else None
        if a == b:
            continue
        if a is not None and b is not None and _name(a) == _name(b):
            return Match(True, 0, f"header {_show(b)}, expected {_show(a)}", got.find(b))
        if a is not None and a not in have:
            return Match(True, 0, f"missing header {_show(a)}",
                         end if b is None else got.find(b))
        if b is not None and b not in want:
            return Match(True, 0, f"unexpected header {_show(b)}", got.find(b))
        assert a is not None and b is not None
        besides = " (varying headers aside)" if vary else ""
        return Match(True, 0, f"header line {index + 1}{besides} is {_show(b)}, expected "
                     f"{_show(a)}: the same headers in another order", got.find(b))
    return Match(True, end + 4)


def _show(line: bytes) -> str:
    return repr(line.decode("latin-1"))


def status_of(data: bytes) -> int | None:
    """The status code of the HTTP response ``data`` starts with, if it starts with one."""
    line = data.split(b"\r\n", 1)[0]
    parts = line.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def _status(data: bytes, code: int, headers: tuple[tuple[str, str], ...], eof: bool) -> Match:
    """One HTTP response (head and Content-Length body): its status and the named
    headers are compared; other headers and the body's wording may differ."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if eof or len(data) > HEAD_LIMIT:
            return Match(True, 0, f"expected an HTTP response with status {code}")
        return _MORE
    status = status_of(data)
    if status != code:
        return Match(True, 0, f"status {status}, expected {code}")
    found: dict[str, str] = {}
    for line in head_lines(data[: end + 4])[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        found.setdefault(name.strip().lower(), value.strip())
    for name, value in headers:
        if found.get(name.lower()) != value:
            return Match(True, 0, f"header {name}: {found.get(name.lower())!r}, "
                         f"expected {value!r}")
    length_text = found.get("content-length", "0") or "0"
    length = int(length_text) if length_text.isdigit() else 0
    if len(data) < end + 4 + length and not eof:
        return _MORE
    return Match(True, min(len(data), end + 4 + length))


def _close(data: bytes, code: int, eof: bool) -> Match:
    """One unmasked close frame with this code (1005: no code); any reason."""
    if len(data) < 2:
        if eof:
            return Match(True, 0, f"expected a close frame with code {code}")
        return _MORE
    if data[0] != 0x88 or data[1] > 125:
        return Match(True, 0, f"expected a close frame with code {code}")
    length = data[1]
    if len(data) < 2 + length:
        return Match(True, 0, "truncated close frame") if eof else _MORE
    got = int.from_bytes(data[2:4], "big") if length >= 2 else 1005
    if got != code:
        return Match(True, 0, f"close code {got}, expected {code}", 2)
    return Match(True, 2 + length)
