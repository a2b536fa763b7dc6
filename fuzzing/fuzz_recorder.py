#!/usr/bin/env python3
"""Fuzz the recorder's sans-I/O side (``wscompat.vectors.recording``). Any bytes both
ways, cut into any reads and interleaved in any order, with the handshake declared done
anywhere: nothing escapes, and the vector (if any) is JSON. A request with a secret
planted in a redacted header field (on a CRLF, bare LF or lone CR line, or an obs-fold
continuation) and in the query, answered by a server that repeats it (subprotocol,
location, an error body quoting it): the secret is nowhere in the vector, as text or hex.
The same over HTTP/2: header blocks on any stream, even ones kept as raw frames, with
the secret in redacted fields and the query.
Usage: ``python fuzzing/fuzz_recorder.py [libFuzzer flags] [corpus dir]``."""

from __future__ import annotations

import json
from typing import Any

import atheris
import hpack
import support

with atheris.instrument_imports(include=support.INSTRUMENTED):
    from wscompat.drafts import Draft
    from wscompat.options import ServerOptions
    from wscompat.vectors.h2record import PREFACE as H2_PREFACE
    from wscompat.vectors.recording import Recording, Redaction

DRAFTS = list(Draft)
SECRET = b"Zq7SECRETx9"
OPTIONS = [
    ServerOptions(),
    ServerOptions(record_frames=0),
    ServerOptions(record_frames=2, record_plain=True),
    ServerOptions(record_redact=("X-Mine", "Origin"), record_redact_query=False),
]
LINE_ENDS = [b"\r\n", b"\n", b"\r"]
BLANK_LINES = [b"\r\n\r\n", b"\n\n", b"\n\r\n", b"\r\n\n"]
VALUES = [b"%s", b"Bearer %s", b"session=%s; theme=dark", b"a, %s",
          b"base64url.bearer.authorization.k8s.io.%s, v4.channel.k8s.io"]
STATUSES = [101, 101, 400, 403, 426, None]


def clean(data: bytes, *, line: bool = False) -> bytes:
    """``data`` without the secret (nor, for a line, a line end in it)."""
    if line:
        data = data.replace(b"\r", b"").replace(b"\n", b"")
    while SECRET in data:
        data = data.replace(SECRET, b"")
    return data


def feed(fdp: Any, recording: Recording, pieces: list[tuple[str, bytes]]) -> None:
    """Feed each piece to its side; EOFs and the end of the handshake anywhere."""
    for kind, piece in pieces:
        if kind == "client":
            recording.received(piece)
        else:
            recording.sent(piece)
        choice = fdp.ConsumeIntInRange(0, 15)
        if choice == 0:
            recording.received_eof()
        elif choice == 1 and recording.draft is None:
            kept = len(recording.client.data)
            recording.opened(fdp.PickValueInList(DRAFTS), fdp.ConsumeIntInRange(0, kept))


def interleaved(fdp: Any, client: bytes, server: bytes) -> list[tuple[str, bytes]]:
    ours = [("client", p) for p in support.split(client, support.cut_points(fdp))]
    theirs = [("server", p) for p in support.split(server, support.cut_points(fdp))]
    pieces = []
    while ours or theirs:
        side = ours if ours and (not theirs or fdp.ConsumeBool()) else theirs
        pieces.append(side.pop(0))
    return pieces


def vector_of(recording: Recording, options: ServerOptions) -> str | None:
    recording.sent_eof()
    keep = recording.worth_keeping(plain=options.record_plain)
    vector = recording.vector(options)
    # Over HTTP/2, worth_keeping says "maybe": h2_vector decides from the decoded frames.
    h2 = bytes(recording.client.data[: len(H2_PREFACE)]) == H2_PREFACE
    if (vector is not None) != keep and not (h2 and keep):
        raise AssertionError(f"worth_keeping {keep}, vector {vector is not None}")
    if vector is None:
        return None
    text = json.dumps(vector, indent=2, ensure_ascii=False)
    if json.loads(text) != vector:
        raise AssertionError("the vector does not survive JSON")
    return text


def secret_kept_out(text: str | None) -> None:
    """The vector (if any) holds the planted secret in no form: text, or hex with or
    without spaces."""
    if text is None:
        return
    for form in (SECRET.decode(), SECRET.hex(" "), SECRET.hex()):
        if form in text:
            raise AssertionError(f"the secret is in the vector: {text[:3000]}")


