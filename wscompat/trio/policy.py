"""The Flash socket policy file on a port of its own (843 is where Flash asks first).

The WebSocket port answers policy requests too (the sniffer recognises them); this
listener is for clients that ask the dedicated port before connecting.
"""

from __future__ import annotations

import logging

import trio

from wscompat.metrics import Metrics
from wscompat.protocol.policy import DEFAULT_POLICY, policy_response
from wscompat.protocol.sniff import Kind, sniff
from wscompat.trio.streams import fmt_remote, open_listeners, remote_of, serve_side_port

__all__ = ["POLICY_TIMEOUT", "serve_policy"]

logger = logging.getLogger("wscompat.server")

POLICY_TIMEOUT = 5.0
"""Seconds a client of the policy port has to send its request."""


async def serve_policy(
    host: str | None = "127.0.0.1",
    port: int = 843,
    policy: str = DEFAULT_POLICY,
    *,
    metrics: Metrics | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer Flash socket policy requests; anything else is closed unanswered. Each
    request is logged (and counted, with ``metrics``)."""
    listeners = await open_listeners(host, port, reuse_port=reuse_port)
    answer = policy_response(policy)

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        remote = fmt_remote(remote_of(stream))
        with trio.move_on_after(POLICY_TIMEOUT) as deadline:
            while sniff(data) is Kind.NEED_MORE:
                chunk = await stream.receive_some(64)
                if not chunk:
                    logger.info("%s policy port: closed before a request", remote)
                    return
                data += chunk
            if sniff(data) is Kind.POLICY:
                await stream.send_all(answer)
                logger.info("%s policy file sent", remote)
                if metrics is not None:
                    metrics.policy.labels("policy").inc()
            else:
                logger.info("%s policy port: not a policy request, closed", remote)
        if deadline.cancelled_caught:
            logger.info("%s policy port: no request in %gs", remote, POLICY_TIMEOUT)

    await serve_side_port(handle, listeners, "policy file", task_status)
