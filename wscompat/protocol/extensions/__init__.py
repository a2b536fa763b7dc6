"""Compression extensions, sans-I/O: permessage-deflate (RFC 7692) and the pre-standard
x-webkit-deflate-frame / deflate-frame, both as ``websockets`` ``Extension`` objects that
the hybi framer runs on every frame.

The handshake calls :func:`negotiate` with the client's offers and the server's
:class:`CompressionSettings`; the :class:`Agreement` carries the response header and the
per-connection extension objects. ``docs/compression.md`` describes the behaviour.
"""

from wscompat.protocol.extensions.base import CORRUPT_DATA_CODE, CorruptCompressedData
from wscompat.protocol.extensions.deflate_frame import (
    DEFLATE_FRAME_NAMES,
    ClientDeflateFrameFactory,
    DeflateFrame,
    ServerDeflateFrameFactory,
)
from wscompat.protocol.extensions.negotiation import (
    COMPRESSION_MODES,
    Agreement,
    CompressionMode,
    CompressionSettings,
    accept_response,
    negotiate,
    offer_header,
    parse_offers,
)
from wscompat.protocol.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)

__all__ = [
    "COMPRESSION_MODES",
    "CORRUPT_DATA_CODE",
    "DEFLATE_FRAME_NAMES",
    "Agreement",
    "ClientDeflateFrameFactory",
    "ClientPerMessageDeflateFactory",
    "CompressionMode",
    "CompressionSettings",
    "CorruptCompressedData",
    "DeflateFrame",
    "PerMessageDeflate",
    "ServerDeflateFrameFactory",
    "ServerPerMessageDeflateFactory",
    "accept_response",
    "negotiate",
    "offer_header",
    "parse_offers",
]
