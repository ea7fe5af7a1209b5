"""nfdump `-o csv` reader: the slips-test1 sample (pairs checked against its raw lines), both
header namings, headerless `-q` output, the Summary block, bad lines, time zones; and the
content sniffing of all three flow formats against every sample file."""

from __future__ import annotations

import csv
import gzip
import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from homecall.pipeline import discover, import_paths
from homecall.sources import Problems, ReadOptions, argus, detect, head_of, nfcapd, nfdump
from homecall.store import Store
from homecall.store.schema import Query, schema_of

CSV = "netflow-nfdump/slips-test1/test1-malicious.derived.nfdump.csv"
FLOW_SAMPLES = {
    CSV: "nfdump",
    "netflow-nfdump/slips-test1/test1-malicious.nfcapd": "nfcapd",
    "netflow-argus/slips-test2/test2-malicious.binetflow": "argus",
    "netflow-argus/slips-test5-labeled/test5.binetflow": "argus",
}
HEADER = nfdump.FIXED_HEADER
TAIL = ",0,0,0,0,0,0,0,0,0.0.0.0,0.0.0.0,0,0" + ",00:00:00:00:00:00" * 4 + ",0-0-0" * 10
TAIL += ",    0.000,    0.000,    0.000,10.0.0.254,0/0,1,1970-01-01 00:00:00.000"


def _conn(
    path: Path, options: ReadOptions | None = None
) -> tuple[dict[str, dict[str, Any]], Problems]:
    """The conn rows of one file by uid, read by the reader its content selects."""
    problems = Problems()
    parts = []
    for table, part in detect(path).read(path, problems, options or ReadOptions()):
        got = part.to_arrow() if isinstance(part, Query) else pa.Table.from_batches([part])
        assert table == "conn"
        assert got.schema == schema_of("conn")
        parts.append(got)
    rows = pa.concat_tables(parts).to_pylist() if parts else []
    by_uid = {row["uid"]: row for row in rows}
    assert len(by_uid) == len(rows)  # uids are unique
    return by_uid, problems


def _uid(path: Path, line: int, letter: str = "N") -> str:
    return letter + hashlib.sha256(str(path).encode()).hexdigest()[:10] + f"-{line}"


def _record(line: str) -> str:
    """A fixed-layout record from its first fields (`ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,
    ipkt,ibyt,opkt,obyt`): the rest as nfdump writes it."""
    return line + TAIL


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------- the sample


def _sample_records(path: Path) -> list[dict[str, str]]:
    """The flow records of an nfdump csv file, read plainly: up to the Summary line."""
    with path.open(newline="") as stream:
        lines = stream.read().split("\n")
    end = lines.index("Summary")
    return list(csv.DictReader(lines[:end]))


def test_sample_pairs_every_flow_once(samples: Path) -> None:
    path = samples / CSV
    rows, problems = _conn(path)
    assert problems.bad_records == 0
    records = _sample_records(path)
    assert len(records) == 4593  # PROVENANCE.txt
    paired = [r for r in rows.values() if r["resp_pkts"] > 0]
    alone = [r for r in rows.values() if r["resp_pkts"] == 0]
    assert 2 * len(paired) + len(alone) == len(records)
    # nothing lost or counted twice: the Summary block's totals (the line after its names)
    lines = path.read_text().splitlines()
    names = lines.index("flows,bytes,packets,avg_bps,avg_pps,avg_bpp")
    summary = dict(zip(lines[names].split(","), lines[names + 1].split(","), strict=True))
    assert sum(r["orig_ip_bytes"] + r["resp_ip_bytes"] for r in rows.values()) == int(
        summary["bytes"]
    )
    assert sum(r["orig_pkts"] + r["resp_pkts"] for r in rows.values()) == int(summary["packets"])
    assert {r["proto"] for r in rows.values()} == {"tcp", "udp"}


