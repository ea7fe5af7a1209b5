"""Suricata EVE http and tls events -> the http, tls and x509 tables (sources/suricata_web.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from homecall.config import Config
from homecall.pipeline import import_paths
from homecall.sources import Problems, suricata
from homecall.sources.suricata_web import tls_version
from homecall.store import Store
from homecall.store.schema import schema_of
from homecall.store.tables import WHOLE_STORE, connect, open_tables

SLIPS = "suricata-eve/slips-test6/test6-malicious.suricata.json"
IDPS = "suricata-eve/idps-comparison-test7-hide-and-seek/eve.json"


def _read(path: Path) -> tuple[dict[str, pa.Table], Problems]:
    problems = Problems()
    batches: dict[str, list[pa.RecordBatch]] = {}
    for table, batch in suricata.read(path, problems):
        assert batch.schema == schema_of(table), (path, table)
        batches.setdefault(table, []).append(batch)
    tables = {
        name: pa.Table.from_batches(batches.get(name, []), schema_of(name))
        for name in ("dns", "http", "tls", "x509")
    }
    return tables, problems


def _utc(stamp: str) -> datetime:
    """An EVE timestamp ("2021-06-07T09:25:25.742943+0200") as an aware UTC datetime."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)


def _events(path: Path, kind: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of every `kind` event in the file, read independently of DuckDB."""
    found = []
    with path.open() as stream:
        for number, line in enumerate(stream, start=1):
            record = json.loads(line)
            if record["event_type"] == kind:
                found.append((number, record))
    return found


# ----------------------------------------------------------------------- real samples


def test_every_sample_eve_file_imports_cleanly(samples: Path, tmp_path: Path) -> None:
    folder = samples / "suricata-eve"
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "PROVENANCE.txt")
    assert len(files) >= 4
    result = import_paths([folder], Store(tmp_path / "store"))
    assert result.errors == []
    assert result.problems.bad_records == 0, result.problems.records
    assert len(result.hashes) == len(files)  # every file read as an EVE source
    assert [p.path.name for p in result.problems.skipped] == ["PROVENANCE.txt"]
    # the crowdsec-hub fixtures hold only alert, flow and stats events (alert and conn rows)
    assert set(result.imported) == set(files)
    slips = result.imported[samples / SLIPS]
    assert (slips["http"], slips["tls"], slips["x509"]) == (56, 1, 1)  # PROVENANCE.txt counts


def test_slips_http_rows_match_the_raw_events(samples: Path) -> None:
    path = samples / SLIPS
    tables, problems = _read(path)
    assert problems.bad_records == 0
    events = _events(path, "http")
    assert len(events) == tables["http"].num_rows == 56
    rows = {(r["uid"], r["trans_depth"]): r for r in tables["http"].to_pylist()}
    for number, event in events:
        http = event["http"]
        row = rows[(str(event["flow_id"]), event["tx_id"] + 1)]
        assert row["ts"] == _utc(event["timestamp"]), number
        assert (row["orig_ip"], row["orig_port"]) == (event["src_ip"], event["src_port"]), number
        assert (row["resp_ip"], row["resp_port"]) == (event["dest_ip"], event["dest_port"]), number
        assert row["host"] == http.get("hostname"), number  # http_port always equals dest_port
        assert row["uri"] == http["url"], number
        assert row["method"] == http["http_method"], number
        assert row["user_agent"] == http.get("http_user_agent"), number
        assert row["referrer"] == http.get("http_refer"), number
        assert row["status_code"] == http.get("status"), number
        assert row["response_body_len"] == http["length"], number
        assert row["source_file"] == str(path)


def test_slips_censys_probe_line_1135(samples: Path) -> None:
    # line 1135: {"timestamp":"2021-06-07T09:25:25.742943+0200","flow_id":297404102737687,...
    #   "src_ip":"162.142.125.53","src_port":53642,"dest_ip":"192.168.1.129","dest_port":554,
    #   "tx_id":0,"http":{"hostname":"147.32.82.197","http_port":554,"url":"/",
    #   "http_user_agent":"Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)",
    #   "http_content_type":"text/html","http_method":"GET","protocol":"HTTP/1.1","status":404,
    #   "length":47}}
    path = samples / SLIPS
    assert '"flow_id":297404102737687' in path.read_text().splitlines()[1134]
    tables, _ = _read(path)
    (row,) = [r for r in tables["http"].to_pylist() if r["uid"] == "297404102737687"]
    assert row["ts"] == datetime(2021, 6, 7, 7, 25, 25, 742943, tzinfo=UTC)  # +0200 -> UTC
    assert (row["orig_ip"], row["orig_port"], row["resp_ip"], row["resp_port"]) == (
        "162.142.125.53",
        53642,
        "192.168.1.129",
        554,
    )
    assert (row["method"], row["host"], row["uri"], row["version"]) == (
        "GET",
        "147.32.82.197",
        "/",
        "1.1",
    )
    assert (
        row["user_agent"]
        == "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)"
    )
    assert (row["status_code"], row["response_body_len"]) == (404, 47)
    assert row["resp_mime_types"] == ["text/html"]
    assert row["trans_depth"] == 1
    assert row["proxy"] is None


def test_slips_rtsp_second_transaction_keeps_its_protocol(samples: Path) -> None:
    # line 1376: tx_id 1 of flow 92479083328093, "http_method":"DESCRIBE","protocol":"RTSP/1.0"
    tables, _ = _read(samples / SLIPS)
    rows = [r for r in tables["http"].to_pylist() if r["uid"] == "92479083328093"]
    assert sorted(r["trans_depth"] for r in rows) == [1, 2]
    (row,) = [r for r in rows if r["trans_depth"] == 2]
    assert (row["method"], row["version"], row["uri"]) == (
        "DESCRIBE",
        "RTSP/1.0",
        "rtsp://147.32.82.197:554/11",
    )
    assert row["ts"] == datetime(2021, 6, 7, 10, 37, 29, 727963, tzinfo=UTC)


def test_slips_tls_event_and_its_certificate(samples: Path) -> None:
    # the file's one tls event (line 113): 192.168.1.129:60316 -> 122.248.252.67:55443,
    # "sni":"www.myedimax.com","version":"TLS 1.1", fingerprint "2d:d1:9f:80:...:24:37"
    path = samples / SLIPS
    ((number, event),) = _events(path, "tls")
    tables, _ = _read(path)
    (row,) = tables["tls"].to_pylist()
    assert (
        row["ts"] == _utc(event["timestamp"]) == datetime(2021, 6, 6, 14, 54, 0, 74627, tzinfo=UTC)
    )
    assert row["uid"] == str(event["flow_id"])
    assert (row["orig_ip"], row["orig_port"], row["resp_ip"], row["resp_port"]) == (
        "192.168.1.129",
        60316,
        "122.248.252.67",
        55443,
    )
    assert (row["server_name"], row["version"]) == ("www.myedimax.com", "TLSv11")
    assert row["ja3"] == event["tls"]["ja3"]["hash"] == "b7202231ff2db28363c109cedc6d1642"
    assert row["ja3s"] == event["tls"]["ja3s"]["hash"] == "ad90cab724fafab2660fbf61673c91a9"
    assert row["ja4"] is None  # Suricata 6 wrote no ja4
    assert row["cert_chain"] == ["2dd19f809986fcac5f2a2afda3f37e967cdd2437"]
    assert row["subject"] == "OU=Domain Control Validated, CN=www.myedimax.com"
    assert row["issuer"] == "C=BE, O=GlobalSign nv-sa, CN=AlphaSSL CA - SHA256 - G2"
    assert (row["resumed"], row["established"]) == (False, None)  # a certificate was sent
    (cert,) = tables["x509"].to_pylist()
    assert cert["cert_id"] == "2dd19f809986fcac5f2a2afda3f37e967cdd2437"
    assert cert["serial"] == "178E1ED7BD75EFCD3D8FFFD3"  # "17:8E:1E:D7:BD:75:EF:CD:3D:8F:FF:D3"
    assert cert["not_valid_before"] == datetime(2020, 3, 19, 9, 44, 8, tzinfo=UTC)
    assert cert["not_valid_after"] == datetime(2022, 3, 20, 9, 44, 8, tzinfo=UTC)
    assert cert["ts"] == row["ts"]
    assert number == 113


# ------------------------------------------------------------------------- inline

CLIENT = ("10.1.2.3", 51000)
SERVER = ("203.0.113.7", 443)
FINGERPRINT = "AB:cd:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23"
CERT_ID = "abcd0123456789abcdef0123456789abcdef0123"


def _event(ts: str, kind: str, body: dict[str, Any], **top: Any) -> str:
    record = {
        "timestamp": ts,
        "flow_id": 1234567890123456,
        "event_type": kind,
        "src_ip": CLIENT[0],
        "src_port": CLIENT[1],
        "dest_ip": SERVER[0],
        "dest_port": SERVER[1],
        "proto": "TCP",
        **top,
    }
    if body:
        record[kind] = body
    return json.dumps(record)


TLS_EVENT = _event(
    "2024-02-29T23:30:00.250000-0100",  # 2024-03-01 00:30:00.25 UTC: the offset crosses midnight
    "tls",
    {
        "subject": "CN=update.example.net",
        "issuerdn": "CN=update.example.net",
        "serial": "00:8B:B0:0E:E0",
        "fingerprint": FINGERPRINT,
        "sni": "cdn.example.com",
        "version": "TLS 1.3",
        "notbefore": "2024-01-15T08:00:00",
        "notafter": "2025-01-15T08:00:00",
        "ja3": {"hash": "72a589da586844d7f0818ce684948eea", "string": "771,4865,0,,"},
        "ja3s": {"hash": "f4febc55ea12b31ae17cfb7e614afda8", "string": "771,4865,43"},
        "ja4": "t13d1516h2_8daaf6152771_b186095e22b6",
        "subjectaltname": ["update.example.net", "www.update.example.net"],
        "server_alpns": ["h2"],
        "client_alpns": ["h2", "http/1.1"],
    },
    tx_id=0,
)
HTTP_EVENT = _event(
    "2024-03-01T01:31:00.000001+0100",
    "http",
    {
        "hostname": "203.0.113.7",
        "http_port": 8080,
        "url": "/gate.php?id=42",
        "http_user_agent": "python-requests/2.31.0",
        "http_method": "POST",
        "protocol": "HTTP/1.1",
        "status": 200,
        "length": 1234,
        "http_content_type": "application/octet-stream",
        "xff": "198.51.100.9",
    },
    tx_id=2,
)


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_tls_event_gives_a_tls_row_and_its_certificate(tmp_path: Path) -> None:
    tables, problems = _read(_write(tmp_path, "eve.json", [TLS_EVENT]))
    assert problems.bad_records == 0
    (row,) = tables["tls"].to_pylist()
    assert row["ts"] == datetime(2024, 3, 1, 0, 30, 0, 250000, tzinfo=UTC)
    assert (row["uid"], row["orig_ip"], row["resp_port"]) == ("1234567890123456", CLIENT[0], 443)
    assert (row["version"], row["server_name"], row["next_protocol"]) == (
        "TLSv13",
        "cdn.example.com",
        "h2",
    )
    assert (row["ja3"], row["ja3s"], row["ja4"]) == (
        "72a589da586844d7f0818ce684948eea",
        "f4febc55ea12b31ae17cfb7e614afda8",
        "t13d1516h2_8daaf6152771_b186095e22b6",
    )
    assert (row["cert_chain"], row["client_cert_chain"]) == ([CERT_ID], None)
    (cert,) = tables["x509"].to_pylist()
    assert (cert["cert_id"], cert["serial"]) == (CERT_ID, "008BB00EE0")
    assert cert["san_dns"] == ["update.example.net", "www.update.example.net"]
    assert cert["is_host_cert"] is True


def test_certificate_columns_are_joined_into_tls_at_analysis(tmp_path: Path) -> None:
    path = _write(tmp_path, "eve.json", [TLS_EVENT])
    store = Store(tmp_path / "store")
    result = import_paths([path], store)
    assert result.imported[path] == {"tls": 1, "x509": 1}
    tables = open_tables(store, Config().internal, connect(), WHOLE_STORE)
    (row,) = tables.to_pyarrow(tables["tls"]).to_pylist()
    assert row["server_name"] == "cdn.example.com"
    assert row["cert_subject"] == row["cert_issuer"] == "CN=update.example.net"  # self-signed
    assert row["cert_serial"] == "008BB00EE0"
    assert row["cert_not_valid_before"] == datetime(2024, 1, 15, 8, 0, tzinfo=UTC)
    assert row["cert_not_valid_after"] == datetime(2025, 1, 15, 8, 0, tzinfo=UTC)
    assert row["cert_san_dns"] == ["update.example.net", "www.update.example.net"]


def test_repeated_certificate_is_one_x509_row_per_day(tmp_path: Path) -> None:
    later = TLS_EVENT.replace("2024-02-29T23:30:00.250000", "2024-02-29T23:45:00.000000")
    next_day = TLS_EVENT.replace("2024-02-29T23:30:00.250000", "2024-03-01T23:30:00.000000")
    tables, _ = _read(_write(tmp_path, "eve.json", [later, TLS_EVENT, next_day]))
    assert tables["tls"].num_rows == 3
    certs = tables["x509"].to_pylist()
    assert [(c["cert_id"], c["ts"]) for c in certs] == [
        (CERT_ID, datetime(2024, 3, 1, 0, 30, 0, 250000, tzinfo=UTC)),  # the first sighting
        (CERT_ID, datetime(2024, 3, 2, 0, 30, tzinfo=UTC)),
    ]


def test_client_certificate_and_resumed_session(tmp_path: Path) -> None:
    client_cert = {
        "subject": "CN=device-17",
        "issuerdn": "CN=Fleet CA",
        "fingerprint": "11:22:33:44:55:66:77:88:99:00:11:22:33:44:55:66:77:88:99:00",
        "serial": "0A",
        "notbefore": "2023-01-01T00:00:00",
        "notafter": "2033-01-01T00:00:00",
    }
    mutual = TLS_EVENT.replace('"ja4"', f'"client": {json.dumps(client_cert)}, "ja4"')
    resumed = _event(
        "2024-03-01T02:00:00.000000+0000",
        "tls",
        {"sni": "cdn.example.com", "version": "TLS 1.2", "session_resumed": True},
    )
    tables, problems = _read(_write(tmp_path, "eve.json", [mutual, resumed]))
    assert problems.bad_records == 0
    first, second = tables["tls"].to_pylist()
    assert first["client_cert_chain"] == ["1122334455667788990011223344556677889900"]
    assert first["resumed"] is False
    assert (second["resumed"], second["version"], second["cert_chain"]) == (True, "TLSv12", None)
    ids = {c["cert_id"]: c for c in tables["x509"].to_pylist()}
    assert set(ids) == {CERT_ID, "1122334455667788990011223344556677889900"}
    assert ids["1122334455667788990011223344556677889900"]["subject"] == "CN=device-17"


def test_http_event_fields(tmp_path: Path) -> None:
    tables, problems = _read(_write(tmp_path, "eve.json", [HTTP_EVENT]))
    assert problems.bad_records == 0
    (row,) = tables["http"].to_pylist()
    assert row["ts"] == datetime(2024, 3, 1, 0, 31, 0, 1, tzinfo=UTC)
    assert (row["orig_ip"], row["orig_port"], row["resp_ip"], row["resp_port"]) == (
        *CLIENT,
        *SERVER,
    )
    assert row["trans_depth"] == 3  # tx_id 2
    assert row["host"] == "203.0.113.7:8080"  # the requested port differs from the flow's
    assert (row["method"], row["uri"], row["version"]) == ("POST", "/gate.php?id=42", "1.1")
    assert (row["status_code"], row["response_body_len"]) == (200, 1234)
    assert row["resp_mime_types"] == ["application/octet-stream"]
    assert row["proxied"] == ["X-FORWARDED-FOR -> 198.51.100.9"]
    assert (row["origin"], row["referrer"], row["request_body_len"]) == (None, None, None)


def test_dumped_request_headers_fill_origin_and_proxied(tmp_path: Path) -> None:
    headers = [
        {"name": "Host", "value": "intranet.example"},
        {"name": "Origin", "value": "https://portal.example"},
        {"name": "Referer", "value": "https://portal.example/login"},
        {"name": "Via", "value": "1.1 squid"},
        {"name": "X-Forwarded-For", "value": "10.9.8.7"},
    ]
    event = _event(
        "2024-03-01T00:00:00.000000+0000",
        "http",
        {"hostname": "intranet.example", "url": "/", "request_headers": headers},
    )
    tables, _ = _read(_write(tmp_path, "eve.json", [event]))
    (row,) = tables["http"].to_pylist()
    assert (row["host"], row["origin"], row["referrer"]) == (
        "intranet.example",
        "https://portal.example",
        "https://portal.example/login",
    )
    assert row["proxied"] == ["VIA -> 1.1 squid", "X-FORWARDED-FOR -> 10.9.8.7"]
    assert (row["trans_depth"], row["version"], row["user_agent"]) == (None, None, None)


def test_event_logged_towards_the_client_is_turned_around(tmp_path: Path) -> None:
    flipped = _event(
        "2024-03-01T00:00:00.000000+0000",
        "http",
        {"hostname": "example.org", "url": "/"},
        src_ip=SERVER[0],
        src_port=80,
        dest_ip=CLIENT[0],
        dest_port=CLIENT[1],
        direction="to_client",
    )
    tables, _ = _read(_write(tmp_path, "eve.json", [flipped]))
    (row,) = tables["http"].to_pylist()
    assert (row["orig_ip"], row["orig_port"], row["resp_ip"], row["resp_port"]) == (
        *CLIENT,
        SERVER[0],
        80,
    )


def test_bad_lines_are_reported_with_their_numbers_and_the_rest_is_stored(
    tmp_path: Path,
) -> None:
    no_time = json.loads(HTTP_EVENT)
    del no_time["timestamp"]
    lines = [
        HTTP_EVENT,
        '{"timestamp": "2024-03-01T00:00:00.000000+0000", "event_type": "http", "http": {',
        TLS_EVENT,
        json.dumps(no_time),
        _event("2024-03-01T00:00:01.000000+0000", "tls", {}),  # a tls event without its object
        _event("2024-03-01T00:00:02.000000+0000", "anomaly", {"type": "stream"}),
    ]
    tables, problems = _read(_write(tmp_path, "eve.json", lines))
    assert [(p.line, p.reason.split(" (")[0]) for p in problems.records] == [
        (2, "not valid JSON"),
        (4, "record without a timestamp"),
        (5, "tls event without its tls object"),
    ]
    assert problems.bad_records == 3
    assert tables["http"]["uri"].to_pylist() == ["/gate.php?id=42"]
    assert tables["tls"]["server_name"].to_pylist() == ["cdn.example.com"]
    assert tables["x509"].num_rows == 1


def test_file_without_web_events_yields_no_web_tables(tmp_path: Path) -> None:
    anomaly = _event("2024-03-01T00:00:02.000000+0000", "anomaly", {"type": "stream"})
    tables, problems = _read(_write(tmp_path, "eve.json", [anomaly]))
    assert problems.bad_records == 0
    assert [t.num_rows for t in tables.values()] == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("logged", "zeek"),
    [
        ("TLS 1.2", "TLSv12"),  # Suricata >= 4
        ("TLS 1.3", "TLSv13"),
        ("TLS 1.1", "TLSv11"),
        ("TLSv1", "TLSv10"),  # Suricata's name for TLS 1.0
        ("TLSv1.2", "TLSv12"),
        ("SSLv3", "SSLv3"),
        ("SSLv2", "SSLv2"),
        ("TLS 1.3 draft-28", "TLSv13-draft28"),
        ("0x7f1c", "TLSv13-draft28"),  # older Suricata: unknown codes in hex
        ("0x0303", "TLSv12"),
        ("0x1234", "unknown-4660"),  # Zeek's spelling of an unknown version
        ("DTLS 1.2", "DTLSv12"),
        ("UNDETERMINED", None),
        ("", None),
        (None, None),
        ("QUIC", "QUIC"),  # kept as logged
    ],
)
def test_tls_version_names_as_zeek_spells_them(logged: str | None, zeek: str | None) -> None:
    assert tls_version(logged) == zeek
