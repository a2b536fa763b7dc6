"""How long the conformance client waits, and the hard deadline of each case."""

from __future__ import annotations

from dataclasses import dataclass

from wscompat.conformance.cases import Case, Pause
from wscompat.conformance.legacy import LegacyCase, Receive

__all__ = ["Timing", "budget"]


@dataclass(frozen=True)
class Timing:
    """Autobahn's values are the defaults; ``pause_scale`` shortens the deliberate
    pauses (5.19, 5.20, 6.4.x, hixie-76's late key3) for fast local runs."""

    pause_scale: float = 1.0
    wait_scale: float = 1.0
    """Scales each case's ``after``: how long to wait for the expected events."""
    close_timeout: float = 1.0
    """For the server's Close after ours, and for its TCP close after the handshake."""
    sync_gap: float = 0.001
    """Pause after each frame written on its own (``Send(sync=True)``)."""
    connect_timeout: float = 5.0
    """For the TCP connection, and again for the answer to the opening handshake."""
    margin: float = 5.0
    """Added to a case's natural length to make its hard deadline (see :func:`budget`)."""


def budget(case: Case | LegacyCase, timing: Timing) -> float:
    """The longest a case can take against any server: connecting and the handshake,
    its pauses, its wait for the expected events, two close timeouts, and a margin for
    large writes."""
    pauses = sum(step.seconds for step in case.steps if isinstance(step, Pause))
    waits = 1
    if isinstance(case, LegacyCase):
        pauses += case.opening.key3_delay or 0.0
        waits += sum(isinstance(step, Receive) for step in case.steps)
    return (2 * timing.connect_timeout + pauses * timing.pause_scale
            + waits * case.after * timing.wait_scale + 2 * timing.close_timeout + timing.margin)
