"""How vector results are shown: per-draft tables, byte-level diffs, and JSON for CI.

``wscompat vectors check`` and ``wscompat replay`` both end in a list of
:class:`Outcome`; this module turns it into text for people and JSON for machines,
without any I/O. Heads are diffed line by line with escapes, everything else as a hex
dump around the first differing byte, so a failure says which byte is wrong.

Everything shown comes from vector files or from a server, and either may be hostile:
the text report passes every such string through :func:`printable`, so control bytes,
ANSI escape sequences and bidirectional overrides are shown escaped, never sent to the
terminal, and a long field is cut. The JSON report escapes them by being JSON
(``ensure_ascii``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wscompat.drafts import Draft

__all__ = ["DIFF_LIMIT", "FIELD_LIMIT", "Outcome", "byte_diff", "printable", "render",
           "summary", "to_json"]

DRAFT_ORDER = [*(d.value for d in Draft), "rfc8441"]
_ROW = 16
DIFF_LIMIT = 4096
"""Bytes of each side shown in a diff; longer answers are cut."""
FIELD_LIMIT = 1000
"""Characters of one name, problem, path or note shown in the text report."""


def printable(text: str, limit: int = FIELD_LIMIT) -> str:
    """``text`` safe to print on a terminal, on one line: every character Python does
    not call printable (controls such as ESC, CR and LF, bidirectional overrides, lone
    surrogates) as its Python escape; cut after ``limit`` characters."""
    cut = len(text) - limit
    text = text[:limit]
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else _escape_char(ch) for ch in text)
    return text + (f"… ({cut} more characters)" if cut > 0 else "")


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


@dataclass
class Outcome:
    """One vector's result under one command."""

    id: str
    draft: str
    name: str
    path: str
    status: str
    """check: pass, fail. replay: expected, different, no_answer, skipped."""
    problem: str = ""
    step: int = 0
    """The step that failed, counted from 1 (0: the vector as a whole)."""
    expected: bytes = b""
    actual: bytes = b""
    notes: list[str] = field(default_factory=list)

    @property
    def diff(self) -> list[str]:
        return byte_diff(self.expected, self.actual) if self.expected or self.actual else []

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "draft": self.draft,
            "name": self.name,
            "path": self.path,
            "status": self.status,
            "problem": self.problem,
            "step": self.step,
            "expected_hex": self.expected[:DIFF_LIMIT].hex(" "),
            "actual_hex": self.actual[:DIFF_LIMIT].hex(" "),
            "diff": self.diff,
            "notes": self.notes,
        }


# -- diffs --------------------------------------------------------------------------------


