from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from homecall.sources import Problems, dnsmasq
from homecall.sources.syslog_time import SyslogClock, parse_syslog
from homecall.store.schema import schema_of

SAMPLE = "dns-server-dnsmasq/dhbw-wilan-of-shame/dnsmasq.log"


def _read(path: Path) -> tuple[pa.Table, Problems]:
    problems = Problems()
    batches = []
    for table, batch in dnsmasq.read(path, problems):
        assert table == "dns"
        assert batch.schema.equals(schema_of("dns"))
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=schema_of("dns")), problems


def _write(tmp_path: Path, text: str, mtime: datetime | None = None) -> Path:
    path = tmp_path / "dnsmasq.log"
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return path


@pytest.fixture(scope="module")
def sample(samples: Path) -> tuple[Path, pa.Table, Problems]:
    path = samples / SAMPLE
    table, problems = _read(path)
    return path, table, problems


def test_sample_reads_every_query_line(sample: tuple[Path, pa.Table, Problems]) -> None:
    path, table, problems = sample
    assert problems.bad_records == 0
    with path.open() as stream:
        queries = sum(1 for line in stream if "query[" in line)
    assert queries == 891
    assert table.num_rows == queries


def test_sample_facts(sample: tuple[Path, pa.Table, Problems]) -> None:
    path, table, _ = sample
    rows = table.to_pylist()
    # grep -c 'query\[A\] detectportal.firefox.com from 192.168.4.3' -> 429
    probes = [
        r
        for r in rows
        if r["query"] == "detectportal.firefox.com"
        and r["qtype_name"] == "A"
        and r["orig_ip"] == "192.168.4.3"
    ]
    assert len(probes) == 429
    assert {r["qtype_name"] for r in rows} == {"A", "AAAA", "HTTPS"}
    assert sum(r["qtype"] == 28 for r in rows) == 55
    assert sum(r["orig_ip"] == "192.168.4.4" for r in rows) == 59
    assert all(r["orig_port"] is None and r["resp_ip"] is None for r in rows)
    assert all(r["resp_port"] == 53 and r["proto"] == "udp" for r in rows)
    assert all(r["source_file"] == str(path) and r["sensor"] is None for r in rows)
    assert all(r["ttls_s"] is None and r["uid"] is None for r in rows)
    # the hotspot's captive portal answers every A query it hijacks with 192.168.0.164
    assert sum("192.168.0.164" in (r["answers"] or []) for r in rows) >= 800
    first = rows[0]
    assert first["ts"].month == 6
    assert (first["ts"].day, first["ts"].hour, first["ts"].minute) == (19, 22, 26)
    # line 141: query[AAAA] detectportal.firefox.com, forwarded, then a CNAME chain ending in
    # prod.detectportal.prod.cloudops.mozgcp.net is 2600:1901:0:38d7::
    aaaa = next(
        r for r in rows if r["query"] == "detectportal.firefox.com" and r["qtype_name"] == "AAAA"
    )
    assert aaaa["answers"] == [
        "detectportal.prod.mozaws.net",
        "prod.detectportal.prod.cloudops.mozgcp.net",
        "2600:1901:0:38d7::",
    ]
    assert aaaa["rcode_name"] == "NOERROR"
    assert aaaa["rcode"] == 0


def test_nxdomain_blocked_and_malformed_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "Jun 19 21:30:43 dnsmasq[830]: started, version 2.90 cachesize 150\n"
        "Jun 19 21:30:43 dnsmasq-dhcp[830]: DHCP, IP range 192.168.0.10 -- 192.168.0.200\n"
        "Jun 19 21:31:05 dnsmasq[830]: query[A] Nope.Example. from 192.168.4.3\n"
        "Jun 19 21:31:05 dnsmasq[830]: forwarded nope.example to 8.8.8.8\n"
        "Jun 19 21:31:05 dnsmasq[830]: reply nope.example is NXDOMAIN\n"
        "Jun 19 21:31:06 dnsmasq[830]: query[A] from\n"
        "Jun 19 21:31:07 dnsmasq[830]: query[AAAA] ads.example from 192.168.4.5\n"
        "Jun 19 21:31:07 dnsmasq[830]: gravity blocked ads.example is ::\n"
        "Jun 19 21:31:08 dnsmasq[830]: query[type=99] odd.example from 192.168.4.5\n",
        mtime=datetime(2025, 6, 20, tzinfo=UTC),
    )
    table, problems = _read(path)
    assert problems.bad_records == 1
    assert problems.records[0].line == 6
    rows = table.to_pylist()
    assert [r["query"] for r in rows] == ["nope.example", "ads.example", "odd.example"]
    nx, blocked, odd = rows
    assert (nx["rcode_name"], nx["rcode"], nx["answers"], nx["rejected"]) == (
        "NXDOMAIN",
        3,
        None,
        None,
    )
    assert nx["ts"] == datetime(2025, 6, 19, 21, 31, 5, tzinfo=UTC)
    assert blocked["rejected"] is True
    assert blocked["answers"] == ["::"]
    assert (odd["qtype"], odd["qtype_name"], odd["rcode_name"]) == (99, None, None)


