"""Hostile request heads against the sans-I/O handshake: oversized hixie-76 keys and
fields that would be echoed into a response head. Each one must get its HTTP answer
(400), never an exception; valid edge cases must still be accepted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from wscompat import cli
from wscompat.drafts import Draft
from wscompat.options import ServerOptions, UpgradeRequest
from wscompat.protocol.connection import Phase, ServerConnection
from wscompat.protocol.handshake import hixie76
from wscompat.vectors.format import check, load

HIXIE = [Draft.HIXIE75, Draft.HIXIE76]
HYBI = [Draft.HYBI07, Draft.HYBI08, Draft.RFC6455]
KEY1 = "4 @1  46546xW%0l 1 5"
KEY2 = "12998 5 Y3 1  .P00"
KEY3 = b"^n:ds[4U"
HUGE_KEY = "1" * 5000 + " 1"


def _first_offered(_: UpgradeRequest, offered: Sequence[str]) -> str | None:
    return offered[0] if offered else None


def request(
    draft: Draft,
    *,
    host: str = "example.com",
    origin: str | None = "http://example.com",
    protocol: str | None = None,
    key1: str = KEY1,
    key2: str = KEY2,
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A request of ``draft`` with the given fields; values are sent as latin-1 bytes."""
    lines = ["GET /demo HTTP/1.1", f"Host: {host}"]
    if draft in HIXIE:
        lines += ["Upgrade: WebSocket", "Connection: Upgrade"]
    else:
        lines += ["Upgrade: websocket", "Connection: Upgrade",
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                  f"Sec-WebSocket-Version: {draft.version}"]
    if draft is Draft.HIXIE76:
        lines += [f"Sec-WebSocket-Key1: {key1}", f"Sec-WebSocket-Key2: {key2}"]
    if origin is not None:
        name = "Sec-WebSocket-Origin" if draft in (Draft.HYBI07, Draft.HYBI08) else "Origin"
        lines.append(f"{name}: {origin}")
    if protocol is not None:
        name = "WebSocket-Protocol" if draft is Draft.HIXIE75 else "Sec-WebSocket-Protocol"
        lines.append(f"{name}: {protocol}")
    lines += [f"{name}: {value}" for name, value in extra]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (KEY3 if draft is Draft.HIXIE76 else b"")


def serve(data: bytes, **options: Any) -> tuple[ServerConnection, bytes]:
    """Feed ``data`` to a server connection deciding as ``wscompat serve`` does."""
    settings = ServerOptions(select_subprotocol=_first_offered, **options).settings
    conn = ServerConnection(settings)
    conn.receive_data(data)
    if conn.phase is Phase.DECIDE:
        conn.accept(conn.choose_subprotocol(conn.upgrade_request()))
    return conn, conn.data_to_send()


def assert_refused(data: bytes, reason: str, **options: Any) -> bytes:
    conn, out = serve(data, **options)
    assert conn.phase is Phase.REFUSED
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out[:80]
    assert conn.rejection is not None and reason in conn.rejection.reason
    head = out[: out.index(b"\r\n\r\n")]
    assert all(0x20 <= b <= 0x7E for b in head.replace(b"\r\n", b"")), head
    return out


def head_of(out: bytes) -> bytes:
    return out[: out.index(b"\r\n\r\n") + 4]


