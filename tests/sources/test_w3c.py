"""W3C extended log reader: the headerless Blue Coat sample field by field against its raw lines,
#Fields: directives (changing mid-file), IIS, bad lines, gzip and detection by content."""

from __future__ import annotations

import csv
import gzip
import hashlib
import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from homecall.pipeline import ImportResult, import_paths
from homecall.sources import READERS, detect, head_of, w3c
from homecall.store import Store

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
    return "W" + hashlib.sha256(str(path).encode()).hexdigest()[:10] + f"-{line}"


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def test_headerless_bluecoat_lines_field_by_field(samples: Path, tmp_path: Path) -> None:
    """ProxySG `main` with Metron's trailing cs-auth-type: 26 values a line, checked against
    the raw values split by Python's csv module."""
    path = samples / BLUECOAT
    assert detect(path).format == "w3c"
    result, rows = _import([path], tmp_path)
    assert result.problems.bad_records == 0
    assert result.imported[path] == {"http": 3}
    fields = w3c.LAYOUTS["main+cs-auth-type"]
    raw_lines = path.read_text().splitlines()
    for number, values in enumerate(csv.reader(raw_lines, delimiter=" "), start=1):
        assert len(values) == len(fields) == 26
        raw = dict(zip(fields, values, strict=True))
        row = rows[_uid(path, number)]
        assert row["ts"] == datetime.fromisoformat(f"{raw['date']}T{raw['time']}+00:00")
        assert row["duration_s"] == int(raw["time-taken"]) / 1000
        assert (row["orig_ip"], row["status_code"], row["proxy_action"]) == (
            raw["c-ip"],
            int(raw["sc-status"]),
            raw["s-action"],
        )
        assert (row["response_bytes"], row["request_bytes"]) == (
            int(raw["sc-bytes"]),
            int(raw["cs-bytes"]),
        )
        assert (row["method"], row["host"], row["resp_ip"], row["resp_port"]) == (
            raw["cs-method"],
            raw["cs-host"],
            raw["cs-host"],
            int(raw["cs-uri-port"]),
        )
        if raw["cs-method"] == "CONNECT":
            assert row["uri"] == f"{raw['cs-host']}:{raw['cs-uri-port']}"
        else:  # ProxySG writes the query with its '?'
            query = "" if raw["cs-uri-query"] == "-" else raw["cs-uri-query"]
            assert row["uri"] == raw["cs-uri-path"] + query
        for column, field in [("username", "cs-username"), ("referrer", "cs(Referer)")]:
            assert row[column] == (None if raw[field] == "-" else raw[field])
        assert row["user_agent"] == raw["cs(User-Agent)"]
        assert row["categories"] == raw["cs-categories"].split(";")
        assert row["denied"] is (raw["sc-filter-result"] == "DENIED")
        mime = raw["rs(Content-Type)"]
        assert row["resp_mime_types"] == (None if mime == "-" else [unquote(mime).split(";")[0]])
        supplier = raw["s-supplier-name"]
        assert row["server_ip"] == (supplier if _is_address(supplier) else None)
        assert row["proxy"] == raw["s-ip"]


def test_named_bluecoat_lines(samples: Path, tmp_path: Path) -> None:
    path = samples / BLUECOAT
    _, rows = _import([path], tmp_path)
    music, chat, flash = (rows[_uid(path, n)] for n in (1, 2, 3))
    assert music["categories"] == ["Entertainment", "Audio/Video Clips"]
    assert music["user_agent"] == (
        "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/49.200.263.110 Safari/537.36"
    )
    assert (music["uri"], music["resp_port"], music["resp_mime_types"]) == (
        "/stats.php?ev=site:player:progressing:300&songid=RT6VpBOP&_t=1463411845618",
        80,
        ["text/html"],
    )
    assert (chat["method"], chat["uri"], chat["resp_port"]) == (
        "CONNECT",
        "2-edge-chat.facebook.com:443",
        443,
    )
    assert (chat["status_code"], chat["proxy_action"], chat["denied"]) == (407, "TCP_DENIED", True)
    assert chat["categories"] == [
        "Kiosk_Destinations",
        "General_Exception_List",
        "DestinationBrandMedia",
        "Chat (IM)/SMS",
        "Social Networking",
    ]
    assert (flash["host"], flash["resp_ip"], flash["user_agent"]) == (
        "165.202.134.178",
        "165.202.134.178",
        "Shockwave Flash",
    )
    assert (flash["server_ip"], flash["username"], flash["proxy"]) == (
        "125.182.184.18",
        "xyz789",
        "163.137.230.236",
    )


SGOS = """\
#Software: SGOS 6.7.4.1
#Version: 1.0
#Start-Date: 2024-03-01 00:00:00
#Date: 2024-03-01 00:00:00
#Fields: date time time-taken c-ip cs-username cs-auth-group x-exception-id sc-filter-result cs-categories cs(Referer) sc-status s-action cs-method rs(Content-Type) cs-uri-scheme cs-host cs-uri-port cs-uri-path cs-uri-query cs-uri-extension cs(User-Agent) s-ip sc-bytes cs-bytes x-virus-id
#Remark: 2610140037 "SG-42" "82.137.200.42" "main"
2024-03-01 08:00:01 15 10.0.0.5 alice%40corp CORP\\Domain%20Users - OBSERVED "Technology/Internet;Web%20Ads/Analytics" -  200 TCP_NC_MISS GET text/html;%20charset=UTF-8 http www.Example.com 80 /index.html ?a=1&b=2 html "Mozilla/5.0 (Windows NT 10.0)" 192.168.1.1 5120 410 -
2024-03-01 08:00:02 1 10.0.0.6 - - policy_denied DENIED "Malicious Sources/Malnets" - 403 TCP_DENIED CONNECT - tcp evil.example 8443 / - - "python-requests/2.31" 192.168.1.1 250 180 -
2024-03-01 08:00:03 1 10.0.0.6 - - "cut short

#Fields: date time c-ip cs-method cs-uri cs-version sc-status s-supplier-ip
2024-03-01 09:00:00 10.0.0.7 GET http://[2001:DB8::7]:8080/p?q=1 HTTP/1.1 200 2001:db8::7
"""  # noqa: E501


