"""nfcapd/nfdump binary files (layout 1 of nfdump 1.6, layout 2 of nfdump 1.7) -> the conn table.

The format is nfdump's own (phaag/nfdump: nffile.h, nfx.c for layout 1; nffileV2.h, nfxV3.h for
layout 2), little-endian as the collector wrote it. Layout 1: a 140-byte file header (magic
0xA50C, version 1, flags with the compression), a 136-byte stat record, then data blocks of
type 2 holding extension maps (type 2) and common records (type 10, or 1 from nfdump 1.5).
Layout 2: a 40-byte header naming the compression, then blocks of type 3 holding V3 records
(type 11) of elements. Blocks may be bzip2 (stdlib), LZ4 or ZSTD (pyarrow's codecs)
compressed; LZO is refused with a clear error. Decoded flows are paired into connections by
sources/flows.py, as for nfdump's csv text; a record's uid is `N` + 10 hex digits of the SHA-256
of the path + `-` + the flow's number in the file (the line `nfdump -o csv` would print it on,
less one for the header). See docs/schema.md ("Flow records").
"""

from __future__ import annotations

import bz2
import gzip
import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from homecall.errors import MalformedInputError
from homecall.sources.duck import connect
from homecall.sources.fileio import is_gzip
from homecall.sources.flows import conn_select, define_macros, paired_sides, protocol
from homecall.sources.options import DEFAULT_OPTIONS, ReadOptions
from homecall.sources.problems import Problems
from homecall.store.schema import Query

__all__ = ["FORMAT", "decode", "read", "sniff"]

FORMAT = "nfcapd"
UID_LETTER = "N"
MAGIC = 0xA50C
MAX_BLOCK_BYTES = 1 << 26  # nfdump's blocks are at most a few MiB; more means a corrupt file

_HEADER_V1 = struct.Struct("<HHII128s")  # magic, version, flags, NumBlocks, ident
_STAT_V1_BYTES = 136
_HEADER_V2 = struct.Struct("<HHIqBBHIqII")  # ... compression, encryption, ..., NumBlocks
_BLOCK = struct.Struct("<IIHH")  # NumRecords, size, type, flags
_RECORD = struct.Struct("<HH")  # type, size
_COMMON = struct.Struct("<HHHHHHIIBBBBHH")  # type 10 up to dstport (28 bytes; 4 more follow)
_COMMON_V0 = struct.Struct("<HHBBHHHIIBBBBHH")  # type 1 (nfdump 1.5), 28 bytes
_V3 = struct.Struct("<HHHBBHBB")  # type 11 record header, 12 bytes
_ELEMENT = struct.Struct("<HH")  # element type, length (header included)
_GENERIC = struct.Struct("<QQQQQHBBBBBB")  # EXgenericFlow: times, counters, ports, proto, ...
_COUNTERS = struct.Struct("<QQQ")  # EXcntFlow: flows, outPackets, outBytes

# layout 1 file flags and layout 2 compression codes
_V1_COMPRESSION = {0x1: "LZO", 0x8: "BZ2", 0x10: "LZ4"}
_V2_COMPRESSION = {0: None, 1: "LZO", 2: "BZ2", 3: "LZ4", 4: "ZSTD"}
_V1_BUFFER = 5 << 20  # nfdump 1.6's BUFFSIZE: a decompressed block is never larger

