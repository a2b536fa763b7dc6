"""``wscompat serve --record DIR``: each connection written as a vector file.

The server wraps every accepted stream in a :class:`RecordingStream`, which hands the
bytes read and written to a :class:`~wscompat.vectors.recording.Recording`; when the connection
ends, the recording is saved under ``DIR/<draft>/``. Connections that are not HTTP
(wss terminated by wscompat itself, Flash policy requests) leave no file, nor do plain
HTTP requests unless ``record_plain`` is set.

The event loop never waits on the disk: a recording is turned into JSON and written by
a worker thread, at most :data:`WRITERS` at once. Recordings waiting for a writer are
bounded (:data:`PENDING_FILES`, :data:`PENDING_BYTES`); past that they are dropped and
the log says so. Each record directory has an :class:`Archive` per trio run that counts
the files and bytes written: at ``record_max_files`` or ``record_max_bytes`` (or when a
write fails) recording stops for good, with one warning, and new connections are no
longer wrapped. Folders are created 0700 and files 0600, whatever the umask. The first
file written also leaves the format's schema at the top of the directory, where each
recording's ``"$schema": "../schema.json"`` points.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import trio

from wscompat.drafts import Draft
from wscompat.options import ServerOptions
from wscompat.protocol.proxy_header import ProxyHeaderError, ProxyHeaderReader
from wscompat.vectors.corpus import SCHEMA_NAME, schema_bytes
from wscompat.vectors.recording import Recording, Redaction

__all__ = ["Archive", "ConnectionRecorder", "RecordingStream", "recorder_for", "write_vector"]

logger = logging.getLogger("wscompat.record")

WRITERS = 2
"""Vector files written at once, each in a worker thread."""
PENDING_FILES = 256
"""Recordings waiting for a writer or being written; past it a new one is dropped."""
PENDING_BYTES = 64 * 2**20
"""Bytes those recordings hold (at most 8 MiB each); past it a new one is dropped."""
NAME_ATTEMPTS = 16
"""Random file names tried before a write fails (each taken one is a 1 in 16M chance)."""


class RecordingStream(trio.abc.HalfCloseableStream):
    """A stream that reports every byte through it to a recording, then passes it on.

    With ``proxy_header``, the connection begins with a PROXY protocol header from the
    proxy in front (``proxy_protocol``): it is left out of the recording, which then
    holds the connection as the client made it and none of the addresses the header
    names. A connection without a valid header, which the server closes unanswered,
    is recorded as it came."""

    def __init__(self, inner: trio.abc.Stream, recording: Recording, *,
                 proxy_header: bool = False) -> None:
        self.inner = inner
        self.recording = recording
        self._header = ProxyHeaderReader() if proxy_header else None
        """While the header is being left out: what reads it."""

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
        if not data:
            self.recording.received_eof()
        elif self._header is None:
            self.recording.received(bytes(data))
        else:
            rest = self._after_header(bytes(data))
            if rest:
                self.recording.received(rest)
        return data

    def _after_header(self, data: bytes) -> bytes:
        """What of ``data`` follows the PROXY protocol header (nothing while it is not
        whole; everything so far once the connection turns out to have none)."""
        reader = self._header
        assert reader is not None
        try:
            rest = reader.feed(data)
        except ProxyHeaderError:
            self._header = None
            return reader.received
        if rest is not None:
            self._header = None
        return rest or b""

    async def aclose(self) -> None:
        self.recording.sent_eof()
        await self.inner.aclose()


class Archive:
    """One record directory: what has been written to it, its caps, and its writers.

    The counts change only in writer threads, under a lock; the event loop reads
    ``stopped``, which only ever turns true.
    """

    def __init__(self, directory: str, options: ServerOptions) -> None:
        self.directory = directory
        self.max_files = options.record_max_files
        self.max_bytes = options.record_max_bytes
        self.redaction = Redaction.of(options)
        self.files = 0
        self.bytes = 0
        self.stopped = False
        self.pending = 0
        self.pending_bytes = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._writers = trio.CapacityLimiter(WRITERS)

    async def keep(self, recording: Recording, options: ServerOptions) -> None:
        """Have the recording written by a worker thread, unless recording has stopped
        or the writers are too far behind."""
        if self.stopped:
            return
        size = recording.size
        if self.pending >= PENDING_FILES or self.pending_bytes + size > PENDING_BYTES:
            if not self.dropped:
                logger.warning("recordings dropped: %d are waiting to be written to %s",
                               self.pending, self.directory)
            self.dropped += 1
            return
        self.pending += 1
        self.pending_bytes += size
        try:
            written, stop = await trio.to_thread.run_sync(
                self._write, recording, options, limiter=self._writers)
        finally:
            self.pending -= 1
            self.pending_bytes -= size
            if self.dropped and not self.pending:
                logger.warning("%d recordings were dropped while the writes to %s were "
                               "behind", self.dropped, self.directory)
                self.dropped = 0
        if written is not None:
            logger.info("recorded %s", written)
        if stop:
            logger.warning("recording stopped: %s", stop)

    def _write(self, recording: Recording, options: ServerOptions) -> tuple[Path | None, str]:
        """In a worker thread: the file written (if any), and why recording stops now
        (empty unless this write is the one that stops it)."""
        vector = recording.vector(options, self.redaction)
        if vector is None:
            return None, ""
        data = _encoded(vector)
        with self._lock:
            if self.stopped:
                return None, ""
            if self.files >= self.max_files:
                self.stopped = True
                return None, (f"{self.files} files written to {self.directory}, "
                              f"as many as record_max_files allows")
            if self.bytes + len(data) > self.max_bytes:
                self.stopped = True
                return None, (f"{self.bytes} bytes written to {self.directory}, and the "
                              f"next file ({len(data)} bytes) would pass record_max_bytes "
                              f"({self.max_bytes})")
            self.files += 1
            self.bytes += len(data)
        try:
            path = _write_file(data, self.directory, str(vector["draft"]), recording.started)
        except OSError as exc:
            with self._lock:
                self.files -= 1
                self.bytes -= len(data)
                first, self.stopped = not self.stopped, True
            return None, f"cannot write to {self.directory}: {exc}" if first else ""
        with self._lock:
            if self.files >= self.max_files and not self.stopped:
                self.stopped = True
                return path, (f"{self.files} files written to {self.directory}, "
                              f"as many as record_max_files allows")
        return path, ""


class ConnectionRecorder:
    """What the server does with one connection's recording."""

    def __init__(self, options: ServerOptions, archive: Archive) -> None:
        self.options = options
        self.archive = archive
        self.recording = Recording(options.record_frames, datetime.datetime.now(datetime.UTC))

    def wrap(self, stream: trio.abc.Stream) -> RecordingStream:
        return RecordingStream(stream, self.recording, proxy_header=self.options.proxy_protocol)

    def opened(self, draft: Draft, leftover: bytes) -> None:
        self.recording.opened(draft, len(leftover))

    def closed(self, code: int | None) -> None:
        self.recording.close_code = code

    async def save(self) -> None:
        """Write the vector (the connection has ended: the server closed it), off the
        event loop; what makes no vector is dropped here, before any thread is asked.
        A recording that cannot be made is logged, never raised: the server goes on."""
        try:
            self.recording.sent_eof()
            if self.recording.worth_keeping(plain=self.options.record_plain):
                await self.archive.keep(self.recording, self.options)
        except Exception:
            logger.exception("cannot record a connection to %s", self.archive.directory)


