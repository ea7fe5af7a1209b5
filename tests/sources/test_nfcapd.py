"""nfcapd binary reader: the slips-test1 file against the csv nfdump 1.7.1 made from it, flow by
flow; bzip2, LZ4 and ZSTD blocks; LZO refused; layout 2 (nfdump 1.7) records; damaged files."""

from __future__ import annotations

import bz2
import csv
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from homecall.errors import MalformedInputError
from homecall.pipeline import import_paths
from homecall.sources import Problems, ReadOptions, detect, nfcapd
from homecall.store import Store
from homecall.store.schema import Query, schema_of

BINARY = "netflow-nfdump/slips-test1/test1-malicious.nfcapd"
CSV = "netflow-nfdump/slips-test1/test1-malicious.derived.nfdump.csv"
V1_HEAD = 140 + 136  # file header and stat record (nffile.h)
PROTOCOL_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP"}  # as nfdump prints them


def _flows(path: Path) -> tuple[list[dict[str, Any]], Problems]:
    problems = Problems()
    return nfcapd.decode(path, problems).to_pylist(), problems


def _conn(path: Path) -> tuple[list[dict[str, Any]], Problems]:
    problems = Problems()
    [(table, query)] = list(nfcapd.read(path, problems))
    assert table == "conn"
    assert isinstance(query, Query)
    got = query.to_arrow()
    assert got.schema == schema_of("conn")
    return got.to_pylist(), problems


def _v1_records(path: Path) -> tuple[bytes, list[bytes]]:
    """The file header with stat record, and every record of every block, as stored."""
    raw = path.read_bytes()
    records, offset = [], V1_HEAD
    while offset < len(raw):
        count, size, _, _ = struct.unpack_from("<IIHH", raw, offset)
        block, at = raw[offset + 12 : offset + 12 + size], 0
        for _ in range(count):
            length = struct.unpack_from("<HH", block, at)[1]
            records.append(block[at : at + length])
            at += length
        offset += 12 + size
    return raw[:V1_HEAD], records


