"""Argus reader: the Stratosphere binetflow samples field by field against their lines, the
Simda C2 pair of slips-test5 counted from its label column, State mapping, ra's own header,
hex and empty ports, and bad lines."""

from __future__ import annotations

import csv
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from homecall.pipeline import import_paths
from homecall.sources import Problems, ReadOptions, argus, detect, head_of
from homecall.store import Store
from homecall.store.schema import Query, schema_of

TEST2 = "netflow-argus/slips-test2/test2-malicious.binetflow"
TEST5 = "netflow-argus/slips-test5-labeled/test5.binetflow"
NOT_IP = {"arp", "llc", "man"}  # Argus records that are not IP flows: not conn rows
HEADER = "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes"


def _conn(path: Path) -> tuple[dict[str, dict[str, Any]], Problems]:
    problems = Problems()
    [(table, query)] = list(argus.read(path, problems, ReadOptions()))
    assert table == "conn"
    assert isinstance(query, Query)
    got = query.to_arrow()
    assert got.schema == schema_of("conn")
    rows = {row["uid"]: row for row in got.to_pylist()}
    assert len(rows) == got.num_rows
    return rows, problems


def _uid(path: Path, line: int) -> str:
    return "A" + hashlib.sha256(str(path).encode()).hexdigest()[:10] + f"-{line}"


def _lines(path: Path) -> list[dict[str, str]]:
    """The records as dicts with their line number under `line`, read plainly."""
    text = path.read_text()
    delimiter = "\t" if "\t" in text.splitlines()[0] else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    return [{**record, "line": str(n)} for n, record in enumerate(reader, start=2)]


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "flows.binetflow"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("relative", [TEST2, TEST5])
def test_samples_read_every_ip_flow_field_by_field(samples: Path, relative: str) -> None:
    path = samples / relative
    assert detect(path).format == "argus"
    rows, problems = _conn(path)
    assert problems.bad_records == 0
    records = _lines(path)
    ip_records = [r for r in records if r["Proto"] not in NOT_IP]
    assert len(rows) == len(ip_records)
    for record in ip_records:
        row = rows[_uid(path, int(record["line"]))]
        assert (row["orig_ip"], row["resp_ip"]) == (record["SrcAddr"], record["DstAddr"])
        assert row["orig_pkts"] == int(record["SrcPkts"])
        assert row["orig_pkts"] + row["resp_pkts"] == int(record["TotPkts"])
        assert row["orig_ip_bytes"] == int(record["SrcBytes"])
        assert row["orig_ip_bytes"] + row["resp_ip_bytes"] == int(record["TotBytes"])
        assert row["duration_s"] == pytest.approx(float(record["Dur"]))
        stamp = datetime.strptime(record["StartTime"], "%Y/%m/%d %H:%M:%S.%f")
        assert row["ts"] == stamp.replace(tzinfo=UTC)  # read as written (UTC by default)
        if row["proto"] in ("tcp", "udp"):
            assert (row["orig_port"], row["resp_port"]) == (
                int(record["Sport"]),
                int(record["Dport"]),
            )


def test_simda_pair_count_from_the_labels(samples: Path) -> None:
    """PROVENANCE.txt: the infected 10.0.2.15 calls 23.253.126.58:80; as many conn rows as
    the label column marks malware flows for that pair."""
    path = samples / TEST5
    labelled = [
        r
        for r in _lines(path)
        if (r["SrcAddr"], r["DstAddr"], r["Dport"]) == ("10.0.2.15", "23.253.126.58", "80")
        and "Malware" in r["Label"]
    ]
    rows, _ = _conn(path)
    pair = [
        r
        for r in rows.values()
        if (r["orig_ip"], r["resp_ip"], r["resp_port"]) == ("10.0.2.15", "23.253.126.58", 80)
    ]
    assert len(labelled) > 1000
    assert len(pair) == len(labelled)
    assert {r["proto"] for r in pair} == {"tcp"}
    assert {_uid(path, int(r["line"])) for r in labelled} == {r["uid"] for r in pair}


def test_states_and_icmp_against_the_lines(samples: Path) -> None:
    path = samples / TEST2
    rows, _ = _conn(path)
    text = path.read_text().splitlines()
    # line 2: a DNS query answered (CON)
    assert text[1].startswith("2019/04/04 16:23:00.325010,0.027947,udp,10.8.0.69,48427,")
    dns = rows[_uid(path, 2)]
    assert (dns["conn_state"], dns["history"], dns["resp_port"]) == ("SF", "Dd", 53)
    # line 32: an ICMP fragmentation-needed (URF) from the VPN gateway: Sport 0x0403 is
    # type 3 | code 4 << 8; Zeek's ports for ICMP are type and code
    assert text[31].split(",")[2:9] == ["icmp", "10.8.0.1", "0x0403", "   ->", "10.8.0.69",
                                        "0x0000", "URF"]  # fmt: skip
    icmp = rows[_uid(path, 32)]
    assert (icmp["proto"], icmp["orig_port"], icmp["resp_port"], icmp["conn_state"]) == (
        "icmp",
        3,
        4,
        "OTH",
    )
    assert icmp["history"] is None
    # every TCP state written as flags maps to a Zeek state; FSPA_FSPA is a normal close
    states = {}
    for record in _lines(path):
        if record["Proto"] == "tcp":
            states.setdefault(record["State"], rows[_uid(path, int(record["line"]))]["conn_state"])
    assert states["FSPA_FSPA"] == "SF"
    assert states["S_"] == "S0"
    assert states["FSPA_FSRPA"] == "RSTR"
    assert states["FSRPA_FSPA"] == "RSTO"
    assert set(states.values()) <= {"SF", "S0", "S1", "S2", "S3", "REJ", "RSTO", "RSTR",
                                    "RSTOS0", "RSTRH", "SH", "SHR", "OTH"}  # fmt: skip


