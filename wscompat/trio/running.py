"""Run a server the way a program does: until SIGINT or SIGTERM, then close gracefully.

:func:`run` is ``wscompat serve`` for Python code, and the command runs through it.
How a run ends: the signal receiver is open before any socket is bound, so no signal
is lost while starting. The first SIGINT or SIGTERM shuts the server down
(:meth:`Server.shutdown`: ``drain_time``, then each open connection closes the way its
draft closes, 1001, ``0xFF 0x00`` or a plain TCP close, within ``close_timeout``), and
:func:`run` returns. The receiver stays open during that wait: a second signal ends
the process at once, killed by that signal as Python itself ends on an unhandled
Ctrl-C (a shell sees status 130 for SIGINT), so an operator is never held hostage by a
peer that does not answer its close.

A port that cannot be bound surfaces as one :class:`ListenError`, not as a trio
exception group, so the command line can turn it into one line naming the flag.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import trio

from wscompat.logformat import TEXT_FORMAT
from wscompat.metrics import Metrics
from wscompat.options import ServerOptions
from wscompat.trio.metrics_port import serve_metrics
from wscompat.trio.server import Handler, Server, serve, serve_policy

__all__ = [
    "SIGNALS", "ListenError", "is_async_callable", "run", "serve_until_signalled",
]

logger = logging.getLogger("wscompat.server")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Signals that stop a server: the first gracefully, a second at once."""


class ListenError(OSError):
    """A listening socket could not be opened: the port is taken or forbidden, or
    ``host`` does not resolve. ``policy`` tells the Flash policy port from the
    WebSocket port; ``resolving`` a name that does not resolve from a bind failure."""

    def __init__(self, host: str | None, port: int, cause: OSError, *, policy: bool,
                 flag: str | None = None) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.host, self.port, self.policy = host, port, policy
        self.flag = flag or ("--policy-port" if policy else "--port")
        """The command-line flag of the port that failed."""
        self.resolving = isinstance(cause, socket.gaierror)

    def __str__(self) -> str:
        where = "every address" if self.host is None else repr(self.host)
        if self.resolving:
            return f"cannot resolve {where}: {self.strerror}"
        what = {"--policy-port": "policy port", "--metrics-port": "metrics port"}.get(
            self.flag, "port")
        return f"cannot listen on {where} {what} {self.port}: {self.strerror}"


def run(
    handler: Handler,
    host: str | None = "127.0.0.1",
    port: int = 8080,
    *,
    options: ServerOptions | None = None,
    policy_port: int | None = None,
    metrics_port: int | None = None,
    metrics_host: str | None = "127.0.0.1",
    **kwargs: Any,
) -> None:
    """Serve ``handler`` on ``host:port`` until SIGINT or SIGTERM, as ``wscompat serve``
    does; call it from the main thread, which is the one that receives signals.

    ``kwargs`` are :class:`ServerOptions` fields, applied on top of ``options``;
    ``host=None`` listens on every interface, IPv4 and IPv6; ``policy_port`` also
    answers Flash socket policy requests on a port of its own (Flash asks 843 first);
    ``metrics_port`` serves Prometheus metrics there (and not on ``port``), on
    ``metrics_host`` (loopback unless told otherwise: metrics are for the operator).
    Once every socket is listening, a "listening on ..." line is logged. If logging is
    not configured, INFO logging to stderr is set up first, so that line and the one
    line per connection show.

    The first SIGINT or SIGTERM shuts down gracefully: after ``drain_time`` (if set),
    every connection is closed the way its draft closes (1001, ``0xFF 0x00`` or a plain
    TCP close) within ``close_timeout``; then run() returns, and a script that ends
    there exits with status 0. A second signal during that wait ends the process at
    once, killed by that signal.

    Raises, before serving anything: TypeError for a handler that is not async or an
    unknown option, ValueError for a bad value or port, :class:`ListenError` (an
    OSError) when a port is taken or forbidden or ``host`` does not resolve.
    """
    if not is_async_callable(handler):
        raise TypeError(f"the handler must be an async function, not {handler!r}")
    options = _merged(options, kwargs)
    for name, value in (("port", port), ("policy_port", policy_port),
                        ("metrics_port", metrics_port)):
        if value is not None and not 0 <= value <= 65535:
            raise ValueError(f"{name} must be 0 to 65535, not {value}")
    if not logging.getLogger("wscompat").hasHandlers():
        logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT, stream=sys.stderr)
    trio.run(partial(serve_until_signalled, handler, host, port, options=options,
                     policy_port=policy_port, metrics_port=metrics_port,
                     metrics_host=metrics_host))


