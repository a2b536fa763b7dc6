"""A close reply queued while another task is writing still goes out before the EOF.

Found by recording Perl's hybi-00 client: about one close in ten ended as 1006 with no
``0xFF 0x00`` reply, because the task that had been writing an echo saw the framer
wanting EOF and half-closed before the reader's close reply was written.
"""

from __future__ import annotations

import trio
import trio.testing

from wscompat.drafts import Draft
from wscompat.protocol.connection import Established
from wscompat.protocol.framing import HixieFramer
from wscompat.protocol.http import Headers, Request
from wscompat.trio.connection import Connection, IOSettings
from wscompat.trio.transport import Transport


async def test_close_reply_is_written_before_eof() -> None:
    client, server = trio.testing.lockstep_stream_pair()
    request = Request("GET", "/", "1.1", Headers([("Host", "example.com")]))
    ws = Connection(Transport(server), Established(HixieFramer(Draft.HIXIE76)), request,
                    settings=IOSettings(close_timeout=0.2))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.run_reader)
            await trio.testing.wait_all_tasks_blocked()  # the reader waits for data
            # The echo's send_all blocks until the client reads (lockstep)...
            nursery.start_soon(ws.send, "x")
            await trio.testing.wait_all_tasks_blocked()
            # ...and meanwhile the client's close arrives and the reader queues the reply.
            await client.send_all(b"\xff\x00")
            await trio.testing.wait_all_tasks_blocked()
            received = b""
            while chunk := await client.receive_some(64):
                received += chunk
    assert received == b"\x00x\xff\xff\x00"
    assert ws.close_code == 1000