# -- hixie-76 keys -----------------------------------------------------------------------


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every string the hixie-76 module reads as a number, in order."""
    seen: list[str] = []

    def spy(text: str) -> int:
        seen.append(text)
        return int(text)

    monkeypatch.setattr(hixie76, "int", spy, raising=False)
    return seen


@pytest.mark.parametrize(
    ("key", "options"),
    [
        (HUGE_KEY, {}),
        ("1" * 50_000 + " 1", {"max_head_size": 2**17}),
        ("123456 78901", {}),  # 11 digits, 1 space: at most 10
        ("1 2 345678901234", {}),  # 14 digits, 2 spaces: at most 10
        ("515396" + " " * 12 + "075400", {}),  # 12 digits, 12 spaces: at most 11
        # 14 digits once leading zeros are dropped, 999 spaces: at most 13
        ("0" * 40 + "1000000" + " " * 999 + "0000000", {}),
    ],
    ids=["5000-digits", "50000-digits", "11-digits-1-space", "14-digits-2-spaces",
         "12-digits-12-spaces", "14-digits-999-spaces"],
)
def test_oversized_keys_are_400_without_arithmetic(
    conversions: list[str], key: str, options: dict[str, Any]
) -> None:
    conn, out = serve(request(Draft.HIXIE76, key1=key), **options)
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert conn.rejection is not None and conn.rejection.reason == "hixie-76 key is out of range"
    assert conversions == []  # refused before a single digit was read as a number
    conn, out = serve(request(Draft.HIXIE76, key2=key), **options)
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert conversions == ["4146546015"]  # only the valid Key1


@pytest.mark.parametrize(
    ("key", "part"),
    [
        ("42949 67295", 0xFFFFFFFF),  # 10 digits, 1 space: the largest valid part
        ("5153" + " " * 11 + "9607 540", 0xFFFFFFFF),  # 11 digits, 12 spaces
        ("0" * 5000 + "1 2", 12),  # leading zeros are not digits that count
        ("4294967295" + " " * 1000 + "000", 0xFFFFFFFF),  # 13 digits, 1,000 spaces
        (KEY1, 829309203),
    ],
    ids=["10-digits", "11-digits-12-spaces", "5000-leading-zeros", "1000-spaces", "spec"],
)
def test_keys_within_the_bound_are_read(conversions: list[str], key: str, part: int) -> None:
    assert hixie76.key_number(key) == part
    assert len(conversions) == 1 and len(conversions[0]) <= 13
    conn, out = serve(request(Draft.HIXIE76, key1=key), max_head_size=2**15)
    assert conn.phase is Phase.OPEN, conn.rejection
    assert out.startswith(b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n")


# -- fields that are echoed ---------------------------------------------------------------

BAD_HOSTS = [
    ("a b@evil.example", "malformed Host"),
    ("evil.example@good.example", "malformed Host"),
    ("good.example\x1b[2J", "malformed Host"),
    ("good.example\x7f", "malformed Host"),
    ("bücher.example", "malformed Host"),
    ("good.example/path", "malformed Host"),
    ("good.example:80\x9b", "malformed port in Host"),
    ("good.example:8o", "malformed port in Host"),
    ("[::1", "malformed Host"),
    ("[::1]x", "malformed Host"),
    ("[fe80::1%25eth0]", "malformed Host"),
    ("[not-an-address]", "malformed Host"),
    ("[1::2::3]", "malformed Host"),
    (":80", "malformed Host"),
]


@pytest.mark.parametrize("draft", list(Draft))
@pytest.mark.parametrize(("host", "reason"), BAD_HOSTS)
def test_a_host_that_is_not_rfc3986_is_400(draft: Draft, host: str, reason: str) -> None:
    out = assert_refused(request(draft, host=host), reason)
    assert b"evil" not in head_of(out)


@pytest.mark.parametrize("draft", HIXIE)
@pytest.mark.parametrize("origin", ["http://x\x1b[2J", "http://x\x7f", "http://x\x9b1m",
                                    "http://x\x01", "http://bücher.example"])
def test_a_hixie_origin_that_is_not_printable_ascii_is_400(draft: Draft, origin: str) -> None:
    assert_refused(request(draft, origin=origin), "Origin is not printable ASCII")


@pytest.mark.parametrize("draft", HIXIE)
@pytest.mark.parametrize("protocol", ["chat\x1b[2J", "chat\x7f", "ch\x85at", "chät"])
def test_a_hixie_subprotocol_that_is_not_printable_ascii_is_400(
    draft: Draft, protocol: str
) -> None:
    assert_refused(request(draft, protocol=protocol), "subprotocol is not printable ASCII")


@pytest.mark.parametrize("draft", HYBI)
@pytest.mark.parametrize("protocol", ["a\x1b[2Jb", "chat, a\x1b[2Jb", "a b", "chat, a/b",
                                      "a\x85b", "chat, \"quoted\"", "x;y", "a\x7f"])
def test_a_hybi_subprotocol_that_is_not_a_token_is_400(draft: Draft, protocol: str) -> None:
    assert_refused(request(draft, protocol=protocol), "not a token")


@pytest.mark.parametrize("draft", list(Draft))
@pytest.mark.parametrize("second", ["http://example.com", "https://evil.example"])
def test_a_second_origin_field_is_400_under_any_policy(draft: Draft, second: str) -> None:
    """A proxy checking one of two Origin fields and the server the other would judge
    different origins: two are refused, whatever they say and whatever the policy."""
    name = "Sec-WebSocket-Origin" if draft in (Draft.HYBI07, Draft.HYBI08) else "Origin"
    data = request(draft, extra=[(name, second)])
    assert_refused(data, f"more than one {name} header")
    assert_refused(data, f"more than one {name} header", origins=("http://example.com",))


@pytest.mark.parametrize("draft", [Draft.HYBI07, Draft.HYBI08])
def test_origin_beside_sec_websocket_origin_is_read_as_before(draft: Draft) -> None:
    """One field of each name is not a repeat: ``Origin`` is read, as before."""
    data = request(draft, origin="https://other.example",
                   extra=[("Origin", "http://example.com")])
    _, out = serve(data, origins=("http://example.com",))
    assert out.startswith(b"HTTP/1.1 101 "), out[:80]
    _, out = serve(data, origins=("https://other.example",))
    assert out.startswith(b"HTTP/1.1 403 "), out[:80]


# -- valid edge cases ----------------------------------------------------------------------

GOOD_HOSTS = [
    ("[2001:db8::1]:8080", "[2001:db8::1]:8080"),
    ("[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]"),
    ("[v1.fe80::a+en1]", "[v1.fe80::a+en1]"),
    ("192.0.2.1:9000", "192.0.2.1:9000"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("Example.COM:8080", "Example.COM:8080"),
    ("example.com:80", "example.com"),
    ("example.com:", "example.com"),
    ("example.com.", "example.com."),
    ("my_host-1.example", "my_host-1.example"),
    ("%65xample.com", "%65xample.com"),
]


@pytest.mark.parametrize("draft", list(Draft))
@pytest.mark.parametrize(("host", "shown"), GOOD_HOSTS)
def test_valid_hosts_are_accepted(draft: Draft, host: str, shown: str) -> None:
    conn, out = serve(request(draft, host=host))
    assert conn.phase is Phase.OPEN, conn.rejection
    if draft in HIXIE:
        assert f"Location: ws://{shown}/demo\r\n".encode() in out


TOKENS = "!#$%&'*+-.^_`|~09AZaz"


@pytest.mark.parametrize("draft", HYBI)
@pytest.mark.parametrize("offered", [TOKENS, f"{TOKENS}, chat", "chat.v2,,x-y_z", "mqtt"])
def test_subprotocol_tokens_are_accepted_and_echoed(draft: Draft, offered: str) -> None:
    conn, out = serve(request(draft, protocol=offered))
    assert conn.phase is Phase.OPEN, conn.rejection
    chosen = offered.split(",", maxsplit=1)[0].strip()
    assert f"\r\nSec-WebSocket-Protocol: {chosen}\r\n".encode() in out


@pytest.mark.parametrize("draft", HIXIE)
@pytest.mark.parametrize(
    ("origin", "protocol"),
    [("http://a.example:8080", "sample, x y"), ("null", "~!@#$%^&*()_+{}|:<>? "),
     ("file://", None), (None, "chat")],
)
def test_printable_hixie_origins_and_subprotocols_are_echoed(
    draft: Draft, origin: str | None, protocol: str | None
) -> None:
    conn, out = serve(request(draft, origin=origin, protocol=protocol))
    assert conn.phase is Phase.OPEN, conn.rejection
    prefix = "WebSocket-" if draft is Draft.HIXIE75 else "Sec-WebSocket-"
    assert f"{prefix}Origin: {origin or 'null'}\r\n".encode() in out
    if protocol is not None:
        assert f"{prefix}Protocol: {protocol.strip()}\r\n".encode() in out


# -- the offline vector checker -------------------------------------------------------------

HOSTILE = {
    "huge-key": (Draft.HIXIE76, request(Draft.HIXIE76, key1=HUGE_KEY)),
    "origin-escape": (Draft.HIXIE75, request(Draft.HIXIE75, origin="http://x\x1b[2J")),
    "host-space": (Draft.HIXIE76, request(Draft.HIXIE76, host="a b@evil.example")),
    "protocol-escape": (Draft.RFC6455, request(Draft.RFC6455, protocol="a\x1b[2Jb")),
    "draft-escape": (Draft.HIXIE76, request(
        Draft.HIXIE76, extra=[("Sec-WebSocket-Draft", "\x1b]0;x\x07\x9b")])),
}


def write_vector(folder: Path, name: str, draft: Draft, data: bytes) -> Path:
    path = folder / draft.value / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "name": f"hostile head: {name}",
        "source": "tests/protocol/handshake/test_hostile_heads.py",
        "provenance": {"kind": "handwritten", "date": "2026-12-01"},
        "draft": draft.value,
        "steps": [{"send": {"hex": data.hex()}}, {"expect_status": 400}, {"expect_eof": True}],
        "end": {"status": 400},
    }))
    return path


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_the_vector_checker_answers_400(tmp_path: Path, name: str) -> None:
    draft, data = HOSTILE[name]
    vector = load(write_vector(tmp_path, name, draft, data))
    for bytewise in (False, True):
        result = check(vector, bytewise=bytewise)
        assert result.ok, result


def test_wscompat_vectors_check_passes_them_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, (draft, data) in HOSTILE.items():
        write_vector(tmp_path, name, draft, data)
    assert cli.main(["vectors", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Traceback" not in out

