"""The client side of an HTTP/2 vector, sans-I/O: an ``h2`` client, and what the server
said on each stream, matched against the vector's expectations.

HPACK makes the bytes of a header block depend on every block sent before it on the
connection, so an HTTP/2 vector (``"draft": "rfc8441"``) keeps what HPACK encodes rather
than the bytes: decoded header lists, and the payload of DATA frames (RFC 6455 frames,
masks as the client chose them), from a fresh connection. :class:`H2Peer` turns the
client's steps into frames with the ``h2`` library, as a real client would: the
connection preface and SETTINGS first, each DATA frame within the flow control windows,
the windows handed back as the server's data arrives. Raw frames (``h2_frames``) go out
as written, past the library, for floods and malformed input.

What the server sends is sorted into one queue per stream (response headers, DATA bytes,
END_STREAM, RST_STREAM) and one for the connection (GOAWAY). An expectation takes from
the front of its stream's queue, so how a server interleaves its streams, and where flow
control cuts its DATA frames, never matters: only what each stream carries, in order.
Frames that only keep the connection going (SETTINGS, WINDOW_UPDATE, PING
acknowledgements) are the library's business and are not compared.

The offline checker (:mod:`.h2check`) and network replay (:mod:`.h2replay`) both drive
it, so an HTTP/2 vector means the same thing in both.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import h2.events as h2e
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes, Settings

from wscompat.vectors.expect import match
from wscompat.vectors.format import H2_SETTINGS, Step

__all__ = ["H2Match", "H2Peer", "StepError", "code_name", "fields_text"]

_Item = tuple[str, Any]
"""What arrived on a stream: ``("headers", fields)``, ``("data", bytearray)``,
``("end", None)`` or ``("reset", code)``."""


class StepError(Exception):
    """The client cannot take a step the vector asks for (``h2`` refuses to send it)."""


@dataclass(frozen=True)
class H2Match:
    """An HTTP/2 expectation against what arrived: decided or not, and how it differs."""

    done: bool
    problem: str = ""
    expected: bytes = b""
    """For a report: what the step expected (data, or header lines)."""
    actual: bytes = b""
    """For a report: what the server sent instead."""


_WAIT = H2Match(False)
_OK = H2Match(True)


def code_name(code: int) -> str:
    """An HTTP/2 error code with its name (``ENHANCE_YOUR_CALM (11)``)."""
    try:
        return f"{ErrorCodes(code).name} ({code})"
    except ValueError:
        return f"unknown error code {code}"


def fields_text(fields: Iterable[tuple[str, str]]) -> bytes:
    """A header list as lines, for a diff."""
    return "".join(f"{name}: {value}\r\n" for name, value in fields).encode("utf-8",
                                                                            "replace")


def _text(value: bytes | str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _describe(item: _Item) -> str:
    kind, value = item
    if kind == "headers":
        status = dict(value).get(":status")
        return f"response headers (:status {status})" if status else "headers"
    if kind == "data":
        return f"{len(value)} bytes of DATA"
    if kind == "end":
        return "END_STREAM"
    return f"RST_STREAM {code_name(value)}"


class H2Peer:
    """An HTTP/2 client playing a vector's client steps, and the server's answers so far.

    Bytes for the server come from :meth:`take_output`; the server's bytes go to
    :meth:`receive`, and its closing the connection to :meth:`receive_eof`.
    """

    def __init__(self, settings: Iterable[tuple[str, int]] = ()) -> None:
        """``settings``: what the client's first SETTINGS say besides h2's defaults (a
        vector's ``settings``)."""
        config = H2Configuration(client_side=True, header_encoding=None,
                                 validate_outbound_headers=False,
                                 normalize_outbound_headers=False,
                                 validate_inbound_headers=False,
                                 normalize_inbound_headers=False)
        self.conn = H2Connection(config)
        if settings:
            self._preface_settings(dict(settings))
        self.conn.initiate_connection()
        self._out = bytearray(self.conn.data_to_send())
        self._queue: deque[tuple[str, int, Any, bool]] = deque()
        """Client actions not yet carried out: DATA waits for flow control, and what
        comes after it waits for the DATA."""
        self.streams: dict[int, deque[_Item]] = {}
        self.goaways: deque[int] = deque()
        self.settings_seen = False
        """The server's first SETTINGS arrived (a client waits for it: RFC 8441 §3)."""
        self.connect_protocol = False
        """The server's SETTINGS enabled the extended CONNECT."""
        self.eof = False
        self.broken = ""
        """Why the server's bytes are no HTTP/2 (they are not read further)."""
        self.start = bytearray()
        """The first bytes from the server, to say what it answered instead."""
        self.server_settings: dict[int, int] = {}
        """What the server's SETTINGS said so far, by code."""

    def _preface_settings(self, chosen: dict[str, int]) -> None:
        """Start from ``chosen`` as the client's settings, and read what arrives by them
        (the decoder's table, the largest frame, each stream's window)."""
        conn = self.conn
        values: dict[SettingCodes, int] = {
            SettingCodes(code): value for code, value in conn.local_settings.items()}
        values.update({SettingCodes(H2_SETTINGS[name][0]): value
                       for name, value in chosen.items()})
        conn.local_settings = Settings(client=True, initial_values=values)
        local = conn.local_settings
        conn.decoder.max_allowed_table_size = local.header_table_size
        conn.max_inbound_frame_size = local.max_frame_size
        if local.max_header_list_size is not None:
            conn.decoder.max_header_list_size = local.max_header_list_size

    # -- the client's steps -----------------------------------------------------------

    def perform(self, step: Step) -> None:
        """Carry out a client step (an ``h2_*`` kind in ``H2_CLIENT``) as far as flow
        control allows; StepError if ``h2`` refuses it."""
        kind, sid = step.kind, step.stream
        if kind == "h2_request":
            self._queue.append(("headers", sid, step.headers, step.end_stream))
        elif kind == "h2_send":
            self._queue.append(("data", sid, bytearray(step.data), step.end_stream))
        elif kind == "h2_end_stream":
            self._queue.append(("data", sid, bytearray(), True))
        elif kind == "h2_reset":
            self._queue.append(("reset", sid, step.code, False))
        elif kind == "h2_goaway":
            self._queue.append(("goaway", 0, step.code, False))
        elif kind == "h2_frames":
            self._queue.append(("raw", 0, step.data, False))
        else:
            raise ValueError(f"not a client step: {kind}")
        self._run()

    @property
    def blocked(self) -> int:
        """Bytes of DATA waiting for the server to open a flow control window."""
        return sum(len(value) for what, _, value, _ in self._queue if what == "data")

    def _run(self) -> None:
        conn = self.conn
        while self._queue:
            what, sid, value, end = self._queue[0]
            try:
                if what == "data":
                    if not self._data(sid, value, end):
                        return
                elif what == "headers":
                    conn.send_headers(sid, [(n.encode(), v.encode()) for n, v in value],
                                      end_stream=end)
                elif what == "reset":
                    conn.reset_stream(sid, value)
                elif what == "goaway":
                    conn.close_connection(value)
                else:
                    self._out += conn.data_to_send()
                    self._out += value
            except (H2Error, ValueError) as exc:
                self._queue.popleft()
                raise StepError(f"{what} on stream {sid}: {exc}") from None
            self._queue.popleft()

    def _data(self, sid: int, data: bytearray, end: bool) -> bool:
        """Send what the windows allow; True once all of it (and END_STREAM) went."""
        conn = self.conn
        while True:
            room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if data and room <= 0:
                return False
            chunk = bytes(data[:room])
            del data[:room]
            conn.send_data(sid, chunk, end_stream=end and not data)
            if not data:
                return True

    def take_output(self) -> bytes:
        """Bytes for the server: the client's steps, acknowledgements, window updates."""
        if self._queue and not self.broken:
            self._run()
        out = bytes(self._out) + self.conn.data_to_send()
        self._out.clear()
        return out

    # -- the server's answers ---------------------------------------------------------

    def receive(self, data: bytes | bytearray) -> None:
        if self.broken or self.eof or not data:
            return
        if len(self.start) < 64:
            self.start += data[: 64 - len(self.start)]
        try:
            events = self.conn.receive_data(bytes(data))
        except ProtocolError as exc:
            if not self.goaways:  # after a GOAWAY, h2 takes nothing more: nor do we
                self.broken = (f"the server's bytes are no HTTP/2 ({exc}), starting "
                               f"{bytes(self.start)!r}")
            return
        for event in events:
            self._on_event(event)

    def receive_eof(self) -> None:
        self.eof = True

    def _queue_of(self, sid: int | None) -> deque[_Item]:
        assert sid is not None
        return self.streams.setdefault(sid, deque())

    def _on_event(self, event: h2e.Event) -> None:
        if isinstance(event, h2e.ResponseReceived | h2e.InformationalResponseReceived
                      | h2e.TrailersReceived):
            fields = tuple((_text(n), _text(v)) for n, v in event.headers or ())
            self._queue_of(event.stream_id).append(("headers", fields))
        elif isinstance(event, h2e.DataReceived):
            if event.flow_controlled_length:
                with contextlib.suppress(H2Error):
                    self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                        event.stream_id or 0)
            if event.data:
                items = self._queue_of(event.stream_id)
                if items and items[-1][0] == "data":
                    items[-1][1].extend(event.data)
                else:
                    items.append(("data", bytearray(event.data)))
        elif isinstance(event, h2e.StreamEnded):
            self._queue_of(event.stream_id).append(("end", None))
        elif isinstance(event, h2e.StreamReset):
            self._queue_of(event.stream_id).append(("reset", int(event.error_code or 0)))
        elif isinstance(event, h2e.ConnectionTerminated):
            self.goaways.append(int(event.error_code or 0))
        elif isinstance(event, h2e.RemoteSettingsChanged):
            self.settings_seen = True
            for code, change in event.changed_settings.items():
                self.server_settings[int(code)] = change.new_value
            changed = event.changed_settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL)
            if changed is not None:
                self.connect_protocol = changed.new_value == 1

    # -- expectations -----------------------------------------------------------------

    @property
    def final(self) -> bool:
        """Nothing more will arrive: the server closed, or speaks no HTTP/2."""
        return self.eof or bool(self.broken)

    def expect(self, step: Step) -> H2Match:
        """Compare the front of the step's stream (or the connection) with it; the
        matched part is taken off. Undecided while more may still come."""
        kind = step.kind
        if self.broken:
            return H2Match(True, self.broken)
        if kind == "h2_expect_goaway":
            return self._goaway(step.code)
        if kind == "h2_expect_settings":
            return self._settings(step)
        if kind == "expect_eof":
            left = self.leftovers()
            if left:
                return H2Match(True, f"unexpected {left} before the close")
            return _OK if self.eof else _WAIT
        items = self.streams.get(step.stream) or deque()
        if not items:
            if self.final:
                return H2Match(True, f"the server sent nothing more on stream {step.stream}"
                               + (" and closed the connection" if self.eof else ""))
            return _WAIT
        front = items[0]
        handler = {"h2_expect_headers": self._headers, "h2_expect_status": self._status,
                   "h2_expect_data": self._data_match, "h2_expect_close": self._close,
                   "h2_expect_end_stream": self._end, "h2_expect_reset": self._reset}[kind]
        found = handler(step, items)
        if found.problem and not found.actual:
            found = H2Match(True, found.problem, found.expected, _item_bytes(front))
        return found

    def _goaway(self, code: int) -> H2Match:
        if not self.goaways:
            if self.final:
                return H2Match(True, "the server closed the connection without a GOAWAY")
            return _WAIT
        got = self.goaways.popleft()
        if got != code:
            return H2Match(True, f"GOAWAY {code_name(got)}, expected {code_name(code)}")
        return _OK

    def _settings(self, step: Step) -> H2Match:
        """The server's SETTINGS so far say what the step names (others may be anything);
        a setting never sent has its RFC default."""
        if not self.settings_seen:
            if self.final:
                return H2Match(True, "the server sent no SETTINGS")
            return _WAIT
        defaults = Settings(client=False)
        for name, value in step.settings:
            code = H2_SETTINGS[name][0]
            got = self.server_settings.get(code, defaults.get(code))
            if got != value:
                return H2Match(True, f"the server's SETTINGS say {name} = {got}, expected "
                               f"{value}")
        return _OK

    def _wrong(self, step: Step, items: deque[_Item], wanted: str) -> H2Match:
        return H2Match(True, f"stream {step.stream}: {_describe(items[0])}, expected "
                       f"{wanted}")

    def _headers(self, step: Step, items: deque[_Item]) -> H2Match:
        kind, got = items[0]
        want_text = fields_text(step.headers)
        if kind != "headers":
            return H2Match(True, self._wrong(step, items, "response headers").problem,
                           want_text)
        problem = compare_fields(step.headers, got, step.vary)
        if problem:
            return H2Match(True, f"stream {step.stream}: {problem}", want_text,
                           fields_text(got))
        items.popleft()
        return _OK

    def _status(self, step: Step, items: deque[_Item]) -> H2Match:
        kind, got = items[0]
        if kind != "headers":
            return self._wrong(step, items, f"a response with status {step.code}")
        found = dict(got)
        status = found.get(":status")
        if status != str(step.code):
            return H2Match(True, f"stream {step.stream}: status {status}, expected "
                           f"{step.code}", actual=fields_text(got))
        named = {name.lower(): value for name, value in got}
        for name, value in step.headers:
            if named.get(name.lower()) != value:
                return H2Match(True, f"stream {step.stream}: {name}: "
                               f"{named.get(name.lower())!r}, expected {value!r}",
                               actual=fields_text(got))
        for index, (later, value) in enumerate(items):  # the body, then END_STREAM
            if index and later == "end":
                for _ in range(index + 1):
                    items.popleft()
                return _OK
            if index and later != "data":
                return H2Match(True, f"stream {step.stream}: {_describe((later, value))} "
                               "before the response ended")
        if self.final:
            return H2Match(True, f"stream {step.stream}: the response did not end")
        return _WAIT

    def _data_match(self, step: Step, items: deque[_Item]) -> H2Match:
        kind, got = items[0]
        if kind != "data":
            return H2Match(True, self._wrong(step, items, f"{len(step.data)} bytes of "
                                             "DATA").problem, step.data)
        expected = step.data
        size = min(len(got), len(expected))
        if got[:size] != expected[:size]:
            offset = next(i for i in range(size) if got[i] != expected[i])
            return H2Match(True, f"stream {step.stream}: DATA differs at offset {offset}",
                           expected, bytes(got))
        if len(got) < len(expected):
            if len(items) > 1 or self.final:
                after = _describe(items[1]) if len(items) > 1 else "the close"
                return H2Match(True, f"stream {step.stream}: {len(got)} of "
                               f"{len(expected)} bytes of DATA, then {after}", expected,
                               bytes(got))
            return _WAIT
        del got[: len(expected)]
        if not got:
            items.popleft()
        return _OK

    def _close(self, step: Step, items: deque[_Item]) -> H2Match:
        kind, got = items[0]
        if kind != "data":
            return self._wrong(step, items, f"a close frame with code {step.code}")
        found = match("expect_close", got, code=step.code,
                      eof=len(items) > 1 or self.final)
        if not found.done:
            return _WAIT
        if found.problem:
            return H2Match(True, f"stream {step.stream}: {found.problem}",
                           actual=bytes(got))
        del got[: found.consumed]
        if not got:
            items.popleft()
        return _OK

    def _end(self, step: Step, items: deque[_Item]) -> H2Match:
        if items[0][0] != "end":
            return self._wrong(step, items, "END_STREAM")
        items.popleft()
        return _OK

    def _reset(self, step: Step, items: deque[_Item]) -> H2Match:
        kind, code = items[0]
        if kind != "reset":
            return self._wrong(step, items, f"RST_STREAM {code_name(step.code)}")
        if code != step.code:
            return H2Match(True, f"stream {step.stream}: RST_STREAM {code_name(code)}, "
                           f"expected {code_name(step.code)}")
        items.popleft()
        return _OK

    def leftovers(self) -> str:
        """What arrived and no expectation took, as words ("" when nothing)."""
        for sid, items in sorted(self.streams.items()):
            if items:
                return f"{_describe(items[0])} on stream {sid}"
        if self.goaways:
            return f"GOAWAY {code_name(self.goaways[0])}"
        return ""

    def leftover_bytes(self) -> bytes:
        for _, items in sorted(self.streams.items()):
            if items:
                return _item_bytes(items[0])
        return b""


def _item_bytes(item: _Item) -> bytes:
    kind, value = item
    if kind == "headers":
        return fields_text(value)
    if kind == "data":
        return bytes(value)
    return _describe(item).encode()


def compare_fields(expected: Sequence[tuple[str, str]], got: Sequence[tuple[str, str]],
                   vary: Iterable[str] = ()) -> str:
    """What differs between two header lists, in order ("" when they match); fields
    named in ``vary`` may have any value, or be missing."""
    skip = {name.lower() for name in vary}
    want = [field for field in expected if field[0].lower() not in skip]
    have = [field for field in got if field[0].lower() not in skip]
    for index in range(max(len(want), len(have))):
        a = want[index] if index < len(want) else None
        b = have[index] if index < len(have) else None
        if a == b:
            continue
        if a is not None and b is not None and a[0] == b[0]:
            return f"{b[0]}: {b[1]!r}, expected {a[1]!r}"
        if a is not None and a not in have:
            return f"missing field {a[0]}: {a[1]!r}"
        if b is not None and b not in want:
            return f"unexpected field {b[0]}: {b[1]!r}"
        return f"field {index + 1} is {b!r}, expected {a!r}: the same fields in another order"
    return ""
