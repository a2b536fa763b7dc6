#!/usr/bin/env python3
"""Fuzz the server handshake state machine with raw bytes and with mutated requests of
every draft: receiving never raises, every outcome is a documented one (an HTTP error
the machine knows, a draft's 101, the policy file, silence), and the outcome does not
depend on how the bytes are cut into reads.
Usage: ``python fuzzing/fuzz_server_handshake.py [libFuzzer flags] [corpus dir]``."""

from __future__ import annotations

import random
from typing import Any

import atheris
import support

with atheris.instrument_imports(include=support.INSTRUMENTED):
    from wscompat.drafts import Draft
    from wscompat.options import ServerOptions
    from wscompat.protocol.handshake import HandshakeSettings, Phase, ServerHandshake
    from wscompat.protocol.handshake.client import ClientHandshake
    from wscompat.protocol.handshake.hixie75 import PREFIX
    from wscompat.protocol.policy import DEFAULT_POLICY, policy_response

DRAFTS = list(Draft)
STATUSES = {400, 403, 405, 426, 431}
POLICY = policy_response(DEFAULT_POLICY)
Outcome = tuple[Phase, bytes, int | None, Draft | None, bytes]


def settings_from(fdp: Any) -> HandshakeSettings:
    mask = fdp.ConsumeIntInRange(1, 2 ** len(DRAFTS) - 1)
    return HandshakeSettings(
        drafts=frozenset(d for i, d in enumerate(DRAFTS) if mask >> i & 1),
        max_head_size=fdp.PickValueInList([16384, 1024, 128]),
        max_headers=fdp.PickValueInList([100, 3]),
        allow_missing_origin=fdp.ConsumeBool(),
        origins=fdp.PickValueInList([None, ("http://localhost",), ("http://*",), ("x",)]),
        hixie76_early_head=fdp.ConsumeBool(),
        compression=ServerOptions().compression_settings() if fdp.ConsumeBool() else None,
    )


def request_from(fdp: Any) -> bytes:
    """Raw bytes, or a real client's request of some draft with edits and a tail."""
    if fdp.ConsumeBool():
        return bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
    draft = fdp.PickValueInList(DRAFTS)
    protocols = fdp.PickValueInList([(), ("chat",), ("a", "b")])
    extra = fdp.PickValueInList([(), (("Sec-WebSocket-Extensions", "permessage-deflate"),),
                                 (("Sec-WebSocket-Extensions", "x-webkit-deflate-frame"),)])
    client = ClientHandshake(draft, "127.0.0.1", "/f", port=8080, subprotocols=protocols,
                             extra_headers=extra, rng=random.Random(fdp.ConsumeInt(4)))
    request = support.mutate(fdp, client.request())
    return request + bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24)))


def run(settings: HandshakeSettings, pieces: list[bytes]) -> Outcome:
    hs = ServerHandshake(settings)
    out = after = b""
    for piece in pieces:
        if hs.phase in (Phase.OPEN, Phase.CLOSE, Phase.TLS):
            after += piece  # no longer the handshake's: the I/O layer reads it on
            continue
        hs.receive_data(piece)
        if hs.phase is Phase.DECIDE:
            offered = hs.offered_subprotocols
            hs.accept(offered[0] if offered else None)
        out += hs.data_to_send()
    accepted = hs.accepted
    return (hs.phase, out, hs.rejection.status if hs.rejection else None,
            accepted.draft if accepted else None, accepted.leftover + after if accepted else b"")


def check(outcome: Outcome) -> None:
    phase, out, status, draft, _ = outcome
    if status is not None:
        ok = phase is Phase.CLOSE and status in STATUSES and out.startswith(
            f"HTTP/1.1 {status} ".encode())
    elif phase is Phase.OPEN:
        ok = draft is not None and out.startswith(
            PREFIX if draft is Draft.HIXIE75 else
            b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n" if draft is Draft.HIXIE76 else
            b"HTTP/1.1 101 Switching Protocols\r\n")
    elif phase is Phase.CLOSE:
        ok = out in (b"", POLICY)
    elif phase is Phase.KEY3:
        ok = out == b"" or out.startswith(b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n")
    else:
        ok = phase in (Phase.SNIFF, Phase.HEAD, Phase.TLS) and out == b""
    if not ok:
        raise AssertionError(f"undocumented outcome {outcome!r}")


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    settings = settings_from(fdp)
    cuts = support.cut_points(fdp)
    request = request_from(fdp)
    whole = run(settings, [request])
    check(whole)
    pieces = run(settings, support.split(request, cuts))
    if pieces != whole:
        raise AssertionError(f"whole {whole!r}, in pieces {pieces!r}")


if __name__ == "__main__":
    support.fuzz(TestOneInput)