def _v1_file(
    head: bytes,
    records: list[bytes],
    blocks: int = 1,
    flag: int = 0,
    pack: Callable[[bytes], bytes] = bytes,
) -> bytes:
    """A layout-1 file of `records` in `blocks` blocks; `flag` set in the header and every
    block's data passed through `pack` (its compressor)."""
    magic, version, flags, _ = struct.unpack_from("<HHII", head)
    out = bytearray(struct.pack("<HHII", magic, version, flags | flag, blocks) + head[12:])
    step = -(-len(records) // blocks)
    # extension maps must come before the records that use them: keep them in the first block
    for start in range(0, len(records), step):
        data = b"".join(records[start : start + step])
        packed = pack(data)
        out += struct.pack("<IIHH", len(records[start : start + step]), len(packed), 2, 0)
        out += packed
    return bytes(out)


def test_binary_flows_are_the_csv_nfdump_made_from_it(samples: Path) -> None:
    flows, problems = _flows(samples / BINARY)
    assert problems.bad_records == 0
    with (samples / CSV).open(newline="") as stream:
        lines = stream.read().split("\n")
    records = list(csv.DictReader(lines[: lines.index("Summary")]))
    assert len(flows) == len(records) == 4593  # PROVENANCE.txt
    for flow, line in zip(flows, records, strict=True):
        assert (flow["sa"], flow["da"]) == (line["sa"], line["da"])
        assert (flow["sp"], flow["dp"]) == (int(line["sp"]), int(line["dp"]))
        assert PROTOCOL_NAMES[flow["proto"]] == line["pr"]
        assert (flow["pkts"], flow["bytes"]) == (int(line["ipkt"]), int(line["ibyt"]))
        # nfdump 1.7.1 wrote whole seconds (the machine's zone was UTC) and td in milliseconds
        assert flow["ts"].strftime("%Y-%m-%d %H:%M:%S") == line["ts"]
        assert flow["te"].strftime("%Y-%m-%d %H:%M:%S") == line["te"]
        assert f"{(flow['te'] - flow['ts']).total_seconds():.3f}" == line["td"]
    assert flows[0]["ts"] == datetime(2018, 1, 12, 15, 37, 30, 942000, tzinfo=UTC)


def test_binary_and_csv_give_the_same_connections(samples: Path) -> None:
    """The same pairing for both forms of one capture (the binary has milliseconds)."""
    binary, _ = _conn(samples / BINARY)
    [(_, query)] = list(detect(samples / CSV).read(samples / CSV, Problems(), ReadOptions()))
    assert isinstance(query, Query)
    text = query.to_arrow().to_pylist()

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        number = int(row["uid"].rsplit("-", 1)[1])
        if row["uid"].startswith("N") and row["source_file"].endswith(".csv"):
            number -= 1  # the csv's line numbers count its header
        return (number, row["orig_ip"], row["orig_port"], row["resp_ip"], row["resp_port"],
                row["orig_pkts"], row["resp_pkts"], row["orig_ip_bytes"], row["resp_ip_bytes"],
                row["conn_state"], row["history"])  # fmt: skip

    assert sorted(map(key, binary)) == sorted(map(key, text))
    assert len(binary) < 4593  # pairs were made


def test_sample_imports_through_the_pipeline(samples: Path, tmp_path: Path) -> None:
    path = samples / BINARY
    assert detect(path).format == "nfcapd"
    result = import_paths([path], Store(tmp_path / "store"))
    assert result.errors == []
    assert result.problems.bad_records == 0
    assert result.imported[path] == {"conn": len(_conn(path)[0])}


@pytest.mark.parametrize(
    ("flag", "pack"),
    [
        (0x8, bz2.compress),
        (0x10, lambda data: pa.Codec("lz4_raw").compress(data, asbytes=True)),
    ],
    ids=["bz2", "lz4"],
)
def test_compressed_blocks_read_the_same(
    samples: Path, tmp_path: Path, flag: int, pack: Callable[[bytes], bytes]
) -> None:
    head, records = _v1_records(samples / BINARY)
    path = tmp_path / "compressed.nfcapd"
    path.write_bytes(_v1_file(head, records, blocks=3, flag=flag, pack=pack))
    flows, problems = _flows(path)
    assert problems.bad_records == 0
    assert flows == _flows(samples / BINARY)[0]


def test_lzo_is_refused_by_name(samples: Path, tmp_path: Path) -> None:
    head, records = _v1_records(samples / BINARY)
    path = tmp_path / "lzo.nfcapd"
    path.write_bytes(_v1_file(head, records, flag=0x1))
    assert nfcapd.sniff(path.read_bytes()[:64])
    with pytest.raises(MalformedInputError, match="LZO"):
        _flows(path)


def test_a_cut_file_keeps_its_whole_blocks(samples: Path, tmp_path: Path) -> None:
    head, records = _v1_records(samples / BINARY)
    whole = _v1_file(head, records, blocks=2)
    path = tmp_path / "cut.nfcapd"
    path.write_bytes(whole[: len(whole) - 1000])
    flows, problems = _flows(path)
    assert [p.reason for p in problems.records] == ["file ends inside a data block"]
    expected = _flows(samples / BINARY)[0]
    assert 0 < len(flows) < len(expected)
    assert flows == expected[: len(flows)]


def test_not_an_nfcapd_file(tmp_path: Path) -> None:
    path = tmp_path / "x.nfcapd"
    path.write_bytes(b"\x0c\xa5\x07\x00" + bytes(200))
    assert not nfcapd.sniff(path.read_bytes())
    with pytest.raises(MalformedInputError, match="layout version 7"):
        _flows(path)


# ------------------------------------------------------------------------------ layout 2


def _v3_record(flow: dict[str, Any]) -> bytes:
    """One nfdump 1.7 V3 record (nfxV3.h): EXgenericFlow and EXipv4Flow elements."""
    first = int(flow["ts"].timestamp() * 1000)
    last = int(flow["te"].timestamp() * 1000)
    dp = flow["dp"]
    generic = struct.pack(
        "<QQQQQHBBBBBB", first, last, 0, flow["pkts"], flow["bytes"], flow["sp"], dp & 255,
        dp >> 8, flow["proto"], flow["flags"], 0, 0,
    )  # fmt: skip
    addresses = struct.pack(
        "<II", *(int.from_bytes(bytes(map(int, flow[k].split("."))), "big") for k in ("sa", "da"))
    )
    elements = struct.pack("<HH", 1, 4 + len(generic)) + generic
    elements += struct.pack("<HH", 2, 4 + len(addresses)) + addresses
    return struct.pack("<HHHBBHBB", 11, 12 + len(elements), 2, 0, 0, 1, 0, 5) + elements


def _v2_file(
    flows: list[dict[str, Any]], compression: int, pack: Callable[[bytes], bytes]
) -> bytes:
    """A layout-2 file (nffileV2.h): two compressed blocks of V3 records and a block written
    uncompressed (flag bit 0) holding a record that is not a flow."""
    records = [_v3_record(f) for f in flows]
    half = len(records) // 2
    out = bytearray(
        struct.pack("<HHIqBBHIqII", 0xA50C, 2, 0xF1070100, 0, compression, 0, 0, 1, 0, 1 << 20, 3)
    )
    for chunk in (records[:half], records[half:]):
        data = pack(b"".join(chunk))
        out += struct.pack("<IIHH", len(chunk), len(data), 3, 0) + data
    stat = struct.pack("<HH", 0x8002, 8) + bytes(4)
    out += struct.pack("<IIHH", 1, len(stat), 3, 1) + stat
    return bytes(out)


@pytest.mark.parametrize(
    ("compression", "pack"),
    [
        (0, bytes),
        (2, bz2.compress),
        (3, lambda data: pa.Codec("lz4_raw").compress(data, asbytes=True)),
        (4, lambda data: pa.Codec("zstd").compress(data, asbytes=True)),
    ],
    ids=["plain", "bz2", "lz4", "zstd"],
)
def test_layout_2_records(
    samples: Path, tmp_path: Path, compression: int, pack: Callable[[bytes], bytes]
) -> None:
    expected = _flows(samples / BINARY)[0]
    path = tmp_path / "v2.nfcapd"
    path.write_bytes(_v2_file(expected, compression, pack))
    assert detect(path).format == "nfcapd"
    flows, problems = _flows(path)
    assert problems.bad_records == 0
    for flow in expected:
        flow["out_pkts"] = flow["out_bytes"] = None
    assert flows == expected
    rows, _ = _conn(path)
    assert len(rows) == len(_conn(samples / BINARY)[0])


def test_layout_2_lzo_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v2-lzo.nfcapd"
    path.write_bytes(_v2_file([], 1, bytes))
    with pytest.raises(MalformedInputError, match="LZO"):
        _flows(path)