def test_relative_times_are_stored_as_read(samples: Path) -> None:
    """PROVENANCE.txt: test5's StartTime is relative (1970/01/01 01:00), kept as written."""
    path = samples / TEST5
    rows, _ = _conn(path)
    first = min(r["ts"] for r in rows.values())
    assert first == datetime(1970, 1, 1, 1, 0, 8, 140073, tzinfo=UTC)


def test_sample_imports_through_the_pipeline(samples: Path, tmp_path: Path) -> None:
    paths = [samples / TEST2, samples / TEST5]
    result = import_paths(paths, Store(tmp_path / "store"))
    assert result.errors == []
    assert result.problems.bad_records == 0
    for path in paths:
        assert result.imported[path] == {"conn": len(_conn(path)[0])}


def test_tabs_hex_empty_ports_and_handshake_states(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            HEADER.replace(",", "\t") + "\tSrcBytes\tSrcPkts",
            "2024/03/01 10:00:00.000000\t0.1\ttcp\t10.0.0.1\t40000\t   ->\t10.0.0.2\t23\tS_RA"
            "\t0\t0\t2\t114\t60\t1",
            "2024/03/01 10:00:01.000000\t3.0\ttcp\t10.0.0.1\t0x9c41\t   ->\t10.0.0.3\t22\tS_"
            "\t0\t\t3\t180\t180\t3",
            "2024/03/01 10:00:02.000000\t0.0\tgre\t10.0.0.1\t\t   ->\t10.0.0.4\t\tINT"
            "\t0\t\t1\t100\t100\t1",
        ],
    )
    rows, problems = _conn(path)
    assert problems.bad_records == 0
    rejected, unanswered, gre = (rows[_uid(path, n)] for n in (2, 3, 4))
    assert (rejected["conn_state"], rejected["history"]) == ("REJ", "Sr")
    assert (rejected["resp_pkts"], rejected["resp_ip_bytes"]) == (1, 54)
    assert (unanswered["orig_port"], unanswered["conn_state"]) == (40001, "S0")
    assert (gre["proto"], gre["orig_port"], gre["resp_port"], gre["conn_state"]) == (
        "gre",
        None,
        None,
        "OTH",
    )


def test_ra_default_header_without_source_counts(tmp_path: Path) -> None:
    """`ra -c ,` prints its labels (`StartTime,Flgs,Proto,...,TotPkts,TotBytes,State`); with
    no SrcPkts/SrcBytes the split between the sides is unknown and stays null."""
    path = _write(
        tmp_path,
        [
            "StartTime,Flgs,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,TotPkts,TotBytes,State",
            "2024/03/01 10:00:00.000000, e        ,udp,10.0.0.1,5353,  <->,10.0.0.2,53,2,150,CON",
        ],
    )
    assert argus.sniff(head_of(path))
    [row] = _conn(path)[0].values()
    assert (row["orig_pkts"], row["resp_pkts"], row["orig_ip_bytes"]) == (None, None, None)
    assert (row["conn_state"], row["duration_s"]) == ("SF", None)


def test_bad_lines_are_reported_and_the_rest_stored(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            HEADER + ",SrcBytes,SrcPkts,Label",
            "2024/03/01 10:00:00.000000,0.1,udp,10.0.0.1,5353,  <->,10.0.0.2,53,CON,0,0,2,150,"
            "60,1,flow=Background",
            "10:00:01.000000,0.1,udp,10.0.0.1,5354,  <->,10.0.0.2,53,CON,0,0,2,150,60,1,",
            "2024/03/01 10:00:02.000000,0.1,udp,not-an-address,5355,  <->,10.0.0.2,53,CON,"
            "0,0,2,150,60,1,",
            "",
            "2024/03/01 10:00:03.000000,0.1,udp,10.0.0.1,5356,  <->,10.0.0.2,53,CON,0,0,2,150,"
            "60,1,flow=From-Botnet-V1",
        ],
    )
    rows, problems = _conn(path)
    assert [(p.path, p.line) for p in problems.records] == [(path, 3), (path, 4)]
    assert "StartTime" in problems.records[0].reason
    assert problems.records[1].reason == "unreadable address"
    assert sorted(rows) == sorted([_uid(path, 2), _uid(path, 6)])
    assert "label" not in schema_of("conn").names  # labels are ground truth, not data


def test_sniff_wants_the_argus_field_names() -> None:
    assert argus.sniff(b"StartTime\tDur\tProto\tSrcAddr\tSport\tDir\tDstAddr\tDport\n")
    assert not argus.sniff(b"ts,te,td,sa,da,sp,dp,pr,flg\n")
    assert not argus.sniff(b"StartTime,Proto,Source,Destination\n")