def test_fields_header_changing_mid_file(tmp_path: Path) -> None:
    path = tmp_path / "SG_main__20240301.log"
    path.write_text(SGOS)
    assert detect(path).format == "w3c"
    result, rows = _import([path], tmp_path)
    assert [(p.path, p.line, p.reason) for p in result.problems.records] == [
        (path, 9, "has 7 values where #Fields: names 25")
    ]
    assert result.imported[path] == {"http": 3}
    page, tunnel, v6 = rows[_uid(path, 7)], rows[_uid(path, 8)], rows[_uid(path, 12)]
    assert page["ts"] == datetime(2024, 3, 1, 8, 0, 1, tzinfo=UTC)  # W3C times are UTC
    assert (page["host"], page["resp_port"], page["uri"]) == ("www.example.com", 80,
                                                              "/index.html?a=1&b=2")  # fmt: skip
    assert (page["username"], page["categories"]) == (
        "alice@corp",
        ["Technology/Internet", "Web Ads/Analytics"],
    )
    assert (page["status_code"], page["referrer"], page["resp_mime_types"]) == (
        200,
        None,
        ["text/html"],
    )
    assert (page["proxy"], page["denied"], page["user_agent"]) == (
        "192.168.1.1",
        False,
        "Mozilla/5.0 (Windows NT 10.0)",
    )
    assert (tunnel["uri"], tunnel["resp_port"], tunnel["denied"]) == (
        "evil.example:8443",
        8443,
        True,
    )
    assert tunnel["user_agent"] == "python-requests/2.31"
    # the second #Fields: applies from line 12: a full URI, no s-ip
    assert (v6["host"], v6["resp_ip"], v6["resp_port"], v6["uri"]) == (
        "2001:db8::7",
        "2001:db8::7",
        8080,
        "/p?q=1",
    )
    assert (v6["version"], v6["server_ip"], v6["proxy"], v6["denied"]) == (
        "1.1",
        "2001:db8::7",
        "w3c",
        None,
    )


IIS = """\
#Software: Microsoft Internet Information Services 10.0
#Version: 1.0
#Date: 2024-03-01 00:00:00
#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken
2024-03-01 10:00:00 10.1.1.10 POST /owa/auth.owa cmd=whoami 443 - 203.0.113.9 Mozilla/5.0+(Windows+NT+10.0) - 200 0 0 31
"""  # noqa: E501


def test_iis_log_is_a_web_servers_view(tmp_path: Path) -> None:
    path = tmp_path / "u_ex240301.log"
    path.write_text("\ufeff" + IIS, encoding="utf-8")  # IIS starts its files with a BOM
    assert detect(path).format == "w3c"
    result, rows = _import([path], tmp_path)
    assert result.problems.bad_records == 0
    [row] = rows.values()
    assert (row["orig_ip"], row["resp_ip"], row["resp_port"]) == ("203.0.113.9", "10.1.1.10", 443)
    assert (row["method"], row["uri"], row["host"]) == ("POST", "/owa/auth.owa?cmd=whoami", None)
    assert (row["proxy"], row["denied"], row["duration_s"]) == (None, None, 0.031)


def test_bad_lines_are_reported_and_the_rest_is_stored(samples: Path, tmp_path: Path) -> None:
    lines = (samples / BLUECOAT).read_text().splitlines()
    lines.insert(1, "2016-05-16 15:17:26 this line fits no ProxySG layout")
    lines.append(lines[0].replace("2016-05-16", "2016-13-45"))  # fits, but no such date
    path = tmp_path / "corrupted.log"
    path.write_text("\n".join(lines))
    result, rows = _import([path], tmp_path)
    assert result.errors == []
    assert [(p.path, p.line, p.reason) for p in result.problems.records] == [
        (path, 2, "no #Fields: header, and not a known ProxySG layout"),
        (path, 5, "unreadable date or time"),
    ]
    assert sorted(rows) == sorted(_uid(path, n) for n in (1, 3, 4))


def test_gzip_and_a_renamed_file_are_read_by_content(samples: Path, tmp_path: Path) -> None:
    packed = tmp_path / "bluecoat.dat"
    with gzip.open(packed, "wb") as out:
        out.write((samples / BLUECOAT).read_bytes())
    header = tmp_path / "noextension"
    header.write_text(SGOS)
    assert detect(packed).format == detect(header).format == "w3c"
    result, rows = _import([packed, header], tmp_path)
    assert result.imported == {packed: {"http": 3}, header: {"http": 3}}
    assert rows[_uid(packed, 2)]["uri"] == "2-edge-chat.facebook.com:443"


def test_other_readers_samples_are_not_claimed(samples: Path) -> None:
    """W3C claims only the Blue Coat sample, and no other reader claims it."""
    for path in sorted(samples.rglob("*")):
        if not path.is_file() or path.name == "PROVENANCE.txt":
            continue
        head = head_of(path)
        is_w3c = path == samples / BLUECOAT
        assert w3c.sniff(head) is is_w3c, path
        if is_w3c:
            assert [r.format for r in READERS if r.sniff(head)] == ["w3c"]
