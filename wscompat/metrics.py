"""Prometheus metrics for a server, by draft: what an operator of a mixed fleet watches.

Counts move on connection events only (open, refusal, close), never per message: a
connection's messages and bytes are added when it ends and, for the long-lived ones, by
:meth:`Metrics.sync` (called before each scrape and every few seconds by the server), so
the hot path pays nothing for metrics. With ``--workers`` each process writes its counts
through prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) and any
worker serves the sum.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE", "Metrics", "close_label", "multiprocess_dir"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory of prometheus_client's multiprocess mode, when it is on."""
    return os.environ.get(MULTIPROC_ENV) or None


class Counted(Protocol):
    """What :meth:`Metrics.sync` reads of an open connection."""

    @property
    def draft(self) -> object: ...

    metrics_seen: tuple[int, int, int, int]


class Stats(Protocol):
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int


def close_label(code: int | None) -> str:
    """A close code as a label: the codes RFC 6455 defines by number, an application's
    (3000-4999) by thousand, so that peers cannot make one series per code they send."""
    if code is None:
        return "none"
    if 3000 <= code <= 3999:
        return "3xxx"
    if 4000 <= code <= 4999:
        return "4xxx"
    return str(code)


class Metrics:
    """The server's counters and gauges, in a registry of their own (so that several
    servers in one process, as in tests, do not share them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.open = Gauge("wscompat_connections_open", "Open WebSocket connections",
                          ["draft", "transport"], registry=r, multiprocess_mode="livesum")
        self.handshakes = Counter(
            "wscompat_handshakes", "Opening handshakes by draft and outcome: accepted, "
            "a refusal's HTTP status, or timeout", ["draft", "outcome", "transport"],
            registry=r)
        self.messages_in = Counter("wscompat_messages_received", "Messages received",
                                   ["draft"], registry=r)
        self.messages_out = Counter("wscompat_messages_sent", "Messages sent",
                                    ["draft"], registry=r)
        self.bytes_in = Counter("wscompat_bytes_received",
                                "Bytes received on open connections, framing included",
                                ["draft"], registry=r)
        self.bytes_out = Counter("wscompat_bytes_sent",
                                 "Bytes sent on open connections, framing included",
                                 ["draft"], registry=r)
        self.closes = Counter("wscompat_closes", "Connections ended, by close code (none "
                              "when the draft has no codes) and by who closed first",
                              ["draft", "code", "by"], registry=r)
        self.policy = Counter("wscompat_policy_requests",
                              "Flash socket policy requests answered", ["port"], registry=r)
        self.errors = Counter("wscompat_errors", "Failures: handler exceptions, lost "
                              "connections, TLS handshakes that failed", ["kind"], registry=r)
        self.plain = Counter("wscompat_plain_requests",
                             "Plain HTTP requests answered (health, metrics, 426 pages)",
                             ["path"], registry=r)

    # -- events ------------------------------------------------------------------------

    def opened(self, draft: str, tls: bool) -> None:
        transport = "tls" if tls else "plain"
        self.handshakes.labels(draft, "accepted", transport).inc()
        self.open.labels(draft, transport).inc()

    def refused(self, draft: str | None, outcome: str, tls: bool) -> None:
        self.handshakes.labels(draft or "none", outcome, "tls" if tls else "plain").inc()

    def closed(self, conn: Counted, stats: Stats, code: int | None, by: str,
               tls: bool) -> None:
        """A connection ended: what it did since the last sync, its close, its gauge."""
        draft = str(conn.draft)
        self._add(conn, stats)
        self.closes.labels(draft, close_label(code), by or "none").inc()
        self.open.labels(draft, "tls" if tls else "plain").dec()

    def sync(self, conns: Iterable[tuple[Counted, Stats]]) -> None:
        """Add what open connections did since the last sync."""
        for conn, stats in conns:
            self._add(conn, stats)

    def _add(self, conn: Counted, stats: Stats) -> None:
        seen = conn.metrics_seen
        now = (stats.messages_in, stats.messages_out, stats.bytes_in, stats.bytes_out)
        if now == seen:
            return
        draft = str(conn.draft)
        self.messages_in.labels(draft).inc(now[0] - seen[0])
        self.messages_out.labels(draft).inc(now[1] - seen[1])
        self.bytes_in.labels(draft).inc(now[2] - seen[2])
        self.bytes_out.labels(draft).inc(now[3] - seen[3])
        conn.metrics_seen = now

    # -- exposition --------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format: this registry's, or every worker's sum in multiprocess mode."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
