"""Capture files record by record: read the records at known byte offsets of a classic pcap or
pcapng capture (plain, or gzip read forward), and write records as classic pcap or pcapng."""

from __future__ import annotations

import bisect
import gzip
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple, Protocol

import numpy as np
import pyarrow as pa

from homecall.errors import InputError, MalformedInputError

__all__ = [
    "Capture",
    "CaptureFormat",
    "LinkTypeError",
    "PcapWriter",
    "PcapngWriter",
    "Record",
    "Writer",
    "capture_format",
    "open_capture",
]

CaptureFormat = Literal["pcap", "pcapng"]

# magic -> (byte order, nanosecond timestamps)
PCAP_MAGICS: dict[bytes, tuple[str, bool]] = {
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),
    b"\xa1\xb2\x3c\x4d": (">", True),
}
SHB = 0x0A0D0D0A  # pcapng Section Header Block, the same bytes in either byte order
IDB, SPB, EPB, OLD_PB = 1, 3, 6, 2
BYTE_ORDER_MAGIC = 0x1A2B3C4D
IF_TSRESOL, IF_TSOFFSET = 9, 14
WINDOW_BYTES = 1 << 20  # records closer than this are read in one system call
DEFAULT_SNAPLEN = 262_144  # libpcap's, for captures that give none


class Record(NamedTuple):
    """One packet as copied out: its link type, time (ns since the epoch), lengths and bytes."""

    link_type: int
    ts_ns: int
    orig_len: int
    data: bytes | memoryview


def capture_format(head: bytes) -> CaptureFormat | None:
    """The capture format of a file's first bytes (decompressed first, for a gzip file), or None
    for anything that is not a classic pcap or a pcapng."""
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if len(head) >= 12 and head[:4] == b"\x0a\x0d\x0d\x0a":
        order = head[8:12]
        if order in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            return "pcapng"
    return None


class Capture(Protocol):
    """An open capture that copies records out by offset."""

    path: Path
    link_types: frozenset[int]
    snaplen: int
    is_nanosecond: bool

    def records(self, rows: pa.Table) -> Iterator[Record]:
        """The records at `rows`' pcap_offset (ascending), checked against caplen and ts_us."""
        ...

    def close(self) -> None:
        """Close the file."""
        ...


