"""Log formats for ``--log-format``: the text line people read, or one JSON object per
line for log shippers.

A JSON record carries ``time`` (RFC 3339, UTC), ``level``, ``logger`` and ``message``;
the per-connection lines add ``event`` (``opened`` or ``closed``) and their fields
(remote, path, draft, transport, origin, subprotocol, user agent, byte and message
counts, close code, who closed) as keys of their own, already escaped and cut as in
the text line, so a shipper need not parse the message.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Literal

__all__ = ["LOG_FORMATS", "TEXT_FORMAT", "JsonFormatter", "formatter"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")
LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; ``worker`` (with ``--workers``) says
    which process wrote it."""

    def __init__(self, worker: str | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            entry["worker"] = int(self.worker)
        event = getattr(record, "event", None)
        if event is not None:
            entry["event"] = event
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True, separators=(",", ":"), default=str)


def formatter(kind: str, *, worker: str | None = None) -> logging.Formatter:
    """The formatter for ``--log-format kind``; ``worker``, the number of the process
    under ``--workers``, is written in each line (``wscompat.server[w2]``)."""
    if kind == "json":
        return JsonFormatter(worker)
    if kind == "text":
        if worker is None:
            return logging.Formatter(TEXT_FORMAT)
        return logging.Formatter(TEXT_FORMAT.replace("%(name)s", f"%(name)s[w{worker}]"))
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {kind!r}")
