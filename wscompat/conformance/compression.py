"""Autobahn sections 12 and 13: permessage-deflate (RFC 7692), as data.

Every case offers permessage-deflate, sends a run of messages one after the other (the
next once the echo of the last is back), each cut in turn from a data set, compressed,
and in 12.x.11 to 12.x.18 cut into frames of a few hundred to 32768 octets of
compressed payload; the server must echo every message as sent. Section 12 varies the
data (five kinds), section 13 the parameters the client offers (seven offers, with the
JSON data set). A server that does not accept the offer gets UNIMPLEMENTED, as in
Autobahn.

Autobahn reads its data sets from files it ships (a JSON file, a 512x512 grey bitmap,
Goethe's Faust, an HTML page, a PDF). They are not shipped here: each data set is
generated, deterministically, with the same character (repetitive markup, smooth image
rows, natural-language text, random-looking compressed streams), so runs compare from
machine to machine. Text data sets are ASCII, so any slice of one is valid UTF-8.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from wscompat.conformance.cases import Case, Echoes, Event, Handshake, Sizes, echo

__all__ = ["DATA_SETS", "OFFERS", "DataSet", "data_set", "section12", "section13"]

DATA_SIZE = 2**18
"""Octets in each generated data set: more than Autobahn's largest message (128 KiB)."""

MESSAGES: tuple[tuple[int, int, float, int], ...] = (
    (16, 1000, 60, 0), (64, 1000, 60, 0), (256, 1000, 120, 0), (1024, 1000, 240, 0),
    (4096, 1000, 480, 0), (8192, 1000, 480, 0), (16384, 1000, 480, 0),
    (32768, 1000, 480, 0), (65536, 1000, 480, 0), (131072, 1000, 480, 0),
    (8192, 1000, 480, 256), (16384, 1000, 480, 256), (32768, 1000, 480, 256),
    (65536, 1000, 480, 256), (131072, 1000, 480, 256), (131072, 1000, 480, 1024),
    (131072, 1000, 480, 4096), (131072, 1000, 480, 32768),
)
"""Autobahn's (message size, message count, seconds allowed, fragment size) per case."""

DEFAULT_OFFER = "permessage-deflate; client_no_context_takeover; client_max_window_bits"
"""Autobahn's default offer (its PerMessageDeflateOffer())."""

OFFERS: tuple[tuple[str, str], ...] = (
    ("the default offer", DEFAULT_OFFER),
    ("server_no_context_takeover", f"{DEFAULT_OFFER}; server_no_context_takeover"),
    ("server_max_window_bits=8", f"{DEFAULT_OFFER}; server_max_window_bits=8"),
    ("server_max_window_bits=15", f"{DEFAULT_OFFER}; server_max_window_bits=15"),
    ("server_no_context_takeover and server_max_window_bits=8",
     f"{DEFAULT_OFFER}; server_no_context_takeover; server_max_window_bits=8"),
    ("server_no_context_takeover and server_max_window_bits=15",
     f"{DEFAULT_OFFER}; server_no_context_takeover; server_max_window_bits=15"),
    ("three offers: server_no_context_takeover with server_max_window_bits=8, "
     "server_no_context_takeover, the default",
     f"{DEFAULT_OFFER}; server_no_context_takeover; server_max_window_bits=8, "
     f"{DEFAULT_OFFER}; server_no_context_takeover, {DEFAULT_OFFER}"),
)
"""Section 13's offers, 13.1 to 13.7: (what it asks of the server, the header value)."""


@dataclass(frozen=True)
class DataSet:
    name: str
    description: str
    binary: bool
    """Sent as binary messages (as Autobahn sends Faust, the bitmap and the PDF)."""


DATA_SETS = (
    DataSet("json", "JSON records", False),
    DataSet("bitmap", "a 512x512 8-bit grey bitmap", True),
    DataSet("prose", "German verse, ASCII", True),
    DataSet("html", "an HTML page", False),
    DataSet("pdf", "a PDF with compressed streams", True),
)
"""12.1 to 12.5, the kinds of Autobahn's data sets in its order."""


# -- the data, generated ---------------------------------------------------------------


def _stream(seed: str) -> Iterator[int]:
    """Pseudo-random octets from SHA-256 in counter mode: the same on every machine."""
    counter = 0
    while True:
        yield from hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1


WORDS = (
    "habe", "nun", "ach", "philosophie", "juristerei", "und", "medizin", "leider",
    "auch", "theologie", "durchaus", "studiert", "mit", "heissem", "bemuehn", "da",
    "steh", "ich", "armer", "tor", "bin", "so", "klug", "als", "wie", "zuvor", "heisse",
    "magister", "doktor", "gar", "ziehe", "schon", "an", "die", "zehen", "jahr", "herauf",
    "herab", "quer", "krumm", "meine", "schueler", "der", "nase", "herum", "sehe", "dass",
    "wir", "nichts", "wissen", "koennen", "das", "will", "mir", "schier", "herz",
    "verbrennen", "geist", "welt", "zeit", "nacht",
)


def _words(seed: str) -> Iterator[str]:
    for octet in _stream(seed):
        yield WORDS[octet % len(WORDS)]


