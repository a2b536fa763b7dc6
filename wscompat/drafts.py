"""The protocol generations wscompat speaks, and what each one can carry.

Code that needs to know whether a draft supports binary messages, pings or close codes
asks :func:`capabilities` instead of comparing drafts, so a new draft is one table row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "ALL_DRAFTS", "HTTP2_NAMES", "Capabilities", "Draft", "DraftSet", "capabilities",
    "parse_drafts",
]


class Draft(enum.Enum):
    """One wire-compatible family of WebSocket drafts."""

    HIXIE75 = "hixie-75"
    HIXIE76 = "hixie-76"
    HYBI07 = "hybi-07"
    HYBI08 = "hybi-08"
    RFC6455 = "rfc6455"

    @property
    def version(self) -> int | None:
        """The ``Sec-WebSocket-Version`` this family sends, or None for hixie drafts."""
        return _VERSIONS[self]

    @property
    def short(self) -> str:
        """The short name used on the command line (``75``, ``76``, ``7``, ``8``, ``13``)."""
        return _SHORT[self]

    @property
    def caps(self) -> Capabilities:
        return _CAPS[self]

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Capabilities:
    """What a draft's wire format can express."""

    binary: bool
    """Binary messages exist (hixie drafts carry only UTF-8 text)."""
    ping: bool
    """Ping and pong control frames exist."""
    close_codes: bool
    """The closing handshake carries a status code and reason."""
    close_handshake: bool
    """A closing handshake exists at all (hixie-75 just closes TCP)."""
    extensions: bool
    """``Sec-WebSocket-Extensions`` may be negotiated."""


_VERSIONS: dict[Draft, int | None] = {
    Draft.HIXIE75: None,
    Draft.HIXIE76: None,
    Draft.HYBI07: 7,
    Draft.HYBI08: 8,
    Draft.RFC6455: 13,
}

_SHORT: dict[Draft, str] = {
    Draft.HIXIE75: "75",
    Draft.HIXIE76: "76",
    Draft.HYBI07: "7",
    Draft.HYBI08: "8",
    Draft.RFC6455: "13",
}

_HYBI = Capabilities(
    binary=True, ping=True, close_codes=True, close_handshake=True, extensions=True
)
_CAPS: dict[Draft, Capabilities] = {
    Draft.HIXIE75: Capabilities(
        binary=False, ping=False, close_codes=False, close_handshake=False, extensions=False
    ),
    Draft.HIXIE76: Capabilities(
        binary=False, ping=False, close_codes=False, close_handshake=True, extensions=False
    ),
    Draft.HYBI07: _HYBI,
    Draft.HYBI08: _HYBI,
    Draft.RFC6455: _HYBI,
}

ALL_DRAFTS: frozenset[Draft] = frozenset(Draft)


def capabilities(draft: Draft) -> Capabilities:
    return _CAPS[draft]


HTTP2_NAMES = frozenset({"h2", "rfc8441"})
"""Names of RFC 8441 (RFC 6455 over HTTP/2) in a draft list. It is no ``Draft`` of its
own: its framing is RFC 6455's, and only the HTTP under the handshake differs."""


class DraftSet(frozenset[Draft]):
    """The HTTP/1.1 drafts of a draft list, and whether it named HTTP/2 (``h2``)."""

    http2: bool = False


def parse_drafts(text: str) -> DraftSet:
    """Parse a comma-separated list such as ``75,76,7,8,13,h2`` (names like ``hixie-76``
    and ``rfc8441`` work too; ``all`` is every one, HTTP/2 included).

    Raises ValueError naming the unknown entry, so a typo on the command line is obvious.
    """
    by_name = {d.short: d for d in Draft} | {d.value: d for d in Draft}
    chosen: set[Draft] = set()
    http2 = False
    for raw in text.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item == "all":
            chosen |= ALL_DRAFTS
            http2 = True
            continue
        if item in HTTP2_NAMES:
            http2 = True
            continue
        if item not in by_name:
            known = ", ".join(d.short for d in Draft)
            raise ValueError(f"unknown draft {item!r} (known: {known}, h2, or all)")
        chosen.add(by_name[item])
    if not chosen:
        raise ValueError("no draft enabled" if not http2 else
                         "no HTTP/1.1 draft enabled: h2 needs 13 beside it")
    drafts = DraftSet(chosen)
    drafts.http2 = http2
    return drafts
