"""``wscompat vectors show``: exchanges rendered for people, in a terminal or side by side.

Each step becomes a row: an arrow for its direction (``→`` client to server, ``←``
server to client), and what its bytes are, cut by :class:`~wscompat.vectors.wire.Cutter`
for the vector's draft: the head line by line, hixie-76's key bytes, and each frame
decoded (opcode, final or not, mask, length, the payload as text or hex, a close's code
and reason). The terminal gets one block per vector. ``--html`` puts several vectors in
one table, a column each and a row per step number, so that the same exchange in
every generation reads across: the five handshakes, or a close in every draft.

Vector files are untrusted: every string from one is escaped for where it goes, with
:func:`~wscompat.vectors.report.printable` for the terminal (no control character or
escape sequence reaches it) and :func:`html.escape` on top of that for the page, which
also carries a Content-Security-Policy allowing no script at all.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

from wscompat.drafts import Draft
from wscompat.vectors.format import H2_CLIENT, Step, Vector
from wscompat.vectors.h2peer import code_name
from wscompat.vectors.report import printable
from wscompat.vectors.wire import Cutter, Part, pieces

__all__ = ["Row", "Shown", "render_html", "render_text", "shown"]

ARROWS = {"client": "→", "server": "←", "": "⋯"}
"""Client to server, server to client, neither (a pause)."""


@dataclass
class Row:
    """One step, as a reader sees it."""

    step: int
    arrow: str
    lines: list[str]


@dataclass
class Shown:
    """A vector rendered: what it is, and a row per step."""

    vector: Vector
    about: list[str]
    rows: list[Row] = field(default_factory=list)
    end: list[str] = field(default_factory=list)


def _part_lines(parts: Sequence[Part]) -> list[str]:
    lines: list[str] = []
    for part in parts:
        if part.kind == "head":
            lines.append(part.lines[0])
            lines.extend(f"  {line}" for line in part.lines[1:])
        else:
            lines.extend(part.lines)
    return lines


def _provenance(vector: Vector) -> str:
    p = vector.provenance
    bits = [str(p.get("kind", "?")), str(p.get("date", "?"))]
    client = p.get("client") or {}
    if client.get("name"):
        bits.append(f"client {client['name']} {client.get('version', '')}".rstrip())
    elif client.get("user_agent"):
        bits.append(f"User-Agent {client['user_agent']}")
    if p.get("capture"):
        bits.append(f"from {p['capture']['file']}")
    if p.get("tool"):
        tool = p["tool"]
        bits.append(f"by {tool['name']} {tool.get('version', '')} {tool.get('command', '')}"
                    .rstrip())
    if p.get("documents"):
        bits.append(", ".join(p["documents"]))
    return printable(", ".join(bits), 300)


def _end(vector: Vector) -> list[str]:
    end = vector.end
    said = []
    if "status" in end:
        said.append(f"refused with status {end['status']}")
    if "close_code" in end:
        said.append(f"the application sees close code {end['close_code']}")
    for stream, code in end.get("close_codes", {}).items():
        said.append(f"the application sees close code {code} on stream {stream}")
    if "eof" in end:
        said.append("the server has closed the connection" if end["eof"] else
                    "the server has not closed the connection")
    lines = ["ends: " + "; ".join(said)]
    if vector.events is not None:
        events = [f'text "{printable(e, 60)}"' if isinstance(e, str) else
                  f"binary ({len(e)} bytes)" for e in vector.events[:8]]
        if vector.event_streams:
            events = [f"{e} on stream {sid}" for e, sid in zip(events, vector.event_streams,
                                                               strict=False)]
        more = f", and {len(vector.events) - 8} more" if len(vector.events) > 8 else ""
        lines.append("the application receives: " + (", ".join(events) or "nothing") + more)
    return lines


def _h2_lines(step: Step, cutters: dict[tuple[str, int], Cutter]) -> list[str]:
    """One step of an HTTP/2 vector: header lists as fields, DATA as RFC 6455 frames."""
    kind, where = step.kind, f"stream {step.stream}"
    end = ", END_STREAM" if step.end_stream else ""
    if kind in ("h2_request", "h2_expect_headers"):
        lines = [f"HEADERS ({where}{end})",
                 *(f"  {printable(name, 80)}: {printable(value, 200)}"
                   for name, value in step.headers)]
        if step.vary:
            lines.append(f"({', '.join(printable(v, 60) for v in step.vary)} may differ or "
                         "be missing)")
        return lines
    if kind in ("h2_send", "h2_expect_data"):
        side = "client" if kind == "h2_send" else "server"
        cutter = cutters.setdefault((side, step.stream), Cutter(Draft.RFC6455, side))
        cutter.phase = "frames"
        parts = _part_lines(cutter.feed(step.data))
        return [f"DATA ({where}{end}, {len(step.data)} bytes)", *(f"  {line}" for line in parts)]
    if kind == "h2_expect_status":
        named = "".join(f", {printable(n, 60)}: {printable(v, 120)}" for n, v in step.headers)
        return [f"a response with :status {step.code}{named} ({where}), any body, then "
                "END_STREAM"]
    if kind == "h2_expect_settings":
        return ["SETTINGS with " + ", ".join(f"{n} = {v}" for n, v in step.settings)]
    if kind == "h2_expect_close":
        return [f"DATA ({where}): a close frame with code {step.code}, any reason"]
    if kind in ("h2_end_stream", "h2_expect_end_stream"):
        return [f"END_STREAM ({where})"]
    if kind in ("h2_reset", "h2_expect_reset"):
        return [f"RST_STREAM {code_name(step.code)} ({where})"]
    if kind in ("h2_goaway", "h2_expect_goaway"):
        return [f"GOAWAY {code_name(step.code)}"]
    if kind == "h2_frames":
        return [f"raw frames, {len(step.data)} bytes: {step.data[:32].hex(' ')}"
                + (" …" if len(step.data) > 32 else "")]
    if kind == "pause":
        return [f"pause {step.seconds:g} s"]
    if kind == "send_eof":
        return ["the client closes its side of TCP (send_eof)"]
    return ["the server closes the connection"]


def _shown_h2(vector: Vector) -> Shown:
    about = [f"draft {vector.generation} (WebSocket over HTTP/2, RFC 6455 frames); "
             f"{_provenance(vector)}", f"source: {printable(vector.source, 400)}"]
    if vector.settings:
        about.append("the client's SETTINGS: " + ", ".join(f"{n} = {v}"
                                                            for n, v in vector.settings))
    result = Shown(vector, about)
    cutters: dict[tuple[str, int], Cutter] = {}
    for number, step in enumerate(vector.steps, 1):
        client = step.kind in H2_CLIENT or step.kind in ("send_eof", "pause")
        arrow = ARROWS["client" if client else "server"] if step.kind != "pause" else ARROWS[""]
        result.rows.append(Row(number, arrow, _h2_lines(step, cutters)))
    for (side, sid), cutter in sorted(cutters.items()):
        rest = _part_lines(cutter.rest())
        if rest:
            result.rows.append(Row(len(vector.steps), ARROWS[side],
                                   [f"stream {sid}:", *rest]))
    result.end = _end(vector)
    return result


def shown(vector: Vector) -> Shown:
    """The vector rendered as rows of text."""
    if vector.http2:
        return _shown_h2(vector)
    about = [f"draft {vector.draft.value}; {_provenance(vector)}",
             f"source: {printable(vector.source, 400)}"]
    result = Shown(vector, about)
    cutters = {"client": Cutter(vector.draft, "client"), "server": Cutter(vector.draft, "server")}
    for piece in pieces(vector):
        arrow = ARROWS[piece.side]
        if piece.pause:
            result.rows.append(Row(piece.step, arrow, [f"pause {piece.pause:g} s"]))
            continue
        if not piece.side:
            result.rows.append(Row(piece.step, arrow, ["pause 0 s"]))
            continue
        if piece.eof:
            what = ("the client closes its side of TCP (send_eof)" if piece.side == "client"
                    else "the server closes the connection")
            result.rows.append(Row(piece.step, arrow, [what]))
            continue
        parts = cutters[piece.side].feed(piece.data)
        if piece.stands_for:
            lines = [piece.stands_for]
        else:
            lines = _part_lines(parts) or [f"{len(piece.data)} bytes, the start of a part "
                                           "the next steps finish"]
        if piece.vary:
            lines.append(f"({', '.join(printable(v, 60) for v in piece.vary)} may differ or "
                         "be missing)")
        if piece.chunks:
            sizes = ", ".join(str(size) for size in piece.chunks[:12])
            lines.append(f"(sent in pieces of {sizes}{', …' if len(piece.chunks) > 12 else ''}"
                         " bytes, then the rest)")
        result.rows.append(Row(piece.step, arrow, lines))
    for side, cutter in cutters.items():
        rest = _part_lines(cutter.rest())
        if rest:
            result.rows.append(Row(len(vector.steps), ARROWS[side], rest))
    result.end = _end(vector)
    return result


def render_text(vectors: Sequence[Vector]) -> str:
    """One block per vector, for a terminal."""
    blocks = []
    for vector in vectors:
        view = shown(vector)
        lines = [f"{printable(vector.id)}: {printable(vector.name, 200)}"]
        lines += [f"  {line}" for line in view.about]
        for row in view.rows:
            first, *rest = row.lines
            lines.append(f"  {row.step:>3} {row.arrow} {first}")
            lines += [f"        {line}" for line in rest]
        lines += [f"      {line}" for line in view.end]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1d1f; }
table { border-collapse: collapse; table-layout: fixed; width: 100%; }
th, td { border: 1px solid #c8c8cc; padding: 0.4em 0.6em; vertical-align: top; }
thead th { background: #eef1f6; text-align: left; font-weight: normal; }
thead th b { display: block; font-size: 1.05em; }
thead th:first-child { width: 4.5em; }
tbody th { background: #f6f6f8; font-weight: normal; white-space: nowrap; }
pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; font: 12px/1.35 monospace; }
.client { background: #f3f8ff; } .server { background: #f4fbf2; } .none { background: #fafafa; }
.arrow { font-weight: bold; margin-right: 0.4em; }
.about { color: #55555a; font-size: 0.9em; }
"""