# Extension sizes in bytes by id (nfdump 1.6 nfx.c extension_descriptor); 1-3 are required.
_EXTENSION_BYTES = {
    4: 4, 5: 8, 6: 4, 7: 8, 8: 4, 9: 4, 10: 16, 11: 4, 12: 16, 13: 4, 14: 4, 15: 8, 16: 4,
    17: 8, 18: 4, 19: 8, 20: 16, 21: 16, 22: 40, 23: 4, 24: 16, 25: 4, 26: 8, 27: 8,
    **dict.fromkeys(range(28, 37), 0), 37: 20, 38: 4, 39: 8, 40: 32, 41: 24, 42: 24, 43: 72,
    44: 0, 45: 24, 46: 12, 47: 0, 48: 8, 49: 0,
}  # fmt: skip
_OUT_PACKETS = {14: "<I", 15: "<Q"}
_OUT_BYTES = {16: "<I", 17: "<Q"}
_FLAG_IPV6, _FLAG_PACKETS_64, _FLAG_BYTES_64 = 1, 2, 4
_COMMON_RECORD, _COMMON_RECORD_V0, _EXTENSION_MAP, _V3_RECORD = 10, 1, 2, 11
_GENERIC_ID, _IPV4_ID, _IPV6_ID, _COUNTERS_ID = 1, 2, 3, 5


_COLUMN_NAMES = (
    "record", "ts", "te", "sa", "da", "sp", "dp", "proto", "flags", "pkts", "bytes",
    "out_pkts", "out_bytes",
)  # fmt: skip
_COLUMN_TYPES = (
    pa.int64(), pa.int64(), pa.int64(), None, None, pa.int32(), pa.int32(), pa.int32(),
    pa.int32(), pa.int64(), pa.int64(), pa.int64(), pa.int64(),
)  # fmt: skip

_Row = tuple[object, ...]


@dataclass(slots=True)
class _Flows:
    """Decoded flow records, one tuple each in _COLUMN_NAMES order (FLOW_COLUMNS of
    sources/flows.py, times in epoch milliseconds, IPv4 addresses as 32-bit numbers)."""

    rows: list[_Row] = field(default_factory=list)

    @property
    def next_number(self) -> int:
        """The number the next flow record gets (from 1, in file order)."""
        return len(self.rows) + 1

    def skip(self, number: int) -> None:
        """An undecodable record: an empty row keeps the numbering in step with nfdump's."""
        self.rows.append((number, *([None] * (len(_COLUMN_NAMES) - 1))))

    def table(self) -> pa.Table:
        """The flows as an Arrow table (ts, te as UTC timestamps)."""
        columns = list(zip(*self.rows, strict=True)) or [()] * len(_COLUMN_NAMES)
        arrays = {}
        for name, kind, values in zip(_COLUMN_NAMES, _COLUMN_TYPES, columns, strict=True):
            arrays[name] = _addresses(values) if kind is None else pa.array(values, kind)
        ms = pa.timestamp("ms", tz="UTC")
        arrays["ts"], arrays["te"] = arrays["ts"].cast(ms), arrays["te"].cast(ms)
        return pa.table(arrays)


def _addresses(values: tuple[object, ...]) -> pa.Array:
    """Addresses as text; IPv4 numbers are formatted here, all at once."""
    text = [
        f"{v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}" if isinstance(v, int) else v
        for v in values
    ]
    return pa.array(text, pa.string())


def sniff(head: bytes) -> bool:
    """True for nfdump's binary magic 0xA50C (little-endian) with layout version 1 or 2."""
    return len(head) >= 4 and struct.unpack_from("<HH", head) in ((MAGIC, 1), (MAGIC, 2))


def read(
    path: Path, problems: Problems, options: ReadOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[str, pa.RecordBatch | Query]]:
    """Yield ("conn", query) for one nfcapd file; a damaged block is reported, the rest read."""
    flows = decode(path, problems)
    con = connect()
    define_macros(con)
    con.register("decoded", flows)
    con.execute(
        "CREATE TEMP TABLE flows AS SELECT record, ts, te, sa, da, sp, dp,"
        f" {protocol('CAST(proto AS VARCHAR)')} AS proto, flags, pkts, bytes, out_pkts,"
        " out_bytes FROM decoded"
    )
    con.unregister("decoded")
    yield "conn", Query(con, conn_select(paired_sides("flows"), UID_LETTER, path))


