"""``wscompat vectors import`` on real captures: Debian's tcpdump records the loopback
while real clients of every draft talk to a real ``wscompat serve``; the capture is
imported by the command, the vectors pass ``wscompat vectors check``, and replay
against a second server. Then the TCP reassembly alone, on packets shuffled, repeated
and lost on purpose."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import dpkt  # type: ignore[import-untyped]
import pytest
import trio

from tests.docs.processes import environment, free_port, listening, started, wscompat_executable
from wscompat.drafts import Draft
from wscompat.vectors.capture import TcpStreams
from wscompat.vectors.export import pcapng_bytes
from wscompat.vectors.format import decode_data, load
from wscompat.vectors.pcap import read_capture

ROOT = Path(__file__).parents[2]
CORPUS = ROOT / "vectors"
CLIENT_BOUND = 20.0
"""Seconds one client process may take, interpreter start included."""
CAPTURE_BOUND = 15.0
"""Seconds for tcpdump to start listening, and for the capture to hold every connection."""

WSCOMPAT_CLIENT = """
import sys, trio, wscompat
from wscompat.drafts import Draft

async def main(url: str, draft: str) -> None:
    with trio.fail_after(10):
        async with wscompat.connect(url, draft=Draft(draft)) as ws:
            await ws.send(f"Hello {draft}")
            assert await ws.receive() == f"Hello {draft}"

trio.run(main, sys.argv[1], sys.argv[2])
"""
WEBSOCKET_CLIENT = """
import sys, websocket

