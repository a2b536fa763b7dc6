"""``--upstream`` and ``--route``: URLs parsed, paths matched on whole segments, the
longest prefix first, and the backend's resource rewritten as nginx's proxy_pass does."""

from __future__ import annotations

import pytest

from wscompat.gateway.routes import RouteTable, Upstream, parse_route, parse_upstream


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://10.0.0.5:9000/", Upstream("ws", "10.0.0.5", 9000, "/", url="ws://10.0.0.5:9000/")),
        ("ws://backend", Upstream("ws", "backend", 80, None, url="ws://backend")),
        ("wss://app.internal/api", Upstream("wss", "app.internal", 443, "/api",
                                            url="wss://app.internal/api")),
        ("ws://[::1]:9000/", Upstream("ws", "::1", 9000, "/", url="ws://[::1]:9000/")),
        ("tcp://10.0.0.6:5900", Upstream("tcp", "10.0.0.6", 5900, url="tcp://10.0.0.6:5900")),
        ("unix:/run/vnc.sock", Upstream("unix", socket_path="/run/vnc.sock",
                                        url="unix:/run/vnc.sock")),
        ("unix:///run/vnc.sock", Upstream("unix", socket_path="/run/vnc.sock",
                                          url="unix:///run/vnc.sock")),
        ("ws+unix:/run/app.sock", Upstream("ws+unix", socket_path="/run/app.sock",
                                           url="ws+unix:/run/app.sock")),
        ("ws+unix:/run/app.sock:/chat", Upstream("ws+unix", path="/chat",
                                                 socket_path="/run/app.sock",
                                                 url="ws+unix:/run/app.sock:/chat")),
    ],
)
def test_upstreams(url: str, expected: Upstream) -> None:
    assert parse_upstream(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h/", "an upstream is ws://"),
        ("ws:///x", "no host"),
        ("ws://h:99999/", "the port is not a number"),
        ("ws://h/?token=1", "no query or fragment"),
        ("ws://user:pw@h/", "credentials"),
        ("tcp://h", "tcp:// needs a port"),
        ("tcp://h:1/x", "a tcp:// upstream has no path"),
        ("unix:", "no socket path"),
        ("ws+unix:/s.sock:chat", "starts with /"),
    ],
)
def test_bad_upstreams(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_upstream(url)


TABLE = RouteTable(
    parse_upstream("ws://default:9000/base"),
    [parse_route("/chat=ws://chat:9000/"), parse_route("/chat/admin=ws://admin:9000/a/"),
     parse_route("/raw=ws://raw:9000"), parse_route("/vnc=tcp://vnc:5900")],
)


@pytest.mark.parametrize(
    ("target", "host", "resource"),
    [
        ("/chat", "chat", "/"),
        ("/chat/", "chat", "/"),
        ("/chat/room?id=1", "chat", "/room?id=1"),
        ("/chat?id=1", "chat", "/?id=1"),
        ("/chat/admin/x", "admin", "/a/x"),  # the longest prefix wins
        ("/chat/administrator", "chat", "/administrator"),  # whole segments only
        ("/chatroom", "default", "/base/chatroom"),
        ("/raw/x?y", "raw", "/raw/x?y"),  # no path in the URL: the client's, unchanged
        ("/", "default", "/base"),
        ("/other?q", "default", "/base/other?q"),
        ("ws://gw.example/chat/r", "chat", "/r"),  # absolute form
        ("/vnc", "vnc", "/vnc"),
    ],
)
def test_matching(target: str, host: str, resource: str) -> None:
    found = TABLE.match(target)
    assert found is not None
    assert (found[0].host, found[1]) == (host, resource)


def test_no_default_means_no_match() -> None:
    table = RouteTable(None, [parse_route("/chat=ws://chat/")])
    assert table.match("/other") is None
    assert table.match("/chat/x") is not None


@pytest.mark.parametrize("target", ["/chat/../admin", "/chat/%2e%2e/admin", "/./x"])
def test_dot_segments_are_refused(target: str) -> None:
    with pytest.raises(ValueError, match=r"\. or \.\. segments"):
        TABLE.match(target)


def test_tables_need_an_upstream_and_distinct_prefixes() -> None:
    with pytest.raises(ValueError, match="no upstream"):
        RouteTable()
    with pytest.raises(ValueError, match="two routes for /a"):
        RouteTable(None, [parse_route("/a=ws://x/"), parse_route("/a/=ws://y/")])
    with pytest.raises(ValueError, match="a route is /PREFIX=URL"):
        parse_route("a=ws://x/")
    with pytest.raises(ValueError, match="without a query"):
        parse_route("/a?b=ws://x/")
