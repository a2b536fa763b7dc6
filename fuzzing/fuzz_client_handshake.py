#!/usr/bin/env python3
"""Fuzz the client handshake of every draft against raw answers and against real server
answers with edits: only HandshakeRejected escapes, and an answer whose hixie-76
challenge answer or hybi accept key was changed is never accepted.
Usage: ``python fuzzing/fuzz_client_handshake.py [libFuzzer flags] [corpus dir]``."""

from __future__ import annotations

import random

import atheris
import support

with atheris.instrument_imports(include=support.INSTRUMENTED):
    from wscompat.drafts import Draft
    from wscompat.errors import HandshakeRejected
    from wscompat.protocol.handshake import ServerHandshake
    from wscompat.protocol.handshake.client import ClientHandshake

DRAFTS = list(Draft)


def answer_of(request: bytes) -> bytes:
    """What the server answers to ``request``, accepting the first subprotocol."""
    hs = ServerHandshake()
    hs.receive_data(request)
    offered = hs.offered_subprotocols if hs.request is not None else []
    hs.accept(offered[0] if offered else None)
    return hs.data_to_send()


def proof_span(draft: Draft, answer: bytes) -> tuple[int, int]:
    """Where the bytes that prove the answer are: the MD5 answer, the accept key, or
    (hixie-75, which has no proof) the literal prefix clients compared."""
    if draft is Draft.HIXIE76:
        return len(answer) - 16, len(answer)
    if draft is Draft.HIXIE75:
        return 0, 85
    start = answer.index(b"Sec-WebSocket-Accept: ") + len(b"Sec-WebSocket-Accept: ")
    return start, start + 28


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    draft = fdp.PickValueInList(DRAFTS)
    protocols = fdp.PickValueInList([(), ("chat",), ("a", "b")])
    client = ClientHandshake(draft, "127.0.0.1", "/f", port=8080, subprotocols=protocols,
                             rng=random.Random(fdp.ConsumeInt(4)))
    request = client.request()
    cuts = support.cut_points(fdp)
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:  # anything at all
        answer = bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
    elif mode == 1:  # a real answer with edits anywhere
        answer = support.mutate(fdp, answer_of(request))
    else:  # a real answer with one byte of its proof changed: must be refused
        tampered = bytearray(answer_of(request))
        start, end = proof_span(draft, bytes(tampered))
        at = fdp.ConsumeIntInRange(start, end - 1)
        tampered[at] ^= fdp.ConsumeIntInRange(1, 255)
        answer = bytes(tampered)
    try:
        for piece in support.split(answer, cuts):
            if client.receive_data(piece) is not None:
                break
    except HandshakeRejected as exc:
        if mode == 2 and draft is not Draft.HIXIE75 and exc.status != 101:
            raise AssertionError(f"a changed proof refused with {exc.status}") from exc
        return
    if mode == 2:
        raise AssertionError(f"{draft}: an answer with a changed proof was not refused")


if __name__ == "__main__":
    support.fuzz(TestOneInput)