def test_sample_pairs_checked_against_the_lines(samples: Path) -> None:
    path = samples / CSV
    rows, _ = _conn(path)
    lines = path.read_text().splitlines()
    # line 2: SYN 147.32.80.119:52324 -> 147.32.82.62:902; line 3: the RST-ACK back (a port scan)
    assert lines[1].split(",")[3:9] == ["147.32.80.119", "147.32.82.62", "52324", "902", "TCP",
                                        "......S."]  # fmt: skip
    assert lines[2].split(",")[3:9] == ["147.32.82.62", "147.32.80.119", "902", "52324", "TCP",
                                        "...A.R.."]  # fmt: skip
    scan = rows[_uid(path, 2)]
    assert (scan["orig_ip"], scan["orig_port"], scan["resp_ip"], scan["resp_port"]) == (
        "147.32.80.119", 52324, "147.32.82.62", 902,
    )  # fmt: skip
    assert (scan["orig_pkts"], scan["resp_pkts"], scan["orig_ip_bytes"], scan["resp_ip_bytes"]) == (
        1, 1, 60, 40,
    )  # fmt: skip
    assert (scan["conn_state"], scan["history"], scan["proto"]) == ("REJ", "Sr", "tcp")
    assert scan["ts"] == datetime(2018, 1, 12, 15, 37, 30, tzinfo=UTC)
    assert _uid(path, 3) not in rows  # the reply is part of line 2's connection
    # lines 3919/3920: an SSH session, both directions ...AP.SF, same second: the client is the
    # side with the ephemeral port; duration from td (1.675 s and 1.501 s)
    assert lines[3918].split(",")[2:8] == ["1.675", "50.62.139.155", "147.32.82.62", "44308",
                                           "22", "TCP"]  # fmt: skip
    ssh = rows[_uid(path, 3919)]
    assert (ssh["orig_ip"], ssh["orig_port"], ssh["resp_ip"], ssh["resp_port"]) == (
        "50.62.139.155", 44308, "147.32.82.62", 22,
    )  # fmt: skip
    assert (ssh["orig_ip_bytes"], ssh["resp_ip_bytes"], ssh["orig_pkts"], ssh["resp_pkts"]) == (
        1216, 2349, 12, 12,
    )  # fmt: skip
    assert ssh["duration_s"] == pytest.approx(1.675)
    assert (ssh["conn_state"], ssh["history"]) == ("SF", "ShADdFf")
    # lines 3827/3828: a DNS query and its answer
    dns = rows[_uid(path, 3827)]
    assert (dns["orig_ip"], dns["orig_port"], dns["resp_ip"], dns["resp_port"]) == (
        "147.32.82.62", 53270, "147.32.80.9", 53,
    )  # fmt: skip
    assert (dns["orig_ip_bytes"], dns["resp_ip_bytes"]) == (72, 160)
    assert (dns["proto"], dns["conn_state"], dns["history"]) == ("udp", "SF", "Dd")
    # line 4149: an RST-ACK whose SYN is not in the file stays alone, as recorded
    assert lines[4148].split(",")[3:9] == ["147.32.82.62", "147.32.80.119", "902", "54974", "TCP",
                                           "...A.R.."]  # fmt: skip
    alone = rows[_uid(path, 4149)]
    assert (alone["orig_ip"], alone["orig_port"], alone["resp_pkts"], alone["resp_ip_bytes"]) == (
        "147.32.82.62", 902, 0, 0,
    )  # fmt: skip
    assert alone["conn_state"] == "OTH"


def test_sample_imports_through_the_pipeline(samples: Path, tmp_path: Path) -> None:
    path = samples / CSV
    result = import_paths([path], Store(tmp_path / "store"))
    assert result.errors == []
    assert result.problems.bad_records == 0
    rows, _ = _conn(path)
    assert result.imported[path] == {"conn": len(rows)}


