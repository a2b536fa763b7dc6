"""The short run of every atheris harness in fuzzing/: a few thousand inputs each.

A harness lets only its parser's documented exceptions escape and checks its documented
outcomes; anything else is a crash, which makes libFuzzer exit non-zero. The seed is
fixed, so that this run is the same every time; fuzzing/README.md describes the long,
open-ended runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESSES = sorted(p.stem for p in (ROOT / "fuzzing").glob("fuzz_*.py"))
RUNS = 5000
RUNS_OF = {"fuzz_http2": 1500}
"""Fewer inputs where each one is dear: every HTTP/2 input builds an h2 session (about
4 ms), so 5,000 would take the harness 20 s of the suite."""
SEEDS = {"fuzz_vectors_loader": [ROOT / "vectors"]}
"""Read-only seed corpora: the vectors give the loader valid files to start from."""


def test_every_parser_has_a_harness() -> None:
    assert HARNESSES == [
        "fuzz_client_handshake", "fuzz_hixie_framer", "fuzz_http2", "fuzz_http_head",
        "fuzz_hybi_framer", "fuzz_origin", "fuzz_proxy_header", "fuzz_recorder",
        "fuzz_server_handshake", "fuzz_sniff", "fuzz_vectors_loader",
    ]


@pytest.mark.parametrize("harness", HARNESSES)
def test_harness_short_run(harness: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    runs = RUNS_OF.get(harness, RUNS)
    command = [
        sys.executable, str(ROOT / "fuzzing" / f"{harness}.py"),
        f"-runs={runs}", "-seed=1", "-max_total_time=60", "-rss_limit_mb=2048",
        f"-artifact_prefix={tmp_path}/", str(corpus), *map(str, SEEDS.get(harness, [])),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    ran = re.search(r"^Done (\d+) runs", output, re.MULTILINE)
    assert ran is not None and int(ran.group(1)) >= runs, output[-2000:]
    assert not list(tmp_path.glob("crash-*"))
