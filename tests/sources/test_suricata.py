from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from homecall.sources import Problems, suricata
from homecall.sources.fileio import head_of
from homecall.store.schema import schema_of

SLIPS = "suricata-eve/slips-test6/test6-malicious.suricata.json"
IDPS = "suricata-eve/idps-comparison-test7-hide-and-seek/eve.json"


def _read(path: Path) -> tuple[pa.Table, Problems]:
    problems = Problems()
    batches = []
    for table, batch in suricata.read(path, problems):
        if table != "dns":  # http and tls events: tests/sources/test_suricata_web.py
            continue
        assert batch.schema == schema_of("dns"), path
        batches.append(batch)
    return pa.Table.from_batches(batches, schema_of("dns")), problems


def _row(table: pa.Table, uid: str, trans_id: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [
        r for r in table.to_pylist() if r["uid"] == uid and r["trans_id"] == trans_id
    ]
    assert len(rows) == 1, rows
    return rows[0]


def _eve_files(samples: Path) -> list[Path]:
    folder = samples / "suricata-eve"
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "PROVENANCE.txt")


# ----------------------------------------------------------------------- real samples


def test_every_sample_eve_file_sniffs_and_reads_cleanly(samples: Path) -> None:
    files = _eve_files(samples)
    assert len(files) >= 4
    for path in files:
        assert suricata.sniff(head_of(path)), path
        _, problems = _read(path)
        assert problems.bad_records == 0, (path, problems.records)


@pytest.mark.parametrize("sample", [SLIPS, IDPS])
def test_one_row_per_dns_transaction(samples: Path, sample: str) -> None:
    path = samples / sample
    transactions = set()
    with path.open() as stream:
        for line in stream:
            record = json.loads(line)
            if record["event_type"] == "dns":
                transactions.add((str(record["flow_id"]), record["dns"]["id"]))
    table, _ = _read(path)
    assert len(transactions) > 30
    assert table.num_rows == len(transactions)
    assert set(zip(table["uid"].to_pylist(), table["trans_id"].to_pylist(), strict=True)) == (
        transactions
    )


def test_query_joined_with_its_cname_chain_answer(samples: Path) -> None:
    # lines 18 (query, 16:15:30.868451+0200) and 26 (answer, 16:15:30.868948+0200) of the file
    path = samples / SLIPS
    lines = path.read_text().splitlines()
    assert lines[17].startswith('{"timestamp":"2021-06-06T16:15:30.868451+0200"')
    table, _ = _read(path)
    row = _row(table, "1419339999887459", 2)
    assert row["ts"] == datetime(2021, 6, 6, 14, 15, 30, 868451, tzinfo=UTC)  # +0200 -> UTC
    assert (row["orig_ip"], row["orig_port"], row["resp_ip"], row["resp_port"]) == (
        "192.168.1.129",
        39422,
        "192.168.1.1",
        53,
    )
    assert row["proto"] == "udp"
    assert (row["query"], row["qtype"], row["qtype_name"]) == ("www.myedimax.com", 1, "A")
    assert (row["rcode"], row["rcode_name"]) == (0, "NOERROR")
    assert row["answers"] == ["ddns.myedimax.com", "ns.myedimax.com", "122.248.252.67"]
    assert row["ttls_s"] == [580.0, 280.0, 580.0]
    assert row["rtt_s"] == pytest.approx(0.000497)
    assert (row["rd"], row["ra"], row["aa"], row["tc"]) == (True, True, False, False)
    assert row["source_file"] == str(path)
    assert row["sensor"] is None


def test_nxdomain_answer_without_records(samples: Path) -> None:
    table, _ = _read(samples / IDPS)
    row = _row(table, "1225625623913790", 13423)
    assert (row["query"], row["qtype_name"], row["qtype"]) == ("local", "SOA", 6)
    assert (row["rcode_name"], row["rcode"]) == ("NXDOMAIN", 3)
    assert row["answers"] is None
    assert row["ts"] == datetime(2018, 3, 9, 20, 49, 48, 154291, tzinfo=UTC)


# ------------------------------------------------------------------------- inline


def _event(ts: str, kind: str, dns: dict[str, Any], flow_id: int = 42) -> str:
    client = ("10.0.0.5", 40000)
    server = ("9.9.9.9", 53)
    src, dst = (client, server) if kind == "query" else (server, client)
    return json.dumps(
        {
            "timestamp": ts,
            "flow_id": flow_id,
            "event_type": "dns",
            "src_ip": src[0],
            "src_port": src[1],
            "dest_ip": dst[0],
            "dest_port": dst[1],
            "proto": "UDP",
            "dns": {"type": kind, "id": 1234, **dns},
        }
    )


