"""Squid access.log reader: the web-proxy samples through the pipeline, field by field against
the raw lines; common/combined logformats; bad lines, gzip and detection by content."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from homecall.pipeline import ImportResult, import_paths
from homecall.sources import READERS, Problems, detect, head_of, squid
from homecall.store import Store
from homecall.store.schema import schema_of

SQUID = "web-proxy/elastic-integrations-squid/squid-log-access.log"
METRON_SQUID = "web-proxy/apache-metron/SquidExampleOutput.squid-access.log"
BLUECOAT = "web-proxy/apache-metron/GrokBluecoatProxyExampleOutput.bluecoat-proxysg.log"


def _import(paths: list[Path], tmp_path: Path) -> tuple[ImportResult, dict[str, dict[str, Any]]]:
    """Import through the pipeline; the stored http rows by uid."""
    store = Store(tmp_path / "store")
    result = import_paths(paths, store)
    files = store.files("http")
    table = pa.concat_tables(pq.read_table(f) for f in files) if files else None
    rows = {} if table is None else {row["uid"]: row for row in table.to_pylist()}
    return result, rows


def _uid(path: Path, line: int) -> str:
    return "S" + hashlib.sha256(str(path).encode()).hexdigest()[:10] + f"-{line}"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_every_web_proxy_sample_imports_with_exact_row_counts(
    samples: Path, tmp_path: Path
) -> None:
    result, rows = _import([samples / "web-proxy"], tmp_path)
    assert result.errors == []
    assert result.problems.bad_records == 0
    assert [p.path.name for p in result.problems.skipped] == ["PROVENANCE.txt"]
    expected = {SQUID: ("squid", 100), METRON_SQUID: ("squid", 2), BLUECOAT: ("w3c", 3)}
    for name, (fmt, count) in expected.items():
        path = samples / name
        assert detect(path).format == fmt
        assert count == sum(1 for line in _lines(path) if line.strip())
        assert result.imported[path] == {"http": count}
    assert len(rows) == 105
    assert {r["proxy"] for r in rows.values()} == {"squid", "170.237.230.7", "140.120.192.231",
                                                  "163.137.230.236"}  # fmt: skip


def test_native_lines_field_by_field(samples: Path, tmp_path: Path) -> None:
    """Every row against its raw line: time elapsed client code/status bytes method URL ident
    hierarchy/peer type."""
    path = samples / SQUID
    _, rows = _import([path], tmp_path)
    for number, line in enumerate(_lines(path), start=1):
        time, elapsed, client, result, size, method, url, ident, hierarchy, mime = line.split()
        row = rows[_uid(path, number)]
        assert row["ts"] == datetime.fromtimestamp(0, UTC) + timedelta(
            seconds=int(time.split(".")[0]), milliseconds=int(time.split(".")[1])
        )
        assert row["duration_s"] == pytest.approx(int(elapsed) / 1000)
        assert row["orig_ip"] == client
        code, status = result.split("/")
        assert (row["proxy_action"], row["status_code"]) == (code, int(status))
        assert row["denied"] is (code == "TCP_DENIED")
        assert (row["response_bytes"], row["method"]) == (int(size), method)
        assert row["username"] == (None if ident == "-" else ident)
        peer = hierarchy.split("/")[1]
        assert row["server_ip"] == (None if peer == "-" else peer)
        assert row["resp_mime_types"] == (None if mime == "-" else [mime])
        assert row["proxy"] == "squid"
        assert row["resp_ip"] == row["host"]
        assert row["source_file"] == str(path)
        if method == "CONNECT":
            host, port, uri = *url.split(":"), url
        else:  # the sample's URLs are http://host[:port]/path[?]
            authority, target = url.removeprefix("http://").split("/", 1)
            host, _, port = authority.partition(":")
            port, uri = port or "80", "/" + target
        assert (row["host"], row["resp_port"], row["uri"]) == (host, int(port), uri)


def test_named_sample_lines(samples: Path, tmp_path: Path) -> None:
    path = samples / SQUID
    _, rows = _import([path], tmp_path)
    # line 1: 1157689312.049 5006 10.105.21.199 TCP_MISS/200 19763 CONNECT login.yahoo.com:443
    #         badeyek DIRECT/175.16.199.115 -
    connect = rows[_uid(path, 1)]
    assert connect["ts"] == datetime(2006, 9, 8, 4, 21, 52, 49000, tzinfo=UTC)
    assert (connect["method"], connect["host"], connect["resp_ip"]) == (
        "CONNECT",
        "login.yahoo.com",
        "login.yahoo.com",
    )
    assert (connect["uri"], connect["resp_port"], connect["server_ip"]) == (
        "login.yahoo.com:443",
        443,
        "175.16.199.115",
    )
    assert (connect["duration_s"], connect["response_bytes"]) == (5.006, 19763)
    assert connect["resp_mime_types"] is None
    # line 22: 10.105.47.218 TCP_DENIED/407 1661 GET http://hi5.com/ - NONE/- text/html
    denied = rows[_uid(path, 22)]
    assert (denied["orig_ip"], denied["proxy_action"], denied["status_code"]) == (
        "10.105.47.218",
        "TCP_DENIED",
        407,
    )
    assert denied["denied"] is True
    assert (denied["host"], denied["resp_port"], denied["uri"]) == ("hi5.com", 80, "/")
    assert (denied["username"], denied["server_ip"]) == (None, None)
    # lines 70-71: the dynamic-DNS host on port 5288 (PROVENANCE.txt), denied by proxy auth
    natrocket = [rows[_uid(path, n)] for n in (70, 71)]
    assert [r["uri"] for r in natrocket] == ["/iesocks?", "/return?"]
    for row in natrocket:
        assert (row["orig_ip"], row["host"], row["resp_ip"], row["resp_port"]) == (
            "10.105.37.65",
            "natrocket.kmip.net",
            "natrocket.kmip.net",
            5288,
        )
        assert (row["status_code"], row["denied"], row["method"]) == (407, True, "GET")
    # line 93: Squid logged the client itself as the upstream address
    assert rows[_uid(path, 93)]["server_ip"] == "10.105.21.199"


def test_metron_lines(samples: Path, tmp_path: Path) -> None:
    path = samples / METRON_SQUID
    _, rows = _import([path], tmp_path)
    first, second = rows[_uid(path, 1)], rows[_uid(path, 2)]
    assert first["ts"] == datetime(2016, 4, 25, 9, 26, 22, 642000, tzinfo=UTC)
    assert (first["host"], first["uri"], first["server_ip"]) == ("www.cnn.com", "/", "199.27.79.73")
    assert (second["host"], second["response_bytes"], second["duration_s"]) == (
        "www.nba.com",
        137183,
        0.159,
    )


COMMON = """\
192.168.0.10 - alice [08/Sep/2006:04:21:52 +0200] "GET http://www.Example.com/a/b?c=d HTTP/1.1" 200 1234 TCP_MISS:HIER_DIRECT
10.0.0.5 - - [08/Sep/2006:04:21:54 -0500] "GET http://natrocket.kmip.net:5288/iesocks? HTTP/1.0" 407 1728 TCP_DENIED:HIER_NONE
10.0.0.6 - - [08/Sep/2006:04:21:55 +0000] "GET http://[2001:db8::1]:8080?x=1 HTTP/1.1" 200 10
10.0.0.6 ident bob%5cdom [08/Sep/2006:04:21:56 +0000] "GET ftp://user:pw@ftp.example.org HTTP/1.1" 200 -
"""  # noqa: E501
COMBINED = """\
192.168.0.10 - - [08/Sep/2006:04:21:53 +0000] "CONNECT login.example.com:443 HTTP/1.1" 200 5000 "-" "Mozilla/5.0 (X11; \\"quoted\\")" TCP_TUNNEL:HIER_DIRECT
10.0.0.5 - carol [08/Sep/2006:04:21:54 +0000] "POST http://c2.example.net/gate.php HTTP/1.1" 200 88 "http://ref.example/" "python-requests/2.31" TCP_MISS:HIER_DIRECT
"""  # noqa: E501


def test_common_logformat(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text(COMMON)
    assert detect(path).format == "squid"
    _, rows = _import([path], tmp_path)
    first, denied, v6, ftp = (rows[_uid(path, n)] for n in (1, 2, 3, 4))
    assert first["ts"] == datetime(2006, 9, 8, 2, 21, 52, tzinfo=UTC)  # +0200 -> UTC
    assert (first["host"], first["resp_port"], first["uri"], first["version"]) == (
        "www.example.com",
        80,
        "/a/b?c=d",
        "1.1",
    )
    assert (first["username"], first["proxy_action"], first["denied"]) == (
        "alice",
        "TCP_MISS",
        False,
    )
    assert (first["status_code"], first["response_bytes"], first["duration_s"]) == (200, 1234, None)
    assert denied["ts"] == datetime(2006, 9, 8, 9, 21, 54, tzinfo=UTC)  # -0500
    assert (denied["host"], denied["resp_port"], denied["uri"], denied["denied"]) == (
        "natrocket.kmip.net",
        5288,
        "/iesocks?",
        True,
    )
    assert (v6["resp_ip"], v6["resp_port"], v6["uri"]) == ("2001:db8::1", 8080, "/?x=1")
    assert (v6["proxy_action"], v6["denied"]) == (None, None)  # no code:hierarchy written
    assert (ftp["host"], ftp["resp_port"], ftp["uri"]) == ("ftp.example.org", 21, "/")
    assert (ftp["username"], ftp["response_bytes"]) == ("bob\\dom", None)


def test_combined_logformat(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text(COMBINED)
    assert detect(path).format == "squid"
    _, rows = _import([path], tmp_path)
    tunnel, post = rows[_uid(path, 1)], rows[_uid(path, 2)]
    assert (tunnel["method"], tunnel["uri"], tunnel["resp_port"]) == (
        "CONNECT",
        "login.example.com:443",
        443,
    )
    assert (tunnel["referrer"], tunnel["user_agent"]) == (None, 'Mozilla/5.0 (X11; "quoted")')
    assert (post["referrer"], post["user_agent"]) == ("http://ref.example/", "python-requests/2.31")
    assert (post["host"], post["uri"], post["username"]) == ("c2.example.net", "/gate.php", "carol")


def test_bad_lines_are_reported_and_the_rest_is_stored(samples: Path, tmp_path: Path) -> None:
    lines = _lines(samples / SQUID)
    lines[49] = "this is not a squid line"
    lines[59] = lines[59][:40]  # cut short
    lines[79] = "1157689999.x " + lines[79].split(" ", 1)[1]  # unreadable time
    path = tmp_path / "corrupted.log"
    path.write_text("\n".join(lines) + "\n")
    result, rows = _import([path], tmp_path)
    assert result.errors == []
    assert [(p.path, p.line) for p in result.problems.records] == [
        (path, 50),
        (path, 60),
        (path, 80),
    ]
    assert result.imported[path] == {"http": 97}
    assert _uid(path, 51) in rows
    assert _uid(path, 50) not in rows


def test_gzip_and_a_renamed_file_are_read_by_content(samples: Path, tmp_path: Path) -> None:
    _, plain = _import([samples / SQUID], tmp_path / "plain")
    packed = tmp_path / "proxy-logs.bin"
    with gzip.open(packed, "wb") as out:
        out.write((samples / SQUID).read_bytes())
    renamed = tmp_path / "renamed.txt"
    shutil.copy(samples / METRON_SQUID, renamed)
    assert detect(packed).format == detect(renamed).format == "squid"
    result, rows = _import([packed, renamed], tmp_path / "other")
    assert result.imported == {packed: {"http": 100}, renamed: {"http": 2}}
    for line in range(1, 101):
        unpacked = rows[_uid(packed, line)]
        original = plain[_uid(samples / SQUID, line)]
        assert unpacked | {"uid": None, "source_file": None} == original | {
            "uid": None,
            "source_file": None,
        }


def test_uid_is_stable_and_names_the_line(samples: Path) -> None:
    path = samples / METRON_SQUID
    for _ in range(2):
        problems = Problems()
        [(table, batch)] = list(squid.read(path, problems))
        assert table == "http"
        assert batch.schema.equals(schema_of("http"))
        assert batch.column("uid").to_pylist() == [_uid(path, 1), _uid(path, 2)]


def test_other_readers_samples_are_not_claimed(samples: Path) -> None:
    """Squid claims only the Squid samples, and no other reader claims them."""
    for path in sorted(samples.rglob("*")):
        if not path.is_file() or path.name == "PROVENANCE.txt":
            continue
        head = head_of(path)
        is_squid = path in (samples / SQUID, samples / METRON_SQUID)
        assert squid.sniff(head) is is_squid, path
        if is_squid:
            assert [r.format for r in READERS if r.sniff(head)] == ["squid"]
