from __future__ import annotations

import gzip
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from homecall.errors import MalformedInputError
from homecall.sources import Problems, detect, zeek
from homecall.sources.fileio import open_text
from homecall.store.schema import Query, schema_of

IMPORTED = {"conn", "dns", "http", "ssl", "x509", "smtp", "files"}
TABLE_OF = {"ssl": "tls"}


def _zeek_logs(samples: Path) -> list[Path]:
    return sorted(
        p
        for folder in ("zeek-tsv", "zeek-json")
        for p in (samples / folder).rglob("*")
        if p.is_file() and p.name not in {"PROVENANCE.txt", "README.md"}
    )


def _records(path: Path) -> int:
    """Count records the plain way: non-blank lines that are not # header lines."""
    with open_text(path) as stream:
        return sum(1 for line in stream if line.strip() and not line.startswith("#"))


def _log_type(path: Path) -> str:
    return path.name.split(".")[0].removeprefix("labeled-")


def _read(path: Path) -> tuple[dict[str, pa.Table], Problems]:
    problems = Problems()
    batches: dict[str, list[pa.RecordBatch]] = {}
    for table, part in detect(path).read(path, problems):
        got = part.to_arrow() if isinstance(part, Query) else pa.Table.from_batches([part])
        assert got.schema == schema_of(table), path
        batches.setdefault(table, []).extend(got.to_batches())
    return {t: pa.Table.from_batches(b, schema_of(t)) for t, b in batches.items()}, problems


def test_every_sample_log_reads_with_its_record_count(samples: Path) -> None:
    logs = _zeek_logs(samples)
    assert len(logs) > 40
    checked = 0
    for path in logs:
        kind = _log_type(path)
        if kind not in IMPORTED:
            continue
        tables, problems = _read(path)
        assert problems.bad_records == 0, (path, problems.records)
        assert list(tables) == [TABLE_OF.get(kind, kind)], path
        assert tables[TABLE_OF.get(kind, kind)].num_rows == _records(path), path
        checked += 1
    assert checked >= 30


def test_logs_not_imported_are_skipped_with_a_reason(samples: Path) -> None:
    weird = samples / "zeek-tsv/rita-proxy-beacon/weird.log"
    tables, problems = _read(weird)
    assert tables == {}
    assert [p.reason for p in problems.skipped] == [
        "Zeek 'weird' log: not a log type homecall imports"
    ]


def test_json_loaded_scripts_without_ts_is_recognised_and_skipped(samples: Path) -> None:
    # loaded_scripts.log is the one Zeek log without `ts`: {"name": "<script path>"} per line.
    path = samples / "zeek-json/slips-test9-mixed/loaded_scripts.log"
    assert detect(path).format == zeek.FORMAT
    tables, problems = _read(path)
    assert tables == {}
    assert [p.reason for p in problems.skipped] == [
        "Zeek 'loaded_scripts' log: not a log type homecall imports"
    ]


def test_a_json_object_with_only_a_name_is_not_zeek() -> None:
    assert not zeek.sniff(b'{"name": "alice"}\n')
    assert zeek.sniff(b'{"name": "/usr/share/zeek/base/init-bare.zeek"}\n')


def test_tsv_values_are_typed_and_unset_stays_null(samples: Path) -> None:
    path = (
        samples
        / "zeek-tsv/stratosphere-security-datasets/001-zeek-scenario-malicious/labeled-conn.log"
    )
    conn = _read(path)[0]["conn"]
    first = conn.slice(0, 1).to_pylist()[0]
    # first data line: 19.981745 C91Ycq25p2quMWzEMk fd2d:...:aec8 56464 fd2d:ab8c:225::1 53 udp dns
    assert first["ts"] == datetime(1970, 1, 1, 0, 0, 19, 981745, tzinfo=UTC)
    assert first["uid"] == "C91Ycq25p2quMWzEMk"
    assert (first["orig_port"], first["resp_ip"], first["resp_port"]) == (
        56464,
        "fd2d:ab8c:225::1",
        53,
    )
    assert (first["proto"], first["service"], first["conn_state"]) == ("udp", "dns", "SF")
    assert (first["orig_bytes"], first["resp_ip_bytes"], first["local_orig"]) == (34, 98, False)
    assert first["source_file"] == str(path)
    c2 = [r for r in conn.to_pylist() if r["resp_ip"] == "41.108.179.197"]
    assert len(c2) == 237  # PROVENANCE.txt: 237 flows to 41.108.179.197:1177
    assert all(r["service"] is None for r in c2)  # "-" is null, not "" or "-"


def test_json_iso_timestamps_are_utc(samples: Path) -> None:
    tls = _read(samples / "zeek-json/wrccdc2018-zed-sample/ssl.json.gz")[0]["tls"]
    ts = tls.column("ts")
    assert ts.type == pa.timestamp("us", tz="UTC")
    # PROVENANCE.txt: "ts":"2018-03-24T17:15:20.865716Z"-style strings, 2018-03-24 traffic
    days = {t.date().isoformat() for t in ts.to_pylist()}
    assert days <= {"2018-03-24", "2018-03-25"}
    assert tls.column("cert_chain").null_count < tls.num_rows