def first_difference(a: bytes, b: bytes) -> int | None:
    """The first offset where ``a`` and ``b`` differ (the shorter length if one is a
    prefix of the other), or None when they are equal."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def _escape(data: bytes) -> str:
    out = []
    for byte in data:
        if byte == 0x0D:
            out.append("\\r")
        elif byte == 0x0A:
            out.append("\\n")
        elif byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def _textual(data: bytes) -> bool:
    """HTTP heads and other mostly printable bytes read better as escaped lines."""
    if not data:
        return True
    printable = sum(1 for b in data if 0x20 <= b < 0x7F or b in (0x0D, 0x0A))
    return data[:5] == b"HTTP/" or printable >= 0.9 * len(data)


def _hex_row(offset: int, row: bytes) -> str:
    hexes = " ".join(f"{b:02x}" for b in row).ljust(_ROW * 3 - 1)
    text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
    return f"{offset:06x}  {hexes}  |{text}|"


def byte_diff(expected: bytes, actual: bytes) -> list[str]:
    """Lines showing where ``actual`` departs from ``expected``: ``-`` lines are the
    vector's, ``+`` lines the server's."""
    expected, actual = expected[:DIFF_LIMIT], actual[:DIFF_LIMIT]
    if not expected:
        return [f"the server sent {len(actual)} bytes:",
                *(f"+ {line}" for line in _dump(actual[:256]))]
    first = first_difference(expected, actual)
    if first is None:
        return []
    where = (f"first difference at byte {first}: expected "
             f"{_at(expected, first)}, got {_at(actual, first)}")
    if _textual(expected) and _textual(actual):
        want = [_escape(line) for line in expected.splitlines(keepends=True)]
        got = [_escape(line) for line in actual.splitlines(keepends=True)]
        lines = list(difflib.unified_diff(want, got, lineterm="", n=2))[2:]
        return [where, *(line if line.startswith("@@") else f"{line[0]} {line[1:]}"
                         for line in lines)]
    start = max(0, (first // _ROW - 1) * _ROW)
    stop = min(max(len(expected), len(actual)), start + 4 * _ROW)
    lines = [where]
    for offset in range(start, stop, _ROW):
        a, b = expected[offset : offset + _ROW], actual[offset : offset + _ROW]
        if a == b:
            lines.append(f"  {_hex_row(offset, a)}")
            continue
        if a:
            lines.append(f"- {_hex_row(offset, a)}")
        if b:
            lines.append(f"+ {_hex_row(offset, b)}")
    return lines


def _at(data: bytes, offset: int) -> str:
    return f"0x{data[offset]:02x}" if offset < len(data) else "the end"


def _dump(data: bytes) -> list[str]:
    if _textual(data):
        return [_escape(line) for line in data.splitlines(keepends=True)] or [""]
    return [_hex_row(offset, data[offset : offset + _ROW]) for offset in range(0, len(data), _ROW)]


# -- tables -------------------------------------------------------------------------------


def _by_draft(outcomes: Iterable[Outcome]) -> dict[str, list[Outcome]]:
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault(outcome.draft, []).append(outcome)
    order = {name: index for index, name in enumerate(DRAFT_ORDER)}
    return dict(sorted(groups.items(), key=lambda item: (order.get(item[0], 99), item[0])))


def summary(outcomes: Sequence[Outcome], statuses: Sequence[str]) -> dict[str, dict[str, int]]:
    """Counts per draft and status, plus a ``total`` row."""
    rows: dict[str, dict[str, int]] = {}
    for draft, group in _by_draft(outcomes).items():
        rows[draft] = {"vectors": len(group), **dict.fromkeys(statuses, 0)}
        for outcome in group:
            rows[draft][outcome.status] = rows[draft].get(outcome.status, 0) + 1
    total = {"vectors": len(outcomes), **dict.fromkeys(statuses, 0)}
    for row in rows.values():
        for status in statuses:
            total[status] += row[status]
    rows["total"] = total
    return rows


def _short(outcome: Outcome) -> str:
    """The id without its draft's directory (vectors kept elsewhere keep theirs)."""
    return printable(outcome.id.removeprefix(f"{outcome.draft}/"))


def render(
    outcomes: Sequence[Outcome],
    statuses: Sequence[str],
    *,
    failing: Sequence[str],
    title: str,
    notes: Sequence[str] = (),
) -> str:
    """The human report: one table per draft listing each vector, the details of every
    outcome whose status is in ``failing`` (with its diff), then the summary. Every
    string from a vector or a server goes through :func:`printable`."""
    width = max((len(s) for s in statuses), default=4)
    lines = [printable(title), ""]
    for draft, group in _by_draft(outcomes).items():
        lines.append(f"{printable(draft)} ({len(group)} vector"
                     f"{'' if len(group) == 1 else 's'})")
        name_width = max(len(_short(o)) for o in group)
        for outcome in group:
            short = _short(outcome)
            lines.append(f"  {outcome.status.replace('_', ' '):<{width}}  "
                         f"{short:<{name_width}}  {printable(outcome.name)}")
        lines.append("")
    bad = [o for o in outcomes if o.status in failing]
    for outcome in bad:
        step = f" step {outcome.step}:" if outcome.step else ":"
        lines.append(f"{outcome.status.upper().replace('_', ' ')} {printable(outcome.id)}"
                     f"{step} {printable(outcome.problem)}")
        lines.append(f"  file: {printable(outcome.path)}")
        lines.extend(f"  {line}" for line in outcome.diff)  # escaped by byte_diff
        lines.extend(f"  note: {printable(note)}" for note in outcome.notes)
        lines.append("")
    rows = summary(outcomes, statuses)
    headers = ["draft", "vectors", *[s.replace("_", " ") for s in statuses]]
    widths = [max(len(headers[0]), *(len(printable(d)) for d in rows))] + [
        max(len(h), 5) for h in headers[1:]
    ]
    lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                           for i, (h, w) in enumerate(zip(headers, widths, strict=True))))
    for draft, row in rows.items():
        cells = [printable(draft), str(row["vectors"]), *(str(row[s]) for s in statuses)]
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(cells, widths, strict=True))))
    lines.extend(["", *map(printable, notes)] if notes else [])
    return "\n".join(lines).rstrip() + "\n"


def to_json(
    command: str,
    outcomes: Sequence[Outcome],
    statuses: Sequence[str],
    *,
    ok: bool,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The machine-readable report: ``ok``, counts per draft, and every vector."""
    return {
        "command": command,
        "ok": ok,
        **(extra or {}),
        "summary": summary(outcomes, statuses),
        "vectors": [o.as_dict() for o in outcomes],
    }
