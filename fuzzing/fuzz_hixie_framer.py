#!/usr/bin/env python3
"""Fuzz the hixie-75/76 framer: receiving never raises, yields only messages and one
documented close (1000, 1006, 1007 or 1009) and does not depend on how the bytes are cut
into reads; what it reads as text it can send back.
Usage: ``python fuzzing/fuzz_hixie_framer.py [libFuzzer flags] [corpus dir]``."""

from __future__ import annotations

import atheris
import support

with atheris.instrument_imports(include=support.INSTRUMENTED):
    from wscompat.drafts import Draft
    from wscompat.protocol.framing import Closed, Event, HixieFramer, Message, State

CLOSE_CODES = {1000, 1006, 1007, 1009}


def run(draft: Draft, limit: int | None, pieces: list[bytes]) -> list[Event]:
    framer = HixieFramer(draft, max_message_size=limit)
    for piece in pieces:
        framer.receive_data(piece)
    events = framer.events()
    for event in events:
        if isinstance(event, Message) and framer.state is State.OPEN:
            assert isinstance(event.data, str)
            framer.send_text(event.data)  # an echo server's answer must be possible
    framer.receive_eof()
    return events + framer.events()


def without_reasons(events: list[Event]) -> list[object]:
    return [e.code if isinstance(e, Closed) else e for e in events]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    draft = fdp.PickValueInList([Draft.HIXIE75, Draft.HIXIE76])
    limit = fdp.PickValueInList([None, 16, 256, 65536])
    cuts = support.cut_points(fdp)
    stream = bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
    whole = run(draft, limit, [stream])
    closes = [e for e in whole if isinstance(e, Closed)]
    if not all(isinstance(e, Message | Closed) for e in whole) or len(closes) != 1 or (
        closes[0] is not whole[-1] or closes[0].code not in CLOSE_CODES
    ):
        raise AssertionError(f"undocumented events {whole!r}")
    pieces = run(draft, limit, support.split(stream, cuts))
    # Close reasons are only logged on hixie, and say where the limit was met.
    if without_reasons(pieces) != without_reasons(whole):
        raise AssertionError(f"whole {whole!r}, in pieces {pieces!r}")


if __name__ == "__main__":
    support.fuzz(TestOneInput)