ws = websocket.create_connection(sys.argv[1], timeout=10)
ws.send("Hello websocket-client")
assert ws.recv() == "Hello websocket-client"
ws.send_binary(bytes(range(256)))
assert ws.recv() == bytes(range(256))
ws.close()
"""
CLIENTS = [("wscompat", d.value) for d in Draft if d is not Draft.RFC6455]
CLIENTS.append(("websocket-client", "rfc6455"))


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: tests/run.sh installs Debian's {package}",
                    pytrace=False)
    return found


async def _run(argv: list[str], cwd: Path, bound: float = CLIENT_BOUND) -> str:
    with trio.fail_after(bound):
        done = await trio.run_process(argv, cwd=cwd, env=environment(), check=False,
                                      capture_stdout=True, capture_stderr=True)
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{output}"
    return output


async def _capture(tmp_path: Path) -> tuple[Path, int]:
    """A capture of the loopback while each client talks to ``wscompat serve``."""
    tcpdump = _tool("tcpdump", "tcpdump")
    port = free_port()
    capture = tmp_path / "loopback.pcap"
    (tmp_path / "wscompat_client.py").write_text(WSCOMPAT_CLIENT)
    (tmp_path / "websocket_client.py").write_text(WEBSOCKET_CLIENT)
    serve = [wscompat_executable(), "serve", "--port", str(port)]
    dump = [tcpdump, "-i", "lo", "--immediate-mode", "-U", "-w", str(capture),
            "tcp", "port", str(port)]
    async with started(serve, tmp_path, tmp_path / "serve.log") as server, \
            started(dump, tmp_path, tmp_path / "tcpdump.log") as recorder:
        await listening(server, port)
        with trio.fail_after(CAPTURE_BOUND):
            while "listening on" not in recorder.output():
                assert recorder.popen.poll() is None, recorder.describe()
                await trio.sleep(0.05)
        url = f"ws://127.0.0.1:{port}/capture"
        for client, draft in CLIENTS:
            script = "websocket_client.py" if client == "websocket-client" else \
                "wscompat_client.py"
            await _run([sys.executable, script, f"{url}?{client}-{draft}", draft], tmp_path)
        with trio.fail_after(CAPTURE_BOUND):  # until every connection's end is written
            while True:
                _, exchanges = read_capture(capture, port)
                ended = [e for e in exchanges if ("server_eof", b"") in e.events
                         and ("client_eof", b"") in e.events]
                if len(ended) == len(CLIENTS):
                    break
                await trio.sleep(0.1)
        assert await recorder.stop(signal.SIGINT) == 0, recorder.describe()
    return capture, port


def _steps_bytes(vector: dict[str, Any], key: str) -> bytes:
    return b"".join(decode_data(step[key]) for step in vector["steps"] if key in step)


async def test_real_clients_captured_by_tcpdump_import_check_and_replay(tmp_path: Path) -> None:
    capture, port = await _capture(tmp_path)
    out = tmp_path / "imported"
    said = await _run([wscompat_executable(), "vectors", "import", str(capture), "--port",
                       str(port), "--out", str(out)], tmp_path)
    assert f"{len(CLIENTS)} vectors written under {out}" in said, said
    files = sorted(out.glob("*/imported-loopback-*.json"))
    assert (out / "schema.json").is_file()
    by_draft = {path.parent.name: json.loads(path.read_text()) for path in files}
    assert sorted(by_draft) == sorted(d.value for d in Draft), files
    digest = hashlib.sha256(capture.read_bytes()).hexdigest()
    for client, draft in CLIENTS:
        vector = by_draft[draft]
        sent, answered = _steps_bytes(vector, "send"), _steps_bytes(vector, "expect")
        assert sent.startswith(f"GET /capture?{client}-{draft} HTTP/1.1\r\n".encode()), sent
        provenance = vector["provenance"]
        assert provenance["kind"] == "imported"
        assert provenance["capture"] == {
            "file": "loopback.pcap", "format": "pcap", "sha256": digest,
            "stream": provenance["capture"]["stream"]}
        assert provenance["capture"]["stream"].endswith(f"→ 127.0.0.1:{port}")
        assert provenance["tool"]["command"] == "vectors import"
        assert vector["steps"][-1] == {"expect_eof": True}  # every server closed
        if draft == "hixie-75":  # closing is closing TCP: the client's EOF comes first
            assert {"send_eof": True} in vector["steps"]
        if client == "wscompat":  # hixie frames are readable as they are
            message = f"Hello {draft}".encode()
            if draft.startswith("hixie"):
                assert b"\x00" + message + b"\xff" in sent and message in answered
            else:  # masked by the client, echoed unmasked: 0x81, then the length
                assert bytes((0x81, len(message))) + message in answered
    rfc = by_draft["rfc6455"]
    assert bytes((0x82, 126, 1, 0)) + bytes(range(256)) in _steps_bytes(rfc, "expect")

    await _run([wscompat_executable(), "vectors", "check", str(out), "--bytewise"], tmp_path)

    second = free_port()
    serve = [wscompat_executable(), "serve", "--port", str(second)]
    async with started(serve, tmp_path, tmp_path / "second.log") as server:
        await listening(server, second)
        report = json.loads(await _run(
            [wscompat_executable(), "replay", f"ws://127.0.0.1:{second}/", str(out), "--json"],
            tmp_path, bound=60))
    assert report["ok"] is True, report
    assert {v["status"] for v in report["vectors"]} == {"expected"}
    assert len(report["vectors"]) == len(CLIENTS)

    # The same capture as pcapng (Wireshark's editcap) imports to the same steps.
    editcap = _tool("editcap", "tshark (wireshark-common)")
    converted = tmp_path / "loopback.pcapng"
    await _run([editcap, "-F", "pcapng", str(capture), str(converted)], tmp_path)
    again = tmp_path / "again"
    await _run([wscompat_executable(), "vectors", "import", str(converted), "--out",
                str(again)], tmp_path)
    for path in files:
        twin = json.loads((again / path.parent.name / path.name).read_text())
        assert twin["steps"] == json.loads(path.read_text())["steps"], path.name
        assert twin["provenance"]["capture"]["format"] == "pcapng"


def test_import_refuses_what_is_not_a_capture(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a capture")
    done = subprocess.run([wscompat_executable(), "vectors", "import", str(junk), "--out",
                           str(tmp_path / "out")], env=environment(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "not a pcap, pcapng or HAR file" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


# -- reassembly -----------------------------------------------------------------------------


def _segments(vector_name: str) -> list[tuple[Any, ...]]:
    """The TCP segments of a corpus vector exported as a capture, as TcpStreams takes them."""
    data = pcapng_bytes(load(CORPUS / f"{vector_name}.json"))
    segments = []
    for _, frame in dpkt.pcapng.Reader(io.BytesIO(data)):
        ip = dpkt.ethernet.Ethernet(frame).data
        tcp = ip.data
        segments.append(((".".join(map(str, ip.src)), tcp.sport),
                         (".".join(map(str, ip.dst)), tcp.dport), tcp.seq, tcp.flags,
                         bytes(tcp.data)))
    return segments


def _reassembled(segments: list[tuple[Any, ...]]) -> TcpStreams:
    streams = TcpStreams()
    for src, dst, seq, flags, payload in segments:
        streams.add(None, src, dst, seq, syn=bool(flags & dpkt.tcp.TH_SYN),
                    ack=bool(flags & dpkt.tcp.TH_ACK), fin=bool(flags & dpkt.tcp.TH_FIN),
                    rst=bool(flags & dpkt.tcp.TH_RST), payload=payload)
    return streams


def _split(segments: list[tuple[Any, ...]], size: int) -> list[tuple[Any, ...]]:
    """Every data segment cut into pieces of ``size`` bytes (FIN on the last)."""
    out = []
    for src, dst, seq, flags, payload in segments:
        pieces = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            out.append((src, dst, (seq + index * size) % 2**32,
                        flags if last else flags & ~dpkt.tcp.TH_FIN, piece))
    return out


def test_reassembly_puts_reordered_repeated_segments_in_order() -> None:
    segments = _split(_segments("hixie-76/close-handshake-client"), 7)
    expected = _reassembled(segments).exchanges()[0]
    head, data = segments[:3], segments[3:]
    rng = random.Random(13)
    for _ in range(20):
        shuffled = [*data, *rng.sample(data, 10)]  # retransmissions too
        # Each direction's segments out of order, the directions' order kept.
        client = [s for s in shuffled if s[1][1] == 80]
        server = [s for s in shuffled if s[1][1] != 80]
        rng.shuffle(client)
        rng.shuffle(server)
        got = _reassembled([*head, *client, *server]).exchanges()[0]
        assert got.data("client") == expected.data("client")
        assert got.data("server") == expected.data("server")
        ends = [kind for kind, _ in got.events if kind.endswith("_eof")]
        assert ends == [kind for kind, _ in expected.events if kind.endswith("_eof")]
        assert ends == ["server_eof"]


def test_reassembly_notes_a_segment_the_capture_lost() -> None:
    segments = _split(_segments("rfc6455/frame-text-hello"), 20)
    lost = next(i for i, s in enumerate(segments) if s[1][1] == 80 and s[4] and i > 5)
    exchange = _reassembled(segments[:lost] + segments[lost + 1 :]).exchanges()[0]
    assert any("the capture lost 20 bytes the client sent" in note for note in exchange.notes)


def test_a_new_syn_on_the_same_ports_is_a_new_connection() -> None:
    segments = _segments("rfc6455/frame-text-hello")
    moved = [(src, dst, (seq + 777_777) % 2**32, flags, payload)
             for src, dst, seq, flags, payload in segments]
    exchanges = _reassembled(segments + moved).exchanges()
    assert len(exchanges) == 2
    assert exchanges[0].data("client") == exchanges[1].data("client")


def test_sequence_numbers_wrap() -> None:
    segments = _split(_segments("rfc6455/frame-binary-256"), 50)
    wrapped = [(src, dst, (seq - 1_000_100) % 2**32, flags, payload)
               for src, dst, seq, flags, payload in segments]
    plain = _reassembled(segments).exchanges()[0]
    across = _reassembled(wrapped).exchanges()[0]
    assert across.data("client") == plain.data("client")
    assert len(plain.data("client")) > 256
