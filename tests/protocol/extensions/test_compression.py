"""Compression extensions through the sans-I/O core: negotiation both ways, round trips
between a client and a server framer, the limits, and the options that configure them.

The RFC 7692 examples and the negotiation cases a server answers are vectors
(``vectors/permessage-deflate/``, ``vectors/deflate-frame/``); this file covers what a
vector cannot say: the client side, every parameter combination on random messages,
and the exact limit boundaries.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import NegotiationError, PayloadTooBig
from websockets.extensions import ClientExtensionFactory, Extension
from websockets.frames import Frame, Opcode

from wscompat import ServerOptions
from wscompat.cli import _options, _parser
from wscompat.drafts import Draft
from wscompat.errors import HandshakeRejected
from wscompat.protocol.extensions import (
    ClientDeflateFrameFactory,
    ClientPerMessageDeflateFactory,
    CompressionSettings,
    DeflateFrame,
    PerMessageDeflate,
    accept_response,
    negotiate,
    offer_header,
)
from wscompat.protocol.framing import Closed, HybiFramer, Message
from wscompat.protocol.handshake import Phase, ServerHandshake
from wscompat.protocol.handshake.client import ClientHandshake

VECTORS = Path(__file__).parents[3] / "vectors"


def test_every_rfc7692_example_is_in_the_vectors() -> None:
    """RFC 7692 §7.2.3's frames: whole as the server sends them, or as payloads where
    only a client can send them."""
    corpus = " ".join(p.read_text() for p in (VECTORS / "permessage-deflate").glob("*.json"))
    for example in (
        "c1 07 f2 48 cd c9 c9 07 00",  # 7.2.3.1, both ways
        "f2 48 cd", "c9 c9 07 00",  # 7.2.3.1 fragmented, client to server
        "c1 05 f2 00 11 00 00",  # 7.2.3.2 with context takeover, both ways
        "c1 0b 00 05 00 fa ff 48 65 6c 6c 6f 00",  # 7.2.3.3, both ways
        "f3 48 cd c9 c9 07 00 00",  # 7.2.3.4 BFINAL, client to server
        "f2 48 05 00 00 00 ff ff ca c9 c9 07 00",  # 7.2.3.5, client to server
        "c1 01 00",  # 7.2.3.6, both ways
    ):
        assert example in corpus, example


# -- negotiation --------------------------------------------------------------------------

DEFAULT = CompressionSettings()


@pytest.mark.parametrize(
    ("offers", "answer"),
    [
        (["permessage-deflate; server_max_window_bits=12, permessage-deflate"],
         "permessage-deflate; server_max_window_bits=12"),
        (["deflate-frame, x-webkit-deflate-frame"], "deflate-frame"),
        (["x-webkit-deflate-frame; max_window_bits=8, deflate-frame"], "deflate-frame"),
        (["x-webkit-deflate-frame", "permessage-deflate; x=1", "permessage-deflate"],
         "permessage-deflate"),
        (["permessage-deflate; x=1", "x-webkit-deflate-frame"], "x-webkit-deflate-frame"),
        (["x-webkit-deflate-frame; no_context_takeover; no_context_takeover"], None),
        (["x-webkit-deflate-frame; max_window_bits"], None),
        (["", "   "], None),
        ([], None),
    ],
)
def test_negotiation_choices(offers: list[str], answer: str | None) -> None:
    assert negotiate(offers, DEFAULT).header == answer


def test_negotiation_builds_the_agreed_objects() -> None:
    agreement = negotiate(
        ["permessage-deflate; client_max_window_bits=9; server_no_context_takeover"], DEFAULT
    )
    (ext,) = agreement.extensions
    assert isinstance(ext, PerMessageDeflate)
    assert (ext.remote_max_window_bits, ext.local_no_context_takeover) == (9, True)
    df = negotiate(["x-webkit-deflate-frame; max_window_bits=11; no_context_takeover"],
                   CompressionSettings(window_bits=10)).extensions[0]
    assert isinstance(df, DeflateFrame)
    assert (df.window_bits, df.no_context_takeover) == (10, True)  # ours is the smaller


def test_modes() -> None:
    offers = ["x-webkit-deflate-frame, permessage-deflate"]
    assert negotiate(offers, CompressionSettings("permessage-deflate")).name == "permessage-deflate"
    assert negotiate(["x-webkit-deflate-frame"], CompressionSettings("permessage-deflate")).name \
        is None
    assert negotiate(offers, CompressionSettings("off")) == negotiate([], DEFAULT)


def handshake(draft: Draft, extra: tuple[tuple[str, str], ...], options: ServerOptions) -> bytes:
    """Run a client request of ``draft`` through the server handshake; its answer."""
    client = ClientHandshake(draft, "127.0.0.1", extra_headers=extra)
    server = ServerHandshake(options.handshake_settings())
    server.receive_data(client.request())
    assert server.phase is Phase.DECIDE
    server.accept()
    assert server.accepted is not None  # open: hixie-76's key3 came with the request
    out = server.data_to_send()
    assert bool(server.accepted.negotiated) == (b"Sec-WebSocket-Extensions" in out)
    return out


@pytest.mark.parametrize("draft", list(Draft))
def test_only_hybi_drafts_negotiate(draft: Draft) -> None:
    out = handshake(draft, (("Sec-WebSocket-Extensions", "permessage-deflate"),), ServerOptions())
    assert (b"Sec-WebSocket-Extensions: permessage-deflate\r\n" in out) is draft.caps.extensions


def test_options_validate_early() -> None:
    for bad in ({"compression": "gzip"}, {"compression_window_bits": 8},
                {"compression_window_bits": 16}, {"compression_level": 10},
                {"compression_memory_level": 0},
                {"compress_min_size": -1}):
        with pytest.raises(ValueError, match="compress"):
            ServerOptions(**bad)
    assert ServerOptions().handshake_settings().compression == CompressionSettings()


def test_cli_flags_map_to_options() -> None:
    args = _parser().parse_args([
        "serve", "--compression", "permessage-deflate", "--compress-min-size", "1KiB",
        "--compression-window-bits", "10", "--compression-level", "1",
        "--compression-memory-level", "5",
    ])
    assert _options(args).compression_settings() == CompressionSettings(
        "permessage-deflate", min_size=1024, window_bits=10, level=1, mem_level=5)
    defaults = _options(_parser().parse_args(["serve"]))
    assert defaults.compression_settings() == ServerOptions().compression_settings()
    off = _options(_parser().parse_args(["serve", "--compression", "off"]))
    assert off.compression == "off"


# -- the client side ------------------------------------------------------------------------


def test_client_offer_header() -> None:
    factories = [ClientPerMessageDeflateFactory(), ClientDeflateFrameFactory(
        max_window_bits=10, no_context_takeover=True)]
    assert offer_header(factories) == (
        "permessage-deflate; client_max_window_bits, "
        "x-webkit-deflate-frame; max_window_bits=10; no_context_takeover"
    )
    assert offer_header([]) is None


@pytest.mark.parametrize(
    "answer",
    [
        ["x-webkit-deflate-frame"],  # not offered
        ["permessage-deflate, permessage-deflate"],
        ["permessage-deflate", "deflate-frame"],  # two extensions on RSV1
        ["permessage-deflate; server_max_window_bits=16"],
        ["permessage-deflate;"],  # malformed
    ],
)
def test_client_refuses_bad_answers(answer: list[str]) -> None:
    factories = [ClientPerMessageDeflateFactory(), ClientDeflateFrameFactory("deflate-frame")]
    with pytest.raises(NegotiationError):
        accept_response(answer, factories)


def test_deflate_frame_answer_binds_the_clients_compressor() -> None:
    (ext,) = accept_response(["x-webkit-deflate-frame; max_window_bits=9; no_context_takeover"],
                             [ClientDeflateFrameFactory()])
    assert isinstance(ext, DeflateFrame)
    assert (ext.window_bits, ext.no_context_takeover) == (9, True)


def test_client_handshake_fails_an_unoffered_extension() -> None:
    client = ClientHandshake(Draft.RFC6455, "127.0.0.1")
    server = ServerHandshake()
    server.receive_data(client.request())
    server.accept(extensions="permessage-deflate")
    with pytest.raises(HandshakeRejected) as info:
        client.receive_data(server.data_to_send())
    assert info.value.status == 101


# -- round trips -----------------------------------------------------------------------------

CONFIGS: dict[str, tuple[Sequence[ClientExtensionFactory], CompressionSettings]] = {
    "pmd": ([ClientPerMessageDeflateFactory()], DEFAULT),
    "pmd-no-context-both": (
        [ClientPerMessageDeflateFactory(server_no_context_takeover=True,
                                        client_no_context_takeover=True)], DEFAULT),
    "pmd-windows-9-10": (
        [ClientPerMessageDeflateFactory(server_max_window_bits=10, client_max_window_bits=9)],
        DEFAULT),
    "pmd-server-window-9-min-size": (
        [ClientPerMessageDeflateFactory()], CompressionSettings(window_bits=9, min_size=100)),
    "pmd-level-0": ([ClientPerMessageDeflateFactory()], CompressionSettings(level=0)),
    "deflate-frame": ([ClientDeflateFrameFactory()], DEFAULT),
    "deflate-frame-no-context": ([ClientDeflateFrameFactory("deflate-frame",
                                                             no_context_takeover=True,
                                                             max_window_bits=9)], DEFAULT),
    "deflate-frame-min-size": ([ClientDeflateFrameFactory()], CompressionSettings(min_size=50)),
}


def connected(
    name: str, draft: Draft = Draft.RFC6455, max_size: int | None = None
) -> tuple[HybiFramer, HybiFramer, CompressionSettings]:
    """A server and a client framer agreed on ``CONFIGS[name]`` by the real negotiation."""
    factories, server_settings = CONFIGS[name]
    offer = offer_header(factories)
    agreement = negotiate([offer] if offer else [], server_settings)
    assert agreement.header is not None, name
    client_exts: tuple[Extension, ...] = accept_response([agreement.header], factories)
    server = HybiFramer(draft, max_message_size=max_size, extensions=list(agreement.extensions))
    client = HybiFramer(draft, max_message_size=max_size, client=True,
                        extensions=list(client_exts))
    return server, client, server_settings


def send(sender: HybiFramer, receiver: HybiFramer, message: str | bytes, cut: int) -> bytes:
    if isinstance(message, str):
        sender.send_text(message)
    else:
        sender.send_binary(message)
    wire = sender.data_to_send()
    cut %= len(wire) + 1
    receiver.receive_data(wire[:cut])
    receiver.receive_data(wire[cut:])
    return wire


compressible = st.builds(lambda unit, n: unit * n, st.text(min_size=1, max_size=8),
                         st.integers(0, 3000))
messages = st.one_of(st.text(max_size=500), st.binary(max_size=2000), compressible,
                     compressible.map(str.encode))


@pytest.mark.parametrize("name", list(CONFIGS))
@settings(max_examples=25, deadline=None)
@given(batch=st.lists(st.tuples(messages, st.booleans(), st.integers(0, 10**6)),
                      min_size=1, max_size=8))
def test_round_trips_both_ways(name: str, batch: list[tuple[str | bytes, bool, int]]) -> None:
    server, client, server_settings = connected(name)
    for message, from_client, cut in batch:
        sender, receiver = (client, server) if from_client else (server, client)
        wire = send(sender, receiver, message, cut)
        assert receiver.events() == [Message(message)]
        size = len(message.encode() if isinstance(message, str) else message)
        if not from_client:  # RSV1 exactly when the server chose to compress
            assert bool(wire[0] & 0x40) == (size >= server_settings.min_size)


@pytest.mark.parametrize("name", ["pmd", "deflate-frame"])
def test_compressible_data_shrinks_on_the_wire(name: str) -> None:
    server, client, _ = connected(name)
    message = "wscompat " * 10000
    assert len(send(client, server, message, 0)) < len(message) // 20
    assert len(send(server, client, message, 0)) < len(message) // 20
    assert server.events() == client.events() == [Message(message)]


@pytest.mark.parametrize("draft", [Draft.HYBI07, Draft.HYBI08])
@pytest.mark.parametrize("name", ["pmd", "deflate-frame"])
def test_hybi_07_and_08_framing_carries_compression(name: str, draft: Draft) -> None:
    server, client, _ = connected(name, draft)
    send(client, server, "Hello " * 50, 3)
    assert server.events() == [Message("Hello " * 50)]


# -- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pmd", "deflate-frame"])
def test_the_limit_counts_inflated_bytes_exactly(name: str) -> None:
    server, client, _ = connected(name, max_size=1000)
    send(client, server, b"a" * 1000, 0)
    assert server.events() == [Message(b"a" * 1000)]
    send(client, server, b"a" * 1001, 0)
    (event,) = server.events()
    assert isinstance(event, Closed) and event.code == 1009


def test_deflate_frame_inflates_no_more_than_the_limit() -> None:
    payload = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = payload.compress(bytes(10**7)) + payload.flush(zlib.Z_SYNC_FLUSH)
    ext = DeflateFrame()
    with pytest.raises(PayloadTooBig):
        ext.decode(Frame(Opcode.BINARY, data[:-4], rsv1=True), max_size=4096)
    with pytest.raises(PayloadTooBig):
        DeflateFrame().decode(Frame(Opcode.BINARY, data[:-4], rsv1=True), max_size=0)
    empty = DeflateFrame().decode(Frame(Opcode.BINARY, b"\x00", rsv1=True), max_size=0)
    assert empty.data == b"" and not empty.rsv1


def test_min_size_keeps_a_plain_first_fragment_plain_to_the_end() -> None:
    ext = PerMessageDeflate(False, False, 15, 15, min_size=10)
    first = ext.encode(Frame(Opcode.TEXT, b"abc", fin=False))
    rest = ext.encode(Frame(Opcode.CONT, b"x" * 1000))
    assert (first.rsv1, bytes(rest.data)) == (False, b"x" * 1000)
    big = ext.encode(Frame(Opcode.TEXT, b"y" * 1000, fin=False))
    assert big.rsv1 and len(big.data) < 100
