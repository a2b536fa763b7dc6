"""The judging itself, on recorded observations of servers that misbehave: Autobahn's
rules for sections 1-13 and the legacy catalogue's, without sockets."""

from __future__ import annotations

from typing import Any

import pytest

from wscompat.conformance.cases import Event, Sizes, autobahn, utf8_sequences
from wscompat.conformance.catalogue import catalogue
from wscompat.conformance.legacy import LegacyCase, judge_legacy
from wscompat.conformance.verdict import Observation, Verdict, judge

CASES = {case.id: case for case in catalogue(Sizes(16, 100))}
HELLO = Event.message("Hello, world!")


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
    assert len(autobahn()) == 301


CLEAN = {"closed_by_client": True, "close_received": True, "close_code": 1000, "clean": True,
         "server_dropped": True}


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
        pytest.param("6.3.1", CLEAN, Verdict.FAILED, id="invalid UTF-8 never detected"),
        pytest.param("6.4.1", {"events": [Event.timeout("A"), Event.timeout("B")],
                               "close_received": True, "close_code": 1007, "clean": True,
                               "server_dropped": True}, Verdict.NON_STRICT,
                     id="fails only at the end of the message"),
        pytest.param("6.4.1", {"close_received": True, "close_code": 1007, "clean": True,
                               "server_dropped": True}, Verdict.FAILED,
                     id="fails before the invalid fragment"),
        pytest.param("7.5.1", {**CLEAN, "close_code": 1002}, Verdict.OK,
                     id="1002 allowed beside 1007"),
        pytest.param("7.9.1", CLEAN, Verdict.FAILED, id="wrong close code in section 7"),
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
        pytest.param("1.1.1", {"refused": "HTTP/1.1 403 Forbidden"}, Verdict.FAILED,
                     id="RFC 6455 handshake refused"),
        pytest.param("12.1.1", CLEAN, Verdict.UNIMPLEMENTED,
                     id="permessage-deflate declined"),
        pytest.param("12.1.1", {**CLEAN, "extensions": "permessage-deflate",
                                "events": [Event.echoed(10)]}, Verdict.OK,
                     id="every compressed message echoed"),
        pytest.param("12.1.1", {**CLEAN, "extensions": "permessage-deflate",
                                "events": [Event.message("other")]}, Verdict.FAILED,
                     id="a compressed message echoed wrong"),
        pytest.param("hybi-07.1", {"refused": "HTTP/1.1 426 Upgrade Required"},
                     Verdict.UNIMPLEMENTED, id="version 7 refused"),
        pytest.param("hybi-08.1", {**CLEAN, "events": [HELLO]}, Verdict.OK,
                     id="version 8 echo"),
    ],
)
def test_judging(case_id: str, seen: dict[str, Any], verdict: Verdict) -> None:
    case = CASES[case_id]
    assert not isinstance(case, LegacyCase)
    result = judge(case, Observation(**seen))
    assert result.verdict is verdict, result.explain()


ECHOED = {"events": [HELLO], "dropped_by_client": True}


@pytest.mark.parametrize(
    ("case_id", "seen", "verdict"),
    [
        pytest.param("hixie-75.1", ECHOED, Verdict.OK, id="echoed, left open"),
        pytest.param("hixie-75.1", {**ECHOED, "server_dropped": True, "dropped_by_client":
                                    False}, Verdict.FAILED, id="server closed first"),
        pytest.param("hixie-75.1", {"events": [HELLO, HELLO], "dropped_by_client": True},
                     Verdict.FAILED, id="echoed twice"),
        pytest.param("hixie-75.1", {"refused": "HTTP/1.1 400 Bad Request"},
                     Verdict.UNIMPLEMENTED, id="draft not spoken"),
        pytest.param("hixie-75.1", {"handshake_error": "WebSocket-Location is []"},
                     Verdict.FAILED, id="wrong answer"),
        pytest.param("hixie-75.1", {"server_error": "server sent a length frame"},
                     Verdict.FAILED, id="server sent a non-text frame"),
        pytest.param("hixie-75.12", {"server_dropped": True}, Verdict.INFORMATIONAL,
                     id="invalid UTF-8 is the server's call"),
        pytest.param("hixie-76.17", {"close_received": True, "server_dropped": True},
                     Verdict.OK, id="closing handshake"),
        pytest.param("hixie-76.17", {"close_received": True, "dropped_by_client": True},
                     Verdict.NON_STRICT, id="TCP left open after the closing handshake"),
        pytest.param("hixie-76.17", {"server_dropped": True}, Verdict.FAILED,
                     id="no 0xFF 0x00 back"),
        pytest.param("hixie-76.21", {"refused": "HTTP/1.1 400 Bad Request"}, Verdict.OK,
                     id="bad key refused"),
        pytest.param("hixie-76.21", {}, Verdict.FAILED, id="bad key accepted"),
        pytest.param("hixie-76.21", {"handshake_error": "no complete answer in 5 s"},
                     Verdict.NON_STRICT, id="bad key neither accepted nor refused"),
    ],
)
def test_judging_legacy(case_id: str, seen: dict[str, Any], verdict: Verdict) -> None:
    case = CASES[case_id]
    assert isinstance(case, LegacyCase)
    result = judge_legacy(case, Observation(**seen))
    assert result.verdict is verdict, result.explain()
