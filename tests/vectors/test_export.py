"""``wscompat vectors export --pcap``: the capture holds the vector's bytes exactly (read
back with dpkt), Wireshark's tshark decodes its frames as WebSocket, and importing it
gives every corpus vector's exchange back."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
from pathlib import Path

import dpkt  # type: ignore[import-untyped]
import pytest

from tests.docs.processes import environment, wscompat_executable
from wscompat.protocol.proxy_header import leading_header_size
from wscompat.vectors.capture import CaptureInfo, exchange_vector
from wscompat.vectors.export import CLIENT, SERVER, pcapng_bytes
from wscompat.vectors.format import Vector, load, load_all
from wscompat.vectors.pcap import read_capture
from wscompat.vectors.wire import pieces

ROOT = Path(__file__).parents[2]
CORPUS = ROOT / "vectors"
BOUND = 60


def _export(tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"{name.replace('/', '-')}.pcapng"
    done = subprocess.run([wscompat_executable(), "vectors", "export", "--pcap", str(target),
                           name], cwd=tmp_path, env=environment(), capture_output=True,
                          text=True, timeout=BOUND, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{target}: {name} as a pcapng capture" in done.stdout
    return target


def _wire(vector: Vector) -> dict[str, bytes]:
    """What each side of the vector puts on the wire, whole."""
    return {side: b"".join(p.data for p in pieces(vector) if p.side == side and not p.eof)
            for side in ("client", "server")}


def _payloads(data: bytes) -> tuple[dict[str, bytes], list[int], str]:
    """Each side's TCP payload in capture order, the TCP flags, and the file's comment,
    read with dpkt alone."""
    reader = dpkt.pcapng.Reader(io.BytesIO(data))
    assert reader.datalink() == dpkt.pcap.DLT_EN10MB
    sides = {"client": b"", "server": b""}
    flags = []
    for _, frame in reader:
        ip = dpkt.ethernet.Ethernet(frame).data
        tcp = ip.data
        side = "client" if (tcp.sport, tcp.dport) == (CLIENT[1], SERVER[1]) else "server"
        sides[side] += bytes(tcp.data)
        flags.append(tcp.flags)
    section = dpkt.pcapng.SectionHeaderBlockLE(data[: struct.unpack("<I", data[4:8])[0]])
    comment = next(o.text for o in section.opts if o.code == dpkt.pcapng.PCAPNG_OPT_COMMENT)
    return sides, flags, comment


@pytest.mark.parametrize("name", ["rfc6455/frame-text-hello", "hixie-76/close-handshake-client",
                                  "hybi-08/frame-binary-64k", "rfc6455/reject-version-25"])
def test_dpkt_reads_back_the_vectors_bytes(tmp_path: Path, name: str) -> None:
    vector = load(CORPUS / f"{name}.json")
    sides, flags, comment = _payloads(_export(tmp_path, name).read_bytes())
    assert sides == _wire(vector)
    syn, syn_ack = dpkt.tcp.TH_SYN, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK
    assert flags[:3] == [syn, syn_ack, dpkt.tcp.TH_ACK]
    fins = sum(1 for f in flags if f & dpkt.tcp.TH_FIN)
    assert fins == sum(1 for p in pieces(vector) if p.eof)
    assert f"wscompat vector {name}: {vector.name}" in comment
    if name.endswith("reject-version-25"):  # expect_status stands for many answers
        assert "any HTTP response with status 426" in comment


def test_tshark_decodes_the_frames_as_websocket(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is missing: tests/run.sh installs Debian's tshark", pytrace=False)
    capture = _export(tmp_path, "rfc6455/frame-fragmented-hello")
    done = subprocess.run(
        [tshark, "-r", str(capture), "-Y", "websocket", "-T", "fields", "-E", "separator=;",
         "-e", "websocket.opcode", "-e", "websocket.fin", "-e", "websocket.mask",
         "-e", "websocket.masking_key"],
        capture_output=True, text=True, timeout=BOUND, check=False, env={
            **environment(), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    rows = [line.split(";") for line in done.stdout.splitlines() if line]
    # Two masked fragments in (text, then continuation), one unmasked text frame back.
    assert [row[:3] for row in rows] == [["1", "0", "1"], ["0", "1", "1"], ["1", "1", "0"]], rows
    assert rows[0][3].replace(":", "") == "37fa213d"
    summary = subprocess.run([tshark, "-r", str(capture)], capture_output=True, text=True,
                             timeout=BOUND, check=False, env={**environment(),
                                                              "HOME": str(tmp_path)})
    assert "GET / HTTP/1.1" in summary.stdout
    assert "101 Switching Protocols" in summary.stdout
    assert "Malformed" not in summary.stdout and "TCP Previous segment" not in summary.stdout


def test_every_corpus_vector_survives_export_and_import(tmp_path: Path) -> None:
    """Export, then import with the packet reader: each side's bytes, each EOF, and every
    frame boundary come back (consecutive sends of one side become one step)."""
    count = 0
    for vector in load_all([CORPUS]):
        if vector.http2:
            continue  # the importer reads HTTP/1.1 exchanges: test_http2_vectors exports these
        capture = tmp_path / "one.pcapng"
        capture.write_bytes(pcapng_bytes(vector))
        kind, exchanges = read_capture(capture)
        assert kind == "pcapng" and len(exchanges) == 1, vector.id
        exchange = exchanges[0]
        assert {s: exchange.data(s) for s in ("client", "server")} == _wire(vector), vector.id
        raw = exchange_vector(exchange, CaptureInfo("one.pcapng", "pcapng", "0" * 64),
                              stream="test")
        assert raw is not None, vector.id
        path = tmp_path / raw["draft"] / "imported.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(raw))
        again = load(path)
        wire = _wire(vector)
        # A PROXY protocol header is left out on import, as the recorder leaves it out.
        wire["client"] = wire["client"][leading_header_size(wire["client"]):]
        assert _wire(again) == wire, vector.id
        kinds = [p.side + ("_eof" if p.eof else "") for p in pieces(vector) if p.side]
        merged = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
        assert [p.side + ("_eof" if p.eof else "") for p in pieces(again)] == merged, vector.id
        count += 1
    assert count >= 200
