"""What the client observed, and the verdict on it, sans I/O.

Judging follows Autobahn's two checks, the events received and the closing behaviour,
then folds them into one verdict (see :func:`judge`) so a test or a CI job can act on
it. The legacy catalogue's judge (:func:`wscompat.conformance.legacy.judge_legacy`)
gives the same :class:`Result`, so one report shows both catalogues.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Protocol

from wscompat.conformance.cases import Case, Event, Expect
from wscompat.conformance.wire import WireLog

__all__ = [
    "Closing", "Judged", "Observation", "Result", "Verdict", "describe_event",
    "describe_events", "describe_expectation", "describe_observation", "judge", "same",
]


class Verdict(enum.Enum):
    """Autobahn's case verdicts. UNIMPLEMENTED: the server declined what the case
    needs (permessage-deflate in sections 12 and 13, a legacy draft's handshake)."""

    OK = "OK"
    NON_STRICT = "NON-STRICT"
    INFORMATIONAL = "INFORMATIONAL"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    FAILED = "FAILED"


VERDICTS = tuple(Verdict)
"""In the order reports list them."""


class Closing(enum.Enum):
    """Autobahn's separate judgement of the closing behaviour."""

    OK = "OK"
    WRONG_CODE = "WRONG CODE"
    FAILED_BY_CLIENT = "FAILED BY CLIENT"
    UNCLEAN = "UNCLEAN"
    FAILED = "FAILED"
    INFORMATIONAL = "INFORMATIONAL"


@dataclass
class Observation:
    """What the client saw, in the terms Autobahn judges."""

    events: list[Event] = field(default_factory=list)
    handshake_error: str | None = None
    refused: str | None = None
    """The status line of a handshake the server refused (legacy cases)."""
    extensions: str | None = None
    """The ``Sec-WebSocket-Extensions`` the server agreed to, if any."""
    server_error: str | None = None
    """The server broke the protocol (masked frame, bad close code...): the client failed."""
    close_received: bool = False
    close_code: int | None = None
    close_reason: str = ""
    closed_by_client: bool = False
    """The client's Close went out before the server's (Autobahn's closedByMe)."""
    clean: bool = False
    """A valid Close came from the server, completing the closing handshake."""
    server_dropped: bool = False
    """The server closed TCP (FIN or reset)."""
    dropped_by_client: bool = False
    """The client closed TCP itself: the server did not, in time."""
    timed_out: bool = False
    """The whole case ran into its deadline."""
    link: str = "TCP"
    """What carried the WebSocket: ``TCP``, or ``the HTTP/2 stream`` (RFC 8441), whose
    END_STREAM or RST_STREAM plays the part of TCP's close."""
    duration: float = 0.0
    wire: WireLog = field(default_factory=WireLog)


class Judged(Protocol):
    """What a result needs of its case, whichever catalogue it comes from."""

    @property
    def id(self) -> str: ...

    @property
    def description(self) -> str: ...


@dataclass(frozen=True)
class Result:
    case: Judged
    expected: str
    """The expectation in words."""
    verdict: Verdict
    behavior: Verdict
    closing: Closing
    observation: Observation
    reason: str

    @property
    def section(self) -> str:
        return self.case.id.split(".", 1)[0]

    @property
    def detail(self) -> str:
        """One line: why the verdict, and what was seen."""
        return f"{self.reason}; {describe_observation(self.observation)}"

    def explain(self) -> str:
        """Expected against observed, for a failure message."""
        return (
            f"case {self.case.id}: {self.case.description}\n"
            f"  expected: {self.expected}\n"
            f"  observed: {describe_observation(self.observation)}\n"
            f"  verdict:  {self.verdict.value} ({self.reason}; events "
            f"{self.behavior.value}, closing {self.closing.value})"
        )


# -- judging RFC 6455 cases -------------------------------------------------------------


def expected_lists(ex: Expect) -> list[tuple[Event, ...]]:
    return [ex.ok] if ex.non_strict is None else [ex.ok, ex.non_strict]


def same(events: list[Event], expected: tuple[Event, ...]) -> bool:
    return len(events) == len(expected) and all(a == b for a, b in zip(events, expected,
                                                                       strict=True))


def judge(case: Case, obs: Observation) -> Result:
    """Autobahn's verdict on the events and on the closing, folded into one.

    Events: OK if they equal ``expect.ok``, NON-STRICT if they equal ``expect.non_strict``,
    else FAILED. Closing, in Autobahn's order: FAILED when the wrong side started the
    closing handshake, UNCLEAN when a required handshake did not complete, WRONG CODE for
    a code outside ``expect.codes``, FAILED BY CLIENT when the client had to close TCP.
    Folded: a FAILED or UNCLEAN closing fails the case; WRONG CODE and FAILED BY CLIENT
    make it at most NON-STRICT, except that a server which never answered at all (no
    Close, no TCP close) fails it. A server the client had to fail fails the case. A
    case that offers permessage-deflate to a server that declines, or opens with
    hybi-07/08's version to a server that refuses it, is UNIMPLEMENTED.
    """
    ex = case.expect
    expected = describe_expectation(ex)

    def result(verdict: Verdict, behavior: Verdict, closing: Closing, why: str) -> Result:
        return Result(case, expected, verdict, behavior, closing, obs, why)

    if obs.refused is not None and case.handshake.version != 13:
        return result(Verdict.UNIMPLEMENTED, Verdict.UNIMPLEMENTED, Closing.INFORMATIONAL,
                      f"the server does not speak version {case.handshake.version}: "
                      f"{obs.refused}")
    problem = obs.handshake_error or (f"handshake refused: {obs.refused}"
                                      if obs.refused is not None else None)
    if problem is not None:
        return result(Verdict.FAILED, Verdict.FAILED, Closing.FAILED,
                      f"no WebSocket connection: {problem}")
    if case.handshake.offer is not None and obs.extensions is None:
        return result(Verdict.UNIMPLEMENTED, Verdict.UNIMPLEMENTED, Closing.INFORMATIONAL,
                      "the server did not accept permessage-deflate")
    if ex.informational:
        return result(Verdict.INFORMATIONAL, Verdict.INFORMATIONAL, Closing.INFORMATIONAL,
                      "outcome left to the implementation")
    reasons: list[str] = []
    if same(obs.events, ex.ok):
        behavior = Verdict.OK
    elif ex.non_strict is not None and same(obs.events, ex.non_strict):
        behavior = Verdict.NON_STRICT
        reasons.append("events match the NON-STRICT list")
    else:
        behavior = Verdict.FAILED
        reasons.append("events differ from every expected list")
    closing = _judge_closing(ex, obs)
    if ex.wrong_endpoint_fatal and ex.closed_by_client != obs.closed_by_client:
        behavior = Verdict.FAILED
    if ex.wrong_code_fatal and closing is Closing.WRONG_CODE:
        behavior = Verdict.FAILED
    verdict, why = _fold(ex, obs, behavior, closing)
    reasons.append(why)
    text = "; ".join(r for r in reasons if r)
    if verdict is not Verdict.NON_STRICT:
        text = text.replace("events match the NON-STRICT list; ", "")
    return result(verdict, behavior, closing, text or "as expected")


def _fold(ex: Expect, obs: Observation, behavior: Verdict,
          closing: Closing) -> tuple[Verdict, str]:
    if obs.timed_out:
        return Verdict.FAILED, "the case ran into its deadline"
    if obs.server_error:
        return Verdict.FAILED, f"the client failed the connection: {obs.server_error}"
    worse = Verdict.FAILED if behavior is Verdict.FAILED else Verdict.NON_STRICT
    if closing is Closing.FAILED:
        if not ex.closed_by_client:
            return Verdict.FAILED, "the client closed first: the server never failed it"
        if obs.close_received:
            return Verdict.FAILED, "the server closed first"
        return Verdict.FAILED, "the connection ended before the client could close it"
    if closing is Closing.UNCLEAN:
        return Verdict.FAILED, "the closing handshake did not complete"
    if closing is Closing.WRONG_CODE:
        return worse, f"close code {obs.close_code} is not one of {list(ex.codes)}"
    if closing is Closing.FAILED_BY_CLIENT:
        if not obs.close_received:
            return Verdict.FAILED, "the server never answered: no Close and no TCP close"
        return worse, "the server left TCP open after the closing handshake"
    return behavior, ""


def _judge_closing(ex: Expect, obs: Observation) -> Closing:
    if ex.closed_by_client != obs.closed_by_client:
        return Closing.FAILED
    if ex.require_clean and not obs.clean:
        return Closing.UNCLEAN
    if obs.close_code is not None and obs.close_code not in ex.codes:
        return Closing.WRONG_CODE
    if obs.dropped_by_client:
        return Closing.FAILED_BY_CLIENT
    return Closing.OK


# -- describing -------------------------------------------------------------------------


def describe_event(event: Event) -> str:
    if event.kind == "timeout":
        return f"open after pause {event.data.decode()}"
    if event.kind == "echoed":
        return f"all {event.data.decode()} messages echoed as sent"
    data = event.data
    if event.kind == "message":
        kind = "binary" if event.binary else "text"
        if len(data) > 40:
            digest = hashlib.sha1(data).hexdigest()[:10]
            return f"{kind}({len(data)} octets, sha1 {digest})"
        return f"{kind}({data!r})"
    shown = repr(data) if len(data) <= 40 else f"{len(data)} octets"
    return f"{event.kind}({shown})"


def describe_events(events: list[Event] | tuple[Event, ...]) -> str:
    if len(events) > 6:
        head = ", ".join(describe_event(e) for e in events[:3])
        return f"[{head}, ... {len(events)} events in all]"
    return "[" + ", ".join(describe_event(e) for e in events) + "]"


def describe_expectation(ex: Expect) -> str:
    if ex.informational:
        return "anything (informational)"
    parts = [f"events {describe_events(ex.ok)} (OK)"]
    if ex.non_strict is not None:
        parts.append(f"or {describe_events(ex.non_strict)} (NON-STRICT)")
    who = "client closes" if ex.closed_by_client else "server fails the connection"
    codes = "/".join(str(c) for c in ex.codes)
    clean = "clean closing handshake" if ex.require_clean else "clean close not required"
    parts.append(f"then {who}, code {codes} or none, {clean}")
    return " ".join(parts)


def describe_observation(obs: Observation) -> str:
    if obs.handshake_error is not None:
        return f"handshake failed: {obs.handshake_error}"
    if obs.refused is not None:
        return f"handshake refused: {obs.refused}"
    parts = [f"events {describe_events(obs.events)}"]
    if obs.extensions is not None:
        parts.insert(0, f"extensions {obs.extensions!r}")
    if obs.close_received:
        code = "no code" if obs.close_code is None else str(obs.close_code)
        reason = f" {obs.close_reason!r}" if obs.close_reason else ""
        started = "after the client's" if obs.closed_by_client else "first"
        parts.append(f"server Close {code}{reason} ({started})")
    else:
        parts.append("no Close from the server")
    if obs.server_error:
        parts.append(f"client failed: {obs.server_error}")
    if obs.server_dropped:
        parts.append(f"{obs.link} closed by the server")
    elif obs.dropped_by_client:
        parts.append(f"{obs.link} closed by the client")
    if obs.timed_out:
        parts.append("deadline reached")
    parts.append(f"{obs.duration:.3f} s")
    return ", ".join(parts)
