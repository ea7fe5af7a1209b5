"""pfSense/OPNsense filterlog reader: the crowdsec-hub samples through the pipeline (BSD and RFC
5424 syslog, IPv4 and IPv6), field by field against the raw CSV; bad records; time zones."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from homecall.pipeline import import_paths
from homecall.sources import DEFAULT_OPTIONS, Problems, ReadOptions, detect, pfsense
from homecall.store import Store

SAMPLES = "firewall-pfsense/crowdsec-hub"
RECORD = "53,,,1000102631,em0,match,block,in,4,0x0,,64,892,0,none,6,tcp,44,10.0.2.2,10.0.2.15"


def _read(
    path: Path, options: ReadOptions = DEFAULT_OPTIONS
) -> tuple[list[dict[str, Any]], Problems]:
    problems = Problems()
    rows = [row for _, batch in pfsense.read(path, problems, options) for row in batch.to_pylist()]
    return rows, problems


def _log(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "filter.log"
    path.write_text(text)
    mtime = datetime(2022, 12, 31, tzinfo=UTC).timestamp()  # the year of year-less stamps
    os.utime(path, (mtime, mtime))
    return path


def _csv(line: str) -> list[str]:
    """The filterlog CSV of a raw sample line (its record starts after the syslog header)."""
    return (
        line.split(" - ", 1)[1].split(" ", 1)[1].split(",")
        if line.startswith("<")
        else (line.split("filterlog: ", 1)[1].split(","))
    )


def test_samples_import_with_exact_counts(samples: Path, tmp_path: Path) -> None:
    folder = samples / SAMPLES
    store = Store(tmp_path / "store")
    result = import_paths([folder], store)
    assert result.errors == []
    assert result.problems.bad_records == 0
    counts = {path.name: tables for path, tables in result.imported.items()}
    assert counts == {
        "pf-logs.log": {"firewall": 9},
        "pf-scan-multi-port.log": {"firewall": 16},
        "pfsense-rfc5424-filterlog.log": {"firewall": 4},  # and a blank last line
    }
    for path in folder.iterdir():
        assert detect(path).format == "pfsense"
    stored = pa.concat_tables(pq.read_table(f) for f in store.files("firewall")).to_pylist()
    assert len(stored) == 29
    scan = [row for row in stored if row["source_file"].endswith("pf-scan-multi-port.log")]
    # the SYN scan of PROVENANCE.txt: 10.0.2.2 -> 10.0.2.15, 16 ports, all blocked
    assert {(row["orig_ip"], row["resp_ip"], row["action"]) for row in scan} == {
        ("10.0.2.2", "10.0.2.15", "deny")
    }
    assert len({row["resp_port"] for row in scan}) == 16


def test_records_field_by_field(samples: Path) -> None:
    """Every row against its raw CSV, with the IPv4 and IPv6 field positions of the format."""
    for path in sorted((samples / SAMPLES).iterdir()):
        rows, problems = _read(path)
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert problems.bad_records == 0
        assert len(rows) == len(lines)
        for row, line in zip(rows, lines, strict=True):
            v = _csv(line)
            assert (row["rule"], row["in_interface"] or row["out_interface"]) == (v[3], v[4])
            assert row["action"] == {"block": "deny", "pass": "allow"}[v[6]]
            assert (row["reason"], row["direction"]) == (v[6], v[7])
            if v[8] == "4":
                # tos, ecn, ttl, id, offset, flags, proto id, proto, length, src, dst, ...
                src, dst, ports, length, proto = v[18], v[19], v[20:22], int(v[17]), v[16]
            else:
                # class, flow label, hop limit, proto, proto id, payload length, src, dst, ...
                src, dst, ports, length, proto = v[15], v[16], v[17:19], int(v[14]) + 40, v[12]
            assert (row["orig_ip"], row["resp_ip"], row["ttl"]) == (src, dst, int(v[11]))
            assert [row["orig_port"], row["resp_port"]] == [int(p) for p in ports]
            assert (row["packet_length"], row["proto"]) == (length, proto.lower())
            flags_at = 23 if v[8] == "4" else 20  # after the ports and the data length
            assert row["tcp_flags"] == (v[flags_at] if proto.lower() == "tcp" else None)


def test_named_values(samples: Path) -> None:
    rows, _ = _read(samples / SAMPLES / "pf-logs.log")
    # "Sep 28 10:38:09 pfSense filterlog: 53,,,1000000301,em0,match,block,in,4,...,PA,..."
    assert rows[0]["ts"] == datetime(2026, 9, 28, 10, 38, 9, tzinfo=UTC)  # year from the mtime
    assert (rows[0]["device"], rows[0]["rule"], rows[0]["tcp_flags"]) == (
        "pfSense",
        "1000000301",
        "PA",
    )
    assert (rows[0]["packet_length"], rows[0]["orig_port"], rows[0]["resp_port"]) == (
        460,
        53742,
        22,
    )
    # "...,em0,match,block,out,4,...,10.0.2.15,10.0.2.2,22,53742,0,FA,...": an outbound packet
    assert (rows[2]["direction"], rows[2]["in_interface"], rows[2]["out_interface"]) == (
        "out",
        None,
        "em0",
    )
    # "<134>1 2022-09-06T18:37:34+02:00 opnsense filterlog 69805 - [meta sequenceId=..] 103,..."
    opnsense = rows[4]
    assert opnsense["ts"] == datetime(2022, 9, 6, 16, 37, 34, tzinfo=UTC)
    assert (opnsense["device"], opnsense["action"], opnsense["proto"]) == (
        "opnsense",
        "allow",
        "udp",
    )
    assert opnsense["rule"] == "40b9591224d055de2beec8b74ea486b1"  # OPNsense's rule label hash
    # "...,6,0x00,0x0ea87,51,udp,17,73,2008:8a0:...,2c02:2454:ada:d900::1738,6881,51918,73"
    ipv6 = rows[7]
    assert (ipv6["orig_ip"], ipv6["resp_ip"]) == (
        "2008:8a0:702e:ce00:acc6:c7ee:fa01:2f8a",
        "2c02:2454:ada:d900::1738",
    )
    assert (ipv6["orig_port"], ipv6["resp_port"], ipv6["ttl"], ipv6["packet_length"]) == (
        6881,
        51918,
        51,
        113,
    )


def test_rfc5424_microseconds_and_vlan_interfaces(samples: Path) -> None:
    rows, _ = _read(samples / SAMPLES / "pfsense-rfc5424-filterlog.log")
    assert rows[0]["ts"] == datetime(2025, 11, 6, 11, 32, 42, 868451, tzinfo=UTC)
    assert [row["in_interface"] for row in rows] == ["vtnet0.5", "vtnet0.10", "vtnet0.10",
                                                     "vtnet0.5"]  # fmt: skip
    # "...,6,0x00,0x07c63,64,TCP,6,44,fdfd:ace:ace:10:d8:cdbf:f6f8:6d69,fdfd:ace:ace:5::6,..."
    assert (rows[2]["proto"], rows[2]["tcp_flags"], rows[2]["device"]) == (
        "tcp",
        "S",
        "firewall.lan",
    )


def test_icmp_other_actions_and_reasons(tmp_path: Path) -> None:
    path = _log(
        tmp_path,
        # Netgate's ICMP example layout: type word, id, sequence
        "Dec  5 09:53:08 pfsense filterlog[123]: 5,,,1000103483,vtnet1,match,block,in,4,0x0,,"
        "64,48961,0,DF,1,icmp,84,192.168.3.1,192.168.3.201,request,5113,6664\n"
        "Dec  5 09:53:09 filterlog: 7,,,1000000103,em1,state-mismatch,block,in,4,0x0,,64,0,0,"
        "DF,6,tcp,40,10.0.0.2,10.0.0.3,443,5555,0,R,1,,0,,\n"
        "Dec  5 09:53:10 pfsense filterlog[123]: 9,,,1000000105,em1,match,rdr,in,4,0x0,,64,0,0,"
        "DF,17,udp,40,10.0.0.2,10.0.0.3,53,5353,20\n",
    )
    icmp, mismatch, rdr = _read(path)[0]
    assert (icmp["proto"], icmp["orig_port"], icmp["resp_port"]) == ("icmp", None, None)
    assert (icmp["packet_length"], icmp["action"]) == (84, "deny")
    assert (mismatch["reason"], mismatch["device"], mismatch["tcp_flags"]) == (
        "block (state-mismatch)",
        None,
        "R",
    )
    assert (rdr["action"], rdr["reason"]) == (None, "rdr")  # a NAT log entry: no verdict


def test_bad_records_are_reported_and_the_rest_is_read(tmp_path: Path) -> None:
    path = _log(
        tmp_path,
        f"Dec  5 09:53:08 pfsense filterlog: {RECORD},53742,22,0,S,1,,65535,,mss\n"
        "Dec  5 09:53:08 pfsense php-fpm[1]: /index.php: Successful login for user 'admin'\n"
        f"Dec  5 09:53:09 pfsense filterlog: {RECORD.replace(',4,0x0', ',5,0x0')}\n"
        f"Dec  5 09:53:10 pfsense filterlog: {RECORD.replace('10.0.2.2', 'a.b')},1,2,0,S\n"
        f"Dec  5 09:53:11 pfsense filterlog: {RECORD}\n"
        "not syslog at all\n"
        "Dec  5 09:53:12 pfsense filterlog: 53,,,1000102631,em0,match,block,in,4,[|ip]),\n"
        f"Dec 32 09:53:13 pfsense filterlog: {RECORD},53742,22,0,S,1,,65535,,mss\n"
        f"Dec  5 09:53:14 pfsense filterlog: {RECORD},65536,22,0,S,1,,65535,,mss\n"
        f"Dec  5 09:53:14 pfsense filterlog: {RECORD},53743,22,0,S,1,,65535,,mss\n",
    )
    rows, problems = _read(path)
    assert [(row["ts"], row["orig_port"]) for row in rows] == [
        (datetime(2022, 12, 5, 9, 53, 8, tzinfo=UTC), 53742),
        (datetime(2022, 12, 5, 9, 53, 14, tzinfo=UTC), 53743),
    ]
    assert [(p.line, p.reason) for p in problems.records] == [
        (3, "filterlog record without an IPv4 or IPv6 header"),
        (4, "filterlog record without source and destination addresses"),
        (5, "filterlog tcp record without ports"),
        (6, "not a syslog line"),
        (7, "filterlog record without an IPv4 or IPv6 header"),
        (8, "bad timestamp 'Dec 32 09:53:13': day is out of range for month"),
        (9, "bad port '65536'"),
    ]


def test_zone_applies_to_bsd_stamps_only(tmp_path: Path) -> None:
    record = f"{RECORD},53742,22,0,S,1,,65535,,mss"
    path = _log(
        tmp_path,
        f"Jan  2 08:00:00 pfSense filterlog: {record}\n"
        f"Jul  2 08:00:00 pfSense filterlog: {record}\n"
        f"<134>1 2022-07-02T08:00:00+02:00 opnsense filterlog 1 - - {record}\n",
    )
    rows, problems = _read(path, ReadOptions(timezone="Europe/Berlin"))
    assert problems.bad_records == 0
    assert [row["ts"] for row in rows] == [
        datetime(2022, 1, 2, 7, 0, tzinfo=UTC),  # CET
        datetime(2022, 7, 2, 6, 0, tzinfo=UTC),  # CEST
        datetime(2022, 7, 2, 6, 0, tzinfo=UTC),  # its own offset
    ]


def test_sniff_needs_a_filterlog_record() -> None:
    assert pfsense.sniff(f"Dec  5 09:53:08 pfSense filterlog[9]: {RECORD},1,2,0\n".encode())
    assert pfsense.sniff(f"<134>1 2022-09-06T18:37:34Z fw filterlog 1 - - {RECORD}\n".encode())
    assert not pfsense.sniff(b"Dec  5 09:53:08 pfSense filterlog[9]: [|pflog]\n")
    assert not pfsense.sniff(b"Dec  5 09:53:08 pfSense dhcpd: DHCPACK on 10.0.0.5\n")
