"""x-webkit-deflate-frame / deflate-frame: the per-frame compression of Safari 6-14, iOS
6-14 and Chrome 19-31 (draft-tyoshino-hybi-websocket-perframe-deflate).

It differs from permessage-deflate in three ways that matter on the wire:

* each data frame is compressed on its own: RSV1 marks every compressed frame,
  continuations included, and a frame with RSV1=0 is plain;
* the sync-flush tail ``00 00 ff ff`` is removed from, and appended back to, each frame;
* the parameters have no ``server_`` / ``client_`` prefix and bind the *other* side:
  ``max_window_bits`` and ``no_context_takeover`` in the client's offer constrain the
  server's compressor, and in the server's answer the client's.

The receiving side needs no parameters: one inflater with the largest window decodes
any sender's window, with or without context takeover. The mainstream Python libraries
do not implement this extension, so it is written here against the same ``websockets``
``Extension`` interface as permessage-deflate.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from websockets.exceptions import NegotiationError
from websockets.extensions.base import (
    ClientExtensionFactory,
    Extension,
    ServerExtensionFactory,
)
from websockets.frames import CTRL_OPCODES, Frame
from websockets.typing import ExtensionName, ExtensionParameter

from wscompat.protocol.extensions.base import EMPTY_BLOCK, inflate

__all__ = [
    "DEFLATE_FRAME_NAMES",
    "ClientDeflateFrameFactory",
    "DeflateFrame",
    "ServerDeflateFrameFactory",
]

DEFLATE_FRAME_NAMES = ("x-webkit-deflate-frame", "deflate-frame")
"""The WebKit name first: that is what browsers sent; pywebsocket accepted both."""

_WINDOW_BITS = [str(bits) for bits in range(8, 16)]


class DeflateFrame(Extension):
    """One connection's per-frame compressor and inflater.

    ``window_bits`` and ``no_context_takeover`` configure our compressor, as the peer
    asked; ``min_size`` leaves shorter frames uncompressed.
    """

    def __init__(
        self,
        name: str = "x-webkit-deflate-frame",
        *,
        window_bits: int = 15,
        no_context_takeover: bool = False,
        min_size: int = 0,
        compress_settings: dict[str, Any] | None = None,
    ) -> None:
        if not 9 <= window_bits <= 15:  # zlib cannot deflate with an 8-bit window
            raise ValueError("window_bits must be between 9 and 15")
        self.name = ExtensionName(name)
        self.window_bits = window_bits
        self.no_context_takeover = no_context_takeover
        self.min_size = min_size
        self.compress_settings = dict(compress_settings or {})
        self._deflater: zlib._Compress | None = None
        self._inflater = zlib.decompressobj(wbits=-15)

    def __repr__(self) -> str:
        return (
            f"DeflateFrame({self.name!r}, window_bits={self.window_bits}, "
            f"no_context_takeover={self.no_context_takeover})"
        )

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        # A control frame with RSV1 is left as it is: the frame check fails it (1002).
        if not frame.rsv1 or frame.opcode in CTRL_OPCODES:
            return frame
        data = inflate(self._inflater, bytes(frame.data) + EMPTY_BLOCK, max_size)
        if self._inflater.eof:  # a BFINAL block ended the stream: start a new one
            self._inflater = zlib.decompressobj(wbits=-15)
        return Frame(frame.opcode, data, frame.fin, False, frame.rsv2, frame.rsv3)

    def encode(self, frame: Frame) -> Frame:
        if frame.opcode in CTRL_OPCODES or len(frame.data) < self.min_size:
            return frame
        if self._deflater is None or self.no_context_takeover:
            self._deflater = zlib.compressobj(
                wbits=-self.window_bits, **self.compress_settings
            )
        data = self._deflater.compress(frame.data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(EMPTY_BLOCK)
        return Frame(frame.opcode, data[:-4], frame.fin, True, frame.rsv2, frame.rsv3)


def _parse(params: Sequence[ExtensionParameter]) -> tuple[int | None, bool]:
    """``(max_window_bits or None, no_context_takeover)``; NegotiationError otherwise."""
    bits: int | None = None
    no_takeover = False
    seen: set[str] = set()
    for name, value in params:
        if name in seen:
            raise NegotiationError(f"duplicate parameter {name}")
        seen.add(name)
        if name == "max_window_bits" and value in _WINDOW_BITS:
            bits = int(value)
        elif name == "no_context_takeover" and value is None:
            no_takeover = True
        else:
            raise NegotiationError(f"unsupported parameter {name}={value!r}")
    return bits, no_takeover


class ServerDeflateFrameFactory(ServerExtensionFactory):
    """Accepts an offer of ``name``, answering with the name alone.

    The answer asks nothing of the client; its parameters bind our compressor. An offer
    of ``max_window_bits=8`` is declined, since zlib cannot compress within 256 bytes.
    """

    def __init__(
        self,
        name: str = "x-webkit-deflate-frame",
        *,
        window_bits: int = 15,
        min_size: int = 0,
        compress_settings: dict[str, Any] | None = None,
    ) -> None:
        self.name = ExtensionName(name)
        self.window_bits = window_bits
        self.min_size = min_size
        self.compress_settings = compress_settings

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], DeflateFrame]:
        if accepted_extensions:
            raise NegotiationError("RSV1 is already taken by another extension")
        bits, no_takeover = _parse(params)
        if bits == 8:
            raise NegotiationError("max_window_bits=8 is not supported, zlib needs 9")
        window = self.window_bits if bits is None else min(bits, self.window_bits)
        ext = DeflateFrame(
            self.name,
            window_bits=window,
            no_context_takeover=no_takeover,
            min_size=self.min_size,
            compress_settings=self.compress_settings,
        )
        return [], ext


class ClientDeflateFrameFactory(ClientExtensionFactory):
    """Offers ``name`` as Safari 6-14 and Chrome 19-31 did (no parameters by default).

    ``max_window_bits`` and ``no_context_takeover`` ask the server to constrain its
    compressor; the server's answer may constrain ours the same way.
    """

    def __init__(
        self,
        name: str = "x-webkit-deflate-frame",
        *,
        max_window_bits: int | None = None,
        no_context_takeover: bool = False,
        min_size: int = 0,
    ) -> None:
        if max_window_bits is not None and not 8 <= max_window_bits <= 15:
            raise ValueError("max_window_bits must be between 8 and 15")
        self.name = ExtensionName(name)
        self.max_window_bits = max_window_bits
        self.no_context_takeover = no_context_takeover
        self.min_size = min_size

    def get_request_params(self) -> list[ExtensionParameter]:
        params: list[ExtensionParameter] = []
        if self.max_window_bits is not None:
            params.append(("max_window_bits", str(self.max_window_bits)))
        if self.no_context_takeover:
            params.append(("no_context_takeover", None))
        return params

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> DeflateFrame:
        if accepted_extensions:
            raise NegotiationError("RSV1 is already taken by another extension")
        bits, no_takeover = _parse(params)
        if bits == 8:
            raise NegotiationError("max_window_bits=8 is not supported, zlib needs 9")
        return DeflateFrame(
            self.name,
            window_bits=15 if bits is None else bits,
            no_context_takeover=no_takeover,
            min_size=self.min_size,
        )
