#!/usr/bin/env python3
"""Fuzz the hybi-07/08/RFC 6455 framer, server and client side, plain or with
permessage-deflate or x-webkit-deflate-frame agreed: receiving never raises, yields only
messages, pongs and one documented close, and does not depend on how the bytes are cut
into reads. Masked frames can be built from the input, so that the fuzzer reaches past
the framing rules into message assembly, UTF-8 checks and inflation. Relayed as a
gateway relays (whole data frames taken, passed to the other side, parsed at the far
end), the same bytes give the same events.
Usage: ``python fuzzing/fuzz_hybi_framer.py [libFuzzer flags] [corpus dir]``."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import atheris
import support

with atheris.instrument_imports(include=support.INSTRUMENTED):
    from wscompat.drafts import Draft
    from wscompat.options import ServerOptions
    from wscompat.protocol.framing import Closed, Event, HybiFramer, Message, Pong
    from wscompat.protocol.handshake import ServerHandshake
    from wscompat.protocol.handshake.client import ClientHandshake

SERVER_CODES = {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1009}
OFFERS = [None, "permessage-deflate", "permessage-deflate; client_no_context_takeover",
          "x-webkit-deflate-frame"]


def agreed(draft: Draft, offer: str | None) -> Sequence[Any]:
    """The server's extension objects for ``offer``, through the real negotiation."""
    if offer is None:
        return ()
    client = ClientHandshake(draft, "h", extra_headers=(("Sec-WebSocket-Extensions", offer),),
                             rng=random.Random(0))
    hs = ServerHandshake(ServerOptions().handshake_settings())
    hs.receive_data(client.request())
    hs.accept()
    assert hs.accepted is not None and hs.accepted.negotiated, offer
    return hs.accepted.negotiated


def frames_from(fdp: Any) -> bytes:
    """Client frames: any opcode, FIN and RSV bits, payload of the input, masked."""
    out = b""
    for _ in range(fdp.ConsumeIntInRange(1, 6)):
        first = fdp.ConsumeIntInRange(0, 255)
        payload = bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)))
        n = len(payload)
        length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        key = b"\x01\x02\x03\x04"
        out += bytes([first]) + length + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return out


def framer_for(draft: Draft, client: bool, offer: str | None, limit: int | None
               ) -> HybiFramer:
    """The framer under test: a client's, or a server's with what ``offer`` agrees."""
    extensions = [] if client else list(agreed(draft, offer))
    return HybiFramer(draft, max_message_size=limit, client=client, extensions=extensions)


def run(draft: Draft, client: bool, offer: str | None, limit: int | None,
        pieces: list[bytes]) -> list[Event]:
    framer = framer_for(draft, client, offer, limit)
    for piece in pieces:
        framer.receive_data(piece)
    framer.data_to_send()
    events = framer.events()
    if framer.eof_wanted and not any(isinstance(e, Closed) for e in events):
        raise AssertionError("TCP is to be closed, but the close was not reported")
    framer.receive_eof()
    return events + framer.events()


def run_relayed(draft: Draft, client: bool, offer: str | None, limit: int | None,
                pieces: list[bytes]) -> list[Event]:
    """As run(), but as a gateway reads: each read's leading whole data frames are taken
    by ``whole_frames()``, passed to a framer of the other side (``pass_frames()``:
    unchanged, or masked anew), and what that one sends is parsed by a framer of this
    side, as the peer at the end would; the rest of the read is parsed as usual."""
    framer = framer_for(draft, client, offer, limit)
    events: list[Event] = []
    for read in pieces:
        end, count = framer.whole_frames(read)
        rest = read
        if count:
            events += framer.events()
            other = HybiFramer(draft, client=not client)
            if not other.pass_frames(read[:end]):
                raise AssertionError("the other side refused frames whole_frames() took")
            peer = HybiFramer(draft, max_message_size=limit, client=client)
            peer.receive_data(b"".join(other.chunks_to_send()))
            relayed = peer.events()
            if len(relayed) != count or not all(isinstance(e, Message) for e in relayed):
                raise AssertionError(f"{count} frames taken, relayed as {relayed!r}")
            events += relayed
            rest = read[end:]
        if rest:
            framer.receive_data(rest)
    framer.data_to_send()
    events += framer.events()
    framer.receive_eof()
    return events + framer.events()


def without_reasons(events: list[Event]) -> list[object]:
    return [(e.code, e.by_peer) if isinstance(e, Closed) else e for e in events]


def same_outcome(whole: list[Event], pieces: list[Event]) -> bool:
    """Equal up to close reasons, except that a 1007 (UTF-8, checked after websockets has
    parsed the whole read) may give way to an error or close in a later frame of the
    same read; the messages delivered are the same either way."""
    a, b = without_reasons(whole), without_reasons(pieces)
    return a == b or (a[:-1] == b[:-1] and (1007, False) in (a[-1], b[-1]))


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    draft = fdp.PickValueInList([Draft.HYBI07, Draft.HYBI08, Draft.RFC6455])
    client = fdp.ConsumeBool()
    offer = fdp.PickValueInList(OFFERS)
    limit = fdp.PickValueInList([None, 64, 4096])
    cuts = support.cut_points(fdp)
    built = not client and fdp.ConsumeBool()
    stream = frames_from(fdp) if built else bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
    whole = run(draft, client, offer, limit, [stream])
    closes = [e for e in whole if isinstance(e, Closed)]
    if not all(isinstance(e, Message | Pong | Closed) for e in whole) or len(closes) != 1 or (
        closes[0] is not whole[-1]
        or not (closes[0].code in SERVER_CODES or (closes[0].by_peer
                                                   and 1000 <= closes[0].code < 5000))
    ):
        raise AssertionError(f"undocumented events {whole!r}")
    pieces = run(draft, client, offer, limit, support.split(stream, cuts))
    if not same_outcome(whole, pieces):
        raise AssertionError(f"whole {whole!r}, in pieces {pieces!r}")
    relayed = run_relayed(draft, client, offer, limit, support.split(stream, cuts))
    if without_reasons(relayed) != without_reasons(pieces):
        raise AssertionError(f"parsed {pieces!r}, relayed {relayed!r}")


if __name__ == "__main__":
    support.fuzz(TestOneInput)
