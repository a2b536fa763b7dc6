"""``wscompat serve`` refuses what cannot work before it serves anything, in one line.

Each case runs the real command in a subprocess. A bad value is a usage error: exit
status 2, the ``serve`` usage line, then one ``wscompat serve: error:`` line naming the
flag and the value. What the system refuses (a port taken, a name that does not
resolve, a file that cannot be read or used, a folder that cannot be written) exits 1
with one ``wscompat: error:`` line naming the flag and the value.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

USAGE = "usage: wscompat serve [options]"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

APP = """\
import json

def not_async(ws):
    pass

async def no_argument():
    pass

class Handler:
    async def __call__(self, ws):
        pass

class SyncHandler:
    def __call__(self, ws):
        pass

handler_object = Handler()
sync_object = SyncHandler()
"""


def wscompat(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wscompat", *argv], capture_output=True, text=True,
        timeout=60, cwd=cwd, env=ENV, check=False,
    )


def usage_error(done: subprocess.CompletedProcess[str], *names: str) -> str:
    """The error line of a usage error, which names each of ``names``."""
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 2, done.stderr
    assert lines[0] == USAGE
    assert lines[1].startswith("wscompat serve: error: "), done.stderr
    for name in names:
        assert name in lines[1], (name, lines[1])
    return lines[1]


def failure(done: subprocess.CompletedProcess[str], *names: str) -> str:
    """The one line of a failure at start, which names each of ``names``."""
    lines = done.stderr.splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("wscompat: error: "), done.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "broken.py").write_text("import json\n\nLIMIT = 1 / 0\n")
    return tmp_path


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other socket listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A certificate, its key, their chain in one file, and a key of another one."""
    folder = tmp_path_factory.mktemp("pem")
    ca = trustme.CA()
    cert, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    files = {"cert": cert.cert_chain_pems[0], "key": cert.private_key_pem,
             "other_key": other.private_key_pem}
    paths = {}
    for name, blob in files.items():
        paths[name] = folder / f"{name}.pem"
        blob.write_to_path(str(paths[name]))
    paths["both"] = folder / "both.pem"
    paths["both"].write_bytes(paths["cert"].read_bytes() + paths["key"].read_bytes())
    return paths


# -- usage errors: exit 2 under the serve usage line -----------------------------------------


BAD_VALUES: list[tuple[list[str], list[str]]] = [
    (["--port", "99999"], ["--port", "'99999'", "0 to 65535"]),
    (["--read-size", "1GiB"], ["--read-size", "1073741824", "at most"]),
    (["--workers", "0"], ["--workers", "'0'"]),
    (["--metrics-port", "70000"], ["--metrics-port", "'70000'"]),
    (["--health-path", "healthz"], ["--health-path", "'healthz'"]),
    (["--drain-time", "-1"], ["--drain-time", "'-1'"]),
    (["--log-format", "xml"], ["--log-format", "'xml'"]),
    (["--port", "-1"], ["--port", "'-1'"]),
    (["--port", "http"], ["--port", "'http'"]),
    (["--policy-port", "65536"], ["--policy-port", "'65536'"]),
    (["--idle-timeout", "-5"], ["--idle-timeout", "'-5'", "'none'"]),
    (["--close-timeout", "0"], ["--close-timeout", "'0'", "above 0"]),
    (["--handshake-timeout", "soon"], ["--handshake-timeout", "'soon'"]),
    (["--ping-interval", "nan"], ["--ping-interval", "'nan'"]),
    (["--ping-timeout", "inf"], ["--ping-timeout", "'inf'"]),
    (["--tls-handshake-timeout", "-1"], ["--tls-handshake-timeout", "'-1'"]),
    (["--tcp-keepalive", "100000"], ["--tcp-keepalive", "'100000'", "32767"]),
    (["--max-message-size", "1MB"], ["--max-message-size", "'1MB'", "KiB", "MiB"]),
    (["--read-size", "0"], ["--read-size", "'0'"]),
    (["--write-limit", "-1"], ["--write-limit", "'-1'"]),
    (["--max-queue", "0"], ["--max-queue", "'0'"]),
    (["--max-headers", "many"], ["--max-headers", "'many'"]),
    (["--max-connections", "0"], ["--max-connections", "'0'", "'none'"]),
    (["--record-max-files", "0"], ["--record-max-files", "'0'"]),
    (["--record-frames", "-1"], ["--record-frames", "'-1'"]),
    (["--compression-level", "12"], ["--compression-level", "12"]),
    (["--drafts", "13,9"], ["--drafts", "'9'"]),
    (["--origins", "https://a.example/path"], ["--origins", "a.example/path"]),
    (["--subprotocols", "chat v2"], ["--subprotocols", "'chat v2'"]),
    (["--port"], ["--port"]),
    (["--bogus", "1"], ["unrecognized arguments: --bogus 1"]),
    (["--require-tls"], ["--require-tls", "--certfile"]),
]
"""Command lines with a bad value, and what the error line must name."""


@pytest.mark.parametrize(("argv", "names"), BAD_VALUES,
                         ids=[" ".join(argv) for argv, _ in BAD_VALUES])
def test_a_bad_value_is_a_usage_error(argv: list[str], names: list[str]) -> None:
    usage_error(wscompat("serve", *argv), *names)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    for flag in ("--certfile", "--policy-file"):
        usage_error(wscompat("serve", flag, missing), flag, repr(missing), "no such file")
    usage_error(wscompat("serve", "--certfile", str(tmp_path)), "--certfile", "directory")


def test_a_key_without_its_certificate(pem: dict[str, Path]) -> None:
    usage_error(wscompat("serve", "--keyfile", str(pem["key"])), "--keyfile", "--certfile")