def is_async_callable(handler: object) -> bool:
    """Whether calling ``handler`` gives a coroutine: an ``async def``, or an object
    whose ``__call__`` is one (a class is not: calling it makes an instance)."""
    if isinstance(handler, type):
        return False
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(type(handler), "__call__", None)  # noqa: B004  (the method, not callable())
    return call is not None and inspect.iscoroutinefunction(call)


def _merged(options: ServerOptions | None, kwargs: dict[str, Any]) -> ServerOptions:
    base = options or ServerOptions()
    unknown = set(kwargs) - ServerOptions.names()
    if unknown:
        raise TypeError(f"unknown server option(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(base, **kwargs) if kwargs else base


async def serve_until_signalled(
    handler: Handler,
    host: str | None = "127.0.0.1",
    port: int = 8080,
    *,
    options: ServerOptions | None = None,
    policy_port: int | None = None,
    metrics_port: int | None = None,
    metrics_host: str | None = "127.0.0.1",
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`run` inside a trio run: serve until SIGINT or SIGTERM, then shut down
    gracefully (:meth:`Server.shutdown`); a second signal ends the process.
    ``task_status`` gets the Server."""
    state = _Run()
    with trio.open_signal_receiver(*SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch, signals, state)
            with state.starting:
                state.server = await _serve(handler, host, port, options=options or
                                            ServerOptions(), policy_port=policy_port,
                                            metrics=(metrics_host, metrics_port),
                                            nursery=nursery)
            if isinstance(state.server, Server):
                task_status.started(state.server)
                await state.stop.wait()
                await state.server.shutdown()
            nursery.cancel_scope.cancel()  # the policy port, and the signal watcher
    if isinstance(state.server, ListenError):
        raise state.server  # raised out here, where no nursery wraps it in a group


class _Run:
    """How far a run got, as the signal watcher needs to know it."""

    def __init__(self) -> None:
        self.starting = trio.CancelScope()
        """Around binding: a signal before the server is up cancels it."""
        self.server: Server | ListenError | None = None
        self.stop = trio.Event()
        """Set by the first signal."""


async def _serve(
    handler: Handler, host: str | None, port: int, *, options: ServerOptions,
    policy_port: int | None, metrics: tuple[str | None, int | None], nursery: trio.Nursery,
) -> Server | ListenError:
    """Start the servers in ``nursery``: the WebSocket server, or the ListenError of
    the port that could not be bound (after which nothing is left listening)."""
    reuse = options.reuse_port
    metrics_host, metrics_port = metrics
    store = Metrics() if options.metrics or metrics_port is not None else None
    if policy_port is not None:
        try:
            await nursery.start(partial(serve_policy, host, policy_port, options.policy,
                                        metrics=store, reuse_port=reuse))
        except OSError as exc:
            return ListenError(host, policy_port, exc, policy=True)
    try:
        server: Server = await nursery.start(partial(serve, handler, host, port,
                                                     options=options, metrics_store=store))
    except OSError as exc:
        return ListenError(host, port, exc, policy=False)
    if metrics_port is not None and store is not None:
        try:
            await nursery.start(partial(serve_metrics, metrics_host, metrics_port, store,
                                        sync=server.sync_metrics, reuse_port=reuse))
        except OSError as exc:
            return ListenError(metrics_host, metrics_port, exc, policy=False,
                               flag="--metrics-port")
    return server


async def _watch(signals: AsyncIterator[int], state: _Run) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if state.stop.is_set():
            _exit_at_once(signum, name)
        logger.info("%s received (a second one exits at once)", name)
        state.stop.set()
        state.starting.cancel()


def _exit_at_once(signum: int, name: str) -> None:
    """End the process now, killed by ``signum``: the connections still closing are
    cut, which is what a second signal asks for."""
    logger.warning("%s received again: exiting without waiting for connections", name)
    logging.shutdown()  # flush what is logged so far: nothing runs after this
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    os._exit(128 + signum)  # only if the signal did not end the process
