"""Prometheus metrics on a port of their own (``--metrics-port``), for when the
WebSocket port is public and the metrics must not be.

Only ``GET`` and ``HEAD`` of ``/metrics`` are answered (200); any other request gets
404 or 405, and the connection is closed after each answer. The request head is read
with the same parser and limits as the WebSocket port's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from wscompat.errors import HandshakeRejected
from wscompat.metrics import CONTENT_TYPE, Metrics
from wscompat.options import METRICS_PATH
from wscompat.protocol.http import HeadParser, error_response, response
from wscompat.trio.streams import fmt_remote, open_listeners, remote_of, serve_side_port

__all__ = ["METRICS_TIMEOUT", "serve_metrics"]

logger = logging.getLogger("wscompat.server")

METRICS_TIMEOUT = 10.0
"""Seconds a client of the metrics port has to send its request."""


async def serve_metrics(
    host: str | None,
    port: int,
    metrics: Metrics,
    *,
    sync: Callable[[], None] | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``metrics`` at ``/metrics`` on ``host:port`` until cancelled. ``sync``, if
    given, is called before each answer (the server's :meth:`Server.sync_metrics`)."""
    listeners = await open_listeners(host, port, reuse_port=reuse_port)

    async def handle(stream: trio.SocketStream) -> None:
        parser = HeadParser()
        with trio.move_on_after(METRICS_TIMEOUT):
            request = None
            try:
                while request is None:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    request = parser.feed(chunk)
            except HandshakeRejected as exc:
                await stream.send_all(error_response(exc.status, exc.reason))
                return
            if request.method not in ("GET", "HEAD"):
                answer = error_response(405, "GET only", (("Allow", "GET, HEAD"),))
            elif request.target.partition("?")[0] != METRICS_PATH:
                answer = error_response(404, f"metrics are at {METRICS_PATH}")
            else:
                if sync is not None:
                    sync()
                body = metrics.exposition()
                head = response(200, (
                    ("Content-Type", CONTENT_TYPE),
                    ("Content-Length", str(len(body))),
                    ("Cache-Control", "no-store"),
                    ("Connection", "close"),
                ))
                answer = head if request.method == "HEAD" else head + body
            await stream.send_all(answer)
            logger.debug("%s metrics port: %s answered", fmt_remote(remote_of(stream)),
                         answer[:12].decode("latin-1"))

    await serve_side_port(handle, listeners, "metrics", task_status)
