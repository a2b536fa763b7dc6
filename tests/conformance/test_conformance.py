"""The whole ``wscompat conform`` catalogue against wscompat's echo server.

Every case of Autobahn's sections 1-7, 9, 10, 12 and 13 and of the legacy catalogue runs
against an in-process ``wscompat`` echo server and must come out OK, NON-STRICT or
INFORMATIONAL (docs/conformance.md says how each is decided); the section 13 cases
whose offer asks for ``server_max_window_bits=8``, which wscompat declines
(docs/compression.md), must come out UNIMPLEMENTED. Autobahn's 1 s pauses run at a
fifth of that, section 9 at 1/16 of its sizes, sections 12 and 13 at 1/16 of the sizes
and 1/200 of the message counts, so the whole catalogue takes seconds.
"""

from __future__ import annotations

from collections import Counter

import pytest
import trio

from tests.conftest import Starter
from wscompat.cli import echo
from wscompat.conformance.cases import Sizes, autobahn
from wscompat.conformance.catalogue import AnyCase, catalogue, largest, select
from wscompat.conformance.compression import OFFERS, section12, section13
from wscompat.conformance.legacy import legacy
from wscompat.conformance.runner import play
from wscompat.conformance.timing import Timing, budget
from wscompat.conformance.verdict import Verdict
from wscompat.conformance.wire import Target

LIGHT = Sizes(16, 200)
"""Sections 12 and 13 in the test suite: 5 messages a case instead of 100."""
CASES: list[AnyCase] = [*autobahn(Sizes()), *section12(LIGHT), *section13(LIGHT), *legacy()]
TIMING = Timing(pause_scale=0.2)
ACCEPTED = {Verdict.OK, Verdict.NON_STRICT, Verdict.INFORMATIONAL}
DECLINED = {f"13.{n}" for n, (text, _) in enumerate(OFFERS, 1)
            if "server_max_window_bits=8" in text and "three offers" not in text}
"""13.3 and 13.5: the only offer asks for the window wscompat declines."""


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_case_against_wscompat(case: AnyCase, start_server: Starter) -> None:
    server = await start_server(echo, max_message_size=largest(CASES))
    with trio.fail_after(budget(case, TIMING) + 5):
        result = await play(case, Target("127.0.0.1", server.port, "/"), TIMING)
    if case.id.rsplit(".", 1)[0] in DECLINED:
        assert result.verdict is Verdict.UNIMPLEMENTED, result.explain()
    else:
        assert result.verdict in ACCEPTED, result.explain()


def test_catalogue_has_autobahns_cases_and_the_legacy_ones() -> None:
    sections = Counter(case.section for case in catalogue())
    assert sections == {"1": 16, "2": 11, "3": 7, "4": 10, "5": 20, "6": 145, "7": 37,
                        "9": 54, "10": 1, "12": 90, "13": 126, "hixie-75": 13,
                        "hixie-76": 23, "hybi-07": 7, "hybi-08": 8}
    assert {"13.3", "13.5"} == DECLINED


def test_selection_by_pattern_section_and_group() -> None:
    every = catalogue()
    assert [c.id for c in select(every, ["7.9.1", "hixie-75.1"])] == ["7.9.1", "hixie-75.1"]
    assert {c.section for c in select(every, ["hixie-76"])} == {"hixie-76"}
    assert select(every, ["7.7"]) == select(every, ["7.7.*"])
    assert len(select(every, ["7.7"])) == 13
    assert [c.id for c in select(every, ["1.1.?"])] == [f"1.1.{i}" for i in range(1, 9)]
    assert select(every, ["1"]) == [c for c in every if c.section == "1"]
    assert select(every, ["99"]) == []
    assert select(every, []) == every
