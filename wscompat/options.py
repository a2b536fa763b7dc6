"""Every server option and limit, with its default, in one place.

The CLI, the API and the docs' limits page are all built from :class:`ServerOptions`,
so a limit cannot exist in one and be missing from another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from wscompat.drafts import ALL_DRAFTS, Draft
from wscompat.protocol.connection import ConnectionSettings, SelectSubprotocol, UpgradeRequest
from wscompat.protocol.extensions import CompressionMode, CompressionSettings
from wscompat.protocol.handshake import HandshakeSettings
from wscompat.protocol.handshake.origin import validate_patterns
from wscompat.protocol.http2 import H2Settings
from wscompat.protocol.policy import DEFAULT_POLICY

if TYPE_CHECKING:  # the core only names the type; the I/O layer uses it
    import ssl

__all__ = ["METRICS_PATH", "Acceptance", "Rejection", "ServerOptions", "UpgradeRequest"]

READ_SIZE_MAX = 2**24
"""The largest ``read_size``: each read asks for (and briefly allocates) that many bytes."""
H2_WINDOW_MAX = 2**24
"""The largest ``h2_stream_window`` (HTTP/2 allows 2**31-1; a window is memory)."""
METRICS_PATH = "/metrics"
"""Where Prometheus metrics are served on the WebSocket port (``metrics=True``)."""


@dataclass(frozen=True)
class Rejection:
    """Returned by ``process_request`` to refuse a handshake with this status and reason."""

    status: int = 403
    reason: str = "forbidden"


@dataclass(frozen=True)
class Acceptance:
    """Returned by ``process_request`` to accept, with choices made while deciding.

    A gateway opens its backend connection before the client is answered; what it
    opened travels to the handler as ``ws.context``. If the handshake fails after the
    decision (the client leaves, hixie-76's key3 never comes), the server closes the
    context with its ``aclose()``, if it has one, since no handler will.
    """

    subprotocol: str | None = None
    """The subprotocol to answer (one the client offered); None: the usual choice
    (``select_subprotocol`` or ``subprotocols``)."""
    context: object = None


ProcessRequest = Callable[
    [UpgradeRequest],
    "Rejection | Acceptance | Awaitable[Rejection | Acceptance | None] | None",
]


@dataclass(frozen=True)
class ServerOptions:
    # What is spoken.
    drafts: frozenset[Draft] = ALL_DRAFTS
    subprotocols: Sequence[str] | None = None
    """Subprotocols the server supports; the first one in the client's list is chosen."""
    select_subprotocol: SelectSubprotocol | None = None
    """Overrides ``subprotocols``: return one of the offered values, or None."""
    process_request: ProcessRequest | None = None
    """Called before accepting (awaited if it returns an awaitable): return a Rejection
    to refuse with an HTTP error, an Acceptance to accept with a context, or None."""

    # Limits.
    max_head_size: int = 16384
    """Bytes in the request line and headers (431 above)."""
    max_headers: int = 100
    """Header fields in a request (431 above)."""
    handshake_timeout: float = 10.0
    """Seconds from accept to a completed handshake, hixie-76 key3 included."""
    max_message_size: int | None = 2**19
    """Bytes in one received message (1009 above; hixie: bytes before the end byte).
    512 KiB, so that one connection holds at most about 3 MiB (docs/limits.md)."""
    max_frame_size: int | None = None
    """Bytes in one received hybi frame (1009 above); None: only the message limit."""
    max_queue: int = 16
    """Received messages held for the application before reading pauses."""
    max_queue_bytes: int = 2**18
    """Bytes of received messages held for the application before reading pauses."""
    close_timeout: float = 5.0
    """Seconds to wait for the peer's side of the closing handshake."""
    read_size: int = 262144
    """Bytes asked of the socket per read (256 KiB)."""
    write_limit: int = 65536
    """Bytes queued to send before ``send()`` waits for the peer to read (backpressure);
    while that many wait, the connection also stops reading from the peer."""
    max_connections: int | None = 10000
    """Connections served at once, handshakes included (503 above)."""
    idle_timeout: float | None = None
    """Seconds without receiving anything before a connection is closed (1001)."""
    ping_interval: float | None = 20.0
    """Seconds between keepalive pings on drafts that have ping; None: no keepalive."""
    ping_timeout: float = 20.0
    """Seconds a keepalive ping may wait for its pong before the peer is dropped (1011)."""
    tcp_keepalive: float | None = 60.0
    """Seconds of silence before the kernel probes a hixie connection (which has no
    ping) with TCP keepalive; a peer that is gone is dropped within about twice that."""

    # HTTP/2 (RFC 8441; see docs/drafts/rfc8441.md).
    http2: bool = True
    """Serve WebSocket over HTTP/2 on the same port: ALPN ``h2`` with TLS, the connection
    preface in cleartext; extended CONNECT is advertised."""
    h2_max_streams: int = 100
    """Streams one HTTP/2 connection may have open at once (its WebSockets count toward
    ``max_connections`` as well)."""
    h2_max_header_list: int = 16384
    """Bytes of decoded header fields in one HTTP/2 request (the stream is refused
    above, the connection ends with GOAWAY if the block cannot be decoded)."""
    h2_stream_window: int = 131072
    """Each HTTP/2 stream's receive window: bytes a client may send a WebSocket that is
    not read (128 KiB)."""
    h2_flood_limit: int = 100
    """Frames of each flood kind (RST_STREAM, SETTINGS, PING, PRIORITY, empty frames) an
    HTTP/2 client may send at once, refilled at a tenth of that per second; past it,
    GOAWAY ENHANCE_YOUR_CALM."""

    # Who gets in.
    origins: Sequence[str] | None = None
    """Allowed origins, exact (``https://app.example``) or patterns in which ``*`` is one
    host label (``https://*.example``); ``*`` alone admits any origin but ``null``. None
    checks no origin. Checked on every draft that carries one (403 otherwise); a bad
    pattern is a ValueError here. See docs/security.md."""

    # TLS.
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    """Serve wss:// on the same port as ws:// (the sniffer sees the TLS record). Its
    ALPN protocols are set by serve(): ``h2`` and ``http/1.1`` with ``http2``, else
    ``http/1.1`` alone (ALPN is a setting of the whole context)."""
    require_tls: bool = False
    """With ``ssl_context``: refuse plain connections instead of serving both (plain
    HTTP gets 403, a plain policy request or anything else is closed unanswered)."""
    tls_handshake_timeout: float = 10.0
    """Seconds for the TLS handshake, before the WebSocket one starts."""

    # Logging.
    log_payloads: bool = False
    """Log every message's first bytes at DEBUG; off by default, payloads can be private."""
    log_query: bool = False
    """Log request paths with their query; off by default, queries often carry tokens."""
    log_open: bool = False
    """Also log a line when a connection opens (long-lived ones are otherwise seen only
    when they end)."""
    record_dir: str | None = None
    """Write each connection as a vector file under ``record_dir/<draft>/`` (docs/vectors.md)."""
    record_frames: int = 10
    """With ``record_dir``: frames kept each way after the handshake."""
    record_max_files: int = 1000
    """With ``record_dir``: vector files written before recording stops (and says so)."""
    record_max_bytes: int = 256 * 2**20
    """With ``record_dir``: bytes of vector files written before recording stops."""
    record_plain: bool = False
    """With ``record_dir``: also record requests that are no WebSocket request at all
    (plain HTTP, refused 426); off, scanners and browsers do not use up the caps."""
    record_redact: Sequence[str] = (
        "Cookie", "Set-Cookie", "Authorization", "Proxy-Authorization", "X-Api-Key",
        "X-Auth-Token", "Sec-WebSocket-Protocol", "WebSocket-Protocol",
    )
    """With ``record_dir``: header fields whose values become ``[redacted]``, in the
    request and where the answer repeats them (subprotocols carry bearer tokens)."""
    record_redact_query: bool = True
    """With ``record_dir``: every value of the request's query becomes ``[redacted]``,
    in the request line and the hixie location that echoes it."""

    # Compression (hybi drafts; see docs/compression.md).
    compression: CompressionMode = "permessage-deflate+deflate-frame"
    """Extensions accepted when offered: permessage-deflate, and x-webkit-deflate-frame /
    deflate-frame when permessage-deflate is not offered; or "permessage-deflate", "off"."""
    compress_min_size: int = 0
    """Messages (deflate-frame: frames) shorter than this many bytes are sent uncompressed."""
    compression_window_bits: int = 15
    """LZ77 window of the server's compressor, 9 to 15 (2**(bits+2) bytes per connection)."""
    compression_level: int = 6
    """zlib level of the server's compressor: 0 stores, 1 is fastest, 9 is smallest."""
    compression_memory_level: int = 8
    """zlib memLevel, 1 to 9: the compressor's hash table takes 2**(memory_level+9) bytes."""

    # Operations.
    health_path: str | None = "/healthz"
    """A plain GET or HEAD here answers 200 while serving and 503 while shutting down
    (for load balancers); None turns it off. WebSocket requests to it are served as usual."""
    metrics: bool = False
    """Count Prometheus metrics and serve them at ``/metrics`` on the WebSocket port."""
    reuse_port: bool = False
    """Listen with SO_REUSEPORT, so that several server processes share the port (as
    ``--workers`` does; also for a supervisor of your own)."""
    proxy_protocol: bool = False
    """Every connection begins with a PROXY protocol header (version 1 or 2, as
    haproxy's ``send-proxy`` and many load balancers send it), and the client's address
    is the one it gives; a connection that begins otherwise is closed. Only behind a
    proxy that sends it on every connection: anyone who can connect directly could
    claim any address."""
    drain_time: float = 0.0
    """Seconds, on a graceful shutdown, during which the health check answers 503 and
    everything is still served, before connections are closed: time for a load balancer
    to take the server out."""

    # Legacy drafts.
    secure: bool = False
    """hixie locations say wss:// (set it behind a TLS-terminating proxy)."""
    allow_missing_origin: bool = True
    """Accept requests without an origin (hixie answers echo ``null``); else 403."""
    hixie76_early_head: bool = True
    """Send the hixie-76 101 head before key3 arrives (HTTP-mode proxies need it)."""
    hixie_binary: Literal["error", "base64"] = "error"
    """Sending bytes on hixie: raise UnsupportedByDraft, or send them as base64 text."""
    policy: str = field(default=DEFAULT_POLICY, repr=False)
    """Flash socket policy XML answered to ``<policy-file-request/>``."""

    def __post_init__(self) -> None:
        if self.require_tls and self.ssl_context is None:
            raise ValueError("require_tls needs an ssl_context: nothing could be served")
        if self.health_path is not None and (
            not self.health_path.startswith("/") or "?" in self.health_path
        ):
            raise ValueError(f"health_path must be a path such as /healthz, not "
                             f"{self.health_path!r}")
        if self.health_path == METRICS_PATH and self.metrics:
            raise ValueError(f"health_path cannot be {METRICS_PATH}, where metrics are served")
        self._check_numbers()
        self.settings  # noqa: B018  (a bad value fails here, once, not per connection)

    def _check_numbers(self) -> None:
        """Every limit in range: a negative timeout would close every connection at
        once, a zero read size would never read. Each error names the field."""
        positive = ("max_head_size", "max_headers", "handshake_timeout", "max_queue",
                    "max_queue_bytes", "close_timeout", "read_size", "ping_timeout",
                    "tls_handshake_timeout", "record_max_files", "h2_max_streams",
                    "h2_max_header_list", "h2_stream_window", "h2_flood_limit")
        optional = ("max_message_size", "max_frame_size", "max_connections",
                    "idle_timeout", "ping_interval", "tcp_keepalive")
        for name in positive:
            value = getattr(self, name)
            if not value > 0:  # also catches NaN
                raise ValueError(f"{name} must be more than 0, not {value!r}")
        for name in optional:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be more than 0 (or None), not {value!r}")
        if self.h2_stream_window > H2_WINDOW_MAX:
            raise ValueError(f"h2_stream_window must be at most {H2_WINDOW_MAX} bytes, not "
                             f"{self.h2_stream_window!r}")
        if self.read_size > READ_SIZE_MAX:
            raise ValueError(f"read_size must be at most {READ_SIZE_MAX} bytes (16 MiB), "
                             f"not {self.read_size!r}: each read allocates that much")
        for name in ("write_limit", "record_frames", "record_max_bytes", "compress_min_size",
                     "drain_time"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be 0 or more, not {value!r}")

    @cached_property
    def settings(self) -> ConnectionSettings:
        """What each connection needs, built once per server and shared by all of them."""
        handshake = HandshakeSettings(
            drafts=self.drafts,
            max_head_size=self.max_head_size,
            max_headers=self.max_headers,
            secure=self.secure,
            require_tls=self.require_tls,
            allow_missing_origin=self.allow_missing_origin,
            origins=None if self.origins is None else validate_patterns(self.origins),
            hixie76_early_head=self.hixie76_early_head,
            policy=self.policy,
            compression=self.compression_settings(),
            http2=self.http2,
            plain_paths=frozenset(
                path for path in (self.health_path, METRICS_PATH if self.metrics else None)
                if path is not None
            ),
        )
        return ConnectionSettings(
            handshake=handshake,
            handshake_secure=replace(handshake, secure=True, require_tls=False),
            max_message_size=self.max_message_size,
            max_frame_size=self.max_frame_size,
            hixie_binary=self.hixie_binary,
            subprotocols=None if self.subprotocols is None else frozenset(self.subprotocols),
            select_subprotocol=self.select_subprotocol,
            proxy_protocol=self.proxy_protocol,
        )

    @cached_property
    def h2_settings(self) -> H2Settings:
        """HTTP/2's limits, built once per server."""
        return H2Settings(max_streams=self.h2_max_streams,
                          max_header_list=self.h2_max_header_list,
                          stream_window=self.h2_stream_window,
                          flood_limit=self.h2_flood_limit)

    def handshake_settings(self, *, secure: bool = False) -> HandshakeSettings:
        """Handshake settings; ``secure`` when this connection came over TLS."""
        return self.settings.handshake_secure if secure else self.settings.handshake

    def compression_settings(self) -> CompressionSettings:
        return self._compression

    @cached_property
    def _compression(self) -> CompressionSettings:
        return CompressionSettings(
            self.compression,
            min_size=self.compress_min_size,
            window_bits=self.compression_window_bits,
            level=self.compression_level,
            mem_level=self.compression_memory_level,
        )

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}
