"""Suricata EVE flow, netflow, alert and fileinfo events -> conn, alert and files
(sources/suricata_flow.py)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from homecall.pipeline import import_paths
from homecall.sources import Problems, suricata
from homecall.store import Store
from homecall.store.schema import schema_of

SLIPS = "suricata-eve/slips-test6/test6-malicious.suricata.json"
IDPS = "suricata-eve/idps-comparison-test7-hide-and-seek/eve.json"
EVELOG = "suricata-eve/crowdsec-hub/suricata-logs-evelog.log"
DETECT = "suricata-eve/crowdsec-hub/suricata-eve-detect.log"
TABLES = ("dns", "http", "tls", "x509", "conn", "alert", "files")


def _read(path: Path) -> tuple[dict[str, pa.Table], Problems]:
    problems = Problems()
    batches: dict[str, list[pa.RecordBatch]] = {}
    for table, batch in suricata.read(path, problems):
        assert batch.schema == schema_of(table), (path, table)
        batches.setdefault(table, []).append(batch)
    tables = {n: pa.Table.from_batches(batches.get(n, []), schema_of(n)) for n in TABLES}
    return tables, problems


@cache
def _read_sample(path: Path) -> dict[str, pa.Table]:
    """A real sample's tables, read once per test run (Arrow tables are immutable)."""
    tables, problems = _read(path)
    assert problems.bad_records == 0, problems.records
    return tables