def test_gzip_reads_the_same(samples: Path, tmp_path: Path) -> None:
    plain = samples / CSV
    packed = tmp_path / "flows.csv.gz"
    with plain.open("rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    rows, problems = _conn(packed)
    assert problems.bad_records == 0

    def by_line(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        strip = {"uid", "source_file"}
        return {
            uid.rsplit("-", 1)[1]: {k: v for k, v in row.items() if k not in strip}
            for uid, row in found.items()
        }

    assert by_line(rows) == by_line(_conn(plain)[0])


# ---------------------------------------------------------------- layouts, bad lines


def test_bad_lines_are_reported_and_the_rest_stored(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "bad.csv",
        [
            HEADER,
            _record(
                "2024-03-01 10:00:00,2024-03-01 10:00:01,1.000,10.0.0.1,10.0.0.2,40000,443,"
                "TCP,...AP.SF,0,0,5,400,0,0"
            ),
            "2024-03-01 10:00:00,garbage",
            _record(
                "not a time,2024-03-01 10:00:01,1.000,10.0.0.1,10.0.0.2,40001,443,TCP,"
                "...AP.SF,0,0,5,400,0,0"
            ),
            _record(
                "2024-03-01 10:00:00,2024-03-01 10:00:01,1.000,10.0.0.1,nohost,40002,443,"
                "TCP,...AP.SF,0,0,5,400,0,0"
            ),
            "",
            _record(
                "2024-03-01 10:00:02,2024-03-01 10:00:02,0.000,10.0.0.3,10.0.0.4,5353,53,"
                "UDP,........,0,0,1,70,0,0"
            ),
            "Summary",
            "flows,bytes,packets,avg_bps,avg_pps,avg_bpp",
            "2,470,6,0,0,0",
        ],
    )
    rows, problems = _conn(path)
    assert [(p.line, p.reason.split(":")[0]) for p in problems.records] == [
        (3, "not an nfdump csv record"),
        (4, "unreadable first-seen time"),
        (5, "unreadable address"),
    ]
    assert all(p.path == path for p in problems.records)
    assert sorted(rows) == [_uid(path, 2), _uid(path, 7)]  # line numbers kept past the blank
    assert rows[_uid(path, 7)]["conn_state"] == "S0"


def test_headerless_q_output_and_concatenated_files(tmp_path: Path) -> None:
    """`nfdump -q` prints no header and no Summary; `cat a.csv b.csv` repeats both."""
    first = _record("2024-03-01 10:00:00,2024-03-01 10:00:00,0.000,10.0.0.1,10.0.0.2,40000,80,"
                    "TCP,......S.,0,0,1,60,0,0")  # fmt: skip
    second = _record("2024-03-01 10:00:00,2024-03-01 10:00:00,0.000,10.0.0.2,10.0.0.1,80,40000,"
                     "TCP,.A..S...,0,0,1,60,0,0")  # fmt: skip
    quiet = _write(tmp_path, "quiet.csv", [first, second])
    assert nfdump.sniff(head_of(quiet))
    rows, problems = _conn(quiet)
    assert problems.bad_records == 0
    [row] = rows.values()
    assert (row["orig_ip"], row["orig_port"], row["history"], row["conn_state"]) == (
        "10.0.0.1", 40000, "Sh", "OTH",
    )  # fmt: skip
    summary = ["Summary", "flows,bytes,packets,avg_bps,avg_pps,avg_bpp", "1,60,1,0,0,0"]
    both = _write(tmp_path, "both.csv", [HEADER, first, *summary, HEADER, second, *summary])
    rows, problems = _conn(both)
    assert problems.bad_records == 0
    assert list(rows) == [_uid(both, 2)]


def test_nfdump_175_column_names_with_milliseconds_and_icmp(tmp_path: Path) -> None:
    """nfdump 1.7.5+ names csv columns after its output_csv.c formatTable (`firstSeen`, ...)
    and writes milliseconds; an ICMP echo and its reply pair by type."""
    header = ("firstSeen,lastSeen,duration,srcAddr,dstAddr,srcPort,dstPort,proto,flags,"
              "inPackets,inBytes,outPackets,outBytes")  # fmt: skip
    path = _write(
        tmp_path,
        "new.csv",
        [
            header,
            "2024-03-01 10:00:00.250,2024-03-01 10:00:03.250,3.000,2001:db8::1,2001:db8::2,"
            "0,2048,ICMP,........,4,336,0,0",
            "2024-03-01 10:00:00.260,2024-03-01 10:00:03.260,3.000,2001:db8::2,2001:db8::1,"
            "0,0,ICMP,........,4,336,0,0",
            "2024-03-01 10:00:01.000,2024-03-01 10:00:02.500,1.500,192.0.2.7,198.51.100.9,"
            "51000,443,6,...AP.SF,10,900,12,5000",
        ],
    )
    rows, problems = _conn(path)
    assert problems.bad_records == 0
    echo = rows[_uid(path, 2)]
    assert (echo["proto"], echo["orig_port"], echo["resp_port"]) == ("icmp", 8, 0)
    assert (echo["orig_pkts"], echo["resp_pkts"], echo["conn_state"]) == (4, 4, "OTH")
    assert echo["ts"] == datetime(2024, 3, 1, 10, 0, 0, 250000, tzinfo=UTC)
    assert echo["duration_s"] == pytest.approx(3.010)
    both_ways = rows[_uid(path, 4)]  # a record that already counts the reverse direction
    assert (both_ways["proto"], both_ways["resp_pkts"], both_ways["resp_ip_bytes"]) == (
        "tcp", 12, 5000,
    )  # fmt: skip


def test_times_are_read_in_the_configured_zone(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "zone.csv",
        [
            HEADER,
            _record(
                "2024-07-01 12:00:00,2024-07-01 12:00:00,0.000,10.0.0.1,10.0.0.2,"
                "1,2,UDP,........,0,0,1,10,0,0"
            ),
        ],
    )
    [row] = _conn(path, ReadOptions(timezone="Europe/Berlin"))[0].values()
    assert row["ts"] == datetime(2024, 7, 1, 10, 0, tzinfo=UTC)  # CEST is UTC+2
    [row] = _conn(path)[0].values()
    assert row["ts"] == datetime(2024, 7, 1, 12, 0, tzinfo=UTC)


def test_reply_far_apart_in_time_is_not_a_pair(tmp_path: Path) -> None:
    start = datetime(2024, 3, 1, 10, 0, 0)
    later = start + timedelta(seconds=60)
    stamp = "%Y-%m-%d %H:%M:%S"
    path = _write(
        tmp_path,
        "apart.csv",
        [
            HEADER,
            _record(
                f"{start:{stamp}},{start:{stamp}},0.000,10.0.0.1,10.0.0.2,123,123,UDP,"
                "........,0,0,1,76,0,0"
            ),
            _record(
                f"{later:{stamp}},{later:{stamp}},0.000,10.0.0.2,10.0.0.1,123,123,UDP,"
                "........,0,0,1,76,0,0"
            ),
        ],
    )
    rows, _ = _conn(path)
    assert sorted(rows) == [_uid(path, 2), _uid(path, 3)]
    assert {r["conn_state"] for r in rows.values()} == {"S0"}


# ----------------------------------------------------------------- sniffing, all formats


@pytest.mark.parametrize("relative", sorted(FLOW_SAMPLES))
def test_flow_samples_are_detected_by_content(samples: Path, relative: str) -> None:
    assert detect(samples / relative).format == FLOW_SAMPLES[relative]


def test_flow_sniffers_refuse_every_other_sample(samples: Path) -> None:
    sniffers = {"nfdump": nfdump.sniff, "nfcapd": nfcapd.sniff, "argus": argus.sniff}
    checked = 0
    for path in discover([samples]):
        relative = str(path.relative_to(samples))
        head = head_of(path)
        for name, sniff in sniffers.items():
            assert sniff(head) is (FLOW_SAMPLES.get(relative) == name), (name, relative)
        checked += 1
    assert checked > 50


@pytest.mark.parametrize(("later_s", "paired"), [(200, True), (700, False)])
def test_long_flows_pair_when_they_start_within_minutes(
    tmp_path: Path, later_s: int, paired: bool
) -> None:
    """Two hour-long flows of one TCP session overlap; they pair when the reply starts less than
    PAIR_START_S (5 min) after the request, not when it starts more than twice that after."""
    start = datetime(2024, 3, 1, 10, 0, 0)
    reply = start + timedelta(seconds=later_s)
    stamp = "%Y-%m-%d %H:%M:%S"
    path = _write(
        tmp_path,
        "long.csv",
        [
            HEADER,
            _record(
                f"{start:{stamp}},{start + timedelta(hours=1):{stamp}},3600.000,10.0.0.1,"
                "10.0.0.2,50000,443,TCP,...AP.S.,0,0,900,90000,0,0"
            ),
            _record(
                f"{reply:{stamp}},{reply + timedelta(hours=1):{stamp}},3600.000,10.0.0.2,"
                "10.0.0.1,443,50000,TCP,...AP.S.,0,0,800,800000,0,0"
            ),
        ],
    )
    rows, _ = _conn(path)
    assert len(rows) == (1 if paired else 2)
    first = rows[_uid(path, 2)]
    assert first["resp_ip_bytes"] == (800000 if paired else 0)
    if paired:
        assert first["duration_s"] == pytest.approx(3600 + later_s)
        assert first["conn_state"] == "S1"
