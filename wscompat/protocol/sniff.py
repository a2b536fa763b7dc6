"""Classify the first bytes of a connection before any HTTP parsing.

Theory of operation: a connection on a wscompat port may carry a TLS ClientHello, a
Flash socket policy request, the HTTP/2 connection preface (RFC 8441 over cleartext
HTTP/2), or an HTTP request head (any WebSocket draft, or a plain page request). The
policy request ends with a NUL byte and no CRLF, so an HTTP parser waiting for a blank
line would hang on it: the sniffer looks at raw bytes first and
decides as early as it can. It never consumes input; the caller keeps its buffer and
hands it on unchanged to whatever handles the kind that was recognised.
"""

from __future__ import annotations

import enum
import re

__all__ = ["HTTP2_PREFACE", "POLICY_REQUEST", "Kind", "sniff"]

POLICY_REQUEST = b"<policy-file-request/>\x00"
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_POLICY_PREFIX = b"<policy-file-request"
# A token as RFC 9110 defines it, followed by the space that ends the method.
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,20} ")
_TOKEN_BYTE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")


class Kind(enum.Enum):
    NEED_MORE = "need-more"
    TLS = "tls"
    POLICY = "policy"
    HTTP = "http"
    HTTP2 = "http2"
    """The HTTP/2 connection preface (cleartext HTTP/2 with prior knowledge)."""
    GARBAGE = "garbage"


def _policy(data: bytes) -> Kind:
    """``<policy-file-request/>`` with optional spaces before ``/>`` and optional NUL."""
    n = min(len(data), len(_POLICY_PREFIX))
    if data[:n] != _POLICY_PREFIX[:n]:
        return Kind.GARBAGE
    if len(data) <= len(_POLICY_PREFIX):
        return Kind.NEED_MORE
    rest = data[len(_POLICY_PREFIX) :].lstrip(b" ")
    if not rest:
        return Kind.NEED_MORE
    if rest.startswith(b"/>"):
        return Kind.POLICY
    if rest == b"/":
        return Kind.NEED_MORE
    return Kind.GARBAGE


def sniff(data: bytes, *, limit: int = 64) -> Kind:
    """Decide what ``data`` (everything received so far) is.

    Returns NEED_MORE while the answer could still change; once ``limit`` bytes were
    seen without a decision the input is GARBAGE, so a peer cannot keep the sniffer
    waiting by dribbling bytes that are merely not yet wrong.
    """
    # Only the first ``limit`` bytes count: otherwise a buffer already declared GARBAGE
    # at the limit could be read as a policy request once more bytes had come (e.g.
    # spaces before "/>"), and the answer would depend on how TCP split the input.
    data = data[:limit]
    if not data:
        return Kind.NEED_MORE
    first = data[0]
    if first in (0x16, 0x80):
        # TLS handshake record, or an SSLv2-compatible ClientHello header.
        return Kind.TLS
    if first == ord("P") and data[:3] == b"PRI"[: len(data)]:
        # The HTTP/2 preface: whole, it is HTTP/2; a prefix of it may still become it.
        if data[: len(HTTP2_PREFACE)] == HTTP2_PREFACE:
            return Kind.HTTP2
        if HTTP2_PREFACE.startswith(data):
            return Kind.NEED_MORE if len(data) < limit else Kind.GARBAGE
    if first == ord("<"):
        kind = _policy(data)
    elif _METHOD.match(data):
        return Kind.HTTP
    elif _TOKEN_BYTE.fullmatch(data[:20]) and len(data) < 21:
        kind = Kind.NEED_MORE
    else:
        return Kind.GARBAGE
    if kind is Kind.NEED_MORE and len(data) >= limit:
        return Kind.GARBAGE
    return kind
