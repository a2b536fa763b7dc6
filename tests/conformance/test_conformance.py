"""Autobahn|Testsuite sections 1-7, 9 and 10 against wscompat's echo server.

Every case of ``conformance/cases.py`` runs against an in-process ``wscompat`` echo
server and must come out OK, NON-STRICT or INFORMATIONAL (docs/conformance.md says how
each is decided). Autobahn's 1 s pauses run at a fifth of that, and section 9 at 1/16
of its sizes, so the whole catalogue takes seconds. The judging itself is checked on
recorded observations of servers that misbehave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

import wscompat
from tests.conformance.cases import Case, Event, catalogue, largest_message, utf8_sequences
from tests.conformance.runner import Observation, Timing, Verdict, budget, judge, run_case
from wscompat.cli import echo

Starter = Callable[..., Awaitable[wscompat.Server]]

CASES = catalogue()
BY_ID = {case.id: case for case in CASES}
TIMING = Timing(pause_scale=0.2)
ACCEPTED = {Verdict.OK, Verdict.NON_STRICT, Verdict.INFORMATIONAL}

@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_autobahn_case(case: Case, start_server: Starter) -> None:
    server = await start_server(echo, max_message_size=largest_message(CASES))
    with trio.fail_after(budget(case, TIMING) + 5):
        result = await run_case(case, "127.0.0.1", server.port, TIMING)
    assert result.verdict in ACCEPTED, result.explain()


def test_catalogue_has_autobahns_cases() -> None:
    sections = Counter(case.section for case in CASES)
    assert sections == {"1": 16, "2": 11, "3": 7, "4": 10, "5": 20, "6": 145, "7": 37,
                        "9": 54, "10": 1}


def test_utf8_cases_agree_with_pythons_decoder() -> None:
    """6.5-6.23 say which payloads are valid; CPython's strict decoder must agree."""

    def valid(payload: bytes) -> bool:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    disagree = [case_id for case_id, _, payload, flag in utf8_sequences()
                if valid(payload) != flag]
    assert disagree == []


HELLO = Event.message("Hello, world!")


@pytest.mark.parametrize(
    ("case_id", "seen", "verdict"),
    [
        pytest.param("2.5", {"dropped_by_client": True}, Verdict.FAILED,
                     id="never fails the connection"),
        pytest.param("2.5", {"server_dropped": True}, Verdict.OK,
                     id="fails by closing TCP without a Close"),
        pytest.param("3.2", {"events": [HELLO], "close_received": True, "close_code": 1002,
                             "clean": True, "server_dropped": True}, Verdict.OK,
                     id="echo then fail"),
        pytest.param("3.2", {"close_received": True, "close_code": 1002, "clean": True,
                             "server_dropped": True}, Verdict.NON_STRICT,
                     id="fail before the echo"),
        pytest.param("6.3.1", {"close_received": True, "close_code": 1002, "clean": True,
                               "server_dropped": True}, Verdict.NON_STRICT,
                     id="1002 where 1007 is expected"),
        pytest.param("6.3.1", {"closed_by_client": True, "close_received": True,
                               "close_code": 1000, "clean": True, "server_dropped": True},
                     Verdict.FAILED, id="invalid UTF-8 never detected"),
        pytest.param("6.4.1", {"events": [Event.timeout("A"), Event.timeout("B")],
                               "close_received": True, "close_code": 1007, "clean": True,
                               "server_dropped": True}, Verdict.NON_STRICT,
                     id="fails only at the end of the message"),
        pytest.param("6.4.1", {"close_received": True, "close_code": 1007, "clean": True,
                               "server_dropped": True}, Verdict.FAILED,
                     id="fails before the invalid fragment"),
        pytest.param("7.5.1", {"closed_by_client": True, "close_received": True,
                               "close_code": 1002, "clean": True, "server_dropped": True},
                     Verdict.OK, id="1002 allowed beside 1007"),
        pytest.param("7.9.1", {"closed_by_client": True, "close_received": True,
                               "close_code": 1000, "clean": True, "server_dropped": True},
                     Verdict.FAILED, id="wrong close code in section 7"),
        pytest.param("7.9.1", {"closed_by_client": True, "dropped_by_client": True},
                     Verdict.FAILED, id="Close ignored"),
        pytest.param("1.1.1", {"events": [Event.message("")], "closed_by_client": True,
                               "close_received": True, "close_code": 1000, "clean": True,
                               "dropped_by_client": True}, Verdict.NON_STRICT,
                     id="leaves TCP open after the handshake"),
        pytest.param("1.1.1", {"server_error": "server sent a masked frame",
                               "dropped_by_client": True}, Verdict.FAILED,
                     id="masked server frame"),
        pytest.param("7.13.1", {"dropped_by_client": True}, Verdict.INFORMATIONAL,
                     id="informational whatever happens"),
    ],
)
def test_judging(case_id: str, seen: dict[str, Any], verdict: Verdict) -> None:
    result = judge(BY_ID[case_id], Observation(**seen))
    assert result.verdict is verdict, result.explain()
