"""``wscompat client`` as a real process against real servers on loopback: scripted,
interactive through a stdin pipe, verbose, refused, and its usage errors."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import pytest

from .conftest import ENV, IDLE, ROOT, TOOL, Server, TLSFiles, run_tool

DRAFTS = ("75", "76", "7", "8", "13")
TEXT = "second, with spaces and ünïcode ✓"


@pytest.mark.parametrize("draft", DRAFTS)
def test_scripted_every_draft(wscompat_server: Server, draft: str) -> None:
    done = run_tool("client", wscompat_server.url, "--draft", draft, "--send", "hello",
                    "--send", TEXT, "--expect", "hello", "--expect", TEXT, "--timeout", "5")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"< hello\n< {TEXT}\n"


@pytest.mark.parametrize("draft", ["7", "8", "13"])
def test_scripted_binary(wscompat_server: Server, draft: str) -> None:
    done = run_tool("client", wscompat_server.url, "--draft", draft, "--send-binary", "00ff10",
                    "--send", "text", "--expect-binary", "00 ff 10", "--expect", "text")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "< [binary, 3 bytes] 00 ff 10\n< text\n"


@pytest.mark.parametrize("draft", DRAFTS)
def test_sends_without_expectations_print_the_replies(wscompat_server: Server,
                                                      draft: str) -> None:
    """The client lingers until the server is quiet, so the echoes are printed even
    though nothing was expected (wscompat answers a close at once, before the echoes
    its handler has yet to send)."""
    done = run_tool("client", wscompat_server.url, "--draft", draft, "--send", "a",
                    "--send", "b")
    assert (done.returncode, done.stdout, done.stderr) == (0, "< a\n< b\n", "")


def test_linger_0_closes_at_once(wscompat_server: Server) -> None:
    began = time.monotonic()
    done = run_tool("client", wscompat_server.url, "--linger", "0", "-v")
    assert done.returncode == 0
    assert "* closed by the client: 1000" in done.stderr.splitlines()
    assert time.monotonic() - began < 15


def test_verbose_shows_the_hixie76_handshake(wscompat_server: Server) -> None:
    done = run_tool("client", wscompat_server.url, "--draft", "76", "-v", "--send", "hi",
                    "--expect", "hi")
    assert done.returncode == 0, done.stderr
    err = done.stderr.splitlines()
    port = wscompat_server.port
    for line in ("> GET / HTTP/1.1", f"> Host: 127.0.0.1:{port}", "> Upgrade: WebSocket",
                 f"> Origin: http://127.0.0.1:{port}", ">",
                 "< HTTP/1.1 101 WebSocket Protocol Handshake",
                 f"< Sec-WebSocket-Location: ws://127.0.0.1:{port}/", "<", "> hi",
                 f"* connected to ws://127.0.0.1:{port}/ (hixie-76)",
                 "* closed by the client: 1000"):
        assert line in err, (line, done.stderr)
    assert any(line.startswith("> Sec-WebSocket-Key1: ") for line in err)
    key3 = [line for line in err if line.startswith("> [8 bytes] ")]
    answer = [line for line in err if line.startswith("< [16 bytes] ")]
    assert len(key3) == len(answer) == 1, done.stderr
    assert re.fullmatch(r"< \[16 bytes\]( [0-9a-f]{2}){16}", answer[0])
    # The request comes before the answer, and both before the first message.
    assert err.index("> GET / HTTP/1.1") < err.index(answer[0]) < err.index("> hi")
    assert done.stdout == "< hi\n"


def test_verbose_shows_the_rfc6455_handshake(websockets_server: Server) -> None:
    done = run_tool("client", websockets_server.url, "-v", "--subprotocol", "chat",
                    "--compression", "permessage-deflate", "--send", "x" * 2000,
                    "--expect", "x" * 2000)
    assert done.returncode == 0, done.stderr
    err = done.stderr.splitlines()
    assert "> Sec-WebSocket-Version: 13" in err
    assert "> Sec-WebSocket-Protocol: chat" in err
    assert "< HTTP/1.1 101 Switching Protocols" in err
    assert "< Sec-WebSocket-Protocol: chat" in err
    assert any(line.startswith("< Sec-WebSocket-Accept: ") for line in err)
    assert (f"* connected to {websockets_server.url} (rfc6455, subprotocol chat, extension "
            "permessage-deflate)") in err


def test_node_hybi08_with_compression(node_server: Server) -> None:
    done = run_tool("client", node_server.url, "--draft", "8", "-v", "--compression",
                    "x-webkit-deflate-frame", "--compression", "permessage-deflate",
                    "--send", "over hybi-08", "--expect", "over hybi-08")
    assert done.returncode == 0, done.stderr
    assert "> Sec-WebSocket-Version: 8" in done.stderr
    assert ("> Sec-WebSocket-Extensions: x-webkit-deflate-frame, permessage-deflate"
            in done.stderr)
    assert "(hybi-08, extension permessage-deflate)" in done.stderr


@pytest.mark.parametrize("draft", ["76", "13"])
def test_interactive_lines_from_stdin(wscompat_server: Server, draft: str) -> None:
    done = run_tool("client", wscompat_server.url, "--draft", draft,
                    stdin="hello\nsecond line\n\nlast, without a newline")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "< hello\n< second line\n< \n< last, without a newline\n"


def test_interactive_server_closes_first(late_hixie_server: Server) -> None:
    """Standard input stays open; the server's idle timeout closes the connection, and
    the client ends with it."""
    began = time.monotonic()
    with subprocess.Popen([*TOOL, "client", late_hixie_server.url], cwd=ROOT, env=ENV,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, encoding="utf-8") as process:
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        try:
            process.stdin.write("ping me\n")
            process.stdin.flush()  # and standard input stays open
            status = process.wait(IDLE + 20)
        finally:
            process.kill()
        out, err = process.stdout.read(), process.stderr.read()
        process.stdin.close()
    assert status == 0, err
    assert out == "< ping me\n"
    assert err == "* closed by the server: 1001 idle timeout\n"
    assert time.monotonic() - began >= IDLE


def test_refused_handshake_exits_1(late_hixie_server: Server, node_server: Server) -> None:
    done = run_tool("client", late_hixie_server.url, "--draft", "8", "--send", "x")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == ("wscompat client: refused: HTTP/1.1 426 Upgrade Required "
                           "(Sec-WebSocket-Version: 13)\n")
    done = run_tool("client", node_server.url, "--draft", "7")
    assert done.returncode == 1
    assert done.stderr == ("wscompat client: refused: HTTP/1.1 400 Bad Request "
                           "(Sec-WebSocket-Version: 13, 8)\n")
    done = run_tool("client", node_server.url, "--draft", "76", "-v")
    assert done.returncode == 1
    assert "< HTTP/1.1 400 Bad Request" in done.stderr.splitlines()
    assert done.stderr.endswith("wscompat client: refused: HTTP/1.1 400 Bad Request\n")


def test_failed_expectations_exit_1(wscompat_server: Server) -> None:
    done = run_tool("client", wscompat_server.url, "--send", "hello", "--expect", "nope")
    assert done.returncode == 1
    assert done.stdout == "< hello\n"
    assert done.stderr == "wscompat client: message 1: expected 'nope', got 'hello'\n"
    done = run_tool("client", wscompat_server.url, "--send-binary", "01", "--expect", "\x01")
    assert done.returncode == 1
    assert done.stderr == ("wscompat client: message 1: expected '\\x01', got binary 01\n")
    began = time.monotonic()
    done = run_tool("client", wscompat_server.url, "--expect", "hello", "--timeout", "0.5")
    assert done.returncode == 1
    assert done.stderr == "wscompat client: no message within 0.5 s: expected 'hello'\n"
    assert time.monotonic() - began < 15


def test_tls(wscompat_server: Server, tls_files: TLSFiles) -> None:
    url = f"wss://127.0.0.1:{wscompat_server.port}/"
    done = run_tool("client", url, "--draft", "76", "--cafile", str(tls_files.ca), "-v",
                    "--send", "over TLS", "--expect", "over TLS")
    assert done.returncode == 0, done.stderr
    assert f"< Sec-WebSocket-Location: {url}" in done.stderr.splitlines()
    done = run_tool("client", url, "--send", "x")
    assert done.returncode == 1
    assert done.stderr.startswith(f"wscompat client: TLS handshake with 127.0.0.1 port "
                                  f"{wscompat_server.port} failed: certificate verify failed")


def test_cannot_connect() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        done = run_tool("client", f"ws://127.0.0.1:{port}/", "--send", "x")
    assert done.returncode == 1
    assert done.stderr == (f"wscompat client: cannot connect to 127.0.0.1 port {port}: "
                           "Connection refused\n")


@pytest.mark.parametrize("args", [
    ("--draft", "75", "--send-binary", "00"),
    ("--draft", "76", "--compression", "permessage-deflate"),
    ("--draft", "76", "--subprotocol", "a", "--subprotocol", "b"),
    ("--draft", "9",),
    ("--header", "no colon",),
    ("--send-binary", "xyz",),
    ("--timeout", "-1",),
    ("--insecure",),
])
def test_usage_errors(args: tuple[str, ...]) -> None:
    done = run_tool("client", "ws://127.0.0.1:9/", *args)
    assert done.returncode == 2, done.stderr
    assert (done.stdout, done.stderr.count("\n")) == ("", done.stderr.count("\n"))
    assert "error:" in done.stderr


def test_not_a_websocket_url() -> None:
    done = run_tool("client", "http://127.0.0.1:9/")
    assert done.returncode == 2
    assert done.stderr == ("wscompat client: error: 'http://127.0.0.1:9/' is not a ws:// or "
                           "wss:// URL\n")
