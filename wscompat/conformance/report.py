"""The results of a run three ways: terminal lines, one JSON document, static HTML.

Everything the server said (close reasons, status lines, payloads) is hostile input:
the terminal gets it with control characters escaped (:func:`printable`), the HTML with
every character escaped and long payloads cut with a note. The HTML report is static
(no script): ``index.html`` with the verdicts counted per section and one table row per
case, and ``cases/ID.html`` per case with the expectation, the observation and the wire
exchange, frames decoded, text shown as text and everything else in hex.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wscompat.conformance.verdict import VERDICTS, Result, Verdict, describe_observation
from wscompat.conformance.wire import WireEntry

__all__ = ["RunInfo", "printable", "row", "summary", "to_json", "write_html"]

SHOWN = 1024
"""The most octets of one payload a case page shows (the wire log keeps no more)."""
HEX_WIDTH = 16


@dataclass(frozen=True)
class RunInfo:
    """What a report says about the run as a whole."""

    url: str
    started: str
    """When the run started (ISO 8601, UTC)."""
    seconds: float
    full: bool
    pause_scale: float
    patterns: tuple[str, ...]
    version: str
    http2: bool = False
    """The cases ran over HTTP/2 (RFC 8441)."""


def printable(text: str, limit: int = 300) -> str:
    """``text`` on one terminal line: what is not printable escaped, cut at ``limit``."""
    cut = len(text) - limit
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return text + (f"... ({cut} more characters)" if cut > 0 else "")


# -- the terminal ----------------------------------------------------------------------


def row(result: Result) -> str:
    return (f"{result.case.id:<14} {result.verdict.value:<13} "
            f"{result.observation.duration:>7.3f} s  {printable(result.reason)}")


def counts(results: Sequence[Result]) -> dict[str, dict[str, int]]:
    """Verdicts counted per section, in catalogue order, and in ``all``."""
    sections = list(dict.fromkeys(r.section for r in results))
    table: dict[str, dict[str, int]] = {}
    for name in [*sections, "all"]:
        chosen = [r for r in results if name in ("all", r.section)]
        counted = Counter(r.verdict for r in chosen)
        table[name] = {v.value: counted[v] for v in VERDICTS} | {"cases": len(chosen)}
    return table


def summary(results: Sequence[Result]) -> str:
    """A table of verdict counts per section, and the totals."""
    head = f"{'section':<10}" + "".join(f"{v.value:>15}" for v in VERDICTS) + f"{'cases':>8}"
    lines = [head]
    for name, counted in counts(results).items():
        lines.append(f"{name:<10}" + "".join(f"{counted[v.value]:>15}" for v in VERDICTS)
                     + f"{counted['cases']:>8}")
    return "\n".join(lines)


# -- JSON ------------------------------------------------------------------------------


def to_json(results: Sequence[Result], info: RunInfo, *, status: int,
            html_index: str | None = None) -> dict[str, Any]:
    """One document: the run, the counts, and every case with its verdict and why."""
    return {
        "command": "conform",
        "url": info.url,
        "started": info.started,
        "seconds": round(info.seconds, 3),
        "settings": {"full": info.full, "pause_scale": info.pause_scale,
                     "cases": list(info.patterns), "http2": info.http2},
        "wscompat": info.version,
        "ok": status == 0,
        "exit_status": status,
        "html": html_index,
        "summary": counts(results),
        "cases": [{
            "id": r.case.id,
            "section": r.section,
            "description": r.case.description,
            "verdict": r.verdict.value,
            "events": r.behavior.value,
            "closing": r.closing.value,
            "reason": r.reason,
            "expected": r.expected,
            "observed": describe_observation(r.observation),
            "extensions": r.observation.extensions,
            "seconds": round(r.observation.duration, 6),
        } for r in results],
    }


# -- HTML ------------------------------------------------------------------------------

STYLE = """
#cases td:first-child { white-space: nowrap; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #eee; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
pre { margin: 0; white-space: pre-wrap; word-break: break-all; font-size: 12px; }
.v-OK { background: #c8f0c8; } .v-NON-STRICT { background: #f0f0a0; }
.v-INFORMATIONAL { background: #d0e0f8; } .v-UNIMPLEMENTED { background: #ddd; }
.v-FAILED { background: #f4b0b0; font-weight: bold; }
tr.client td.side { color: #05a; } tr.server td.side { color: #a50; }
tr.note td { color: #666; font-style: italic; }
.cut { color: #a00; font-style: italic; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _visible(text: str) -> str:
    """Text with its line breaks kept and every other control character spelled out."""
    text = text.replace("\r\n", "\n")
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def file_name(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", case_id) + ".html"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"{body}</body>\n</html>\n")


def _verdict_cell(verdict: Verdict) -> str:
    return f'<td class="v-{verdict.value}">{_e(verdict.value)}</td>'


def _summary_table(results: Sequence[Result]) -> str:
    head = "".join(f"<th>{_e(v.value)}</th>" for v in VERDICTS)
    lines = [f'<table id="summary">\n<thead><tr><th>Section</th>{head}<th>Cases</th></tr>'
             "</thead>\n<tbody>"]
    for name, counted in counts(results).items():
        cells = "".join(f'<td class="n">{counted[v.value]}</td>' for v in VERDICTS)
        lines.append(f"<tr><td>{_e(name)}</td>{cells}<td class=\"n\">{counted['cases']}"
                     "</td></tr>")
    lines.append("</tbody>\n</table>\n")
    return "\n".join(lines)


def _index(results: Sequence[Result], info: RunInfo, status: int) -> str:
    failed = sum(r.verdict is Verdict.FAILED for r in results)
    over = " over HTTP/2 (RFC 8441)" if info.http2 else ""
    body = [
        f"<h1>Conformance of {_e(info.url)}</h1>\n",
        f"<p>{len(results)} cases{over}, started {_e(info.started)}, {info.seconds:.1f} s; "
        f"{failed} FAILED, exit status {status} (0 when no case FAILED). wscompat "
        f"{_e(info.version)}, {'Autobahn sizes' if info.full else 'scaled'} sections "
        f"9, 12 and 13, pauses scaled by {info.pause_scale:g}"
        + (f", cases {_e(', '.join(info.patterns))}" if info.patterns else "") + ".</p>\n",
        _summary_table(results),
        '<table id="cases">\n<thead><tr><th>Case</th><th>Description</th><th>Verdict</th>'
        "<th>Duration</th></tr></thead>\n<tbody>",
    ]
    for r in results:
        link = f"cases/{file_name(r.case.id)}"
        body.append(f'<tr><td><a href="{_e(link)}">{_e(r.case.id)}</a></td>'
                    f"<td>{_e(r.case.description)}</td>{_verdict_cell(r.verdict)}"
                    f'<td class="n">{r.observation.duration:.3f} s</td></tr>')
    body.append("</tbody>\n</table>\n")
    return _page(f"wscompat conform {info.url}", "\n".join(body))


def _payload(entry: WireEntry) -> str:
    """A payload cell: text as text, anything else as a hex dump; what the log did not
    keep said in a note."""
    data = entry.data[:SHOWN]
    if not entry.size:
        return ""
    if entry.text:
        shown = f"<pre>{_e(_visible(data.decode('utf-8', errors='replace')))}</pre>"
    else:
        lines = [f"{i:06x}  {data[i : i + HEX_WIDTH].hex(' ')}"
                 for i in range(0, len(data), HEX_WIDTH)]
        shown = f"<pre>{_e(chr(10).join(lines))}</pre>"
    if entry.size > len(data):
        shown += (f'<p class="cut">{entry.size - len(data)} more octets not shown '
                  f"({entry.size} in all)</p>")
    return shown


def _case_page(result: Result, info: RunInfo) -> str:
    obs = result.observation
    facts = [
        ("Verdict", None),
        ("Why", result.reason),
        ("Events", result.behavior.value),
        ("Closing", result.closing.value),
        ("Expected", result.expected),
        ("Observed", describe_observation(obs)),
        ("Extensions agreed", obs.extensions or "none"),
        ("Duration", f"{obs.duration:.3f} s"),
    ]
    rows = []
    for name, value in facts:
        cell = _verdict_cell(result.verdict) if value is None else f"<td>{_e(value)}</td>"
        rows.append(f"<tr><th>{_e(name)}</th>{cell}</tr>")
    exchange = ['<table id="exchange">\n<thead><tr><th>#</th><th>ms</th><th>From</th>'
                "<th>What</th><th>Payload</th></tr></thead>\n<tbody>"]
    for n, entry in enumerate(obs.wire.entries, 1):
        exchange.append(
            f'<tr class="{entry.side}"><td class="n">{n}</td>'
            f'<td class="n">{entry.at * 1000:.1f}</td><td class="side">{_e(entry.side)}</td>'
            f"<td>{_e(entry.what)}</td><td>{_payload(entry)}</td></tr>")
    exchange.append("</tbody>\n</table>\n")
    if obs.wire.dropped:
        exchange.append(f'<p class="cut">{obs.wire.dropped} more entries not recorded '
                        f"(the log keeps the first {obs.wire.max_entries}).</p>\n")
    body = (f'<p><a href="../index.html">All cases</a> of {_e(info.url)}</p>\n'
            f"<h1>Case {_e(result.case.id)}</h1>\n<p>{_e(result.case.description)}</p>\n"
            f'<table id="facts">\n<tbody>\n' + "\n".join(rows) + "\n</tbody>\n</table>\n"
            "<h2>Wire exchange</h2>\n<p>Client payloads are shown unmasked; payloads are "
            f"cut after {SHOWN} octets.</p>\n" + "".join(exchange))
    return _page(f"Case {result.case.id}: {result.verdict.value}", body)


def write_html(results: Sequence[Result], info: RunInfo, directory: Path, *,
               status: int) -> Path:
    """Write ``index.html`` and ``cases/*.html`` under ``directory`` (made if needed;
    other files there are left alone); the index's path."""
    pages = directory / "cases"
    pages.mkdir(parents=True, exist_ok=True)
    for result in results:
        (pages / file_name(result.case.id)).write_text(_case_page(result, info),
                                                       encoding="utf-8")
    index = directory / "index.html"
    index.write_text(_index(results, info, status), encoding="utf-8")
    return index