def decode(path: Path, problems: Problems) -> pa.Table:
    """The file's flow records, one row each in file order (`record` numbers them from 1);
    `proto` is the protocol number, `dp` NetFlow's ICMP type * 256 + code for ICMP."""
    flows = _Flows()
    with _open(path) as stream:
        head = stream.read(_HEADER_V1.size)
        if len(head) < 4 or struct.unpack_from("<H", head)[0] != MAGIC:
            raise MalformedInputError(path, None, "not an nfcapd file (no 0xA50C magic)")
        version = struct.unpack_from("<H", head, 2)[0]
        if version == 1:
            _decode_v1(path, head, stream, flows, problems)
        elif version == 2:
            _decode_v2(path, head, stream, flows, problems)
        else:
            raise MalformedInputError(path, None, f"nfcapd layout version {version} is unknown")
    return flows.table()


def _open(path: Path) -> BinaryIO:
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


# ------------------------------------------------------------------------------- layout 1


def _decode_v1(
    path: Path, head: bytes, stream: BinaryIO, flows: _Flows, problems: Problems
) -> None:
    if len(head) < _HEADER_V1.size:
        raise MalformedInputError(path, None, "nfcapd file header cut short")
    _, _, file_flags, _, _ = _HEADER_V1.unpack(head)
    codec = next((name for bit, name in _V1_COMPRESSION.items() if file_flags & bit), None)
    _check_codec(path, codec)
    if len(stream.read(_STAT_V1_BYTES)) < _STAT_V1_BYTES:
        raise MalformedInputError(path, None, "nfcapd stat record cut short")
    maps: dict[int, tuple[int, ...]] = {}
    for block_type, count, data in _blocks(path, stream, problems, codec, _V1_BUFFER):
        if block_type == 2:
            _records_v1(path, data, count, maps, flows, problems)


def _records_v1(
    path: Path,
    data: bytes,
    count: int,
    maps: dict[int, tuple[int, ...]],
    flows: _Flows,
    problems: Problems,
) -> None:
    offset = 0
    for _ in range(count):
        if offset + _RECORD.size > len(data):
            problems.add(path, None, "data block ends inside a record")
            return
        kind, size = _RECORD.unpack_from(data, offset)
        if size < _RECORD.size or offset + size > len(data):
            problems.add(path, None, f"record of impossible size {size} in a data block")
            return
        if kind == _EXTENSION_MAP:
            map_id = struct.unpack_from("<H", data, offset + 4)[0]
            ids = struct.unpack_from(f"<{(size - 8) // 2}H", data, offset + 8)
            maps[map_id] = tuple(i for i in _until_zero(ids))
        elif kind in (_COMMON_RECORD, _COMMON_RECORD_V0):
            number = flows.next_number
            try:
                _common_v1(data[offset : offset + size], kind, maps, number, flows)
            except (struct.error, KeyError) as exc:
                problems.add(path, None, f"flow record {number} undecodable: {exc}")
                flows.skip(number)
        offset += size


def _until_zero(ids: tuple[int, ...]) -> Iterator[int]:
    for i in ids:
        if i == 0:
            return
        yield i


def _common_v1(
    raw: bytes, kind: int, maps: dict[int, tuple[int, ...]], number: int, flows: _Flows
) -> None:
    if kind == _COMMON_RECORD:
        (_, _, flags, map_id, ms_first, ms_last, first, last, _, tcp_flags, proto, _, sp, dp) = (
            _COMMON.unpack_from(raw)
        )
        offset = _COMMON.size + 4  # exporter_sysid, reserved
    else:
        (_, _, flags, _, map_id, ms_first, ms_last, first, last, _, tcp_flags, proto, _, sp, dp) = (
            _COMMON_V0.unpack_from(raw)
        )
        offset = _COMMON_V0.size
    if flags & _FLAG_IPV6:
        a0, a1, b0, b1 = struct.unpack_from("<QQQQ", raw, offset)
        sa, da = _ipv6(a0, a1), _ipv6(b0, b1)
        offset += 32
    else:
        sa, da = struct.unpack_from("<II", raw, offset)
        offset += 8
    packets_format = "<Q" if flags & _FLAG_PACKETS_64 else "<I"
    pkts = struct.unpack_from(packets_format, raw, offset)[0]
    offset += struct.calcsize(packets_format)
    bytes_format = "<Q" if flags & _FLAG_BYTES_64 else "<I"
    octets = struct.unpack_from(bytes_format, raw, offset)[0]
    offset += struct.calcsize(bytes_format)
    out_pkts = out_bytes = None
    for ext in maps.get(map_id, ()):
        if ext in _OUT_PACKETS:
            out_pkts = struct.unpack_from(_OUT_PACKETS[ext], raw, offset)[0]
        elif ext in _OUT_BYTES:
            out_bytes = struct.unpack_from(_OUT_BYTES[ext], raw, offset)[0]
        if ext not in _EXTENSION_BYTES:
            break  # an extension nfdump 1.6 does not know: the rest cannot be placed
        offset += _EXTENSION_BYTES[ext]
    flows.rows.append((
        number, first * 1000 + ms_first, last * 1000 + ms_last, sa, da, sp, dp, proto,
        tcp_flags, pkts, octets, out_pkts, out_bytes,
    ))  # fmt: skip