def open_capture(path: Path) -> Capture:
    """`path` opened as the capture format its first bytes say; InputError when neither."""
    try:
        source = _Bytes(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the capture: {exc}") from exc
    try:
        fmt = capture_format(source.read_at(0, 64))
        if fmt == "pcap":
            return _Pcap(path, source)
        if fmt == "pcapng":
            return _Pcapng(path, source)
    except BaseException:
        source.close()
        raise
    source.close()
    raise InputError(f"{path}: not a pcap or pcapng capture")


class _Bytes:
    """A capture's bytes by offset: `pread` on a plain file; on a gzip file, a decompressing
    stream read forward (offsets come in ascending order; going back starts over)."""

    def __init__(self, path: Path) -> None:
        self._raw = path.open("rb")
        self._gzip = (
            gzip.GzipFile(fileobj=self._raw, mode="rb")
            if os.pread(self._raw.fileno(), 2, 0) == b"\x1f\x8b"
            else None
        )

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset` (fewer at the end of the file)."""
        if self._gzip is None:
            return os.pread(self._raw.fileno(), size, offset)
        try:
            self._gzip.seek(offset)
            return self._gzip.read(size)
        except (OSError, EOFError) as exc:
            raise InputError(f"{self._raw.name}: cannot decompress: {exc}") from exc

    def close(self) -> None:
        """Close the file."""
        if self._gzip is not None:
            self._gzip.close()
        self._raw.close()


def _mismatch(path: Path, offset: int) -> InputError:
    return InputError(
        f"{path}: the record at byte {offset} is not the packet indexed there"
        " (the file changed since it was indexed?)"
    )


def _windows(offsets: list[int], ends: list[int]) -> Iterator[tuple[int, int, int, int]]:
    """(first byte, end byte, first row, end row) of reads covering the records [offset, end)
    (offsets ascending); records less than WINDOW_BYTES apart share one read."""
    i, n = 0, len(offsets)
    while i < n:
        j = bisect.bisect_left(offsets, offsets[i] + WINDOW_BYTES, i + 1)
        yield offsets[i], max(ends[i:j]), i, j
        i = j


def _columns(rows: pa.Table) -> tuple[list[int], list[int], list[int]]:
    """pcap_offset, caplen and ts_us as lists (a Python loop reads lists fastest)."""
    return _ints(rows, "pcap_offset"), _ints(rows, "caplen"), _ints(rows, "ts_us")


def _ints(rows: pa.Table, name: str) -> list[int]:
    """A column without nulls as a list, through NumPy over its buffer: pyarrow's to_numpy
    imports pandas, a second of start-up (measured)."""
    column = rows.column(name).combine_chunks()
    if column.null_count:
        raise ValueError(f"packets rows without {name}")
    dtype = np.dtype(column.type.to_pandas_dtype())
    values = np.frombuffer(
        column.buffers()[1], dtype=dtype, count=len(column), offset=column.offset * dtype.itemsize
    )
    return values.tolist()  # type: ignore[no-any-return]


@dataclass(slots=True)
class _Pcap:
    """A classic libpcap file: a 24-byte header, then 16-byte record headers and data."""

    path: Path
    _bytes: _Bytes
    link_types: frozenset[int] = field(init=False)
    snaplen: int = field(init=False)
    is_nanosecond: bool = field(init=False)
    _header: struct.Struct = field(init=False)

    def __post_init__(self) -> None:
        head = self._bytes.read_at(0, 24)
        if len(head) < 24:
            raise MalformedInputError(self.path, None, "truncated pcap file header")
        order, self.is_nanosecond = PCAP_MAGICS[head[:4]]
        snaplen, network = struct.unpack(order + "16xII", head)
        self.snaplen = snaplen or DEFAULT_SNAPLEN
        self.link_types = frozenset([network & 0xFFFF])
        self._header = struct.Struct(order + "IIII")

    def records(self, rows: pa.Table) -> Iterator[Record]:
        """The records at the rows' offsets, each checked against its caplen and time."""
        offsets, caplens, stamps = _columns(rows)
        ends = [offset + 16 + caplen for offset, caplen in zip(offsets, caplens, strict=True)]
        link_type = next(iter(self.link_types))
        unpack = self._header.unpack_from
        scale = 1 if self.is_nanosecond else 1000
        for start, end, first, last in _windows(offsets, ends):
            view = memoryview(self._bytes.read_at(start, end - start))
            for k in range(first, last):
                at, caplen = offsets[k] - start, caplens[k]
                if at + 16 + caplen > len(view):
                    raise _mismatch(self.path, offsets[k])
                seconds, fraction, incl_len, orig_len = unpack(view, at)
                ts_ns = seconds * 1_000_000_000 + fraction * scale
                if incl_len != caplen or abs(ts_ns // 1000 - stamps[k]) > 1:
                    raise _mismatch(self.path, offsets[k])
                yield Record(link_type, ts_ns, orig_len, view[at + 16 : at + 16 + caplen])

    def close(self) -> None:
        """Close the file."""
        self._bytes.close()


@dataclass(frozen=True, slots=True)
class _Interface:
    link_type: int
    snaplen: int
    units_per_s: int  # timestamp ticks per second (if_tsresol; 10**6 by default)
    offset_s: int  # if_tsoffset

    def ts_ns(self, ticks: int) -> int:
        return ticks * 1_000_000_000 // self.units_per_s + self.offset_s * 1_000_000_000


@dataclass(slots=True)
class _Section:
    start: int
    order: str
    interfaces: list[_Interface] = field(default_factory=list)


@dataclass(slots=True)
class _Pcapng:
    """A pcapng file. Its interfaces are read from the head of the first section; a record that
    does not fit them (a later section, an interface described late) makes one walk of every
    block header in the file, then the record is checked again."""

    path: Path
    _bytes: _Bytes
    link_types: frozenset[int] = field(init=False)
    snaplen: int = field(init=False)
    is_nanosecond: bool = field(init=False)
    _sections: list[_Section] = field(init=False)
    _starts: list[int] = field(init=False)
    _walked: bool = False

    def __post_init__(self) -> None:
        self._use(self._walk(whole=False))

    def _use(self, sections: list[_Section]) -> None:
        self._sections = sections
        self._starts = [s.start for s in sections]
        interfaces = [i for s in self._sections for i in s.interfaces]
        if not interfaces:
            raise MalformedInputError(self.path, None, "pcapng without an interface description")
        self.link_types = frozenset(i.link_type for i in interfaces)
        self.snaplen = max(i.snaplen for i in interfaces) or DEFAULT_SNAPLEN
        self.is_nanosecond = any(i.units_per_s > 1_000_000 for i in interfaces)

    def records(self, rows: pa.Table) -> Iterator[Record]:
        """The packet blocks at the rows' offsets, each checked against its caplen and time."""
        offsets, caplens, stamps = _columns(rows)
        ends = [offset + 28 + caplen for offset, caplen in zip(offsets, caplens, strict=True)]
        for start, end, first, last in _windows(offsets, ends):
            view = memoryview(self._bytes.read_at(start, end - start))
            for k in range(first, last):
                at = offsets[k] - start
                found = self._record(view, at, offsets[k], caplens[k], stamps[k])
                if found is None and not self._walked:
                    self._use(self._walk(whole=True))
                    self._walked = True
                    found = self._record(view, at, offsets[k], caplens[k], stamps[k])
                if found is None:
                    raise _mismatch(self.path, offsets[k])
                yield found

    def _record(
        self, view: memoryview, at: int, offset: int, caplen: int, ts_us: int
    ) -> Record | None:
        """The record of the block at `at`, or None when it does not match the row."""
        where = bisect.bisect_right(self._starts, offset) - 1
        if where < 0 or at + 12 > len(view):
            return None
        section = self._sections[where]
        order = section.order
        kind = struct.unpack_from(order + "I", view, at)[0]
        if kind in (EPB, OLD_PB) and at + 28 + caplen <= len(view):
            if_id, high, low, incl_len, orig_len = struct.unpack_from(order + "5I", view, at + 8)
            if kind == OLD_PB:  # a 16-bit interface id, then a 16-bit drops count
                if_id = struct.unpack_from(order + "H", view, at + 8)[0]
            if if_id >= len(section.interfaces) or incl_len != caplen:
                return None
            interface = section.interfaces[if_id]
            ts_ns = interface.ts_ns((high << 32) | low)
            if abs(ts_ns // 1000 - ts_us) > 1:
                return None
            return Record(interface.link_type, ts_ns, orig_len, view[at + 28 : at + 28 + caplen])
        if kind == SPB and section.interfaces and at + 12 + caplen <= len(view):
            orig_len = struct.unpack_from(order + "I", view, at + 8)[0]
            if caplen > orig_len:
                return None
            interface = section.interfaces[0]  # a simple packet block has no time of its own
            data = view[at + 12 : at + 12 + caplen]
            return Record(interface.link_type, ts_us * 1000, orig_len, data)
        return None

    def _walk(self, *, whole: bool) -> list[_Section]:
        """Sections and their interfaces, from the block headers: up to the first packet block
        of the first section, or (`whole`) through the file."""
        sections: list[_Section] = []
        offset = 0
        while len(head := self._bytes.read_at(offset, 12)) == 12:
            if head[:4] == b"\x0a\x0d\x0d\x0a":
                order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
                if sections and not whole:
                    break
                sections.append(_Section(offset, order))
            elif not sections:
                raise MalformedInputError(self.path, None, "pcapng without a section header")
            kind, length = struct.unpack(sections[-1].order + "II", head[:8])
            if length < 12 or length % 4:
                raise MalformedInputError(
                    self.path, None, f"damaged pcapng block at byte {offset} (length {length})"
                )
            if kind == IDB:
                sections[-1].interfaces.append(
                    _interface(self._bytes.read_at(offset, length), sections[-1].order)
                )
            elif kind in (EPB, SPB, OLD_PB) and not whole:
                break
            offset += length
        return sections

    def close(self) -> None:
        """Close the file."""
        self._bytes.close()


def _interface(block: bytes, order: str) -> _Interface:
    """An Interface Description Block: link type, snaplen, if_tsresol and if_tsoffset."""
    link_type, _, snaplen = struct.unpack_from(order + "HHI", block, 8)
    units, offset_s = 1_000_000, 0
    at, end = 16, len(block) - 4
    while at + 4 <= end:
        code, length = struct.unpack_from(order + "HH", block, at)
        if code == 0:
            break
        value = block[at + 4 : at + 4 + length]
        if code == IF_TSRESOL and length >= 1:
            exponent = value[0] & 0x7F
            units = 2**exponent if value[0] & 0x80 else 10**exponent
        elif code == IF_TSOFFSET and length >= 8:
            offset_s = struct.unpack(order + "q", value[:8])[0]
        at += 4 + (length + 3) // 4 * 4
    return _Interface(link_type, snaplen, units, offset_s)


class LinkTypeError(ValueError):
    """Raised by a writer given a record of a link type its file header does not declare."""


class Writer(Protocol):
    """Where copied records go."""

    def write(self, record: Record) -> None:
        """Append one record."""
        ...


class PcapWriter:
    """Classic pcap, little-endian, microsecond or (`nanosecond`) nanosecond timestamps."""

    def __init__(self, stream: BinaryIO, link_type: int, snaplen: int, *, nanosecond: bool):
        self._stream = stream
        self._divisor = 1 if nanosecond else 1000
        magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
        stream.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, link_type))
        self._header = struct.Struct("<IIII")
        self._link_type = link_type

    def write(self, record: Record) -> None:
        """Append one record; LinkTypeError when its link type is not the file's."""
        if record.link_type != self._link_type:
            raise LinkTypeError(record.link_type)
        seconds, fraction = divmod(record.ts_ns, 1_000_000_000)
        data = record.data
        self._stream.write(
            self._header.pack(seconds, fraction // self._divisor, len(data), record.orig_len)
        )
        self._stream.write(data)


class PcapngWriter:
    """pcapng with one interface per link type, for records of several link types."""

    def __init__(self, stream: BinaryIO, link_types: list[int], snaplen: int, *, nanosecond: bool):
        self._stream = stream
        self._interface = {link: i for i, link in enumerate(link_types)}
        self._divisor = 1 if nanosecond else 1000
        stream.write(struct.pack("<IIIHHqI", SHB, 28, BYTE_ORDER_MAGIC, 1, 0, -1, 28))
        options = struct.pack("<HHB3x", IF_TSRESOL, 1, 9) if nanosecond else b""
        options += struct.pack("<HH", 0, 0)
        length = 20 + len(options)
        for link in link_types:
            stream.write(struct.pack("<IIHHI", IDB, length, link, 0, snaplen))
            stream.write(options + struct.pack("<I", length))

    def write(self, record: Record) -> None:
        """Append one Enhanced Packet Block on the interface of the record's link type."""
        if record.link_type not in self._interface:
            raise LinkTypeError(record.link_type)
        ticks = record.ts_ns // self._divisor
        data = record.data
        padding = -len(data) % 4
        length = 32 + len(data) + padding
        self._stream.write(
            struct.pack(
                "<7I",
                EPB,
                length,
                self._interface[record.link_type],
                ticks >> 32,
                ticks & 0xFFFFFFFF,
                len(data),
                record.orig_len,
            )
        )
        self._stream.write(data)
        self._stream.write(b"\0" * padding + struct.pack("<I", length))