def test_extra_format_correlates_by_serial(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "Jun 19 21:31:05 pi dnsmasq[830]: 7 192.168.4.3/52321 query[A] www.example.com"
        " from 192.168.4.3\n"
        "Jun 19 21:31:05 pi dnsmasq[830]: 8 192.168.4.9/40000 query[A] www.example.com"
        " from 192.168.4.9\n"
        "Jun 19 21:31:05 pi dnsmasq[830]: 7 192.168.4.3/52321 forwarded www.example.com"
        " to 8.8.8.8\n"
        "Jun 19 21:31:05 pi dnsmasq[830]: 7 192.168.4.3/52321 reply www.example.com"
        " is 93.184.216.34\n"
        "Jun 19 21:31:05 pi dnsmasq[830]: 8 192.168.4.9/40000 cached www.example.com"
        " is 93.184.216.35\n",
    )
    table, problems = _read(path)
    assert problems.bad_records == 0
    rows = table.to_pylist()
    assert [(r["orig_ip"], r["orig_port"], r["answers"]) for r in rows] == [
        ("192.168.4.3", 52321, ["93.184.216.34"]),
        ("192.168.4.9", 40000, ["93.184.216.35"]),
    ]
    assert rows[0]["qtype"] == 1


def test_year_rollover(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "Dec 31 23:59:59 dnsmasq[1]: query[A] old.example from 10.0.0.2\n"
        "Jan  1 00:00:01 dnsmasq[1]: query[A] new.example from 10.0.0.2\n",
        mtime=datetime(2025, 1, 2, tzinfo=UTC),
    )
    table, _ = _read(path)
    assert table.column("ts").to_pylist() == [
        datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC),
    ]


def test_rfc3339_prefix_is_converted_to_utc() -> None:
    clock = SyslogClock(datetime(2022, 1, 1, tzinfo=UTC))
    line = "2022-10-19T05:34:02.425+02:00 host dnsmasq[830]: query[A] x from 10.0.0.1"
    parsed = parse_syslog(line, clock)
    assert parsed is not None
    assert parsed.ts == datetime(2022, 10, 19, 3, 34, 2, 425000, tzinfo=UTC)
    assert (parsed.host, parsed.program, parsed.pid) == ("host", "dnsmasq", 830)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"Jun 19 21:31:05 dnsmasq[830]: query[A] www.example.com from 192.168.4.3\n", True),
        (b"Jun 19 21:31:05 pihole dnsmasq[830]: query[A] a.example from 192.168.4.3\n", True),
        (
            b"Jun 19 21:30:43 dnsmasq-dhcp[830]: DHCP, IP range 192.168.0.10 -- 192.168.0.200\n",
            True,
        ),
        (b"#separator \\x09\n#set_separator\t,\n#path\tdns\n", False),
        (b'{"ts":1700000000.0,"uid":"C1","query":"example.com"}\n', False),
        (
            b"19-Oct-2022 05:34:02.425 client 10.0.0.5#53211: query: a.example IN A + (10.0.0.1)\n",
            False,
        ),
        (b"Nov 13 10:59:46 keira named[2075772]: client 1.2.3.4#1 (x): query: x IN A +\n", False),
        (b"", False),
    ],
)
def test_sniff(head: bytes, expected: bool) -> None:
    assert dnsmasq.sniff(head) is expected
