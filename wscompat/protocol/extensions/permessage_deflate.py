"""permessage-deflate (RFC 7692), as the ``websockets`` library implements it, plus three
things wscompat needs on top.

* Messages shorter than ``min_size`` are sent uncompressed (RSV1=0), which RFC 7692 §6
  allows for any message; compressing a few bytes costs CPU and usually adds bytes.
* A message that ends its DEFLATE stream (a BFINAL block, RFC 7692 §7.2.3.4) is followed
  by a fresh inflater: ``websockets`` keeps the finished one, which inflates every later
  message of the connection to nothing.
* Data zlib refuses raises :class:`CorruptCompressedData` (close 1007), not a bare
  ``ProtocolError`` (1002).

Negotiation is the library's (``process_request_params`` / ``process_response_params``);
the factories here only hand out this subclass.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from websockets.exceptions import ProtocolError
from websockets.extensions import permessage_deflate as pmd
from websockets.extensions.base import Extension
from websockets.frames import CONT, CTRL_OPCODES, Frame
from websockets.typing import ExtensionParameter

from wscompat.protocol.extensions.base import CorruptCompressedData

__all__ = [
    "ClientPerMessageDeflateFactory",
    "PerMessageDeflate",
    "ServerPerMessageDeflateFactory",
]


class PerMessageDeflate(pmd.PerMessageDeflate):
    def __init__(
        self,
        remote_no_context_takeover: bool,
        local_no_context_takeover: bool,
        remote_max_window_bits: int,
        local_max_window_bits: int,
        compress_settings: dict[Any, Any] | None = None,
        *,
        min_size: int = 0,
    ) -> None:
        super().__init__(
            remote_no_context_takeover,
            local_no_context_takeover,
            remote_max_window_bits,
            local_max_window_bits,
            compress_settings,
        )
        self.min_size = min_size
        self._plain = False  # the message being sent goes out uncompressed

    @classmethod
    def from_library(cls, ext: pmd.PerMessageDeflate, min_size: int) -> PerMessageDeflate:
        return cls(
            ext.remote_no_context_takeover,
            ext.local_no_context_takeover,
            ext.remote_max_window_bits,
            ext.local_max_window_bits,
            ext.compress_settings,
            min_size=min_size,
        )

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        try:
            frame = super().decode(frame, max_size=max_size)
        except ProtocolError as exc:
            if isinstance(exc.__cause__, zlib.error):
                raise CorruptCompressedData(f"corrupt compressed data: {exc.__cause__}") from exc
            raise
        decoder = getattr(self, "decoder", None)
        if frame.fin and decoder is not None and decoder.eof:
            # Whatever followed the BFINAL block in this message was ignored.
            self.decoder = zlib.decompressobj(wbits=-self.remote_max_window_bits)
        return frame

    def encode(self, frame: Frame) -> Frame:
        if frame.opcode in CTRL_OPCODES:
            return frame
        if frame.opcode is not CONT:
            self._plain = len(frame.data) < self.min_size
        if self._plain:
            return frame
        return super().encode(frame)


class ServerPerMessageDeflateFactory(pmd.ServerPerMessageDeflateFactory):
    """The library's server-side negotiation (RFC 7692 §7.1), handing out our subclass."""

    def __init__(self, *args: Any, min_size: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_size = min_size

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, ext = super().process_request_params(params, accepted_extensions)
        return response, PerMessageDeflate.from_library(ext, self.min_size)


class ClientPerMessageDeflateFactory(pmd.ClientPerMessageDeflateFactory):
    """The library's client-side negotiation, handing out our subclass."""

    def __init__(self, *args: Any, min_size: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_size = min_size

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> PerMessageDeflate:
        ext = super().process_response_params(params, accepted_extensions)
        return PerMessageDeflate.from_library(ext, self.min_size)
