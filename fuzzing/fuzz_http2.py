#!/usr/bin/env python3
"""Fuzz the HTTP/2 session (RFC 8441) with raw bytes after a client's preface and with
mutated client exchanges: nothing escapes ``receive_data`` or the driver's calls, only
the documented events come out (one SessionEnded at most, last, with an HTTP/2 error
code), an ended session reads nothing more, what it writes is whole frames, and, read
without being answered, the session reports the same events however the input is cut,
as long as it does not end. ``h2`` reports a read's events only once it has processed
all of its frames, so what the session does in answer (a refusal, a reset) lands after
the whole read or between its pieces: whether the connection ends can depend on the
cuts (three requests in one read exceed a limit of two streams; read apart, the first,
refused at once, is closed before the third arrives), and so can what is written (a
refusal sent before or after a SETTINGS frame that shrank the window).
Usage: ``python fuzzing/fuzz_http2.py [libFuzzer flags] [corpus dir]``."""

from __future__ import annotations

from typing import Any

import atheris
import support

# h2's state machines decide which of the session's paths a frame reaches, so its
# coverage guides the fuzzer too; its HPACK and frame parsers would only slow it down.
with atheris.instrument_imports(include=[*support.INSTRUMENTED, "h2"]):
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.errors import ErrorCodes
    from h2.settings import SettingCodes

    from wscompat.protocol.connection import ConnectionSettings, Phase
    from wscompat.protocol.extensions import CompressionSettings
    from wscompat.protocol.framing import Message
    from wscompat.protocol.handshake import HandshakeSettings
    from wscompat.protocol.http2 import (
        PREFACE,
        DataArrived,
        H2Event,
        H2ServerSession,
        H2Settings,
        RequestReceived,
        SessionEnded,
        StreamEnded,
        StreamReset,
        WindowOpened,
    )

SETTINGS = [
    ConnectionSettings(),
    ConnectionSettings(
        handshake=HandshakeSettings(plain_paths=frozenset({"/healthz"}),
                                    compression=CompressionSettings(),
                                    origins=("https://example.com",)),
        subprotocols=frozenset({"chat"}), max_message_size=256),
]
LIMITS = [H2Settings(), H2Settings(max_streams=2, max_header_list=512, stream_window=1024,
                                   flood_limit=3)]
EVENTS = (RequestReceived, DataArrived, StreamEnded, StreamReset, WindowOpened, SessionEnded)
CODES = {int(code) for code in ErrorCodes}
CLIENT_GOAWAY = "client sent GOAWAY"
"""The one end whose code is the client's, any number (RFC 9113 §7: unknown codes are
not an error)."""
SETTINGS_FRAME = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
REQUEST = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
           (":path", "/chat"), (":authority", "example.com"), ("sec-websocket-version", "13"),
           ("sec-websocket-protocol", "chat"), ("origin", "https://example.com"),
           ("sec-websocket-extensions", "permessage-deflate")]


def _masked(opcode: int, payload: bytes) -> bytes:
    key = b"\x01\x02\x03\x04"
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + key
            + bytes(b ^ key[i % 4] for i, b in enumerate(payload)))


def _exchanges() -> list[bytes]:
    """What real clients send, as one byte string each, from the preface on."""
    out = []
    for variant in range(3):
        client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        client.initiate_connection()
        client.send_headers(1, REQUEST)
        client.send_headers(3, [(":method", "GET"), (":scheme", "https"),
                                (":path", "/healthz"), (":authority", "example.com")],
                            end_stream=True)
        if variant == 1:
            client.send_headers(5, REQUEST[:6])
            client.ping(b"12345678")
            client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 100})
        client.send_data(1, _masked(1, b"hello") + _masked(9, b"p"), pad_length=variant * 4)
        client.increment_flow_control_window(1000)
        if variant == 2:
            client.reset_stream(1)
            client.close_connection()
        else:
            client.send_data(1, _masked(8, b"\x03\xe8bye"), end_stream=True)
        out.append(client.data_to_send())
    return out


