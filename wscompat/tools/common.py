"""What ``wscompat client`` and ``wscompat probe`` share: the URL, the connection, TLS,
and how bytes from a server are shown.

A server's bytes may be hostile (escape sequences, overlong lines), so whatever is
printed of them goes through :func:`printable` or :func:`hex_preview`.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import trio

from wscompat.protocol.urls import parse_ws_url
from wscompat.vectors.report import printable

__all__ = [
    "HEAD_LIMIT",
    "CannotConnect",
    "TLSFailed",
    "Target",
    "UsageError",
    "connect_stream",
    "error_text",
    "hex_preview",
    "parse_target",
    "printable",
    "show_exchange",
    "split_head",
    "status_line",
    "tls_context",
]

HEAD_LIMIT = 65536
"""Bytes of a response head read before giving up on it: no real head comes near."""
HEX_LIMIT = 64
"""Bytes of a binary payload shown as hex before the rest is only counted."""


class UsageError(Exception):
    """The command line cannot be carried out (exit status 2)."""


class CannotConnect(Exception):
    """No connection could be made (refused, unknown host, TLS failed); the message is
    the one line to show."""


class TLSFailed(CannotConnect):
    """The TCP connection was made, the TLS handshake on it failed; ``reason`` says why."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"TLS handshake with {where} failed: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Target:
    """Where a ``ws://`` or ``wss://`` URL points."""

    url: str
    host: str
    port: int
    resource: str
    secure: bool

    @property
    def where(self) -> str:
        return f"{self.host} port {self.port}"


def parse_target(url: str) -> Target:
    """The target of ``url``; UsageError for anything but a ws:// or wss:// URL."""
    try:
        parsed = parse_ws_url(url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Target(url, parsed.host, parsed.port, parsed.resource, parsed.secure)


def tls_context(cafile: str | None, insecure: bool) -> ssl.SSLContext:
    """The client TLS context: the system's CAs, ``cafile``'s, or none checked."""
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=cafile)
    except ssl.SSLError as exc:
        raise UsageError(f"--cafile {cafile}: {error_text(exc)}") from None
    except OSError as exc:
        raise UsageError(f"--cafile {cafile}: {exc.strerror or exc}") from None


async def connect_stream(
    target: Target, context: ssl.SSLContext | None, *, tls: bool | None = None
) -> trio.abc.Stream:
    """A TCP connection to ``target``, wrapped in TLS when the URL is wss:// (or when
    ``tls`` says so); CannotConnect saying why not."""
    try:
        stream: trio.abc.Stream = await trio.open_tcp_stream(target.host, target.port)
    except OSError as exc:
        raise CannotConnect(f"cannot connect to {target.where}: {error_text(exc)}") from None
    if not (target.secure if tls is None else tls):
        return stream
    tls_stream = trio.SSLStream(stream, context or ssl.create_default_context(),
                                server_hostname=target.host)
    try:
        await tls_stream.do_handshake()
    except (trio.BrokenResourceError, ssl.SSLError) as exc:
        await trio.aclose_forcefully(stream)
        raise TLSFailed(target.where, error_text(exc)) from None
    return tls_stream


def error_text(exc: BaseException) -> str:
    """The words of an error and its causes: "Connection refused" rather than trio's
    "all attempts to connect to ... failed", an SSL reason without OpenSSL's file and
    line."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return str(seen.strerror)
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            return seen.reason.replace("_", " ").lower() if seen.reason else str(seen)
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)
        if isinstance(seen, BaseExceptionGroup) and seen.exceptions:
            seen = seen.exceptions[0]
        elif seen.__cause__ is not None or seen.__context__ is not None:
            seen = seen.__cause__ or seen.__context__
        else:
            break
    return str(exc) or type(exc).__name__


def status_line(head: bytes) -> str:
    """The first line of a response, printable."""
    return printable(head.split(b"\r\n", 1)[0].decode("latin-1"))


def hex_preview(data: bytes, limit: int = HEX_LIMIT) -> str:
    """``data`` as hex, cut after ``limit`` bytes with the rest counted."""
    shown = data[:limit].hex(" ")
    return shown + (f" … ({len(data) - limit} more bytes)" if len(data) > limit else "")


def show_exchange(prefix: str, data: bytes, print_line: Callable[[str], None]) -> None:
    """Print a handshake's bytes one line at a time after ``prefix`` (``>`` sent, ``<``
    received), as curl -v does: the head as text, what follows it (hixie-76's key3 or
    its 16-byte answer) as hex."""
    end = data.find(b"\r\n\r\n")
    head, body = (data, b"") if end < 0 else (data[:end], data[end + 4:])
    for line in head.decode("latin-1").split("\r\n"):
        print_line(f"{prefix} {printable(line)}".rstrip())
    if end >= 0:
        print_line(prefix)
    if body:
        print_line(f"{prefix} [{len(body)} bytes] {hex_preview(body)}")


def split_head(data: bytes) -> tuple[bytes, bytes]:
    """A request's head, blank line included, and what follows it (hixie-76's key3;
    nothing on other drafts)."""
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]
