"""``wscompat serve`` flags against ServerOptions: one flag per field, the same defaults,
the flags documented, and the new size flags on a real server process."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websocket

from wscompat import cli
from wscompat.cli import DERIVED_OPTIONS, RENAMED_FLAGS, serve_flag_problems
from wscompat.drafts import Draft
from wscompat.options import ServerOptions

from .test_cli import start

DOCS = Path(__file__).resolve().parent.parent / "docs"


def options(*argv: str) -> ServerOptions:
    return cli._options(cli._parser().parse_args(["serve", *argv]))


DEFAULTS = ServerOptions(select_subprotocol=cli._first_offered)
"""What ``wscompat serve`` without flags configures: the echo server picks a subprotocol."""


# -- the coverage and drift check ---------------------------------------------------------


def test_every_option_has_exactly_one_flag_with_its_default() -> None:
    assert serve_flag_problems() == []


def test_no_flags_means_the_server_options_defaults() -> None:
    assert options() == DEFAULTS


def test_derived_options_are_built_from_the_flags_listed() -> None:
    assert set(DERIVED_OPTIONS) <= ServerOptions.names()
    assert options("--app", "x:y").select_subprotocol is None
    assert options("--subprotocols", "chat").select_subprotocol is None
    assert options("--subprotocols", "chat").subprotocols == ["chat"]


def test_derived_policy_comes_from_the_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.xml"
    path.write_text("<cross-domain-policy/>")
    assert options("--policy-file", str(path)).policy == "<cross-domain-policy/>"


@dataclasses.dataclass(frozen=True)
class _WithNewField(ServerOptions):
    brand_new_limit: int = 5


def _add_with(extra: Callable[[argparse.ArgumentParser], object]) -> Callable[..., None]:
    original = cli._add_serve_arguments

    def add(s: argparse.ArgumentParser) -> None:
        original(s)
        extra(s)

    return add


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ({"ServerOptions": _WithNewField}, "brand_new_limit has 0 flags, not one"),
        ({"DERIVED_OPTIONS": {**DERIVED_OPTIONS, "read_size": ()}},
         "read_size is in DERIVED_OPTIONS but also has a flag"),
        ({"DERIVED_OPTIONS": {**DERIVED_OPTIONS, "ssl_context": ("--cert",)}},
         "ssl_context is built from --cert, which does not exist"),
        ({"SERVE_FLAGS": cli.SERVE_FLAGS - {"port"}}, "--port sets 'port'"),
        ({"SERVE_FLAGS": cli.SERVE_FLAGS | {"gone"}}, "SERVE_FLAGS names 'gone'"),
        ({"RENAMED_FLAGS": {}}, "record_dir's flag is --record"),
        ({"_add_serve_arguments": _add_with(lambda s: s.set_defaults(write_limit=1))},
         "write_limit: the command line defaults to 1, ServerOptions to 65536"),
        ({"_add_serve_arguments": _add_with(
            lambda s: s.add_argument("--write-buffer", dest="write_limit", type=int))},
         "write_limit has 2 flags, not one"),
    ],
    ids=["new-field", "derived-and-flag", "derived-missing-flag", "unlisted-flag",
         "stale-serve-flag", "renamed", "default", "two-flags"],
)
def test_the_check_reports_drift(
    monkeypatch: pytest.MonkeyPatch, patch: dict[str, Any], problem: str
) -> None:
    for name, value in patch.items():
        monkeypatch.setattr(cli, name, value)
    problems = serve_flag_problems()
    assert any(problem in p for p in problems), problems


def test_the_check_reports_a_default_on_boolean_without_a_no_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = cli._add_serve_arguments

    def add(s: argparse.ArgumentParser) -> None:
        original(s)
        for action in s._actions:
            if action.dest == "hixie76_early_head":
                action.option_strings = [
                    o for o in action.option_strings if o != "--no-hixie76-early-head"
                ]

    monkeypatch.setattr(cli, "_add_serve_arguments", add)
    assert "hixie76_early_head defaults to True but has no --no-hixie76-early-head flag" in (
        serve_flag_problems()
    )


# -- each flag sets its field ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "changes"),
    [
        (["--read-size", "4096"], {"read_size": 4096}),
        (["--read-size", "4KiB"], {"read_size": 4096}),
        (["--read-size", "1k"], {"read_size": 1024}),
        (["--write-limit", "1MiB"], {"write_limit": 2**20}),
        (["--write-limit", "0"], {"write_limit": 0}),
        (["--tls-handshake-timeout", "2.5"], {"tls_handshake_timeout": 2.5}),
        (["--no-hixie76-early-head"], {"hixie76_early_head": False}),
        (["--hixie76-early-head"], {}),
        (["--refuse-missing-origin"], {"allow_missing_origin": False}),
        (["--no-allow-missing-origin"], {"allow_missing_origin": False}),
        (["--max-head-size", "8KiB"], {"max_head_size": 8192}),
        (["--compress-min-size", "1k"], {"compress_min_size": 1024}),
        (["--max-message-size", "none"], {"max_message_size": None}),
        (["--drafts", "13,8"],
         {"drafts": frozenset({Draft.RFC6455, Draft.HYBI08}), "http2": False}),
        (["--drafts", "13,h2"], {"drafts": frozenset({Draft.RFC6455})}),
        (["--no-http2"], {"http2": False}),
        (["--http2", "off"], {"http2": False}),
        (["--drafts", "13", "--http2", "on"], {"drafts": frozenset({Draft.RFC6455})}),
        (["--origins", "https://a.example, https://*.b.example"],
         {"origins": ["https://a.example", "https://*.b.example"]}),
        (["--record", "out", "--record-frames", "3"], {"record_dir": "out", "record_frames": 3}),
        (["--secure", "--log-payloads"], {"secure": True, "log_payloads": True}),
        (["--idle-timeout", "none", "--ping-interval", "2.5", "--tcp-keepalive", "none"],
         {"idle_timeout": None, "ping_interval": 2.5, "tcp_keepalive": None}),
        (["--max-connections", "none", "--max-queue", "1"],
         {"max_connections": None, "max_queue": 1}),
        (["--max-message-size", "1.5MiB", "--record-frames", "0"],
         {"max_message_size": 3 * 2**19, "record_frames": 0}),
        (["--subprotocols", "chat.v2, x-token"], {"subprotocols": ["chat.v2", "x-token"],
                                                 "select_subprotocol": None}),
    ],
)
def test_flag_sets_its_option(argv: list[str], changes: dict[str, Any]) -> None:
    assert options(*argv) == dataclasses.replace(DEFAULTS, **changes)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--read-size", "0"], "argument --read-size: '0': must be at least 1 byte"),
        (["--read-size", "none"], "argument --read-size: 'none' is not a byte count"),
        (["--write-limit", "none"], "argument --write-limit: 'none' is not a byte count"),
        (["--write-limit", "-1"], "argument --write-limit: '-1': a byte count cannot be negative"),
        (["--write-limit", "lots"], "argument --write-limit: 'lots' is not a byte count"),
        (["--max-head-size", "none"], "argument --max-head-size: 'none' is not a byte count"),
        (["--tls-handshake-timeout", "soon"],
         "argument --tls-handshake-timeout: 'soon': give a number of seconds above 0"),
        (["--max-message-size", "1MB"], "argument --max-message-size: '1MB' is not a byte count: "
         "give a number of bytes (65536) or of KiB, MiB, GiB"),
        (["--idle-timeout", "0"], "argument --idle-timeout: '0': give a number of seconds "
         "above 0, or 'none' for no idle timeout"),
        (["--tcp-keepalive", "0.5"], "argument --tcp-keepalive: '0.5': the kernel counts whole "
         "seconds, from 1"),
        (["--max-connections", "-1"], "argument --max-connections: '-1': give a whole number of "
         "at least 1, or 'none' for no limit"),
        (["--record-frames", "x"], "argument --record-frames: 'x': give a whole number of at "
         "least 0"),
        (["--port", "65536"], "argument --port: '65536' is not a port: give 0 to 65535"),
        (["--drafts", "13,9"], "unknown draft '9'"),
    ],
)
def test_bad_values_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_require_tls_needs_a_certificate(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--require-tls"])
    assert info.value.code == 2
    assert "argument --require-tls: needs --certfile" in capsys.readouterr().err


def test_help_states_each_new_limit_and_its_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag, nothing hyphen-wrapped
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for expected in (
        "--read-size BYTES bytes asked of the socket per read",
        "(default: 65536)",
        "--write-limit BYTES bytes queued for a peer before send() waits",
        "--tls-handshake-timeout SECONDS with --certfile: time allowed for a client's TLS "
        "handshake, before the WebSocket handshake starts (default: 10.0)",
        "--hixie76-early-head, --no-hixie76-early-head send the hixie-76 101 head",
        "waits for key3 (default: True)",
        "--refuse-missing-origin, --no-allow-missing-origin refuse requests",
        "--drafts LIST drafts to accept, e.g. 75,76,7,8,13,h2 (h2: RFC 8441, WebSocket "
        "over HTTP/2); others get 426 (default: 75,76,7,8,13,h2)",
        "--h2-max-streams N streams one HTTP/2 connection may have open at once "
        "(default: 100)",
    ):
        assert expected in help_text


# -- the docs name every flag -------------------------------------------------------------


def _doc_rows() -> dict[str, str]:
    """Each option named in the first cell of a table row in the guide or the limits page,
    with its row."""
    rows: dict[str, str] = {}
    for page in ("guide.md", "limits.md"):
        for line in (DOCS / page).read_text(encoding="utf-8").splitlines():
            if line.startswith("| `"):
                first = line.split(" | ", 1)[0]
                for name in re.findall(r"`(\w+)`", first):
                    rows.setdefault(name, line)
    return rows


def _flags(name: str) -> list[str]:
    if name in DERIVED_OPTIONS:
        return list(DERIVED_OPTIONS[name])
    if name in RENAMED_FLAGS:
        return [RENAMED_FLAGS[name]]
    dashed = name.replace("_", "-")
    default = getattr(ServerOptions(), name)
    return [f"--no-{dashed}" if default is True else f"--{dashed}"]


@pytest.mark.parametrize("name", sorted(ServerOptions.names()))
def test_docs_list_every_option_with_its_flag(name: str) -> None:
    row = _doc_rows().get(name)
    assert row is not None, f"{name} is in no options table of docs/guide.md or docs/limits.md"
    for flag in _flags(name):
        assert re.search(re.escape(flag) + r"\b(?!-)", row), f"{flag} missing from: {row}"


# -- a real server ---------------------------------------------------------------------------


def test_size_flags_on_a_running_server() -> None:
    served = start("--write-limit", "1KiB", "--read-size", "4KiB")
    try:
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{served.ports['listening']}/", timeout=10
        )
        try:
            payload = os.urandom(100_000)  # many reads and writes at these sizes
            ws.send_binary(payload)
            assert ws.recv() == payload
            ws.send("x" * 10_000)
            assert ws.recv() == "x" * 10_000
        finally:
            ws.close()
    finally:
        served.proc.kill()
        served.proc.wait(timeout=10)