def _cell(rows: list[Row]) -> str:
    if not rows:
        return '<td class="none"></td>'
    sides = {"→": "client", "←": "server"}
    side = sides.get(rows[0].arrow, "none")
    body = "\n".join(f'<span class="arrow">{html.escape(row.arrow)}</span>'
                     + html.escape("\n".join(row.lines)) for row in rows)
    return f'<td class="{side}"><pre>{body}</pre></td>'


def render_html(vectors: Sequence[Vector], title: str = "wscompat vectors side by side") -> str:
    """One page: a table with a column per vector and a row per step number."""
    views = [shown(vector) for vector in vectors]
    head = "".join(
        f'<th scope="col" data-vector="{html.escape(view.vector.id)}">'
        f"<b>{html.escape(printable(view.vector.id))}</b>"
        f"{html.escape(printable(view.vector.name, 200))}"
        + "".join(f'<div class="about">{html.escape(line)}</div>' for line in view.about)
        + "</th>"
        for view in views)
    steps = max((len(view.vector.steps) for view in views), default=0)
    body = []
    for number in range(1, steps + 1):
        cells = "".join(_cell([row for row in view.rows if row.step == number])
                        for view in views)
        body.append(f'<tr><th scope="row">step {number}</th>{cells}</tr>')
    ends = "".join(f"<td><pre>{html.escape(chr(10).join(view.end))}</pre></td>" for view in views)
    body.append(f'<tr><th scope="row">end</th>{ends}</tr>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>→ the client sends, ← the server answers; one column per vector, one row per step.</p>
<table class="side-by-side">
<thead><tr><th scope="col">step</th>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
</body>
</html>
"""
