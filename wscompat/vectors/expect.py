"""Server bytes against one expectation of a vector, sans-I/O.

The offline checker and the network replay compare what a server said with the same
function, so a vector means the same thing in both. :func:`match` looks at the bytes
received since the previous expectation and answers: decided (consumed so many bytes,
with or without a difference) or undecided (more bytes are needed). Offline, undecided
means the server said nothing more; over a socket it means keep reading until a timeout.

Reading from a socket, :func:`match` is asked again as bytes arrive, so an undecided
answer says how to ask cheaply: ``checked`` bytes need not be looked at again, and
nothing can be decided before ``needed`` bytes. A caller that honours both does work in
proportion to the bytes received, however they are dribbled, and learns the size an
announced answer (a Content-Length, a close frame's length) would take before holding it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["HEAD_LIMIT", "Match", "head_lines", "match", "status_of"]

HEAD_LIMIT = 65536
"""Bytes of an HTTP response head, its blank line included, searched for its end."""
_LENGTH_DIGITS = 18
"""Digits of a Content-Length taken as a number; a longer one is a difference."""
_BLOCK = 4096

Bytes: TypeAlias = bytes | bytearray


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
    checked: int = 0
    """While undecided: the bytes already compared, which the next call may skip."""
    needed: int = 0
    """While undecided: nothing can be decided before this many bytes (or the close)."""

    @property
    def ok(self) -> bool:
        return self.done and not self.problem


def _more(needed: int, checked: int = 0) -> Match:
    return Match(False, checked=checked, needed=needed)


def match(
    kind: str,
    data: Bytes,
    *,
    expected: bytes = b"",
    code: int = 0,
    headers: Iterable[tuple[str, str]] = (),
    vary: Iterable[str] = (),
    eof: bool = False,
    checked: int = 0,
) -> Match:
    """Compare ``data`` (server bytes not yet accounted for) with one expectation.

    ``kind`` is a step kind: ``expect``, ``expect_head``, ``expect_status``,
    ``expect_close`` or ``expect_eof``. ``eof`` says the server has closed, so nothing
    more will come and an incomplete answer is a difference, not a wait. ``checked`` is
    the previous undecided answer's, when ``data`` has only grown since.
    """
    if kind == "expect":
        return _exact(data, expected, eof, checked)
    if kind == "expect_head":
        return _head(data, expected, {v.lower() for v in vary}, eof, checked)
    if kind == "expect_status":
        return _status(data, code, tuple(headers), eof, checked)
    if kind == "expect_close":
        return _close(data, code, eof)
    if kind == "expect_eof":
        if data:
            return Match(True, 0, "unexpected bytes before the close")
        return Match(True) if eof else _more(1)
    raise ValueError(f"not an expectation: {kind}")


def _exact(data: Bytes, expected: bytes, eof: bool, checked: int) -> Match:
    n = len(expected)
    end = min(len(data), n)
    start = min(checked, end)
    if data[start:end] == expected[start:end]:
        if end == n:
            return Match(True, n)
        if eof:
            return Match(True, 0, f"connection closed after {end} of {n} bytes", end)
        return _more(end + 1, checked=end)
    offset = _first_difference(data, expected, start, end)
    return Match(True, 0, f"server bytes differ at offset {offset}", offset)


def _first_difference(a: Bytes, b: bytes, start: int, end: int) -> int:
    """Where ``a`` and ``b`` first differ between ``start`` and ``end`` (they do): whole
    blocks compared at C speed, then one block byte by byte."""
    while a[start : start + _BLOCK] == b[start : start + _BLOCK]:
        start += _BLOCK
    stop = min(start + _BLOCK, end)
    return next(i for i in range(start, stop) if a[i] != b[i])


def head_lines(head: bytes) -> list[bytes]:
    """The lines of an HTTP head without the blank line that ends it."""
    return head[: -4 if head.endswith(b"\r\n\r\n") else len(head)].split(b"\r\n")


def _name(line: bytes) -> str:
    return line.partition(b":")[0].strip().decode("latin-1").lower()


def _head_end(data: Bytes, checked: int) -> int:
    """Where the blank line ending the head starts, -1 if not within HEAD_LIMIT; only
    bytes past ``checked`` are searched (and the 3 before, for a line end cut in two)."""
    return data.find(b"\r\n\r\n", max(0, checked - 3), HEAD_LIMIT)


def _head(data: Bytes, expected: bytes, vary: set[str], eof: bool, checked: int) -> Match:
    end = _head_end(data, checked)
    if end < 0:
        if eof or len(data) >= HEAD_LIMIT:
            return Match(True, 0, f"no complete HTTP head within {HEAD_LIMIT} bytes", 0)
        return _more(len(data) + 1, checked=len(data))
    got = bytes(data[: end + 4])
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


def status_of(data: Bytes) -> int | None:
    """The status code of the HTTP response ``data`` starts with, if it starts with one."""
    line = bytes(data[:64]).split(b"\r\n", 1)[0]  # "HTTP/1.1 NNN" is all that is read
    parts = line.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def _status(
    data: Bytes, code: int, headers: tuple[tuple[str, str], ...], eof: bool, checked: int
) -> Match:
    """One HTTP response (head and Content-Length body): its status and the named
    headers are compared; other headers and the body's wording may differ."""
    end = _head_end(data, checked)
    if end < 0:
        if eof or len(data) >= HEAD_LIMIT:
            return Match(True, 0, f"expected an HTTP response with status {code}")
        return _more(len(data) + 1, checked=len(data))
    status = status_of(data)
    if status != code:
        return Match(True, 0, f"status {status}, expected {code}")
    found: dict[str, str] = {}
    for line in head_lines(bytes(data[: end + 4]))[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        found.setdefault(name.strip().lower(), value.strip())
    for name, value in headers:
        if found.get(name.lower()) != value:
            return Match(True, 0, f"header {name}: {found.get(name.lower())!r}, "
                         f"expected {value!r}")
    length_text = found.get("content-length", "0") or "0"
    length = 0
    if length_text.isascii() and length_text.isdigit():
        if len(length_text) > _LENGTH_DIGITS:
            return Match(True, 0, f"Content-Length of {len(length_text)} digits")
        length = int(length_text)
    if len(data) < end + 4 + length and not eof:
        return _more(end + 4 + length)  # the head is read again once the body is in
    return Match(True, min(len(data), end + 4 + length))


def _close(data: Bytes, code: int, eof: bool) -> Match:
    """One unmasked close frame with this code (1005: no code); any reason."""
    if len(data) < 2:
        if eof:
            return Match(True, 0, f"expected a close frame with code {code}")
        return _more(2)
    if data[0] != 0x88 or data[1] > 125:
        return Match(True, 0, f"expected a close frame with code {code}")
    length = data[1]
    if len(data) < 2 + length:
        return Match(True, 0, "truncated close frame") if eof else _more(2 + length)
    got = int.from_bytes(data[2:4], "big") if length >= 2 else 1005
    if got != code:
        return Match(True, 0, f"close code {got}, expected {code}", 2)
    return Match(True, 2 + length)
