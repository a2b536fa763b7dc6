"""Choosing a compression extension from a client's ``Sec-WebSocket-Extensions`` offers,
and, for wscompat's own client, checking the server's answer.

The server rules (RFC 7692 §5 and §7.1; docs/compression.md):

* every ``Sec-WebSocket-Extensions`` header is read, in order, each possibly listing
  several offers; a header that does not parse is ignored as a whole (the connection
  opens uncompressed rather than failing);
* permessage-deflate wins over x-webkit-deflate-frame / deflate-frame whatever the
  client's order, because both use RSV1 and the standard one is better specified;
  within one extension the client's first acceptable offer wins;
* an offer is declined, and the next one tried, when it has an unknown or repeated
  parameter or an invalid value, or asks for an 8-bit server window (zlib cannot
  compress with one);
* when nothing is accepted, no ``Sec-WebSocket-Extensions`` header is sent at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from websockets.exceptions import InvalidHeader, NegotiationError
from websockets.extensions.base import (
    ClientExtensionFactory,
    Extension,
    ServerExtensionFactory,
)
from websockets.headers import build_extension, parse_extension
from websockets.typing import ExtensionHeader

from wscompat.protocol.extensions.deflate_frame import (
    DEFLATE_FRAME_NAMES,
    ServerDeflateFrameFactory,
)
from wscompat.protocol.extensions.permessage_deflate import ServerPerMessageDeflateFactory

__all__ = [
    "COMPRESSION_MODES",
    "Agreement",
    "CompressionMode",
    "CompressionSettings",
    "accept_response",
    "negotiate",
    "offer_header",
    "parse_offers",
]

CompressionMode = Literal["permessage-deflate+deflate-frame", "permessage-deflate", "off"]
COMPRESSION_MODES: tuple[CompressionMode, ...] = (
    "permessage-deflate+deflate-frame", "permessage-deflate", "off"
)


@dataclass(frozen=True)
class CompressionSettings:
    """What the server accepts, and how it compresses.

    ``window_bits`` bounds the server's LZ77 window (9 to 15) and ``mem_level`` sizes
    its hash table (1 to 9): the compressor holds ``2**(window_bits + 2) +
    2**(mem_level + 9)`` bytes, 256 KiB at zlib's defaults of 15 and 8. ``level`` is
    zlib's (0 stores, 1 is fastest, 9 smallest). Messages (frames, for deflate-frame)
    shorter than ``min_size`` bytes go out plain.
    """

    mode: CompressionMode = "permessage-deflate+deflate-frame"
    min_size: int = 0
    window_bits: int = 15
    level: int = 6
    mem_level: int = 8

    def __post_init__(self) -> None:
        if self.mode not in COMPRESSION_MODES:
            modes = ", ".join(COMPRESSION_MODES)
            raise ValueError(f"compression must be one of {modes}, not {self.mode!r}")
        if not 9 <= self.window_bits <= 15:
            raise ValueError("compression_window_bits must be between 9 and 15")
        if not 0 <= self.level <= 9:
            raise ValueError("compression_level must be between 0 and 9")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("compression_memory_level must be between 1 and 9")
        if self.min_size < 0:
            raise ValueError("compress_min_size must not be negative")

    def factories(self) -> list[list[ServerExtensionFactory]]:
        """Server factories in groups of decreasing preference, built once: every
        negotiation of a server uses the same factories (they keep no per-connection
        state; each accepted offer gets a new extension object)."""
        return self._factories

    @cached_property
    def _factories(self) -> list[list[ServerExtensionFactory]]:
        settings = {"level": self.level, "memLevel": self.mem_level}
        groups: list[list[ServerExtensionFactory]] = []
        if self.mode != "off":
            groups.append([ServerPerMessageDeflateFactory(
                server_max_window_bits=None if self.window_bits == 15 else self.window_bits,
                compress_settings=settings,
                min_size=self.min_size,
            )])
        if self.mode == "permessage-deflate+deflate-frame":
            groups.append([
                ServerDeflateFrameFactory(name, window_bits=self.window_bits,
                                          min_size=self.min_size, compress_settings=settings)
                for name in DEFLATE_FRAME_NAMES
            ])
        return groups


@dataclass(frozen=True)
class Agreement:
    """The outcome: the response header's value (None: send none) and the extension
    objects the connection's framer runs (empty when nothing was agreed)."""

    header: str | None = None
    extensions: tuple[Extension, ...] = ()

    @property
    def name(self) -> str | None:
        return str(self.extensions[0].name) if self.extensions else None


def parse_offers(values: Iterable[str]) -> list[ExtensionHeader]:
    """Every offer in the headers' values, in order; a value that does not parse adds none."""
    offers: list[ExtensionHeader] = []
    for value in values:
        try:
            offers.extend(parse_extension(value))
        except InvalidHeader:
            continue
    return offers


def negotiate(values: Iterable[str], settings: CompressionSettings) -> Agreement:
    """Pick at most one compression extension from the offers in ``values``."""
    offers = parse_offers(values)
    for group in settings.factories():
        for name, params in offers:
            for factory in group:
                if factory.name != name:
                    continue
                try:
                    response, ext = factory.process_request_params(params, [])
                except NegotiationError:
                    continue
                return Agreement(build_extension([(name, response)]), (ext,))
    return Agreement()


# -- client side -------------------------------------------------------------------------


def offer_header(factories: Sequence[ClientExtensionFactory]) -> str | None:
    """The request's ``Sec-WebSocket-Extensions`` value, in the given order of preference."""
    if not factories:
        return None
    return build_extension([(f.name, list(f.get_request_params())) for f in factories])


def accept_response(
    values: Iterable[str], factories: Sequence[ClientExtensionFactory]
) -> tuple[Extension, ...]:
    """The extensions the server's answer enables; NegotiationError if the answer is not
    one a client could accept (malformed, an extension not offered, bad parameters)."""
    accepted: list[Extension] = []
    for value in values:
        try:
            answers = parse_extension(value)
        except InvalidHeader as exc:
            raise NegotiationError(str(exc)) from None
        for name, params in answers:
            factory = next((f for f in factories if f.name == name), None)
            if accepted:  # both compression extensions use RSV1: one at most
                raise NegotiationError("the server enabled more than one extension")
            if factory is None:
                raise NegotiationError(f"the server chose {name}, which was not offered")
            accepted.append(factory.process_response_params(params, accepted))
    return tuple(accepted)