def raw(fdp: Any, options: ServerOptions) -> None:
    client = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096))
    server = fdp.ConsumeBytes(fdp.remaining_bytes() // 2)
    recording = Recording(options.record_frames)
    feed(fdp, recording, interleaved(fdp, client, server))
    vector_of(recording, options)


def planted_request(fdp: Any, redaction: Redaction,
                    names: list[str]) -> tuple[bytes, bytes, dict[str, bytes]]:
    """A request with the secret in redacted fields (and the query); its request line, and
    the values planted by field."""
    path = bytes(b for b in clean(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24)))
                 if 0x21 <= b <= 0x7E)
    query = b"?k=" + SECRET + b"&" + clean(fdp.ConsumeBytes(4), line=True).replace(b" ", b"")
    line = b"GET /" + path + (query if redaction.query else b"") + b" HTTP/1.1"
    lines = [line, b"Host: h", b"Upgrade: websocket"]
    chosen: dict[str, bytes] = {}
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        if fdp.ConsumeBool():
            filler = clean(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 40)), line=True)
            lines.append(filler or b"X: y")
            continue
        picked = fdp.PickValueInList(names)
        name = picked.encode()
        name = bytes(c ^ 0x20 if chr(c).isalpha() and fdp.ConsumeBool() else c
                     for c in name) + fdp.PickValueInList([b"", b" ", b"\t"])
        value = chosen[picked] = fdp.PickValueInList(VALUES) % SECRET
        if fdp.ConsumeBool():  # obs-fold: the secret on a continuation line
            lines += [name + b": start", fdp.PickValueInList([b" ", b"\t", b"  "]) + value]
        else:
            lines.append(name + b":" + fdp.PickValueInList([b" ", b"", b"  "]) + value)
    head = b"".join(text + fdp.PickValueInList(LINE_ENDS) for text in lines[:-1])
    return head + lines[-1] + fdp.PickValueInList(BLANK_LINES), line, chosen


def planted_answer(fdp: Any, redaction: Redaction, request_line: bytes,
                   chosen: dict[str, bytes]) -> bytes:
    """A server's answer that repeats the secret where a server would: a 101's fields,
    or an error body quoting the request line and a planted origin."""
    status = fdp.PickValueInList(STATUSES)
    if status is None:
        return b""
    if status != 101:
        body = b"illegal request line: " + repr(request_line).encode() + b"\n"
        if "origin" in chosen:
            body += b"origin " + chosen["origin"] + b" not allowed\n"
        return (b"HTTP/1.1 %d Refused\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % (status, len(body))) + body
    fields = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket"]
    if redaction.query:
        fields.append(b"Sec-WebSocket-Location: ws://h/p?k=" + SECRET)
    if "sec-websocket-protocol" in redaction.headers:
        fields.append(b"Sec-WebSocket-Protocol: " + SECRET)
    if "origin" in redaction.headers:
        fields.append(b"Sec-WebSocket-Origin: " + SECRET)
    return b"\r\n".join(fields) + b"\r\n\r\n"


def planted(fdp: Any, options: ServerOptions) -> None:
    redaction = Redaction.of(options)
    names = sorted(redaction.headers)
    request, request_line, chosen = planted_request(fdp, redaction, names)
    answer = planted_answer(fdp, redaction, request_line, chosen)
    tail = clean(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)))
    frames = clean(fdp.ConsumeBytes(fdp.remaining_bytes()))
    recording = Recording(options.record_frames)
    pieces = [("client", p) for p in support.split(request, support.cut_points(fdp))]
    pieces += [("server", p) for p in support.split(answer, support.cut_points(fdp))]
    feed(fdp, recording, [*pieces, *interleaved(fdp, tail, frames)])
    secret_kept_out(vector_of(recording, options))


def h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") \
        + payload


def h2_planted(fdp: Any, options: ServerOptions) -> None:
    """An HTTP/2 client whose header blocks (on odd streams and on even ones, which the
    recorder keeps as raw frames) carry the secret in redacted fields and the query,
    literal or Huffman-coded, whole or cut into CONTINUATION frames, with DATA and
    cleaned garbage after: the secret is nowhere in the vector."""
    redaction = Redaction.of(options)
    names = sorted(redaction.headers)
    encoder = hpack.Encoder()
    client = bytearray(H2_PREFACE + h2_frame(4, 0, 0, b""))
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        stream = fdp.ConsumeIntInRange(1, 6)
        query = b"?k=" + SECRET if redaction.query else b""
        fields = [(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                  (b":scheme", b"http"), (b":path", b"/p" + query), (b":authority", b"h")]
        for _ in range(fdp.ConsumeIntInRange(0, 3)):
            name = fdp.PickValueInList(names).lower().encode()
            fields.append((name, fdp.PickValueInList(VALUES) % SECRET))
        block = encoder.encode(fields, huffman=fdp.ConsumeBool())
        end = 0x1 if fdp.ConsumeBool() else 0
        cut = fdp.ConsumeIntInRange(0, len(block))
        if cut == len(block):
            client += h2_frame(1, 0x4 | end, stream, block)
        else:
            client += h2_frame(1, end, stream, block[:cut])
            client += h2_frame(9, 0x4, stream, block[cut:])
        data = clean(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32)))
        if data:
            client += h2_frame(0, 0, stream, data)
    client += clean(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)))
    server = h2_frame(4, 0, 0, b"") + clean(fdp.ConsumeBytes(fdp.remaining_bytes()))
    recording = Recording(options.record_frames)
    feed(fdp, recording, interleaved(fdp, bytes(client), server))
    secret_kept_out(vector_of(recording, options))


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    options = fdp.PickValueInList(OPTIONS)
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:
        raw(fdp, options)
    elif mode == 1:
        planted(fdp, options)
    else:
        h2_planted(fdp, options)


if __name__ == "__main__":
    support.fuzz(TestOneInput)