def test_old_and_new_zeek_field_names_map_to_one_column(samples: Path) -> None:
    old = _read(samples / "zeek-json/slips-test9-mixed/ssl.log")[0]["tls"]  # cert_chain_fuids
    new = _read(samples / "zeek-json/wrccdc2018-zed-sample/ssl.json.gz")[0]["tls"]  # cert_chain_fps
    assert old.column("cert_chain").to_pylist()[0] == ["FKMTO94tQEsBTFbPgc", "FiN0Qh1UtcWHK5OhI1"]
    assert new.column("cert_chain").to_pylist()[0] == [
        "b2dafbcdbc75210672f137f27ce882ccb799887631655d4f11191d5a678e44fe"
    ]
    files = _read(samples / "zeek-json/slips-test9-mixed/files.log")[0]["files"]
    row = files.slice(0, 1).to_pylist()[0]  # conn_uids/tx_hosts/rx_hosts sets in this Zeek version
    assert (row["uid"], row["tx_ip"], row["rx_ip"]) == (
        "CAeDWs37BipkfP21u9",
        "147.32.80.7",
        "10.0.2.15",
    )


HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tquery\tanswers\tTTLs\n"
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tvector[string]\tvector[interval]\n"
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_escapes_sets_and_empty_fields(tmp_path: Path) -> None:
    rows = (
        "1.5\tCa\t10.0.0.1\t5000\t10.0.0.53\t53\tudp\ta\\x09b.example\t1.2.3.4,x\\x2cy\t60.0,30.5\n"
        "2.5\tCb\t10.0.0.1\t5001\t10.0.0.53\t53\tudp\t(empty)\t(empty)\t-\n"
    )
    path = _write(tmp_path, "dns.log", HEADER + rows + "#close\t2026-11-28-00-00-00\n")
    dns = _read(path)[0]["dns"].to_pylist()
    assert dns[0]["query"] == "a\tb.example"
    assert dns[0]["answers"] == ["1.2.3.4", "x,y"]
    assert dns[0]["ttls_s"] == [60.0, 30.5]
    assert (dns[1]["query"], dns[1]["answers"], dns[1]["ttls_s"]) == ("", [], None)


def test_bad_lines_are_reported_by_number_and_the_rest_is_kept(tmp_path: Path) -> None:
    rows = [
        "1.5\tCa\t10.0.0.1\t5000\t10.0.0.53\t53\tudp\tgood.example\t-\t-",
        "2.5\tCb\t10.0.0.1\tnot-a-port\t10.0.0.53\t53\tudp\tbad.example\t-\t-",
        "3.5\tCc\t10.0.0.1",
        "4.5\tCd\t10.0.0.1\t5003\t10.0.0.53\t53\tudp\tgood2.example\t-\t-",
    ]
    path = _write(tmp_path, "dns.log", HEADER + "\n".join(rows) + "\n")
    tables, problems = _read(path)
    assert tables["dns"].column("query").to_pylist() == ["good.example", "good2.example"]
    assert [(p.line, p.path) for p in problems.records] == [(9, path), (10, path)]  # 7 header lines
    assert "wrong number of fields" in problems.records[1].reason


def test_truncated_json_line_is_reported_by_number(tmp_path: Path) -> None:
    lines = [
        '{"ts": 1.0, "uid": "Ca", "id.orig_h": "10.0.0.1", "id.orig_p": 1, "id.resp_h": "8.8.8.8",'
        ' "id.resp_p": 53, "proto": "udp", "conn_state": "SF", "orig_bytes": 10}',
        '{"ts": 2.0, "uid": "Cb", "id.orig_h": "10.0.0.1", "id.or',
        '{"ts": 3.0, "uid": "Cc", "id.orig_h": "10.0.0.2", "id.orig_p": 2, "id.resp_h": "8.8.4.4",'
        ' "id.resp_p": 53, "proto": "udp", "conn_state": "SF", "orig_bytes": 12}',
    ]
    path = _write(tmp_path, "conn.log", "\n".join(lines) + "\n")
    tables, problems = _read(path)
    assert tables["conn"].column("uid").to_pylist() == ["Ca", "Cc"]
    assert [p.line for p in problems.records] == [2]


def test_tsv_without_fields_header_is_malformed(tmp_path: Path) -> None:
    path = _write(tmp_path, "conn.log", "#separator \\x09\n#path\tconn\n1.0\tCa\n")
    with pytest.raises(MalformedInputError) as error:
        list(zeek.read(path, Problems()))
    assert error.value.path == path
    assert "#fields" in error.value.reason


def test_rotated_gzip_tree_is_detected_by_content(samples: Path, tmp_path: Path) -> None:
    source = (
        samples / "zeek-tsv/stratosphere-security-datasets/003-zeek-scenario-malicious/conn.log"
    )
    day = tmp_path / "2026-11-27"
    day.mkdir()
    target = day / "conn.00:00:00-01:00:00.log.gz"
    with source.open("rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    odd_name = day / "capture-from-sensor-7"  # no telling name: the header decides
    shutil.copy(source, odd_name)
    for path in (target, odd_name):
        assert detect(path).format == "zeek"
        tables, _ = _read(path)
        assert tables["conn"].num_rows == _records(source) == 361  # PROVENANCE.txt: 361 rows