def _ipv6(high: int, low: int) -> str:
    return str(ipaddress.IPv6Address((high << 64) | low))


# ------------------------------------------------------------------------------- layout 2


def _decode_v2(
    path: Path, head: bytes, stream: BinaryIO, flows: _Flows, problems: Problems
) -> None:
    head += stream.read(_HEADER_V2.size - len(head)) if len(head) < _HEADER_V2.size else b""
    if len(head) < _HEADER_V2.size:
        raise MalformedInputError(path, None, "nfcapd file header cut short")
    rest = head[_HEADER_V2.size :]
    fields = _HEADER_V2.unpack_from(head)
    compression, encryption, block_size = fields[4], fields[5], fields[9]
    if compression not in _V2_COMPRESSION:
        raise MalformedInputError(path, None, f"unknown nfcapd compression {compression}")
    if encryption:
        raise MalformedInputError(path, None, "encrypted nfcapd file")
    codec = _V2_COMPRESSION[compression]
    _check_codec(path, codec)
    buffer = max(block_size, _V1_BUFFER)
    blocks = _blocks(path, _Prefixed(rest, stream), problems, codec, buffer, layout=2)
    for block_type, count, data in blocks:
        if block_type == 3:
            _records_v3(path, data, count, flows, problems)


class _Prefixed:
    """A stream that first returns `prefix` (bytes read ahead while sniffing the layout)."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int) -> bytes:
        if not self._prefix:
            return self._stream.read(size)
        taken, self._prefix = self._prefix[:size], self._prefix[size:]
        return taken + (self._stream.read(size - len(taken)) if len(taken) < size else b"")


def _records_v3(path: Path, data: bytes, count: int, flows: _Flows, problems: Problems) -> None:
    offset = 0
    for _ in range(count):
        if offset + _RECORD.size > len(data):
            problems.add(path, None, "data block ends inside a record")
            return
        kind, size = _RECORD.unpack_from(data, offset)
        if size < _RECORD.size or offset + size > len(data):
            problems.add(path, None, f"record of impossible size {size} in a data block")
            return
        if kind == _V3_RECORD:
            number = flows.next_number
            try:
                _v3(data[offset : offset + size], number, flows)
            except (struct.error, ValueError) as exc:
                problems.add(path, None, f"flow record {number} undecodable: {exc}")
                flows.skip(number)
        offset += size


def _v3(raw: bytes, number: int, flows: _Flows) -> None:
    elements = _V3.unpack_from(raw)[2]
    offset = _V3.size
    found: dict[int, int] = {}
    for _ in range(elements):
        kind, length = _ELEMENT.unpack_from(raw, offset)
        if length < _ELEMENT.size:
            raise ValueError(f"element of length {length}")
        found.setdefault(kind, offset + _ELEMENT.size)
        offset += length
    if _GENERIC_ID not in found:
        return  # not a flow (an nfdump-internal record without flow data)
    first, last, _, pkts, octets, sp, icmp_type, icmp_code, proto, tcp_flags, _, _ = (
        _GENERIC.unpack_from(raw, found[_GENERIC_ID])
    )
    # the union's two bytes: ICMP type and code, else the 16-bit dstPort
    dp = icmp_type * 256 + icmp_code if proto in (1, 58) else icmp_type | icmp_code << 8
    if _IPV4_ID in found:
        sa, da = struct.unpack_from("<II", raw, found[_IPV4_ID])
    elif _IPV6_ID in found:
        a0, a1, b0, b1 = struct.unpack_from("<QQQQ", raw, found[_IPV6_ID])
        sa, da = _ipv6(a0, a1), _ipv6(b0, b1)
    else:
        raise ValueError("flow without addresses")
    out_pkts = out_bytes = None
    if _COUNTERS_ID in found:
        _, out_pkts, out_bytes = _COUNTERS.unpack_from(raw, found[_COUNTERS_ID])
    flows.rows.append(
        (number, first, last, sa, da, sp, dp, proto, tcp_flags, pkts, octets, out_pkts, out_bytes)
    )


# -------------------------------------------------------------------------------- blocks


def _check_codec(path: Path, codec: str | None) -> None:
    if codec == "LZO":
        raise MalformedInputError(
            path,
            None,
            "nfcapd file with LZO-compressed blocks: no LZO decompressor is available; rewrite"
            " a copy uncompressed or with bzip2 (nfdump -J 0 or -J 2) and import that",
        )


def _blocks(
    path: Path,
    stream: BinaryIO | _Prefixed,
    problems: Problems,
    codec: str | None,
    buffer: int,
    layout: int = 1,
) -> Iterator[tuple[int, int, bytes]]:
    """(block type, record count, decompressed data) for each block up to the end of file."""
    while True:
        header = stream.read(_BLOCK.size)
        if not header:
            return
        if len(header) < _BLOCK.size:
            problems.add(path, None, "file ends inside a block header")
            return
        count, size, block_type, flags = _BLOCK.unpack(header)
        if size > MAX_BLOCK_BYTES:
            problems.add(path, None, f"block of impossible size {size}: rest of file skipped")
            return
        data = stream.read(size)
        if len(data) < size:
            problems.add(path, None, "file ends inside a data block")
            return
        # layout 2 marks blocks written uncompressed (bit 0); layout 1 compresses all blocks
        compressed = codec is not None and not (layout == 2 and flags & 1)
        if compressed:
            try:
                data = _decompress(codec, data, buffer)
            except (OSError, ValueError, EOFError) as exc:
                problems.add(path, None, f"{codec} block undecodable ({exc}): skipped")
                continue
        yield block_type, count, data


def _decompress(codec: str | None, data: bytes, buffer: int) -> bytes:
    if codec == "BZ2":
        return bz2.decompress(data)
    if codec == "LZ4":  # raw LZ4 blocks (LZ4_compress_default): the output is zero-padded
        return bytes(pa.Codec("lz4_raw").decompress(data, decompressed_size=buffer, asbytes=True))
    if codec == "ZSTD":
        size = _zstd_content_size(data)
        return bytes(pa.Codec("zstd").decompress(data, decompressed_size=size, asbytes=True))
    raise ValueError(f"unsupported compression {codec}")


def _zstd_content_size(frame: bytes) -> int:
    """The decompressed size a ZSTD frame header states (RFC 8878, 3.1.1.1)."""
    if len(frame) < 6 or frame[:4] != b"\x28\xb5\x2f\xfd":
        raise ValueError("not a ZSTD frame")
    descriptor = frame[4]
    size_flag, single, dict_flag = descriptor >> 6, descriptor >> 5 & 1, descriptor & 3
    offset = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    width = (1 if single else 0, 2, 4, 8)[size_flag]
    if width == 0:
        raise ValueError("ZSTD frame without its content size")
    value = int.from_bytes(frame[offset : offset + width], "little")
    return value + 256 if width == 2 else value