QUERY = _event(
    "2023-03-14T11:22:33.123456+0100",
    "query",
    {"rrname": "WWW.Example.com.", "rrtype": "A", "tx_id": 0},
)
FLAGS = {"flags": "8180", "qr": True, "rd": True, "ra": True, "rcode": "NOERROR"}
ANSWER_V2 = _event(
    "2023-03-14T11:22:33.173456+0100",
    "answer",
    {
        "version": 2,
        **FLAGS,
        "rrname": "WWW.Example.com.",
        "rrtype": "A",
        "answers": [
            {"rrname": "www.example.com", "rrtype": "CNAME", "ttl": 60, "rdata": "e.example.net"},
            {"rrname": "e.example.net", "rrtype": "A", "ttl": 300, "rdata": "1.2.3.4"},
        ],
        "grouped": {"CNAME": ["e.example.net"], "A": ["1.2.3.4"]},
    },
)
ANSWERS_V1 = [  # version 1: one event per answer record, in the order of the response
    _event(
        "2023-03-14T11:22:33.173456+0100",
        "answer",
        {**FLAGS, "rrname": name, "rrtype": rrtype, "ttl": ttl, "rdata": rdata},
    )
    for name, rrtype, ttl, rdata in (
        ("www.example.com", "CNAME", 60, "e.example.net"),
        ("e.example.net", "A", 300, "1.2.3.4"),
    )
]
OTHER = json.dumps(  # an event type no table takes
    {"timestamp": "2023-03-14T11:22:34.000000+0100", "flow_id": 7, "event_type": "anomaly"}
)


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(path: Path) -> tuple[list[dict[str, Any]], Problems]:
    table, problems = _read(path)
    rows = table.to_pylist()
    for row in rows:
        del row["source_file"]
    return rows, problems


def test_version_1_and_version_2_give_the_same_row(tmp_path: Path) -> None:
    v2, p2 = _rows(_write(tmp_path, "v2.json", [OTHER, QUERY, ANSWER_V2]))
    v1, p1 = _rows(_write(tmp_path, "v1.json", [QUERY, OTHER, *ANSWERS_V1]))
    assert p1.bad_records == p2.bad_records == 0
    assert v1 == v2
    (row,) = v1
    assert row["ts"] == datetime(2023, 3, 14, 10, 22, 33, 123456, tzinfo=UTC)
    assert (row["uid"], row["trans_id"], row["proto"]) == ("42", 1234, "udp")
    assert (row["orig_ip"], row["orig_port"], row["resp_ip"], row["resp_port"]) == (
        "10.0.0.5",
        40000,
        "9.9.9.9",
        53,
    )
    assert row["query"] == "www.example.com"
    assert row["answers"] == ["e.example.net", "1.2.3.4"]
    assert row["ttls_s"] == [60.0, 300.0]
    assert row["rtt_s"] == pytest.approx(0.05)


def test_version_1_duplicated_answers_are_not_doubled(tmp_path: Path) -> None:
    rows, _ = _rows(_write(tmp_path, "dup.json", [QUERY, QUERY, *ANSWERS_V1, *ANSWERS_V1]))
    (row,) = rows
    assert row["answers"] == ["e.example.net", "1.2.3.4"]


def test_answer_only_transaction_takes_the_client_from_the_destination(tmp_path: Path) -> None:
    rows, _ = _rows(_write(tmp_path, "a.json", [ANSWER_V2]))
    (row,) = rows
    assert (row["orig_ip"], row["orig_port"], row["resp_ip"], row["resp_port"]) == (
        "10.0.0.5",
        40000,
        "9.9.9.9",
        53,
    )
    assert row["ts"] == datetime(2023, 3, 14, 10, 22, 33, 173456, tzinfo=UTC)
    assert row["rtt_s"] is None


def test_negative_offset_and_gzip(tmp_path: Path) -> None:
    line = QUERY.replace("+0100", "-0130")
    path = tmp_path / "eve.json.1"  # gzip recognised by content, not name
    path.write_bytes(gzip.compress((line + "\n").encode()))
    assert suricata.sniff(head_of(path))
    rows, problems = _rows(path)
    assert problems.bad_records == 0
    (row,) = rows
    assert row["ts"] == datetime(2023, 3, 14, 12, 52, 33, 123456, tzinfo=UTC)
    assert row["answers"] is None
    assert row["rcode"] is None


def test_invalid_json_line_is_reported_and_reading_goes_on(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.json", [OTHER, '{"timestamp": "2023-03-14T1', QUERY, ANSWER_V2])
    rows, problems = _rows(path)
    assert problems.bad_records == 1
    (problem,) = problems.records
    assert problem.line == 2
    assert "not valid JSON" in problem.reason
    assert len(rows) == 1
    assert rows[0]["answers"] == ["e.example.net", "1.2.3.4"]


def test_sniff_accepts_eve_and_rejects_zeek() -> None:
    assert suricata.sniff((QUERY + "\n" + ANSWER_V2 + "\n").encode())
    assert suricata.sniff(OTHER.encode())  # a single line, no newline
    zeek_json = b'{"ts": 1517422326.5, "uid": "CxHo3", "id.orig_h": "10.0.0.1"}\n'
    assert not suricata.sniff(zeek_json)
    assert not suricata.sniff(b"#separator \\x09\n#set_separator\t,\n#fields\tts\tuid\n")
    assert not suricata.sniff(b"")
    assert not suricata.sniff(b"not json at all\n")
