"""Every configuration file the docs show is accepted by the program it is written for.

- ``ini``: a systemd unit. It must be complete (``[Unit]``, ``[Service]``,
  ``[Install]``), ``systemd-analyze verify`` must accept it without a word about it,
  and its service must run as written: its ``ExecStart`` (``wscompat serve``; the path
  shown is replaced by the installed ``wscompat`` when it does not exist here) runs in
  its ``WorkingDirectory`` (a temporary directory holding the page's ``# NAME.py``
  files, required when ``--app`` is given) on a free port, answers a WebSocket echo,
  and exits 0 on its ``KillSignal`` within ``TimeoutStopSec``, which must leave room
  for a graceful stop (``drain_time`` and ``close_timeout``).
- ``nginx``: ``nginx -t`` accepts it inside the configuration it belongs in (a
  ``location`` in a ``server`` in ``http``).
- ``xml``: a Flash socket policy, which must be exactly what a wscompat server answers
  to ``<policy-file-request/>`` by default.
- ``json``: it parses; a test vector (with ``steps``) must also be valid for
  vectors/schema.json and pass ``wscompat vectors check --bytewise``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import trio

from wscompat import Draft, ServerOptions

from ..conftest import Starter
from .blocks import ROOT, Block, each, write_page_files
from .processes import (
    MESSAGE,
    echo,
    environment,
    free_port,
    listening,
    started,
    wscompat_executable,
)

KINDS = ("ini", "nginx", "xml", "json")
TOOL_BOUND = 30.0
"""Seconds for systemd-analyze, nginx -t or wscompat vectors check."""
UNIT_NAME = re.compile(r"^#\s*(?:\S*/)?(?P<name>[\w@.-]+\.service)\s*$", re.M)


def unit_entries(code: str) -> dict[str, list[tuple[str, str]]]:
    """The sections of a unit file, each with its ``Key=value`` lines in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in code.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None and "=" in line, f"not a unit file line: {line!r}"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def seconds(value: str) -> float:
    """A systemd time span: ``15``, ``15s``, ``2min``, ``1min 30s``."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, f"not a time span: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def tool(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()),
        None)
    assert found is not None, f"{name} is not installed (tests/run.sh installs it)"
    return found


async def run_tool(argv: list[str], cwd: Path) -> tuple[int, str]:
    with trio.fail_after(TOOL_BOUND):
        done = await trio.run_process(argv, cwd=cwd, env=environment(), check=False,
                                      capture_stdout=True, capture_stderr=True)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


async def check_unit(block: Block, directory: Path) -> None:
    sections = unit_entries(block.code)
    assert {"Unit", "Service", "Install"} <= sections.keys(), f"incomplete unit: {sections}"
    service = dict(sections["Service"])
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).is_absolute(), "systemd needs an absolute ExecStart path"
    assert Path(argv[0]).name == "wscompat" and argv[1] == "serve", argv
    if not Path(argv[0]).exists():
        argv[0] = wscompat_executable()
    workdir = directory / "workdir"
    workdir.mkdir()
    write_page_files(block.page, workdir)
    if "--app" in argv:
        assert "WorkingDirectory" in service, "--app imports from the working directory"
    replaced = {"ExecStart": shlex.join(argv), "WorkingDirectory": str(workdir)}
    lines = [
        f"{key}={replaced[key]}" if (key := line.partition("=")[0].strip()) in replaced else line
        for line in block.code.splitlines()
    ]
    name = UNIT_NAME.search(block.code)
    unit = directory / (name["name"] if name else "wscompat.service")
    unit.write_text("\n".join(lines) + "\n")
    status, said = await run_tool([tool("systemd-analyze"), "verify", str(unit)], directory)
    about = [line for line in said.splitlines() if unit.name in line]
    assert status == 0 and not about, f"systemd-analyze verify {unit.name}:\n{said}"

    shutdown = 0.0  # what a graceful stop may take: drain_time, then close_timeout
    for option in ("drain_time", "close_timeout"):
        flag = "--" + option.replace("_", "-")
        default = float(getattr(ServerOptions(), option, 0.0))
        shutdown += float(argv[argv.index(flag) + 1]) if flag in argv else default
    stop_bound = seconds(service.get("TimeoutStopSec", "90"))
    assert stop_bound > shutdown, (
        f"TimeoutStopSec={stop_bound} leaves no room for a graceful stop ({shutdown} s)")

    port = free_port()
    assert "--port" in argv, "a unit says which port it serves"
    argv[argv.index("--port") + 1] = str(port)
    kill = signal.Signals[service.get("KillSignal", "SIGTERM")]
    async with started(argv, workdir, directory / "service.log") as server:
        await listening(server, port)
        for draft in (Draft.RFC6455, Draft.HIXIE76):
            reply = await echo(f"ws://127.0.0.1:{port}/", draft=draft)
            assert MESSAGE in reply, (draft, reply)
        status = await server.stop(kill, bound=stop_bound)
        assert status == 0 and "Traceback" not in server.output(), server.describe()


NGINX_WRAPPING = {
    "location": "http {{\n{temps}\n    server {{\n        listen 127.0.0.1:{port};\n{block}\n"
                "    }}\n}}\n",
    "server": "http {{\n{temps}\n{block}\n}}\n",
}


async def check_nginx(block: Block, directory: Path) -> None:
    first = block.code.split()[0]
    assert first in NGINX_WRAPPING, f"no rule for where an nginx {first!r} block goes"
    temps = "\n".join(
        f"    {name}_temp_path {directory}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = directory / "nginx.conf"
    config.write_text(
        f"pid {directory}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        + NGINX_WRAPPING[first].format(temps=temps, port=free_port(), block=block.code))
    status, said = await run_tool(
        [tool("nginx"), "-t", "-p", str(directory), "-e", "stderr", "-c", str(config)], directory)
    assert status == 0, f"nginx -t:\n{said}\n{config.read_text()}"


async def check_policy(block: Block, start_server: Starter) -> None:
    assert "<cross-domain-policy>" in block.code, "no rule for XML that is not a policy"
    server = await start_server()
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(b"<policy-file-request/>\x00")
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
    assert answer == block.code.encode() + b"\x00", answer.decode(errors="replace")


async def check_json(block: Block, directory: Path) -> None:
    document = json.loads(block.code)
    if not (isinstance(document, dict) and "steps" in document):
        return
    schema = json.loads((ROOT / "vectors/schema.json").read_text())
    jsonschema.validate(document, schema)
    vector = directory / document["draft"] / "from-the-docs.json"
    vector.parent.mkdir()
    vector.write_text(block.code)
    status, said = await run_tool(
        [wscompat_executable(), "vectors", "check", "--bytewise", str(vector)], directory)
    assert status == 0, said


@each("ini")
async def test_the_systemd_unit_works(block: Block, tmp_path: Path) -> None:
    await check_unit(block, tmp_path)


@each("nginx")
async def test_nginx_accepts_the_configuration(block: Block, tmp_path: Path) -> None:
    await check_nginx(block, tmp_path)


@each("xml")
async def test_the_policy_is_what_the_server_answers(
    block: Block, start_server: Starter
) -> None:
    await check_policy(block, start_server)


@each("json")
async def test_the_json_is_valid(block: Block, tmp_path: Path) -> None:
    await check_json(block, tmp_path)


async def test_systemd_analyze_finds_a_broken_unit(tmp_path: Path) -> None:
    """The unit check relies on systemd-analyze naming the unit in what it reports."""
    unit = tmp_path / "broken.service"
    unit.write_text("[Service]\nExecStart=/bin/true\nRestrat=on-failure\n")
    status, said = await run_tool([tool("systemd-analyze"), "verify", str(unit)], tmp_path)
    assert status != 0 or unit.name in said, said


def test_time_spans_read_as_systemd_reads_them() -> None:
    assert [seconds(v) for v in ("15", "10s", "2min", "1min 30s")] == [15, 10, 120, 90]
