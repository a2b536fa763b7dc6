"""The origin policy, the same for every draft that carries an origin.

hixie clients and RFC 6455 browsers send ``Origin``; hybi-07 and hybi-08 send
``Sec-WebSocket-Origin``. Patterns use ``*`` for any run of characters within the origin
(``https://*.example.com``), so one list covers every generation.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Protocol

from wscompat.errors import HandshakeRejected

__all__ = ["check_origin", "origin_allowed"]


class _Settings(Protocol):
    @property
    def origins(self) -> tuple[str, ...] | None: ...
    @property
    def allow_missing_origin(self) -> bool: ...


@lru_cache(maxsize=256)
def _pattern(allowed: tuple[str, ...]) -> re.Pattern[str]:
    parts = ("[^/]*".join(re.escape(p) for p in item.lower().split("*")) for item in allowed)
    return re.compile("|".join(f"(?:{p})" for p in parts))


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Origins compare case-insensitively (browsers send them lowercased anyway)."""
    return _pattern(allowed).fullmatch(origin.lower()) is not None


def check_origin(origin: str | None, settings: _Settings) -> None:
    """Reject with 403 an origin the policy does not allow."""
    if origin is None:
        if not settings.allow_missing_origin:
            raise HandshakeRejected(403, "missing Origin")
        return
    if settings.origins is not None and not origin_allowed(origin, settings.origins):
        raise HandshakeRejected(403, f"origin {origin} not allowed")