def _utc(stamp: str) -> datetime:
    """An EVE timestamp ("2021-06-07T09:25:25.742943+0200") as an aware UTC datetime."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)


def _lines(path: Path) -> list[dict[str, Any]]:
    with path.open() as stream:
        return [json.loads(line) for line in stream]


def _by_uid(table: pa.Table) -> dict[str, dict[str, Any]]:
    rows = table.to_pylist()
    found = {row["uid"]: row for row in rows}
    assert len(found) == len(rows)
    return found


# ----------------------------------------------------------------------- real samples


def test_whole_suricata_tree_imports_every_event_without_problems(
    samples: Path, tmp_path: Path
) -> None:
    folder = samples / "suricata-eve"
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "PROVENANCE.txt")
    result = import_paths([folder], Store(tmp_path / "store"))
    assert result.errors == []
    assert result.problems.records == []
    assert set(result.imported) == set(files)
    for path in files:
        kinds = Counter(record["event_type"] for record in _lines(path))
        stored = result.imported[path]
        assert stored.get("conn", 0) == kinds["flow"], path  # one conn row per flow event
        assert stored.get("alert", 0) == kinds["alert"], path
        assert stored.get("files", 0) == kinds["fileinfo"], path
    # PROVENANCE.txt: flow 3512, alert 745, fileinfo 3 in the Slips file
    slips = result.imported[samples / SLIPS]
    assert (slips["conn"], slips["alert"], slips["files"]) == (3512, 745, 3)


@pytest.mark.parametrize("sample", [SLIPS, IDPS])
def test_conn_rows_carry_the_flow_events_values(samples: Path, sample: str) -> None:
    path = samples / sample
    conn = _by_uid(_read_sample(path)["conn"])
    flows = [r for r in _lines(path) if r["event_type"] == "flow"]
    assert len(conn) == len(flows) > 300
    for record in flows:
        flow = record["flow"]
        row = conn[str(record["flow_id"])]
        start, end = _utc(flow["start"]), _utc(flow["end"])
        assert row["ts"] == start  # the first packet, not the time the event was written
        assert row["duration_s"] == pytest.approx((end - start).total_seconds())
        assert (row["orig_ip"], row["resp_ip"]) == (record["src_ip"], record["dest_ip"])
        assert (row["orig_pkts"], row["resp_pkts"]) == (
            flow["pkts_toserver"],
            flow["pkts_toclient"],
        )
        assert (row["orig_ip_bytes"], row["resp_ip_bytes"]) == (
            flow["bytes_toserver"],
            flow["bytes_toclient"],
        )
        assert (row["orig_bytes"], row["resp_bytes"]) == (None, None)  # no payload counts
        assert row["history"] is None
        if "src_port" in record:
            assert (row["orig_port"], row["resp_port"]) == (record["src_port"], record["dest_port"])
        else:  # ICMP: type and code, as Zeek logs them
            assert (row["orig_port"], row["resp_port"]) == (
                record["icmp_type"],
                record["icmp_code"],
            )
        assert row["proto"] == {"IPv6-ICMP": "icmp"}.get(record["proto"], record["proto"].lower())


@pytest.mark.parametrize(
    ("sample", "line", "state"),
    [
        # TCP flags (client, server) of the flow event on that line
        (SLIPS, 120, "REJ"),  # 02/14: SYN answered by RST-ACK (the inbound scans)
        (SLIPS, 378, "S2"),  # 13/12: client FIN, server never closed
        (SLIPS, 2035, "SF"),  # 13/13: both sides closed
        (SLIPS, 2115, "RSTO"),  # 06/12: SYN, SYN-ACK, client RST (half-open scan)
        (SLIPS, 1646, "RSTR"),  # 1f/16: the server reset an established connection
        (SLIPS, 766, "OTH"),  # 00/00: no TCP session, so no SYN seen (midstream)
        (SLIPS, 2813, "OTH"),  # 02/12: SYN-ACK never acknowledged
        (SLIPS, 90, "S0"),  # UDP, no packet back
        (SLIPS, 1132, "SF"),  # UDP DNS answered
        (IDPS, 97, "S0"),  # 02/00: SYN only
        (IDPS, 132, "S0"),  # 02/00, but two ICMP errors counted to the client: still S0
        (IDPS, 181, "OTH"),  # ICMP, as Zeek
    ],
)
def test_conn_state_from_the_tcp_flags_of_each_side(
    samples: Path, sample: str, line: int, state: str
) -> None:
    path = samples / sample
    record = _lines(path)[line - 1]
    assert record["event_type"] == "flow"
    assert _by_uid(_read_sample(path)["conn"])[str(record["flow_id"])]["conn_state"] == state


@pytest.mark.parametrize(
    ("line", "service"),
    [(1659, "ssl"), (687, "http"), (1132, "dns"), (3387, "ntp"), (90, None), (120, None)],
)
def test_service_in_zeek_names(samples: Path, line: int, service: str | None) -> None:
    # app_proto of those lines: tls, http, dns, ntp, "failed" (detection gave up), absent
    path = samples / SLIPS
    record = _lines(path)[line - 1]
    assert _by_uid(_read_sample(path)["conn"])[str(record["flow_id"])]["service"] == service


def test_alert_rows_match_the_alert_events(samples: Path) -> None:
    path = samples / SLIPS
    alerts = _read_sample(path)["alert"].to_pylist()
    assert len(alerts) == 745  # PROVENANCE.txt
    signatures = Counter(row["signature"] for row in alerts)
    assert signatures["ET SCAN Suspicious inbound to MSSQL port 1433"] == 131
    first = _lines(path)[0]["alert"]  # line 1: ET CINS ... group 89 from 78.36.196.213
    [row] = [r for r in alerts if r["uid"] == "1374195536821504"]
    assert row == {
        "ts": _utc("2021-06-06T15:59:46.457984+0200"),
        "uid": "1374195536821504",
        "orig_ip": "78.36.196.213",
        "orig_port": 51698,
        "resp_ip": "192.168.1.129",
        "resp_port": 445,
        "proto": "tcp",
        "engine": "suricata",
        "signature": first["signature"],
        "signature_id": 2403388,
        "signature_rev": 66418,
        "category": "Misc Attack",
        "severity": 2,
        "action": "allowed",
        "app_proto": None,
        "message": None,
        "sensor": None,
        "source_file": str(path),
    }


def test_alerts_with_http_objects_give_no_http_rows(samples: Path) -> None:
    # every line of the file is an alert; the first carries an http object and a files list
    tables, problems = _read(samples / DETECT)
    assert problems.bad_records == 0
    assert tables["alert"].num_rows == 4
    assert tables["alert"]["app_proto"].to_pylist() == ["http", "sip", "sip", "sip"]
    assert tables["alert"]["signature_id"].to_pylist() == [2034125, 2011716, 2011717, 2011718]
    assert [tables[t].num_rows for t in ("http", "files", "conn")] == [0, 0, 0]


def test_fileinfo_rows(samples: Path) -> None:
    path = samples / SLIPS
    files = {row["uid"]: row for row in _read_sample(path)["files"].to_pylist()}
    assert len(files) == 3
    # line 1136: a 404 page sent by the honeypot (src 192.168.1.129:554) to Censys
    served = files["482525783043092"]
    assert served["ts"] == _utc("2021-06-07T09:25:25.523057+0200")
    assert (served["tx_ip"], served["rx_ip"]) == ("192.168.1.129", "162.142.125.53")
    assert served["is_orig"] is False  # the flow event (same flow_id) starts at the client
    assert (served["filename"], served["source"], served["depth"]) == ("/", "HTTP", 1)
    assert (served["seen_bytes"], served["total_bytes"]) == (47, 47)  # CLOSED without gaps
    assert served["fuid"] == "F482525783043092-0-1"
    # line 1763: a POST body from the client to /HNAP1/, TRUNCATED: no total size
    posted = files["328594778239040"]
    assert (posted["tx_ip"], posted["is_orig"], posted["filename"]) == (
        "112.249.236.129",
        True,
        "/HNAP1/",
    )
    assert (posted["seen_bytes"], posted["total_bytes"]) == (535, None)
    assert (posted["md5"], posted["extracted"]) == (None, None)  # not hashed, not stored


def test_flow_whose_end_precedes_its_start_has_no_duration(samples: Path) -> None:
    # crowdsec's fixture, line 6: flow.start 2022-07-12T05:48:21 -0000, flow.end a day earlier
    path = samples / EVELOG
    tables, problems = _read(path)
    assert problems.bad_records == 0
    rows = sorted(tables["conn"].to_pylist(), key=lambda r: r["ts"])
    assert [r["uid"] for r in rows] == ["883709815679084", "883709815679084"]  # lines 3 and 6
    assert rows[0]["duration_s"] == pytest.approx(0.018261)
    assert rows[1]["ts"] == datetime(2022, 7, 12, 5, 48, 21, 714860, tzinfo=UTC)
    assert rows[1]["duration_s"] is None
    assert [r["conn_state"] for r in rows] == ["REJ", "REJ"]  # 06 from the client, 14 back
    assert tables["alert"].num_rows == 4  # lines 1, 2, 5, 8; the stats lines are skipped


# ------------------------------------------------------------------------- inline

CLIENT = ("10.1.2.3", 49152)
SERVER = ("198.51.100.20", 443)


def _event(ts: str, kind: str, body: dict[str, Any] | None, **top: Any) -> str:
    record = {
        "timestamp": ts,
        "flow_id": 1111111111111111,
        "event_type": kind,
        "src_ip": CLIENT[0],
        "src_port": CLIENT[1],
        "dest_ip": SERVER[0],
        "dest_port": SERVER[1],
        "proto": "TCP",
        **top,
    }
    if body is not None:
        record[kind] = body
    return json.dumps(record)


def _flow(ts_flags: str, tc_flags: str, pkts: tuple[int, int] = (3, 2), **top: Any) -> str:
    body = {
        "pkts_toserver": pkts[0],
        "pkts_toclient": pkts[1],
        "bytes_toserver": 180,
        "bytes_toclient": 120,
        "start": "2024-03-01T10:00:00.000000+0100",
        "end": "2024-03-01T10:00:01.500000+0100",
        "age": 1,
        "state": top.pop("state", "closed"),
        "reason": "timeout",
        "alerted": False,
    }
    tcp = {"tcp_flags": ts_flags, "tcp_flags_ts": ts_flags, "tcp_flags_tc": tc_flags}
    return _event("2024-03-01T10:05:00.000000+0100", "flow", body, tcp=tcp, **top)


def _write(tmp_path: Path, lines: list[str], name: str = "eve.json") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("ts_flags", "tc_flags", "state"),
    [
        ("02", "00", "S0"),  # SYN, nothing back
        ("13", "13", "SF"),  # both closed
        ("1a", "12", "S1"),  # established, neither side closed
        ("02", "14", "REJ"),  # RST-ACK to the SYN
        ("13", "12", "S2"),  # only the client closed
        ("1a", "1b", "S3"),  # only the server closed
        ("06", "12", "RSTO"),
        ("1e", "16", "RSTR"),
        ("06", "00", "RSTOS0"),  # SYN then RST, no SYN-ACK
        ("03", "00", "SH"),  # SYN then FIN, no SYN-ACK
        ("10", "14", "RSTRH"),  # no SYN from the client, the server reset
        ("10", "11", "SHR"),  # no SYN from the client, the server closed
        ("18", "10", "OTH"),  # midstream, no SYN, no end
    ],
)
def test_conn_state_table(tmp_path: Path, ts_flags: str, tc_flags: str, state: str) -> None:
    tables, problems = _read(_write(tmp_path, [_flow(ts_flags, tc_flags)]))
    assert problems.bad_records == 0
    assert tables["conn"]["conn_state"].to_pylist() == [state]


def test_bypassed_flow_has_no_state(tmp_path: Path) -> None:
    # Suricata stops following a bypassed flow: how it ended is unknown
    tables, _ = _read(_write(tmp_path, [_flow("1a", "1a", state="bypassed")]))
    assert tables["conn"]["conn_state"].to_pylist() == [None]


def test_flow_fields_and_protocol_change(tmp_path: Path) -> None:
    line = _flow("1b", "1b", app_proto="tls", app_proto_orig="http")  # HTTP CONNECT, then TLS
    tables, _ = _read(_write(tmp_path, [line]))
    [row] = tables["conn"].to_pylist()
    assert row["ts"] == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert row["uid"] == "1111111111111111"
    assert (row["orig_ip"], row["orig_port"], row["resp_ip"], row["resp_port"]) == (
        *CLIENT,
        *SERVER,
    )
    assert (row["proto"], row["service"], row["duration_s"]) == ("tcp", "http,ssl", 1.5)
    assert (row["orig_pkts"], row["resp_pkts"], row["orig_ip_bytes"], row["resp_ip_bytes"]) == (
        3,
        2,
        180,
        120,
    )


def _netflow(src: tuple[str, int], dst: tuple[str, int], pkts: int, flags: str, **top: Any) -> str:
    body = {
        "pkts": pkts,
        "bytes": pkts * 60,
        "start": "2024-03-01T10:00:00.000000+0000",
        "end": "2024-03-01T10:00:02.000000+0000",
        "age": 2,
        "min_ttl": 64,
        "max_ttl": 64,
    }
    return _event(
        "2024-03-01T10:01:00.000000+0000",
        "netflow",
        body,
        src_ip=src[0],
        src_port=src[1],
        dest_ip=dst[0],
        dest_port=dst[1],
        app_proto="tls",
        tcp={"tcp_flags": flags},
        **top,
    )


def test_netflow_halves_are_paired_into_one_conn_row(tmp_path: Path) -> None:
    lines = [
        _netflow(CLIENT, SERVER, 7, "1b"),  # to the server: written first
        _netflow(SERVER, CLIENT, 5, "1b"),  # to the client: endpoints swapped
        _netflow(("10.1.2.9", 40000), SERVER, 1, "02", flow_id=2222),  # never answered
    ]
    tables, problems = _read(_write(tmp_path, lines))
    assert problems.bad_records == 0
    conn = _by_uid(tables["conn"])
    paired = conn["1111111111111111"]
    assert (paired["orig_ip"], paired["orig_port"], paired["resp_ip"], paired["resp_port"]) == (
        *CLIENT,
        *SERVER,
    )
    assert (paired["orig_pkts"], paired["resp_pkts"]) == (7, 5)
    assert (paired["orig_ip_bytes"], paired["resp_ip_bytes"]) == (420, 300)
    assert (paired["conn_state"], paired["service"], paired["duration_s"]) == ("SF", "ssl", 2.0)
    alone = conn["2222"]
    assert (alone["orig_ip"], alone["resp_pkts"], alone["resp_ip_bytes"]) == ("10.1.2.9", 0, 0)
    assert alone["conn_state"] == "S0"


def test_netflow_of_a_flow_with_a_flow_event_is_not_counted_twice(tmp_path: Path) -> None:
    lines = [
        _netflow(CLIENT, SERVER, 3, "13"),
        _netflow(SERVER, CLIENT, 2, "13"),
        _flow("13", "13"),
    ]
    tables, _ = _read(_write(tmp_path, lines))
    [row] = tables["conn"].to_pylist()
    assert row["orig_ip_bytes"] == 180  # the flow event's, not the netflow records'


def test_alert_turned_around_to_the_flow(tmp_path: Path) -> None:
    alert = {
        "action": "blocked",
        "gid": 1,
        "signature_id": 2100498,
        "rev": 7,
        "signature": "GPL ATTACK_RESPONSE id check returned root",
        "category": "Potentially Bad Traffic",
        "severity": 2,
    }
    older = _event(  # Suricata < 7: the packet's endpoints only; this packet came from the server
        "2024-03-01T10:00:00.000000+0000",
        "alert",
        alert,
        src_ip=SERVER[0],
        src_port=SERVER[1],
        dest_ip=CLIENT[0],
        dest_port=CLIENT[1],
        direction="to_client",
    )
    newer = _event(  # Suricata 7: the flow's endpoints in the flow object
        "2024-03-01T10:00:01.000000+0000",
        "alert",
        alert,
        flow_id=2,
        src_ip=SERVER[0],
        src_port=SERVER[1],
        dest_ip=CLIENT[0],
        dest_port=CLIENT[1],
        app_proto="http",
        flow={
            "src_ip": CLIENT[0],
            "dest_ip": SERVER[0],
            "src_port": CLIENT[1],
            "dest_port": SERVER[1],
        },
    )
    tables, problems = _read(_write(tmp_path, [older, newer]))
    assert problems.bad_records == 0
    rows = tables["alert"].to_pylist()
    for row in rows:
        assert (row["orig_ip"], row["orig_port"], row["resp_ip"], row["resp_port"]) == (
            *CLIENT,
            *SERVER,
        )
        assert (row["action"], row["signature_id"], row["signature_rev"]) == ("blocked", 2100498, 7)
    assert [r["app_proto"] for r in rows] == [None, "http"]


def _fileinfo(ts: str, top: dict[str, Any], **fileinfo: Any) -> str:
    body = {"gaps": False, "state": "CLOSED", "stored": False, "tx_id": 0, **fileinfo}
    return _event(ts, "fileinfo", body, app_proto="http", **top)


def test_fileinfo_direction_hashes_and_stored_file(tmp_path: Path) -> None:
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    # Suricata 7 says the direction; a file sent to the client is logged from the server
    to_client = {"src_ip": SERVER[0], "src_port": SERVER[1], "dest_ip": CLIENT[0]}
    to_client |= {"dest_port": CLIENT[1], "direction": "to_client"}
    lines = [
        _fileinfo(
            "2024-03-01T10:00:00.000000+0000",
            {"direction": "to_server"},
            filename="/upload",
            size=4,
        ),
        _fileinfo(  # same transaction: the answer
            "2024-03-01T10:00:01.000000+0000",
            to_client,
            filename="/payload.exe",
            size=4,
            md5="098f6bcd4621d373cade4e832627b4f6",
            sha256=sha256,
            magic="PE32 executable (GUI) Intel 80386, for MS Windows",
            stored=True,
            file_id=3,
        ),
    ]
    tables, problems = _read(_write(tmp_path, lines))
    assert problems.bad_records == 0
    upload, download = tables["files"].to_pylist()
    assert (upload["fuid"], download["fuid"]) == ("F1111111111111111-0-1", "F1111111111111111-0-2")
    assert (upload["is_orig"], download["is_orig"]) == (True, False)
    assert (download["tx_ip"], download["rx_ip"]) == (SERVER[0], CLIENT[0])
    assert download["mime_type"] == "PE32 executable (GUI) Intel 80386, for MS Windows"
    assert (download["md5"], download["sha256"], download["extracted"]) == (
        "098f6bcd4621d373cade4e832627b4f6",
        sha256,
        sha256,  # filestore v2 names a stored file by its SHA-256
    )
    assert upload["extracted"] is None


def test_bad_lines_are_reported_with_their_numbers_and_the_rest_is_stored(
    tmp_path: Path,
) -> None:
    lines = [
        _flow("13", "13"),
        '{"timestamp": "2024-03-01T10:00:00.000000+0000", "event_type": "flow", "flow": {',
        _event("2024-03-01T10:00:00.000000+0000", "alert", None),  # no alert object
        _event("2024-03-01T10:00:00.000000+0000", "flow", {"pkts_toserver": 3}),  # no start
        _event("2024-03-01T10:00:00.000000+0000", "fileinfo", None),
        _event("2024-03-01T10:00:00.000000+0000", "stats", {"uptime": 10}),  # skipped, not bad
        _event("2024-03-01T10:00:00.000000+0000", "alert", {"signature_id": 1, "rev": 1}),
    ]
    tables, problems = _read(_write(tmp_path, lines))
    assert [(p.line, p.reason.split(" (")[0]) for p in problems.records] == [
        (2, "not valid JSON"),
        (3, "alert event without its alert object"),
        (4, "flow event without flow.start"),
        (5, "fileinfo event without its fileinfo object"),
    ]
    assert tables["conn"].num_rows == 1
    assert tables["alert"]["signature_id"].to_pylist() == [1]
    assert tables["files"].num_rows == 0
