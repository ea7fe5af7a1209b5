"""Zeek notice.log, TSV and JSON -> the alert table (sources/zeek.py, sources/zeek_fields.py)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from homecall.pipeline import import_paths
from homecall.sources import Problems, detect, zeek
from homecall.sources.fileio import open_text
from homecall.store import Store
from homecall.store.schema import Query, schema_of

WRCCDC_TSV = "zeek-tsv/wrccdc2018-zed-sample/notice.log.gz"
WRCCDC_JSON = "zeek-json/wrccdc2018-zed-sample/notice.json.gz"
SLIPS = "zeek-json/slips-test9-mixed/notice.log"
CALDERA = "pcap/corelight-caldera/baseline-notice"


def _tables(path: Path) -> tuple[dict[str, pa.Table], Problems]:
    problems = Problems()
    parts: dict[str, list[pa.Table]] = {}
    for table, part in detect(path).read(path, problems):
        got = part.to_arrow() if isinstance(part, Query) else pa.Table.from_batches([part])
        assert got.schema == schema_of(table), path
        parts.setdefault(table, []).append(got)
    return {table: pa.concat_tables(p) for table, p in parts.items()}, problems


def _read(path: Path) -> tuple[pa.Table | None, Problems]:
    tables, problems = _tables(path)
    assert set(tables) <= {"alert"}
    return tables.get("alert"), problems


def _alerts(path: Path) -> list[dict[str, Any]]:
    table, problems = _read(path)
    assert problems.bad_records == 0, problems.records
    assert problems.skipped == []
    assert table is not None
    rows = table.to_pylist()
    for row in rows:
        del row["source_file"]
    return rows


def _records(path: Path) -> int:
    with open_text(path) as stream:
        return sum(1 for line in stream if line.strip() and not line.startswith("#"))


# ----------------------------------------------------------------------- real samples


def test_tsv_notice_rows(samples: Path) -> None:
    path = samples / WRCCDC_TSV
    rows = _alerts(path)
    assert len(rows) == _records(path) == 207
    # line 9 of the log: the first notice
    assert rows[0] == {
        "ts": datetime(2018, 3, 24, 17, 15, 20, 629574, tzinfo=UTC),  # 1521911720.629574
        "uid": "CmC9kY1X0u9nP78KZc",
        "orig_ip": "10.164.94.120",
        "orig_port": 39611,
        "resp_ip": "10.47.3.200",
        "resp_port": 443,
        "proto": "tcp",
        "engine": "zeek",
        "signature": "SSL::Invalid_Server_Cert",
        "signature_id": None,
        "signature_rev": None,
        "category": None,
        "severity": None,
        "action": None,
        "app_proto": None,
        "message": "SSL certificate validation failed with (unable to get local issuer"
        " certificate) / unstructuredName=1315656901\\,564d7761726520496e632e,"
        "CN=localhost.localdomain,emailAddress=ssl-certificates@vmware.com,"
        "OU=VMware ESX Server Default Certificate,O=VMware\\, Inc,L=Palo Alto,"
        "ST=California,C=US",  # the TSV writes each backslash of the DN doubled
        "sensor": None,
    }


def test_json_and_tsv_of_the_same_notices_agree(samples: Path) -> None:
    tsv, json_rows = _alerts(samples / WRCCDC_TSV), _alerts(samples / WRCCDC_JSON)
    assert len(json_rows) == len(tsv)
    assert tsv == json_rows  # escapes decoded alike, ISO and epoch times alike


def test_escaped_backslashes_read_alike_in_tsv_and_json_x509(samples: Path) -> None:
    # the same capture's x509.log: 86 TSV records hold a doubled backslash ("O=Twitter\\\\, Inc.")
    def subjects(relative: str) -> list[str]:
        tables, problems = _tables(samples / relative)
        assert problems.bad_records == 0
        return [str(s) for s in tables["x509"]["subject"].to_pylist()]

    tsv = subjects("zeek-tsv/wrccdc2018-zed-sample/x509.log.gz")
    assert tsv == subjects("zeek-json/wrccdc2018-zed-sample/x509.json.gz")
    assert (
        "CN=platform.twitter.com,OU=Twitter Security,O=Twitter\\, Inc.,L=San Francisco,"
        "ST=California,C=US" in tsv
    )


def test_notice_without_a_connection_takes_src(samples: Path) -> None:
    # Slips' JSON notices have no _path and no id.*: recognised by their note and msg fields
    rows = _alerts(samples / SLIPS)
    assert len(rows) == 18
    first = rows[0]  # line 1
    assert first["ts"] == datetime(2022, 9, 29, 13, 49, 25, 848468, tzinfo=UTC)
    assert (first["uid"], first["orig_ip"], first["resp_ip"], first["resp_port"]) == (
        None,
        "192.168.1.15",
        None,
        None,
    )
    assert first["signature"] == "ICMP::ICMPAddressScan"
    assert first["message"] == "192.168.1.15 performed ICMP address scan on 5 hosts"  # no sub


def test_notice_logs_in_the_zeek_trees_are_stored(samples: Path, tmp_path: Path) -> None:
    paths = [samples / WRCCDC_TSV, samples / WRCCDC_JSON, samples / SLIPS]
    store = Store(tmp_path / "store")
    result = import_paths(paths, store)
    assert result.errors == []
    assert result.problems.bad_records == 0
    assert [result.imported[p] for p in paths] == [{"alert": 207}, {"alert": 207}, {"alert": 18}]
    assert store.row_counts() == {"alert": 432}


@pytest.mark.parametrize(
    "name",
    [
        "manx-tcp.notice.log",
        "manx-udp.notice.log",
        "ragdoll.notice.log",
        "sandcat.notice.log.filtered",
    ],
)
def test_btest_baselines_with_masked_times_are_skipped(samples: Path, name: str) -> None:
    # corelight/zeek-caldera-detector's reviewed notice.log baselines: times are XXXXXXXXXX.XXXXXX,
    # and the .filtered one has no Zeek header at all
    path = samples / CALDERA / name
    assert zeek.sniff(path.read_bytes()[:4096])
    table, problems = _read(path)
    assert table is None
    assert problems.bad_records == 0
    [skipped] = problems.skipped
    assert skipped.reason.startswith("BTest baseline with masked times")


# ------------------------------------------------------------------------- inline

_HEADER = [
    "#separator \\x09",
    "#set_separator\t,",
    "#empty_field\t(empty)",
    "#unset_field\t-",
    "#path\tnotice",
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tnote\tmsg\tsub\tsrc\tdst\tp",
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tenum\tstring\tstring\taddr\taddr\tport",
]


def _tsv(tmp_path: Path, rows: list[str], name: str = "notice.log", banner: bool = False) -> Path:
    lines = ["### BTest baseline data generated by btest-diff. Do not edit."] if banner else []
    path = tmp_path / name
    path.write_text("\n".join([*lines, *_HEADER, *rows]) + "\n")
    return path


def test_tsv_notice_without_a_connection_takes_src_dst_and_p(tmp_path: Path) -> None:
    rows = [
        # a scan notice: no connection, the scanned host and port in dst and p
        "1700000000.500000\t-\t-\t-\t-\t-\t-\tScan::Port_Scan\t10.0.0.9 scanned 15 ports"
        "\tremote\\x09host \\\\x41\t10.0.0.9\t10.0.0.1\t22",
        # a connection notice with an empty sub: the message is msg alone
        "1700000001.000000\tCx1\t10.0.0.2\t5000\t10.0.0.3\t443\ttcp\tSSL::Weak_Key\tweak"
        "\t(empty)\t10.0.0.2\t10.0.0.3\t443",
    ]
    scan, weak = _alerts(_tsv(tmp_path, rows))
    assert (scan["orig_ip"], scan["orig_port"], scan["resp_ip"], scan["resp_port"]) == (
        "10.0.0.9",
        None,
        "10.0.0.1",
        22,
    )
    assert (scan["uid"], scan["proto"]) == (None, None)
    assert scan["message"] == "10.0.0.9 scanned 15 ports / remote\thost \\x41"  # escapes decoded
    assert scan["ts"] == datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)
    assert (weak["uid"], weak["resp_port"], weak["message"]) == ("Cx1", 443, "weak")


def test_json_notice_renamed_and_gzipped(tmp_path: Path) -> None:
    record = {
        "_path": "notice",
        "ts": "2024-01-02T03:04:05.000006Z",
        "uid": "CabC",
        "id.orig_h": "192.0.2.1",
        "id.orig_p": 1234,
        "id.resp_h": "198.51.100.2",
        "id.resp_p": 8080,
        "proto": "tcp",
        "note": "Caldera::C2Detected",
        "msg": "Potential Manx TCP C2 activity detected.",
        "sub": '{"server":"198.51.100.2:8080"}',
        "p": 8080,
    }
    path = tmp_path / "current.log.1"  # the log type comes from _path, gzip from the bytes
    path.write_bytes(gzip.compress((json.dumps(record) + "\n").encode()))
    [row] = _alerts(path)
    assert row["message"] == (
        'Potential Manx TCP C2 activity detected. / {"server":"198.51.100.2:8080"}'
    )
    assert (row["orig_ip"], row["resp_ip"], row["resp_port"]) == ("192.0.2.1", "198.51.100.2", 8080)


def test_btest_baseline_with_real_times_is_read(tmp_path: Path) -> None:
    row = (
        "1700000001.000000\tCx1\t10.0.0.2\t5000\t10.0.0.3\t443\ttcp\tSSL::Weak_Key\tweak"
        "\t-\t10.0.0.2\t10.0.0.3\t443"
    )
    path = _tsv(tmp_path, [row], banner=True)
    assert zeek.sniff(path.read_bytes())
    [alert] = _alerts(path)
    assert (alert["uid"], alert["signature"], alert["message"]) == ("Cx1", "SSL::Weak_Key", "weak")
