"""Where a vector came from, as data: the ``provenance`` object every vector carries.

``source`` is the sentence a person reads; ``provenance`` is the same fact in a form a
tool can filter on ("every recording of Chromium", "everything imported from this
capture", "what rests on RFC 6455"):

- ``kind``: ``recorded`` (``wscompat serve --record`` saw a real client), ``imported``
  (``wscompat vectors import`` read a capture), ``reconstructed`` (a client's request
  rebuilt from documents, not captured), ``specification`` (example values of, or bytes
  computed from, a published specification), ``handwritten`` (written by hand to pin a
  behaviour the source explains; unofficial values included).
- ``date``: the day the vector was made (``YYYY-MM-DD``).
- ``tool``: the program that wrote it, ``{"name", "version", "command"}``; required for
  recorded and imported vectors.
- ``client``: who spoke, ``{"name", "version", "user_agent"}``, whichever are known.
- ``capture``: for imports, ``{"file", "format", "sha256"}`` of the capture and which
  ``stream`` in it (``client address → server address``, or the HAR entry).
- ``documents``: the documents it was made from (``RFC 6455``, a draft's name, …);
  required for reconstructed and specification vectors.

The loader checks the object here, with the same rules as ``vectors/schema.json``.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

__all__ = [
    "CAPTURE_FORMATS", "KINDS", "ProvenanceError", "check_provenance", "today", "wscompat_tool",
]

KINDS = ("recorded", "imported", "reconstructed", "specification", "handwritten")
CAPTURE_FORMATS = ("pcap", "pcapng", "har")
_REQUIRED = {"recorded": ("tool",), "imported": ("tool", "capture"),
             "reconstructed": ("documents",), "specification": ("documents",)}
_KEYS = {"kind", "date", "tool", "client", "capture", "documents"}
_PARTS: dict[str, tuple[set[str], set[str]]] = {
    # field: (keys allowed, keys required)
    "tool": ({"name", "version", "command"}, {"name"}),
    "client": ({"name", "version", "user_agent"}, set()),
    "capture": ({"file", "format", "sha256", "stream"}, {"file", "format"}),
}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ProvenanceError(ValueError):
    """The provenance object does not follow the format (the loader adds the file)."""


def today() -> str:
    """Today's date in UTC, as provenance dates are written."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")


def wscompat_tool(command: str) -> dict[str, str]:
    """``tool`` for a vector written by this wscompat (``command``: "serve --record")."""
    from wscompat import __version__  # noqa: PLC0415 (wscompat imports this package)

    return {"name": "wscompat", "version": __version__, "command": command}


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProvenanceError(f"provenance {what} is a non-empty string, not {value!r:.60}")
    return value


def check_provenance(value: Any) -> dict[str, Any]:
    """``value`` if it is a valid provenance object; ProvenanceError saying why not."""
    if not isinstance(value, dict):
        raise ProvenanceError("provenance is an object with at least kind and date")
    unknown = set(value) - _KEYS
    if unknown:
        raise ProvenanceError(f"unknown provenance keys {sorted(unknown)}")
    kind = value.get("kind")
    if kind not in KINDS:
        raise ProvenanceError(f"provenance kind is one of {list(KINDS)}, not {kind!r:.60}")
    date = value.get("date")
    if not isinstance(date, str) or not _DATE.fullmatch(date):
        raise ProvenanceError(f"provenance date is YYYY-MM-DD, not {date!r:.60}")
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        raise ProvenanceError(f"provenance date {date} is not a day of the calendar") from None
    for needed in _REQUIRED.get(kind, ()):
        if needed not in value:
            raise ProvenanceError(f"a {kind} vector's provenance names its {needed}")
    for part, (allowed, required) in _PARTS.items():
        if part not in value:
            continue
        item = value[part]
        if not isinstance(item, dict) or not item:
            raise ProvenanceError(f"provenance {part} is a non-empty object")
        if set(item) - allowed or required - set(item):
            raise ProvenanceError(f"provenance {part} has keys among {sorted(allowed)}"
                                  + (f", {sorted(required)} required" if required else ""))
        for key, text in item.items():
            _text(text, f"{part}.{key}")
    capture = value.get("capture")
    if capture is not None:
        if capture["format"] not in CAPTURE_FORMATS:
            raise ProvenanceError(f"provenance capture.format is one of "
                                  f"{list(CAPTURE_FORMATS)}, not {capture['format']!r:.60}")
        if "sha256" in capture and not _SHA256.fullmatch(capture["sha256"]):
            raise ProvenanceError("provenance capture.sha256 is 64 lowercase hex digits")
    documents = value.get("documents")
    if documents is not None:
        if not isinstance(documents, list) or not documents:
            raise ProvenanceError("provenance documents is a non-empty list of names")
        for document in documents:
            _text(document, "documents item")
    return value
