"""The origin policy: what a serialized origin is, what a pattern admits, what is refused
and with which reason, and that no check costs more than linear time in the origin."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wscompat.errors import HandshakeRejected
from wscompat.options import ServerOptions
from wscompat.protocol.handshake.origin import (
    MAX_HOST,
    Origin,
    check_origin,
    origin_allowed,
    parse_origin,
    validate_patterns,
)


@dataclass(frozen=True)
class Policy:
    origins: tuple[str, ...] | None = None
    allow_missing_origin: bool = True


def refusal(origin: str | None, policy: Policy) -> str | None:
    """The 403 reason check_origin gives, or None when it lets the origin in."""
    try:
        check_origin(origin, policy)
    except HandshakeRejected as exc:
        rejected = exc
    else:
        return None
    assert rejected.status == 403
    return rejected.reason


# -- what a serialized origin is ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("https://app.example", Origin("https", "app.example", None, ("app", "example"))),
        ("HTTPS://App.EXAMPLE", Origin("https", "app.example", None, ("app", "example"))),
        ("https://app.example:443", Origin("https", "app.example", None, ("app", "example"))),
        ("http://app.example:80", Origin("http", "app.example", None, ("app", "example"))),
        ("ws://app.example:80", Origin("ws", "app.example", None, ("app", "example"))),
        ("wss://app.example:443", Origin("wss", "app.example", None, ("app", "example"))),
        ("http://app.example:443", Origin("http", "app.example", 443, ("app", "example"))),
        ("https://app.example:80", Origin("https", "app.example", 80, ("app", "example"))),
        ("http://localhost:8080", Origin("http", "localhost", 8080, ("localhost",))),
        ("http://h:0", Origin("http", "h", 0, ("h",))),
        ("http://h:65535", Origin("http", "h", 65535, ("h",))),
        ("http://h:080", Origin("http", "h", None, ("h",))),
        ("https://app.example.", Origin("https", "app.example.", None, ("app", "example", ""))),
        ("http://127.0.0.1:8080", Origin("http", "127.0.0.1", 8080, ())),
        ("http://[::1]:9000", Origin("http", "[::1]", 9000, ())),
        ("http://[0:0:0:0:0:0:0:1]", Origin("http", "[::1]", None, ())),
        ("http://[2001:DB8::1]", Origin("http", "[2001:db8::1]", None, ())),
        ("http://[::ffff:1.2.3.4]", Origin("http", "[::ffff:102:304]", None, ())),
        ("https://xn--bcher-kva.example",
         Origin("https", "xn--bcher-kva.example", None, ("xn--bcher-kva", "example"))),
        ("https://a_b.example", Origin("https", "a_b.example", None, ("a_b", "example"))),
        ("https://1a.example", Origin("https", "1a.example", None, ("1a", "example"))),
        ("chrome-extension://abcdefghijklmnop",
         Origin("chrome-extension", "abcdefghijklmnop", None, ("abcdefghijklmnop",))),
        ("http://" + "a" * 63 + ".example",
         Origin("http", "a" * 63 + ".example", None, ("a" * 63, "example"))),
    ],
)
def test_serialized_origins(text: str, parsed: Origin) -> None:
    assert parse_origin(text) == parsed


LONGEST_HOST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])


@pytest.mark.parametrize(
    "text",
    [
        "", "null", "NULL", " ", "https://", "https://:443", "https://.", "https://..",
        "app.example", "//app.example", "https:app.example", "https:/app.example",
        "https://app.example/", "https://app.example/path", "https://app.example?q",
        "https://app.example#f", "https://user@app.example", "https://user:pw@app.example",
        "https://evil.com@x.app.example", "https://x?.app.example", "https://x#.app.example",
        "https://x/.app.example", "https://x\\.app.example", "https://app..example",
        "https://.app.example", "https://app.example..", "https://app .example",
        " https://app.example", "https://app.example ", "https://app.example\t",
        "https://app.example\r\n", "https://app\x00.example", "https://app\x7f.example",
        "https://app.example:", "https://app.example:65536", "https://app.example:-1",
        "https://app.example:+1", "https://app.example:0x50", "https://app.example:100000",
        "https://app.example:443:443", "https://app.example: 443", "https://a%2eexample",
        "https://bücher.example", "https://\u212aelvin.example", "https://\u0131.example",
        "\uff48ttps://app.example", "1http://app.example", "ht_tp://app.example",
        "s" * 33 + "://app.example",
        "http://[::1", "http://[::1]x", "http://[::1]:", "http://[::1]:99999",
        "http://[fe80::1%25eth0]", "http://[::g]", "http://[]", "http://::1",
        "http://[1.2.3.4]", "http://1.2.3", "http://1.2.3.4.5", "http://256.1.1.1",
        "http://01.2.3.4", "http://0x7f.0.0.1", "http://1.2.3.4.", "http://127.1",
        "http://" + "a" * 64 + ".example", "http://" + LONGEST_HOST + "x.e",
        "https://*.app.example", "https://app.example:*", "*://app.example", "*",
        "https://" + "." * 1500, "https://" + "a." * 8000 + "example",
    ],
)
def test_malformed_origins(text: str) -> None:
    assert parse_origin(text) is None


def test_the_longest_host_name() -> None:
    assert len(LONGEST_HOST) == MAX_HOST
    assert parse_origin(f"https://{LONGEST_HOST}") is not None
    assert parse_origin(f"https://{LONGEST_HOST}.") is not None
    assert parse_origin(f"https://{LONGEST_HOST}a") is None


# -- what a pattern admits ---------------------------------------------------------------

APP = ("https://*.app.example",)


@pytest.mark.parametrize(
    ("patterns", "origin", "admitted"),
    [
        # One * is one label.
        (APP, "https://a.app.example", True),
        (APP, "https://xn--bcher-kva.app.example", True),
        (APP, "https://A.APP.EXAMPLE", True),
        (APP, "HTTPS://a.App.Example", True),
        (APP, "https://a.app.example:443", True),
        (APP, "https://app.example", False),
        (APP, "https://a.b.app.example", False),
        (APP, "https://a.app.example.evil", False),
        (APP, "https://app.example.a", False),
        (APP, "https://aapp.example", False),
        (APP, "https://evil.com@x.app.example", False),
        (APP, "https://x?.app.example", False),
        (APP, "https://x#.app.example", False),
        (APP, "https://x/.app.example", False),
        (APP, "https://a.app.example/", False),
        (APP, "https://.app.example", False),
        (APP, "https://a.app.example.", False),
        (APP, "http://a.app.example", False),
        (APP, "wss://a.app.example", False),
        (APP, "https://a.app.example:8443", False),
        (APP, "null", False),
        (APP, "", False),
        ((f"https://*.{'*.' * 2}example.com",), "https://a.b.c.example.com", True),
        (("https://*.*.*.example.com",), "https://a.b.example.com", False),
        (("https://*.*.*.example.com",), "https://a.b.c.d.example.com", False),
        (("https://*.*.*.example.com",), "https://" + "." * 1500, False),
        (("https://a.*.example",), "https://a.b.example", True),
        (("https://a.*.example",), "https://b.b.example", False),
        (("https://*",), "https://localhost", True),
        (("https://*",), "https://a.b", False),
        (("https://*.app.example.",), "https://a.app.example.", True),
        (("https://*.app.example.",), "https://a.app.example", False),
        (("https://*.app.example:8443",), "https://a.app.example:8443", True),
        (("https://*.app.example:8443",), "https://a.app.example", False),
        # Exact origins: scheme, host and port, with the default port implied.
        (("https://app.example",), "https://app.example", True),
        (("https://app.example",), "https://app.example:443", True),
        (("https://app.example:443",), "https://app.example", True),
        (("http://app.example",), "http://app.example:80", True),
        (("http://app.example",), "https://app.example", False),
        (("https://app.example",), "https://app.example:8443", False),
        (("https://app.example:8443",), "https://app.example:8443", True),
        (("HTTPS://APP.Example",), "https://app.example", True),
        (("https://app.example",), "https://app.example.", False),
        (("https://app.example",), "https://sub.app.example", False),
        (("http://localhost:8080",), "http://localhost:8080", True),
        (("http://localhost:8080",), "http://localhost:8081", False),
        (("http://localhost:8080",), "http://localhost", False),
        # IP addresses: written in full, compared in their canonical form.
        (("http://[::1]:9000",), "http://[::1]:9000", True),
        (("http://[::1]:9000",), "http://[0::1]:9000", True),
        (("http://[::1]:9000",), "http://[::1]", False),
        (("http://[0:0:0:0:0:0:0:1]",), "http://[::1]", True),
        (("http://127.0.0.1:8000",), "http://127.0.0.1:8000", True),
        (("http://127.0.0.1:8000",), "http://127.0.0.2:8000", False),
        (("https://*",), "https://127.0.0.1", False),
        (("https://*",), "https://[::1]", False),
        # Punycode compares as written.
        (("https://xn--bcher-kva.example",), "https://XN--BCHER-KVA.example", True),
        (("https://xn--bcher-kva.example",), "https://bücher.example", False),
        # * alone: any well-formed origin but null.
        (("*",), "https://anything.example", True),
        (("*",), "http://[::1]:1", True),
        (("*",), "chrome-extension://abc", True),
        (("*",), "null", False),
        (("*",), "", False),
        (("*",), "https://evil.com@x", False),
        (("*",), "https://" + "." * 1500, False),
        (("*", "null"), "null", True),
        (("null",), "null", True),
        (("null",), "NULL", False),
        (("null",), "https://app.example", False),
        # Several patterns: any one of them.
        (("https://app.example", "https://*.cdn.example"), "https://x.cdn.example", True),
        (("https://app.example", "https://*.cdn.example"), "https://app.example", True),
        (("https://app.example", "https://*.cdn.example"), "https://cdn.example", False),
        ((), "https://app.example", False),
    ],
)
def test_what_a_pattern_admits(patterns: tuple[str, ...], origin: str, admitted: bool) -> None:
    assert origin_allowed(origin, patterns) is admitted
    reason = refusal(origin, Policy(patterns))
    assert (reason is None) is admitted


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("", "not scheme://host"),
        ("app.example", "not scheme://host"),
        ("NULL", "not scheme://host"),
        ("**", "not scheme://host"),
        ("https://*foo.app.example", "one whole label"),
        ("https://foo*.app.example", "one whole label"),
        ("https://**.app.example", "one whole label"),
        ("https://a.b*", "one whole label"),
        ("*://app.example", "not a scheme"),
        ("https://app.example:*", "not a port"),
        ("https://app.example/", "not a host label"),
        ("https://app.example/*", "not a host label"),
        ("https://user@*.app.example", "not a host label"),
        ("https://app.example:99999", "not a port"),
        ("https://bücher.example", "punycode"),
        ("http://10.0.0.*", "never part of an IP address"),
        ("http://*.0.0.1", "never part of an IP address"),
        ("http://*.1", "never part of an IP address"),
        ("http://[::*]", "not an IPv6 address"),
        ("http://1.2.3.4.", "no trailing dot"),
        ("https://" + "a" * 64, "1 to 63"),
        (" https://app.example", "not a scheme"),
    ],
)
def test_bad_patterns_are_refused_when_the_options_are_built(pattern: str, why: str) -> None:
    with pytest.raises(ValueError, match="origin pattern") as info:
        validate_patterns([pattern])
    assert why in str(info.value)
    with pytest.raises(ValueError, match="origin pattern"):
        ServerOptions(origins=["https://app.example", pattern])
    # Settings built without ServerOptions are not validated: a bad pattern admits nothing.
    assert not origin_allowed("https://a.app.example", (pattern,))


def test_patterns_must_be_a_list_of_strings() -> None:
    with pytest.raises(TypeError, match="not the string"):
        ServerOptions(origins="https://app.example")
    with pytest.raises(TypeError, match="not a string"):
        validate_patterns([b"https://app.example"])  # type: ignore[list-item]


def test_good_patterns_reach_the_handshake_settings_as_given() -> None:
    patterns = ["https://app.example", "https://*.app.example", "*", "null",
                "http://[::1]:9000", "http://127.0.0.1:8000", "https://a.example."]
    options = ServerOptions(origins=patterns)
    assert options.settings.handshake.origins == tuple(patterns)
    assert options.settings.handshake_secure.origins == tuple(patterns)
    assert ServerOptions().settings.handshake.origins is None


# -- check_origin: missing, empty, malformed, refused ------------------------------------


def test_no_policy_looks_at_nothing() -> None:
    """The default server: any value, even an empty or malformed one, passes."""
    for origin in (None, "", "null", "file://", "x", "https://app.example/path"):
        assert refusal(origin, Policy()) is None


def test_missing_origin_follows_allow_missing_origin() -> None:
    assert refusal(None, Policy(("https://app.example",))) is None
    assert refusal(None, Policy(("https://app.example",), False)) == "missing Origin"
    assert refusal(None, Policy(None, False)) == "missing Origin"


@pytest.mark.parametrize("policy", [Policy(("*",)), Policy(None, False),
                                    Policy(("https://app.example",), True)])
def test_an_empty_origin_is_not_a_missing_one(policy: Policy) -> None:
    assert refusal("", policy) == "empty Origin"


@pytest.mark.parametrize("policy", [Policy(("*",)), Policy(None, False)])
def test_malformed_origins_are_refused_by_any_policy(policy: Policy) -> None:
    assert refusal("https://evil.com@x.app.example", policy) == (
        "malformed origin 'https://evil.com@x.app.example'")
    assert refusal("https://a\x01.example", policy) == "malformed origin 'https://a\\x01.example'"
    assert refusal("https://app.example", policy) is None
    assert refusal("null", Policy(None, False)) is None


def test_a_refusal_quotes_a_long_origin_only_in_part() -> None:
    origin = "https://" + "." * 16000
    reason = refusal(origin, Policy(("https://*.*.*.example.com",)))
    assert reason == f"malformed origin {'https://' + '.' * 56!r}..."
    reason = refusal("https://ü" + "a" * 100, Policy(("*",)))
    assert reason == "malformed origin 'https://\\xfc" + "a" * 52 + "'..."
    reason = refusal("\U0001f600" * 64, Policy(("*",)))
    assert reason == "malformed origin '" + "\\U0001f600" * 6 + "'..."
    assert refusal("it's\\", Policy(("*",))) == "malformed origin 'it\\'s\\\\'"
    assert refusal("https://a\x01", Policy(("*",))) == "malformed origin 'https://a\\x01'"


def test_a_well_formed_origin_refused_is_quoted_as_sent() -> None:
    assert refusal("HTTPS://Evil.Example", Policy(("https://app.example",))) == (
        "origin HTTPS://Evil.Example not allowed")
    assert refusal("null", Policy(("https://app.example",))) == "origin null not allowed"


# -- properties --------------------------------------------------------------------------

label = st.from_regex(r"[a-z0-9_\-]{1,20}", fullmatch=True).filter(
    lambda text: not text.isdigit())
labels = st.lists(label, min_size=1, max_size=6)
scheme = st.sampled_from(["http", "https", "ws", "wss", "chrome-extension", "a+b.c-d"])
port = st.one_of(st.none(), st.integers(0, 65535))


def serialize(scheme_: str, labels_: list[str], port_: int | None) -> str:
    return f"{scheme_}://{'.'.join(labels_)}" + ("" if port_ is None else f":{port_}")


@given(scheme, labels, port)
def test_a_serialized_origin_parses_back(scheme_: str, labels_: list[str],
                                         port_: int | None) -> None:
    text = serialize(scheme_, labels_, port_)
    parsed = parse_origin(text)
    assert parsed is not None
    assert parsed.labels == tuple(labels_)
    assert origin_allowed(text, (text,))
    assert origin_allowed(text.upper(), (text,))
    assert origin_allowed(text, ("*",))


@given(scheme, labels, port, st.data())
def test_a_star_is_exactly_one_label(scheme_: str, labels_: list[str], port_: int | None,
                                     data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(labels_) - 1))
    pattern = labels_.copy()
    pattern[at] = "*"
    patterns = (serialize(scheme_, pattern, port_),)
    validate_patterns(patterns)
    other = data.draw(label)
    swapped = [*labels_[:at], other, *labels_[at + 1 :]]
    assert origin_allowed(serialize(scheme_, swapped, port_), patterns)
    assert not origin_allowed(serialize(scheme_, [*swapped[:at], "x", *swapped[at:]], port_),
                              patterns)
    assert not origin_allowed(serialize(scheme_, [*swapped[:at], *swapped[at + 1 :]], port_)
                              if len(swapped) > 1 else "x", patterns)
    for bad in ("@", "?", "#", "/", ":", " ", "\x00", "é"):
        assert not origin_allowed(serialize(scheme_, [*labels_[:at], other + bad,
                                                      *labels_[at + 1 :]], port_), patterns)


printable_or_not = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
origin_like = st.builds(
    lambda a, b, c: a + b + c,
    st.sampled_from(["", "https://", "http://[", "null", "*://", "HTTPS://"]),
    printable_or_not,
    st.sampled_from(["", ":443", ":8080", "]", "]:80", ".", "/", "@x"]),
)


@given(st.one_of(origin_like, printable_or_not),
       st.lists(st.one_of(origin_like, printable_or_not), max_size=4),
       st.booleans())
@example("https://" + "." * 1500, ["https://*.*.*.example.com"], True)
@example("", ["*"], False)
def test_the_matcher_never_raises(origin: str, patterns: list[str], missing_ok: bool) -> None:
    """Any origin against any list: a bool, or a 403 that quotes at most 64 characters."""
    allowed = tuple(patterns)
    assert isinstance(origin_allowed(origin, allowed), bool)
    reason = refusal(origin, Policy(allowed, missing_ok))
    assert reason is None or len(reason) < 400
    try:
        validate_patterns(allowed)
    except ValueError as exc:
        problem = str(exc)
    else:
        return
    assert problem.startswith("origin pattern ")


# -- cost ----------------------------------------------------------------------------------

MANY_STARS = "https://" + ".".join(["*"] * 126)
PATTERNS = (
    "https://*.*.*.example.com", "https://*.example.com", MANY_STARS, "null",
    "http://[::1]:9000", "*", *(f"https://host{i}.example" for i in range(100)),
    *(f"https://{'*.' * n}deep.example" for n in range(1, 120)),
)
HEAD = 16384
SIZES = (256, 1024, 4096, HEAD)
"""Growing sizes: superlinear work fails at the first ones, before it could take hours."""
WORST: dict[str, Callable[[int], str]] = {
    "dots": lambda n: "https://" + "." * n,
    "dots after a label": lambda n: "https://a" + "." * n,
    "many labels": lambda n: "https://" + "a." * (n // 2) + "example.com",
    "many stars": lambda n: "https://" + "*." * (n // 2) + "example.com",
    "many numeric labels": lambda n: "https://" + "1." * (n // 2) + "1",
    "one long label": lambda n: "https://" + "a" * n,
    "long scheme": lambda n: "h" * n + "://a.example.com",
    "no scheme": lambda n: "a." * (n // 2),
    "many separators": lambda n: "://" * (n // 3),
    "long port": lambda n: "https://a.example.com:" + "1" * n,
    "many colons": lambda n: "https://a" + ":" * n,
    "IPv6 colons": lambda n: "https://[" + ":" * n + "]",
    "IPv6 unclosed": lambda n: "https://[" + "1:" * (n // 2),
    "IPv6 brackets": lambda n: "https://" + "[]" * (n // 2),
    "userinfo": lambda n: "https://" + "a@" * (n // 2) + "x.example.com",
    "control bytes": lambda n: "https://" + "\x00" * n,
    "spaces": lambda n: "https://" + " " * n,
    "non-ASCII": lambda n: "https://" + "é" * n,
    "uppercase": lambda n: "HTTPS://" + "A." * (n // 2) + "COM",
}
REPEATS = 15
BOUND = 1e-3
"""Seconds one check may take: linear work on 16 KiB is some microseconds, while the
quadratic backtracking of a regular expression took seconds on 1,500 dots."""


def median_seconds(origin: str, allowed: tuple[str, ...]) -> float:
    times = []
    policy = Policy(allowed, allow_missing_origin=False)
    for _ in range(REPEATS):
        started = time.perf_counter()
        with contextlib.suppress(HandshakeRejected):
            check_origin(origin, policy)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@pytest.mark.parametrize("name", list(WORST))
def test_no_check_costs_more_than_a_millisecond(name: str) -> None:
    for size in SIZES:
        origin = WORST[name](size)
        assert len(origin) >= size - 8
        for allowed in (PATTERNS[:1], PATTERNS, (MANY_STARS,)):
            took = median_seconds(origin, allowed)
            assert took < BOUND, (
                f"{name}, {len(origin)} bytes: {took * 1e3:.2f} ms against "
                f"{len(allowed)} patterns")


def test_the_widest_match_costs_one_lookup_per_placement_of_stars() -> None:
    """The longest host DNS allows against many patterns of its shape."""
    host = ["a"] * 123 + ["example"]
    assert parse_origin("https://" + ".".join(host)) is not None
    same_stars = tuple("https://" + ".".join(["*"] * 123 + [f"x{i}"]) for i in range(500))
    moving_star = tuple("https://" + ".".join([*host[:i], "*", *host[i + 1 : -1], "other"])
                        for i in range(123))
    for allowed in (same_stars, moving_star, same_stars + moving_star + PATTERNS):
        validate_patterns(allowed)
        took = median_seconds("https://" + ".".join(host), allowed)
        assert took < BOUND, f"{took * 1e3:.2f} ms against {len(allowed)} patterns"
    assert origin_allowed("https://" + ".".join([*host[:-1], "x7"]), same_stars)
    assert origin_allowed("https://" + ".".join([*host[:-1], "other"]), moving_star)


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=8), st.sampled_from(["", "https://", "https://a", "["]))
def test_any_repeated_unit_is_checked_within_the_bound(unit: str, prefix: str) -> None:
    for size in SIZES:
        origin = prefix + unit * (size // len(unit))
        took = median_seconds(origin, PATTERNS)
        assert took < BOUND, f"{origin[:40]!r}, {len(origin)} long: {took * 1e3:.2f} ms"
