"""What a peer sent, made fit for one log line.

A path, an origin, a header value, a subprotocol or a rejection reason that quotes them
comes from the peer: written raw, an ESC or C1 byte would drive the terminal that shows
the log, a CR or LF would forge a line, and a 16 KiB path would make a 16 KiB line. Every
log call that prints such a value passes it through :func:`field` first: it is escaped
by Python's ``unicode_escape`` codec (printable ASCII stays as it is, a backslash is
doubled, and every other character becomes ``\\t``, ``\\xNN``, ``\\uNNNN`` or
``\\UNNNNNNNN``), then cut to :data:`MAX_FIELD` characters, ending in ``…`` and the
original length. Query strings often carry tokens: :func:`path` leaves them out unless
asked to keep them.
"""

from __future__ import annotations

__all__ = ["MAX_FIELD", "field", "path"]

MAX_FIELD = 200
"""Characters of one escaped field in a log line; a longer one is cut and marked."""


def _escaped(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


def field(value: str | None, limit: int = MAX_FIELD) -> str:
    """``value`` escaped and cut to ``limit`` characters (``-`` for None).

    Only the first ``limit`` characters are ever escaped, however long the value, and
    an escape is never cut in half.
    """
    if value is None:
        return "-"
    head = value[:limit]
    shown = _escaped(head)
    if len(shown) <= limit and len(value) <= limit:
        return shown
    if len(shown) > limit:
        kept: list[str] = []
        size = 0
        for char in head:
            piece = _escaped(char)
            if size + len(piece) > limit:
                break
            kept.append(piece)
            size += len(piece)
        shown = "".join(kept)
    return f"{shown}…({len(value)} chars)"


def path(target: str | None, *, query: bool = False) -> str:
    """A request-target for the log; its query shows as ``?…`` unless ``query``."""
    if target is None:
        return "-"
    mark = target.find("?")
    if query or mark < 0:
        return field(target)
    return field(target[: mark + 1]) + "…"
