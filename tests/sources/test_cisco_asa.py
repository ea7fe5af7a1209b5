"""Cisco ASA reader: the Apache Metron sample through the pipeline (denies, Built and Teardown,
conn rows from teardowns), orientation by Built inbound/outbound, header variants, bad lines
and time zones."""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from homecall.pipeline import import_paths
from homecall.sources import DEFAULT_OPTIONS, Problems, ReadOptions, cisco_asa, detect
from homecall.store import Store

SAMPLE = "firewall-cisco-asa/apache-metron/asa_raw.log"
# The ids the reader claims: its deny/ACL table and the TCP/UDP/ICMP Built and Teardown messages
CLAIMED = set(cisco_asa.MESSAGES) | {"302013", "302014", "302015", "302016", "302020"}


def _read(
    path: Path, options: ReadOptions = DEFAULT_OPTIONS
) -> tuple[dict[str, list[dict[str, Any]]], Problems]:
    problems = Problems()
    tables: dict[str, list[dict[str, Any]]] = {"firewall": [], "conn": []}
    for table, batch in cisco_asa.read(path, problems, options):
        tables[table].extend(batch.to_pylist())
    return tables, problems


def _log(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "asa.log"
    path.write_text(text)
    mtime = datetime(2022, 12, 31, tzinfo=UTC).timestamp()  # the year of year-less stamps
    os.utime(path, (mtime, mtime))
    return path


def _stored(store: Store, table: str) -> list[dict[str, Any]]:
    return pa.concat_tables(pq.read_table(f) for f in store.files(table)).to_pylist()


def test_sample_imports_every_claimed_message_but_one(samples: Path, tmp_path: Path) -> None:
    path = samples / SAMPLE
    assert detect(path).format == "cisco-asa"
    ids = Counter(re.findall(r"%ASA-\d-(\d{6}):", path.read_text()))
    assert sum(ids.values()) == 128  # one message a line
    store = Store(tmp_path / "store")
    result = import_paths([path.parent], store)
    assert result.errors == []
    # line 93 is broken in the sample: "for DMZ-Inside:[10.22.8.10/57109 to ..."
    assert [(p.line, p.reason) for p in result.problems.records] == [
        (93, "ASA 302014 message not understood")
    ]
    claimed = sum(count for message_id, count in ids.items() if message_id in CLAIMED)
    teardowns = ids["302014"] + ids["302016"]
    assert result.imported[path] == {"firewall": claimed - 1, "conn": teardowns - 1}
    assert (claimed, teardowns) == (97, 50)
    conn = _stored(store, "conn")
    firewall = _stored(store, "firewall")
    torn_down = {row["uid"]: row for row in firewall if row["reason"].startswith("teardown")}
    assert {row["uid"] for row in conn} == set(torn_down)
    assert all(row["source_file"] == str(path) for row in conn + firewall)


def test_built_rows(samples: Path) -> None:
    tables, _ = _read(samples / SAMPLE)
    rows = {row["uid"]: row for row in tables["firewall"] if row["reason"] == "built"}
    # line 6: "<174>Jan  5 14:52:35 10.22.8.212 %ASA-6-302013: Built inbound TCP connection
    # 76245503 for outside:10.22.8.233/54209 (...) to inside:198.111.72.238/443 (...) (user.name)"
    inbound = rows["10.22.8.212-76245503"]
    assert inbound["ts"] == datetime(2026, 1, 5, 14, 52, 35, tzinfo=UTC)  # year from the mtime
    assert (inbound["orig_ip"], inbound["orig_port"], inbound["resp_ip"], inbound["resp_port"]) == (
        "10.22.8.233",
        54209,
        "198.111.72.238",
        443,
    )
    assert (inbound["direction"], inbound["in_interface"], inbound["out_interface"]) == (
        "in",
        "outside",
        "inside",
    )
    assert (inbound["action"], inbound["event_id"], inbound["device"], inbound["proto"]) == (
        "allow",
        "%ASA-6-302013",
        "10.22.8.212",
        "tcp",
    )
    # line 89: "Built outbound TCP connection 17605397 for outside:69.111.72.0/80 (69.111.72.0/80)
    # to inside:10.22.8.102/55659 (206.111.72.41/40627)": the inside (second) side opened it
    outbound = rows["10.22.8.12-17605397"]
    assert (outbound["orig_ip"], outbound["orig_port"], outbound["resp_ip"]) == (
        "10.22.8.102",
        55659,
        "69.111.72.0",
    )
    assert (outbound["direction"], outbound["in_interface"], outbound["out_interface"]) == (
        "out",
        "inside",
        "outside",
    )
    # line 13: a UDP Built with the identity-firewall user after the mapped address
    assert rows["10.22.8.216-212806050"]["proto"] == "udp"
    assert rows["10.22.8.216-212806050"]["orig_ip"] == "10.22.8.62"


def test_teardowns_become_conn_rows(samples: Path) -> None:
    tables, _ = _read(samples / SAMPLE)
    conn = {row["uid"]: row for row in tables["conn"]}
    firewall = {row["uid"]: row for row in tables["firewall"] if row["uid"] in conn}
    # line 10: "<166>Jan  5 09:52:35 10.22.8.12 %ASA-6-302014: Teardown TCP connection 17604987
    # for outside:209.111.72.151/443 to inside:10.22.8.188/64306 duration 0:00:31 bytes 10128
    # TCP FINs": no Built in the file, so the higher port (the inside client) opened it
    row = conn["10.22.8.12-17604987"]
    assert row["ts"] == datetime(2026, 1, 5, 9, 52, 4, tzinfo=UTC)  # 09:52:35 minus 31 s
    assert (row["orig_ip"], row["orig_port"], row["resp_ip"], row["resp_port"]) == (
        "10.22.8.188",
        64306,
        "209.111.72.151",
        443,
    )
    assert (row["proto"], row["duration_s"], row["orig_bytes"], row["resp_bytes"]) == (
        "tcp",
        31.0,
        None,
        None,
    )
    logged = firewall["10.22.8.12-17604987"]
    assert logged["ts"] == datetime(2026, 1, 5, 9, 52, 35, tzinfo=UTC)  # when it was logged
    assert (logged["bytes"], logged["duration_s"], logged["reason"]) == (
        10128,
        31.0,
        "teardown: TCP FINs",
    )
    assert (logged["action"], logged["direction"], logged["in_interface"]) == (
        "allow",
        None,
        "inside",
    )
    # line 4: "... 488167725 for Outside_VPN:147.111.72.16/26436 to DMZ-Inside:10.22.8.53/443":
    # an outside client of a DMZ server
    assert (
        conn["10.22.8.201-488167725"]["orig_ip"],
        conn["10.22.8.201-488167725"]["resp_port"],
    ) == ("147.111.72.16", 443)
    # line 37: UDP, "(LOCAL\user.name)" after the port and "(user.name)" after the bytes
    udp = firewall["10.22.8.216-212806055"]
    assert (udp["reason"], udp["bytes"], udp["orig_ip"], udp["resp_port"]) == (
        "teardown",
        349,
        "10.22.8.62",
        53,
    )
    assert conn["10.22.8.201-488031413"]["duration_s"] == 301.0  # "duration 0:05:01"


def test_denies(samples: Path) -> None:
    tables, _ = _read(samples / SAMPLE)
    denies = [row for row in tables["firewall"] if row["action"] == "deny"]
    by_id = Counter(row["event_id"][-6:] for row in denies)
    assert by_id == {"106015": 6, "106023": 3, "710005": 2, "110002": 1, "313004": 1,
                     "106010": 1, "500003": 1, "313001": 1, "106001": 1, "106014": 1}  # fmt: skip
    rows = {row["event_id"][-6:]: row for row in denies}
    # line 126: '<164>Aug 05 2016 01:02:25: %ASA-4-106023: Deny udp src Inside:10.230.4.88/42350
    # dst Outside:192.168.2.53/53 by access-group "Inside_access_in" [0x962df600, 0x0]'
    acl = next(row for row in denies if row["orig_port"] == 42350)
    assert acl["ts"] == datetime(2016, 8, 5, 1, 2, 25, tzinfo=UTC)  # the ASA's stamp has a year
    assert (acl["rule"], acl["proto"], acl["resp_ip"], acl["resp_port"]) == (
        "Inside_access_in",
        "udp",
        "192.168.2.53",
        53,
    )
    assert (acl["in_interface"], acl["out_interface"], acl["device"]) == ("Inside", "Outside", None)
    # line 9: "Deny TCP (no connection) from 186.111.72.11/80 to 204.111.72.226/45019 flags SYN
    # ACK  on interface Outside_VPN"
    no_conn = denies[0]
    assert (no_conn["tcp_flags"], no_conn["in_interface"], no_conn["reason"]) == (
        "SYN ACK",
        "Outside_VPN",
        "no connection",
    )
    assert (no_conn["orig_ip"], no_conn["orig_port"], no_conn["resp_port"]) == (
        "186.111.72.11",
        80,
        45019,
    )
    # line 108: "Deny inbound protocol 47 src Outside:14.169.120.66 dst Outside:172.18.105.105"
    gre = rows["106010"]
    assert (gre["proto"], gre["orig_port"], gre["direction"]) == ("gre", None, "in")
    # line 125: "Deny inbound icmp src Inside:10.230.4.87 dst Inside:10.22.75.251 (type 8, code 0)"
    assert (rows["106014"]["proto"], rows["106014"]["resp_ip"]) == ("icmp", "10.22.75.251")
    # line 15: "UDP request discarded from 10.22.8.223/49192 to outside:224.111.72.252/5355"
    assert (rows["710005"]["resp_ip"], rows["710005"]["resp_port"]) == ("224.111.72.252", 5355)
    assert rows["710005"]["in_interface"] == "outside"
    # line 112: "Denied ICMP type=3, code=3 from 198.27.69.147 on interface Outside"
    assert (rows["313001"]["orig_ip"], rows["313001"]["resp_ip"]) == ("198.27.69.147", None)
    # line 124: "Inbound TCP connection denied from 10.47.32.45/60641 to 10.254.8.193/5060 flags
    # SYN  on interface Inside"
    assert (rows["106001"]["direction"], rows["106001"]["tcp_flags"]) == ("in", "SYN")
    assert rows["110002"]["reason"] == "no egress interface"


def test_icmp_sessions(samples: Path) -> None:
    tables, _ = _read(samples / SAMPLE)
    icmp = [row for row in tables["firewall"] if row["event_id"] == "%ASA-6-302020"]
    assert len(icmp) == 6
    # lines 67 and 79: the same addresses, inbound (opened by faddr) then outbound (by laddr)
    inbound, outbound = (row for row in icmp if row["device"] == "10.22.8.212")
    assert (inbound["orig_ip"], inbound["resp_ip"], inbound["direction"]) == (
        "10.22.8.96",
        "10.22.8.30",
        "in",
    )
    assert (outbound["orig_ip"], outbound["resp_ip"], outbound["direction"]) == (
        "10.22.8.30",
        "10.22.8.96",
        "out",
    )


def test_a_built_line_orients_its_teardown(tmp_path: Path) -> None:
    """Built says who opened the connection; without it the ports decide (here wrongly)."""
    built = (
        "<166>Jul  1 10:00:00 asa1 %ASA-6-302013: Built outbound TCP connection 9 for"
        " outside:203.0.113.5/50000 (203.0.113.5/50000) to inside:10.1.1.2/40000"
        " (198.51.100.1/40000)\n"
    )
    teardown = (
        "<166>Jul  1 10:05:00 asa1 %ASA-6-302014: Teardown TCP connection 9 for"
        " outside:203.0.113.5/50000 to inside:10.1.1.2/40000 duration 0:05:00 bytes 1234"
        " TCP FINs\n"
    )
    paired, _ = _read(_log(tmp_path, built + teardown))
    alone, _ = _read(_log(tmp_path, teardown))
    (conn,) = paired["conn"]
    assert (conn["uid"], conn["orig_ip"], conn["orig_port"], conn["resp_ip"]) == (
        "asa1-9",
        "10.1.1.2",
        40000,
        "203.0.113.5",
    )
    assert conn["ts"] == datetime(2022, 7, 1, 10, 0, tzinfo=UTC)
    assert [row["uid"] for row in paired["firewall"]] == ["asa1-9", "asa1-9"]
    assert paired["firewall"][1]["direction"] == "out"  # from its Built line
    assert alone["conn"][0]["orig_ip"] == "203.0.113.5"  # the higher port
    assert alone["firewall"][0]["direction"] is None


def test_connection_ids_of_two_devices_differ(tmp_path: Path) -> None:
    line = (
        "<166>Jul  1 10:00:00 {} %ASA-6-302015: Built inbound UDP connection 7 for"
        " outside:192.0.2.1/53 (192.0.2.1/53) to inside:10.0.0.1/5353 (10.0.0.1/5353)\n"
    )
    tables, _ = _read(_log(tmp_path, line.format("asa-a") + line.format("asa-b")))
    assert [row["uid"] for row in tables["firewall"]] == ["asa-a-7", "asa-b-7"]


def test_header_variants(tmp_path: Path) -> None:
    path = _log(
        tmp_path,
        # ASA 9.10 "logging timestamp rfc5424", device id "asa"
        "<166>2018-06-27T12:17:46Z asa : %ASA-6-110002: Failed to locate egress interface for"
        " UDP from inside:10.0.0.5/5000 to 192.0.2.9/53\n"
        # a relay's header, then the device's own stamp and id (Broadcom KB 152093's example,
        # which names 192.168.10.5 the source)
        "Jan 14 16:10:24 10.1.2.13 Jan 14 2010 12:29:43 SymCiscoApp : %PIX-6-302015: Built"
        " outbound UDP connection 414128851 for outside:168.15.3.6/53 (168.15.3.6/53) to"
        " inside:192.168.10.5/53 (192.168.10.5/171)\n"
        # Firepower Threat Defense, no header before the tag but the stamp
        "Jul  1 10:00:00 %FTD-4-106023: Deny tcp src inside:10.0.0.5/5000 dst outside:192.0.2.9/443"
        ' by access-group "CSM_FW_ACL_" [0x97aa021a, 0x0]\n',
    )
    tables, problems = _read(path, ReadOptions(timezone="Europe/Berlin"))
    assert problems.bad_records == 0
    rfc5424, pix, ftd = tables["firewall"]
    assert (rfc5424["ts"], rfc5424["device"]) == (
        datetime(2018, 6, 27, 12, 17, 46, tzinfo=UTC),
        "asa",
    )
    assert (pix["ts"], pix["device"]) == (
        datetime(2010, 1, 14, 11, 29, 43, tzinfo=UTC),
        "SymCiscoApp",
    )
    assert (pix["orig_ip"], pix["resp_ip"], pix["uid"]) == (
        "192.168.10.5",
        "168.15.3.6",
        "SymCiscoApp-414128851",
    )
    assert (ftd["ts"], ftd["device"], ftd["event_id"]) == (
        datetime(2022, 7, 1, 8, 0, tzinfo=UTC),
        None,
        "%FTD-4-106023",
    )


def test_acl_verdicts_of_106100(tmp_path: Path) -> None:
    head = "<166>Jul  1 10:00:00 fw %ASA-6-106100: access-list outside_in"
    path = _log(
        tmp_path,
        f"{head} permitted tcp outside/192.0.2.1(51000) -> inside/10.0.0.1(443) hit-cnt 1 first"
        " hit [0x5d1a0b4c, 0x0]\n"
        f"{head} denied udp outside/192.0.2.1(53)(LOCAL\\bob) -> inside/10.0.0.1(5353) hit-cnt 4"
        " 300-second interval [0x1, 0x0]\n"
        f"{head} est-allowed icmp outside/192.0.2.1(0) -> inside/10.0.0.1(8) hit-cnt 1 first hit"
        " [0x1, 0x0]\n",
    )
    tables, problems = _read(path)
    assert problems.bad_records == 0
    assert [(r["action"], r["reason"], r["rule"]) for r in tables["firewall"]] == [
        ("allow", "permitted", "outside_in"),
        ("deny", "denied", "outside_in"),
        ("allow", "est-allowed", "outside_in"),
    ]
    first, second, icmp = tables["firewall"]
    assert (first["orig_port"], first["resp_port"], first["out_interface"]) == (
        51000,
        443,
        "inside",
    )
    assert (second["proto"], second["orig_ip"]) == ("udp", "192.0.2.1")
    assert (icmp["orig_port"], icmp["resp_port"]) == (None, None)  # ICMP type and code


def test_bad_lines_are_reported_and_other_messages_skipped(tmp_path: Path) -> None:
    good = (
        "<164>Jul  1 10:00:00 fw %ASA-4-106023: Deny tcp src outside:192.0.2.1/5000 dst"
        ' inside:10.0.0.1/22 by access-group "outside_in" [0x0, 0x0]\n'
    )
    lines = [
        good,
        "<166>Jul  1 10:00:01 fw %ASA-6-305011: Built dynamic TCP translation from"
        " inside:10.0.0.1/5 to outside:192.0.2.2/6\n",
        "<166>Jul  1 10:00:02 fw %ASA-6-302013: Built sideways TCP connection 1 for a:b to c:d\n",
        "%ASA-4-106023: Deny tcp src outside:192.0.2.1/5000 dst inside:10.0.0.1/22 by"
        ' access-group "outside_in" [0x0, 0x0]\n',
        "not a syslog line at all\n",
        good.replace("/22 by", "/99999 by"),
        "<13>Jul  1 10:00:03 otherhost sshd[1]: session opened\n",
        "\n",
        good.replace("10:00:00", "10:00:09"),
    ]
    path = _log(tmp_path, "".join(lines))
    tables, problems = _read(path)
    assert [row["ts"] for row in tables["firewall"]] == [
        datetime(2022, 7, 1, 10, 0, tzinfo=UTC),
        datetime(2022, 7, 1, 10, 0, 9, tzinfo=UTC),
    ]
    assert [(p.line, p.reason) for p in problems.records] == [
        (3, "ASA 302013 message not understood"),
        (4, "ASA message without a timestamp"),
        (5, "not a syslog line"),
        (6, "bad port '99999'"),
    ]


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", datetime(2016, 8, 6, 20, 39, 42, tzinfo=UTC)),
        ("Europe/Berlin", datetime(2016, 8, 6, 18, 39, 42, tzinfo=UTC)),
        ("America/New_York", datetime(2016, 8, 7, 0, 39, 42, tzinfo=UTC)),
    ],
)
def test_asa_stamps_follow_the_configured_zone(
    samples: Path, zone: str, expected: datetime
) -> None:
    tables, _ = _read(samples / SAMPLE, ReadOptions(timezone=zone))
    # line 101: "<166>Aug 06 2016 20:39:42: %ASA-6-110002: Failed to locate egress interface ..."
    (egress,) = [row for row in tables["firewall"] if row["event_id"] == "%ASA-6-110002"]
    assert egress["ts"] == expected
