from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from homecall.sources import Problems, bind
from homecall.store.schema import schema_of

SAMPLES = "dns-server-bind"


def _read(path: Path) -> tuple[pa.Table, Problems]:
    problems = Problems()
    batches = []
    for table, batch in bind.read(path, problems):
        assert table == "dns"
        assert batch.schema.equals(schema_of("dns"))
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=schema_of("dns")), problems


def _denied_lines(path: Path) -> int:
    with path.open() as stream:
        return sum(1 for line in stream if "query '" in line or "query (cache) '" in line)


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("crowdsec-hub/bind9-logs.log", 6),
        ("crowdsec-hub/bind9-refused.log", 19),
        ("crowdsec-hub/bind9-syslog.log", 5),
    ],
)
def test_denied_samples(samples: Path, name: str, rows: int) -> None:
    path = samples / SAMPLES / name
    assert bind.sniff(path.read_bytes())
    table, problems = _read(path)
    assert problems.bad_records == 0
    assert table.num_rows == rows == _denied_lines(path)  # zone transfers are not rows
    for row in table.to_pylist():
        assert row["rejected"] is True
        assert (row["rcode_name"], row["rcode"]) == ("REFUSED", 5)
        assert row["qclass_name"] == "IN"
        assert row["answers"] is None
        assert row["source_file"] == str(path)
        assert row["sensor"] is None


def test_denied_sample_facts(samples: Path) -> None:
    table, _ = _read(samples / SAMPLES / "crowdsec-hub/bind9-syslog.log")
    rows = table.to_pylist()
    # named's own timestamp wins over the syslog prefix "Nov 13 10:59:46"
    assert rows[0]["ts"] == datetime(2022, 10, 19, 5, 34, 2, 425000, tzinfo=UTC)
    assert (rows[0]["orig_ip"], rows[0]["orig_port"]) == ("104.219.136.31", 3076)
    assert (rows[0]["query"], rows[0]["qtype_name"], rows[0]["qtype"]) == (
        "example.com",
        "ANY",
        255,
    )
    last = rows[-1]
    assert (last["orig_ip"], last["orig_port"], last["query"]) == ("3.135.188.55", 52617, "sl")
    logs, _ = _read(samples / SAMPLES / "crowdsec-hub/bind9-logs.log")
    assert ("wr_test", "A") in {(r["query"], r["qtype_name"]) for r in logs.to_pylist()}


def test_infoblox_query_line(samples: Path) -> None:
    path = samples / SAMPLES / "apache-metron/InfobloxExampleOutput.named-syslog.log"
    assert bind.sniff(path.read_bytes())
    table, problems = _read(path)
    assert problems.bad_records == 0
    [row] = table.to_pylist()  # the only "query:" line; updates, zones, dhcpd lines are skipped
    assert (row["orig_ip"], row["orig_port"]) == ("101.26.165.24", 59335)
    assert (row["resp_ip"], row["resp_port"]) == ("120.126.219.25", 53)
    assert row["query"] == "asdf-network-ach-server.data.org"
    assert (row["qclass_name"], row["qclass"], row["qtype_name"], row["qtype"]) == ("IN", 1, "A", 1)
    assert row["rd"] is True
    assert row["proto"] is None
    assert row["rejected"] is None
    assert (row["ts"].month, row["ts"].day, row["ts"].hour) == (3, 31, 13)


def test_query_log_lines(tmp_path: Path) -> None:
    path = tmp_path / "query.log"
    path.write_text(
        "19-Oct-2022 05:34:02.425 queries: info: client @0x7f00 10.0.0.5#53211"
        " (WWW.Example.com): query: WWW.Example.com. IN AAAA +E(0)K (10.0.0.1)\n"
        "19-Oct-2022 05:34:03.000 client 2001:db8::1#5353 (x.example): query: x.example IN MX"
        " -ET (2001:db8::53)\n"
        "19-Oct-2022 05:34:04.000 client 10.0.0.6#1 (y.example): query: y.example IN\n"
        "19-Oct-2022 05:34:05.000 client 10.0.0.7#2: query: z.example IN TXT +\n"
        "19-Oct-2022 05:34:06.000 client 10.0.0.8#3: update 'zone.example/IN' denied\n"
        "Nov 13 10:59:46 keira named[1]: client 10.0.0.9#4 (w.example): query: w.example IN A -\n"
    )
    table, problems = _read(path)
    assert problems.bad_records == 1
    assert problems.records[0].line == 3
    first, six, plain, wrapped = table.to_pylist()
    assert first["ts"] == datetime(2022, 10, 19, 5, 34, 2, 425000, tzinfo=UTC)
    assert (first["query"], first["qtype"], first["rd"], first["proto"]) == (
        "www.example.com",
        28,
        True,
        None,
    )
    assert first["resp_ip"] == "10.0.0.1"
    assert (six["orig_ip"], six["orig_port"], six["resp_ip"]) == (
        "2001:db8::1",
        5353,
        "2001:db8::53",
    )
    assert (six["qtype"], six["rd"], six["proto"]) == (15, False, "tcp")
    assert (plain["orig_ip"], plain["query"], plain["resp_ip"]) == ("10.0.0.7", "z.example", None)
    assert wrapped["query"] == "w.example"
    assert wrapped["ts"].month == 11


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (
            b"19-Oct-2022 05:34:02.425 client 10.0.0.5#53211: query: a.example IN A + (10.0.0.1)\n",
            True,
        ),
        (b"Nov 13 10:59:46 keira named[2075772]: client 1.2.3.4#1 (x): query: x IN A +\n", True),
        (b"<30>Mar 31 13:48:57 10.26.9.26 named[19446]: zone \n", True),
        (b"Jun 19 21:31:05 dnsmasq[830]: query[A] www.example.com from 192.168.4.3\n", False),
        (b"#separator \\x09\n#set_separator\t,\n#path\tdns\n", False),
        (b'{"ts":1700000000.0,"uid":"C1","query":"example.com"}\n', False),
        (b"", False),
    ],
)
def test_sniff(head: bytes, expected: bool) -> None:
    assert bind.sniff(head) is expected