def test_record_needs_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "passwd"
    file.write_text("root:x:0:0\n")
    usage_error(wscompat("serve", "--record", str(file)), "--record", repr(str(file)),
                "not a directory")


def test_the_policy_port_cannot_be_the_port() -> None:
    usage_error(wscompat("serve", "--port", "8443", "--policy-port", "8443"),
                "--policy-port", "8443", "--port")


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("app:not_async", ["--app", "'app:not_async'", "async"]),
        ("json:dumps", ["--app", "'json:dumps'", "async"]),
        ("app:SyncHandler", ["--app", "'app:SyncHandler'", "async"]),
        ("app:sync_object", ["--app", "'app:sync_object'", "async"]),
        ("app:no_argument", ["--app", "'app:no_argument'", "one argument"]),
        ("app:missing", ["--app", "'app:missing'", "no 'missing'"]),
        ("no_such_module:handler", ["--app", "no module named 'no_such_module'"]),
        ("app", ["--app", "'app'", "MODULE:FUNCTION"]),
    ],
)
def test_app_must_name_an_async_function(app_dir: Path, spec: str, names: list[str]) -> None:
    usage_error(wscompat("serve", "--app", spec, cwd=app_dir), *names)


def test_other_commands_keep_their_own_usage_line() -> None:
    done = wscompat("vectors", "check", "--bogus")
    lines = done.stderr.splitlines()
    assert done.returncode == 2
    assert lines[0].startswith("usage: wscompat vectors check ")
    assert lines[-1] == "wscompat vectors check: error: unrecognized arguments: --bogus"


# -- failures at start: exit 1, one line --------------------------------------------------------


def test_a_port_in_use(taken_port: int) -> None:
    line = failure(wscompat("serve", "--port", str(taken_port)),
                   "--host '127.0.0.1'", f"--port {taken_port}", "in use")
    assert "Traceback" not in line


def test_a_policy_port_in_use(taken_port: int) -> None:
    failure(wscompat("serve", "--port", "0", "--policy-port", str(taken_port)),
            f"--policy-port {taken_port}", "in use")


def test_a_host_that_does_not_resolve() -> None:
    failure(wscompat("serve", "--host", "no-such-host.invalid", "--port", "0"),
            "--host 'no-such-host.invalid'", "cannot resolve")


@pytest.mark.parametrize(
    ("files", "names"),
    [
        (["cert"], ["--certfile", "no --keyfile", "no PEM private key", "give the key"]),
        (["cert", "other_key"], ["--certfile", "--keyfile", "other_key.pem", "not the "
                                 "certificate's"]),
        (["key", "key"], ["--certfile", "--keyfile", "no PEM certificate"]),
        (["cert", "cert"], ["--certfile", "--keyfile", "no PEM private key in --keyfile"]),
    ],
    ids=["certificate-without-key", "key-of-another", "key-as-certificate",
         "certificate-as-key"],
)
def test_a_certificate_and_key_that_do_not_load(
    pem: dict[str, Path], files: list[str], names: list[str]
) -> None:
    argv = ["--certfile", str(pem[files[0]])]
    if len(files) > 1:
        argv += ["--keyfile", str(pem[files[1]])]
    line = failure(wscompat("serve", "--port", "0", *argv), *names, str(pem[files[0]]))
    assert "PEM lib" not in line


def test_a_file_that_cannot_be_read() -> None:
    # Reading /proc/self/mem at offset 0 fails (EIO) for every user, root included.
    failure(wscompat("serve", "--port", "0", "--certfile", "/proc/self/mem"),
            "--certfile '/proc/self/mem'", "cannot read it")


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"<cross-domain-policy>\xff</cross-domain-policy>", "not UTF-8"),
     (b"<cross-domain-policy/>\x00", "NUL")],
)
def test_a_policy_file_that_cannot_be_used(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "policy.xml"
    path.write_bytes(content)
    failure(wscompat("serve", "--port", "0", "--policy-file", str(path)),
            "--policy-file", repr(str(path)), problem)


def test_a_record_folder_that_cannot_be_written() -> None:
    # sysfs refuses new files to every user, root included.
    failure(wscompat("serve", "--port", "0", "--record", "/sys"), "--record '/sys'",
            "cannot write there")
    failure(wscompat("serve", "--port", "0", "--record", "/sys/wscompat"),
            "--record '/sys/wscompat'", "cannot write there")


def test_an_app_that_fails_to_import(app_dir: Path) -> None:
    failure(wscompat("serve", "--port", "0", "--app", "broken:handler", cwd=app_dir),
            "--app 'broken:handler'", "broken.py:3", "ZeroDivisionError")


# -- what passes the checks serves ---------------------------------------------------------


def test_checked_flags_serve(app_dir: Path, pem: dict[str, Path]) -> None:
    """An object with an async __call__ is a handler; --record's folder is made (0700)
    before the first connection; a certificate with its key in one file loads."""
    folder = app_dir / "captured" / "today"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wscompat", "serve", "--port", "0", "--app",
         "app:handler_object", "--record", str(folder), "--certfile", str(pem["both"]),
         "--idle-timeout", "none", "--max-message-size", "1.5MiB"],
        stderr=subprocess.PIPE, text=True, cwd=app_dir, env=ENV,
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        while not lines or not re.search(r"listening on \S+ port \d+", lines[-1]):
            lines.append(proc.stderr.readline())
            assert lines[-1] and len(lines) < 20, lines
        assert folder.is_dir()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert [p.name for p in folder.iterdir()] == []  # the write probe is gone
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait(timeout=10)