def _encoded(vector: dict[str, Any]) -> bytes:
    return (json.dumps(vector, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _private_folder(folder: Path) -> None:
    """``folder`` and its missing parents, each made 0700."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue  # made meanwhile, by another writer
        os.chmod(path, 0o700)  # the umask may have taken bits away


def _write_file(data: bytes, directory: str | Path, draft: str,
                started: datetime.datetime | None) -> Path:
    """``data`` as a new file ``directory/<draft>/recorded-<time>-<random>.json``, 0600,
    with the schema it names (``../schema.json``) beside the draft folders."""
    folder = Path(directory) / draft
    _private_folder(folder)
    _schema_beside(Path(directory))
    stamp = (started or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%S")
    names = (f"recorded-{stamp}-{secrets.token_hex(3)}.json" for _ in range(NAME_ATTEMPTS))
    path = _write_new(data, folder, names)
    if path is None:
        raise FileExistsError(f"no free file name in {folder} after {NAME_ATTEMPTS} tries")
    return path


def _schema_beside(directory: Path) -> None:
    """``directory/schema.json``, the format's JSON Schema as shipped, unless a file of
    that name is there already: every recording points at it, so that editors and
    validators that follow ``$schema`` find it (not counted against the caps)."""
    if not os.path.lexists(directory / SCHEMA_NAME):
        _write_new(schema_bytes(), directory, [SCHEMA_NAME])


def _write_new(data: bytes, folder: Path, names: Iterable[str]) -> Path | None:
    """``data`` as a new 0600 file in ``folder`` under the first of ``names`` not taken;
    None if every one is.

    Written whole under a hidden temporary name, then linked to its own: a reader that
    lists the folder while a worker thread writes never sees half a file.
    """
    temporary = folder / f".writing-{secrets.token_hex(8)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(data)
        for name in names:
            path = folder / name
            try:
                os.link(temporary, path)  # fails, rather than replaces, if the name is taken
            except FileExistsError:
                continue
            return path
        return None
    finally:
        temporary.unlink(missing_ok=True)


def write_vector(vector: dict[str, Any], directory: str | Path,
                 started: datetime.datetime | None = None) -> Path:
    """Write a vector as ``directory/<draft>/recorded-<time>-<random>.json`` (blocking:
    the server calls it from a worker thread)."""
    return _write_file(_encoded(vector), directory, str(vector["draft"]), started)


_ARCHIVES: trio.lowlevel.RunVar[dict[str, Archive]] = trio.lowlevel.RunVar("wscompat.record")


def recorder_for(options: ServerOptions) -> ConnectionRecorder | None:
    """A recorder for a new connection when ``options.record_dir`` is set and recording
    into it has not stopped."""
    if options.record_dir is None:
        return None
    try:
        archives = _ARCHIVES.get()
    except LookupError:
        archives = {}
        _ARCHIVES.set(archives)
    archive = archives.get(options.record_dir)
    if archive is None:
        archive = archives[options.record_dir] = Archive(options.record_dir, options)
    if archive.stopped:
        return None
    return ConnectionRecorder(options, archive)