def _json() -> bytes:
    words, numbers = _words("json"), _stream("json-numbers")
    parts, size, i = ["["], 1, 0
    while size < DATA_SIZE:
        record = (f'{{"id": {i}, "name": "{next(words)} {next(words)}", '
                  f'"email": "{next(words)}@{next(words)}.example", '
                  f'"active": {"true" if next(numbers) % 2 else "false"}, '
                  f'"score": {next(numbers)}.{next(numbers) % 10}, '
                  f'"tags": ["{next(words)}", "{next(words)}"]}},\n')
        parts.append(record)
        size += len(record)
        i += 1
    return "".join(parts).encode()[:DATA_SIZE]


def _bitmap() -> bytes:
    """A BMP: headers and a grey palette, then rows of a smooth picture with noise."""
    width = height = 512
    palette = b"".join(bytes((g, g, g, 0)) for g in range(256))
    offset = 14 + 40 + len(palette)
    file_size = offset + width * height
    header = (b"BM" + file_size.to_bytes(4, "little") + bytes(4) + offset.to_bytes(4, "little")
              + (40).to_bytes(4, "little") + width.to_bytes(4, "little")
              + height.to_bytes(4, "little") + (1).to_bytes(2, "little")
              + (8).to_bytes(2, "little") + bytes(4) + (width * height).to_bytes(4, "little")
              + bytes(16))
    noise = _stream("bitmap")
    rows = bytearray()
    for y in range(height):
        for x in range(width):
            rows.append(((x * y) // 512 + (x + y) // 4 + next(noise) % 8) & 0xFF)
    return (header + palette + bytes(rows))[:DATA_SIZE]


def _prose() -> bytes:
    words, lengths = _words("prose"), _stream("prose-lines")
    lines, size = [], 0
    while size < DATA_SIZE:
        count = 4 + next(lengths) % 6
        line = " ".join(next(words) for _ in range(count)).capitalize() + ",\n"
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()[:DATA_SIZE]


def _html() -> bytes:
    words, numbers = _words("html"), _stream("html-numbers")
    parts = ["<!DOCTYPE html>\n<html><head><title>data</title></head><body>\n<ul>\n"]
    size = len(parts[0])
    while size < DATA_SIZE:
        item = (f'  <li class="item"><a href="/page/{next(numbers)}">{next(words)} '
                f'{next(words)}</a> <span class="note">{next(words)} {next(words)} '
                f'{next(words)}</span></li>\n')
        parts.append(item)
        size += len(item)
    return "".join(parts).encode()[:DATA_SIZE]


def _pdf() -> bytes:
    """Text objects between streams of random octets, as a PDF's deflated content."""
    noise, parts, size, n = _stream("pdf"), [b"%PDF-1.4\n"], 9, 1
    while size < DATA_SIZE:
        length = 512 + next(noise) * 16
        body = bytes(next(noise) for _ in range(length))
        part = (f"{n} 0 obj\n<< /Length {length} /Filter /FlateDecode >>\nstream\n".encode()
                + body + b"\nendstream\nendobj\n")
        parts.append(part)
        size += len(part)
        n += 1
    return b"".join(parts)[:DATA_SIZE]


_MAKERS = {"json": _json, "bitmap": _bitmap, "prose": _prose, "html": _html, "pdf": _pdf}


@functools.cache
def data_set(name: str) -> bytes:
    """The octets of a data set, made on first use."""
    return _MAKERS[name]()


def messages(name: str, size: int, count: int) -> Iterator[bytes]:
    """The messages an :class:`Echoes` step sends: ``size`` octets at a time, going
    round the data set."""
    data = data_set(name)
    start = 0
    for _ in range(count):
        end = start + size
        yield data[start:end] if end <= len(data) else data[start:] + data[: end - len(data)]
        start = end % len(data)


# -- the cases -------------------------------------------------------------------------


def _scaled(sizes: Sizes) -> Iterator[tuple[int, int, float, int]]:
    for size, count, seconds, fragment in MESSAGES:
        wait = max(seconds / sizes.count_divisor, 5.0) if sizes.count_divisor > 1 else seconds
        yield (max(size // sizes.divisor, 16), max(count // sizes.count_divisor, 1), wait,
               fragment)


def _case(case_id: str, data: DataSet, offer: str, offer_text: str, *, size: int,
          count: int, wait: float, fragment: int) -> Case:
    kind = "binary" if data.binary else "text"
    frames = (f"in frames of {fragment} octets of compressed payload" if fragment
              else "one frame each")
    return Case(case_id, f"Send {count} compressed {kind} messages of {size} octets of "
                f"{data.description}, {frames}, each after the echo of the one before; "
                f"permessage-deflate offer: {offer_text}.",
                (Echoes(data.name, size, count, data.binary, fragment),),
                echo(Event.echoed(count)), end="close", after=wait,
                handshake=Handshake(offer=offer))


def section12(sizes: Sizes) -> Iterator[Case]:
    for j, data in enumerate(DATA_SETS, 1):
        for i, (size, count, wait, fragment) in enumerate(_scaled(sizes), 1):
            yield _case(f"12.{j}.{i}", data, DEFAULT_OFFER, "the default offer", size=size,
                        count=count, wait=wait, fragment=fragment)


def section13(sizes: Sizes) -> Iterator[Case]:
    json = DATA_SETS[0]
    for j, (offer_text, offer) in enumerate(OFFERS, 1):
        for i, (size, count, wait, fragment) in enumerate(_scaled(sizes), 1):
            yield _case(f"13.{j}.{i}", json, offer, offer_text, size=size, count=count,
                        wait=wait, fragment=fragment)