EXCHANGES = _exchanges()


def input_from(fdp: Any) -> bytes:
    """Raw bytes after a preface and an empty SETTINGS, or a real exchange with edits."""
    if fdp.ConsumeBool():
        return PREFACE + SETTINGS_FRAME + bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
    exchange = fdp.PickValueInList(EXCHANGES)
    edited = support.mutate(fdp, exchange[len(PREFACE):], rounds=6)
    return PREFACE + edited + bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)))


def check(events: list[H2Event], session: H2ServerSession, was_ended: bool) -> None:
    if was_ended and events:
        raise AssertionError(f"events after the end: {events!r}")
    for index, event in enumerate(events):
        if not isinstance(event, EVENTS):
            raise AssertionError(f"undocumented event {event!r}")  # noqa: TRY004
        if isinstance(event, SessionEnded) and (
                index != len(events) - 1 or not session.ended
                or (event.code not in CODES and event.reason != CLIENT_GOAWAY)):
            raise AssertionError(f"a misplaced end {events!r}")
    if session.ended and not was_ended and not isinstance(events[-1], SessionEnded):
        raise AssertionError(f"ended without a SessionEnded: {events!r}")


def answer(session: H2ServerSession, events: list[H2Event]) -> None:
    """What the I/O layer does: decide, answer, take, echo, end."""
    for event in events:
        if isinstance(event, RequestReceived):
            stream = event.stream
            if stream.phase is Phase.DECIDE:
                stream.accept(stream.choose_subprotocol(stream.upgrade_request()))
            elif stream.phase is Phase.PLAIN:
                stream.answer_health(serving=True)
        elif isinstance(event, DataArrived | StreamEnded):
            stream = event.stream
            data = session.take(stream, 1 << 20)
            if stream.framer is None:
                continue
            stream.receive_data(data)
            if stream.ended:
                stream.receive_eof()
            for message in stream.events():
                if not isinstance(message, Message) or stream.phase is not Phase.OPEN:
                    continue
                if isinstance(message.data, str):
                    stream.send_text(message.data)
                else:
                    stream.send_binary(message.data)
            out = stream.data_to_send()
            if stream.alive and not stream.end_queued and (out or stream.eof_wanted):
                session.send(stream, out, end=stream.eof_wanted)


def check_written(data: bytes) -> None:
    """What the session writes is whole frames, none larger than a peer accepts by
    default."""
    pos = 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        if length > 16384 or pos + 9 + length > len(data):
            raise AssertionError(f"a broken frame at {pos} in {data!r}")
        pos += 9 + length


def run(data: bytes, cuts: list[int], settings: int, *,
        active: bool) -> tuple[bool, list[tuple[Any, ...]]]:
    session = H2ServerSession(SETTINGS[settings], LIMITS[settings], secure=settings == 1)
    told: list[tuple[Any, ...]] = []
    for i, piece in enumerate(support.split(data, cuts)):
        was_ended = session.ended
        events = session.receive_data(piece, 0.5 * i if active else 0.0)
        check(events, session, was_ended)
        if active:
            answer(session, events)
        told += [(type(e).__name__, getattr(getattr(e, "stream", None), "stream_id", None),
                  getattr(e, "code", None)) for e in events if not isinstance(e, WindowOpened)]
        check_written(session.data_to_send())
    if session.ended and session.receive_data(b"\x00" * 9, 99.0) != []:
        raise AssertionError("read after the end")
    return session.ended, told


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    settings = fdp.ConsumeIntInRange(0, 1)
    cuts = support.cut_points(fdp)
    payload = input_from(fdp)
    run(payload, cuts, settings, active=True)
    whole = run(payload, [], settings, active=False)
    pieces = run(payload, cuts, settings, active=False)
    if not whole[0] and not pieces[0] and whole != pieces:
        raise AssertionError(f"whole {whole!r}, in pieces {pieces!r}")


if __name__ == "__main__":
    support.fuzz(TestOneInput)
