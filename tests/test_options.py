"""ServerOptions refuses a limit out of range when it is made, naming the field, so a
mistake fails at start-up rather than on every connection."""

from __future__ import annotations

import math
from typing import Any

import pytest

from wscompat import ServerOptions


@pytest.mark.parametrize(("name", "value"), [
    ("idle_timeout", -5.0), ("idle_timeout", 0), ("handshake_timeout", 0.0),
    ("close_timeout", -1.0), ("ping_interval", 0), ("ping_timeout", math.nan),
    ("tcp_keepalive", -60.0), ("read_size", 0), ("max_head_size", -1), ("max_queue", 0),
    ("max_queue_bytes", 0), ("max_message_size", 0), ("max_connections", -3),
    ("tls_handshake_timeout", 0), ("write_limit", -1), ("drain_time", -0.5),
    ("record_max_bytes", -1), ("compress_min_size", -1),
])
def test_a_limit_out_of_range_is_refused(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be"):
        ServerOptions(**{name: value})


@pytest.mark.parametrize(("name", "value"), [
    ("idle_timeout", None), ("max_message_size", None), ("max_connections", None),
    ("write_limit", 0), ("drain_time", 0.0), ("ping_interval", 0.5),
])
def test_the_edges_that_mean_something_are_accepted(name: str, value: Any) -> None:
    assert getattr(ServerOptions(**{name: value}), name) == value


@pytest.mark.parametrize("path", ["healthz", "/healthz?x=1", ""])
def test_a_health_path_must_be_a_path(path: str) -> None:
    with pytest.raises(ValueError, match="health_path"):
        ServerOptions(health_path=path)


def test_metrics_and_health_cannot_share_a_path() -> None:
    with pytest.raises(ValueError, match="health_path"):
        ServerOptions(health_path="/metrics", metrics=True)


def test_read_size_has_a_ceiling() -> None:
    assert ServerOptions(read_size=16 << 20).read_size == 16 << 20
    with pytest.raises(ValueError, match=r"^read_size must be at most 16777216 bytes"):
        ServerOptions(read_size=(16 << 20) + 1)
