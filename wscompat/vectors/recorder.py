"""``wscompat serve --record DIR``: each connection written as a vector file.

The server wraps every accepted stream in a :class:`RecordingStream`, which hands the
bytes read and written to a :class:`~wscompat.vectors.recording.Recording`; when the connection
ends, the recording is saved under ``DIR/<draft>/``. Connections that are not HTTP
(wss terminated by wscompat itself, Flash policy requests) leave no file.
"""

from __future__ import annotations

import datetime
import json
import logging
import secrets
from pathlib import Path
from typing import Any

import trio

from wscompat.drafts import Draft
from wscompat.options import ServerOptions
from wscompat.vectors.recording import Recording

__all__ = ["ConnectionRecorder", "RecordingStream", "recorder_for", "write_vector"]

logger = logging.getLogger("wscompat.record")


class RecordingStream(trio.abc.HalfCloseableStream):
    """A stream that reports every byte through it to a recording, then passes it on."""

    def __init__(self, inner: trio.abc.Stream, recording: Recording) -> None:
        self.inner = inner
        self.recording = recording

    @property
    def socket(self) -> object:
        """The inner stream's socket, for code that asks for the peer's address."""
        return getattr(self.inner, "socket", None)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.recording.sent(bytes(data))
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        self.recording.sent_eof()
        if isinstance(self.inner, trio.abc.HalfCloseableStream):
            await self.inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        if data:
            self.recording.received(bytes(data))
        else:
            self.recording.received_eof()
        return data

    async def aclose(self) -> None:
        self.recording.sent_eof()
        await self.inner.aclose()


class ConnectionRecorder:
    """What the server does with one connection's recording."""

    def __init__(self, options: ServerOptions, directory: str) -> None:
        self.options = options
        self.directory = directory
        self.recording = Recording(options.record_frames, datetime.datetime.now(datetime.UTC))

    def wrap(self, stream: trio.abc.Stream) -> RecordingStream:
        return RecordingStream(stream, self.recording)

    def opened(self, draft: Draft, leftover: bytes) -> None:
        self.recording.opened(draft, len(leftover))

    def closed(self, code: int | None) -> None:
        self.recording.close_code = code

    def save(self) -> None:
        """Write the vector (the connection has ended: the server closed it)."""
        self.recording.sent_eof()
        vector = self.recording.vector(self.options)
        if vector is None:
            return
        try:
            path = write_vector(vector, self.directory, self.recording.started)
        except OSError as exc:
            logger.warning("cannot write the recording to %s: %s", self.directory, exc)
            return
        logger.info("recorded %s", path)


def write_vector(vector: dict[str, Any], directory: str | Path,
                 started: datetime.datetime | None = None) -> Path:
    """Write a vector as ``directory/<draft>/recorded-<time>-<random>.json``."""
    folder = Path(directory) / str(vector["draft"])
    folder.mkdir(parents=True, exist_ok=True)
    stamp = (started or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%S")
    path = folder / f"recorded-{stamp}-{secrets.token_hex(3)}.json"
    path.write_text(json.dumps(vector, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def recorder_for(options: ServerOptions) -> ConnectionRecorder | None:
    """A recorder for a new connection when ``options.record_dir`` is set."""
    if options.record_dir is None:
        return None
    return ConnectionRecorder(options, str(options.record_dir))
