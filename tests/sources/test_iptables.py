"""iptables/netfilter reader: the crowdsec-hub samples through the pipeline (kernel syslog and
Proxmox lines), the prefix -> action rule, bad lines, time zones, and detection by content of
all three firewall formats."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from homecall.pipeline import ImportResult, import_paths
from homecall.sources import (
    DEFAULT_OPTIONS,
    READERS,
    Problems,
    ReadOptions,
    detect,
    head_of,
    iptables,
)
from homecall.sources.firewall_logs import action_of
from homecall.store import Store

SAMPLES = "firewall-iptables/crowdsec-hub"
FIREWALL_SAMPLES = {
    "firewall-iptables/crowdsec-hub/iptables-logs.log": "iptables",
    "firewall-iptables/crowdsec-hub/iptables-scan-multi-port.log": "iptables",
    "firewall-iptables/crowdsec-hub/proxmox-iptables.log": "iptables",
    "firewall-pfsense/crowdsec-hub/pf-logs.log": "pfsense",
    "firewall-pfsense/crowdsec-hub/pf-scan-multi-port.log": "pfsense",
    "firewall-pfsense/crowdsec-hub/pfsense-rfc5424-filterlog.log": "pfsense",
    "firewall-cisco-asa/apache-metron/asa_raw.log": "cisco-asa",
}
KERNEL = (
    "Jun  8 14:34:33 fw kernel: [5002.088484] [UFW BLOCK] IN=eth0 OUT= MAC=00:08:a2:0c:1f:12"
    " SRC=195.54.160.107 DST=51.15.166.67 LEN=40 TOS=0x00 PREC=0x00 TTL=245 ID=37308"
    " PROTO=TCP SPT=8080 DPT=8123 WINDOW=1024 RES=0x00 SYN URGP=0"
)


def _import(paths: list[Path], tmp_path: Path) -> tuple[ImportResult, list[dict[str, Any]]]:
    store = Store(tmp_path / "store")
    result = import_paths(paths, store)
    files = store.files("firewall")
    table = pa.concat_tables(pq.read_table(f) for f in files) if files else None
    return result, [] if table is None else table.to_pylist()


def _read(
    path: Path, options: ReadOptions = DEFAULT_OPTIONS
) -> tuple[list[dict[str, Any]], Problems]:
    problems = Problems()
    rows = [row for _, batch in iptables.read(path, problems, options) for row in batch.to_pylist()]
    return rows, problems


def _log(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kern.log"
    path.write_text(text)
    mtime = datetime(2022, 12, 31, tzinfo=UTC).timestamp()  # the year of year-less stamps
    os.utime(path, (mtime, mtime))
    return path


def _fields(line: str) -> dict[str, str]:
    """KEY=value tokens of a raw line, the first of a repeated key (independent of the reader)."""
    fields: dict[str, str] = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep and key.isupper():
            fields.setdefault(key, value)
    return fields


def test_samples_import_with_exact_counts_and_one_reported_line(
    samples: Path, tmp_path: Path
) -> None:
    folder = samples / SAMPLES
    result, rows = _import([folder], tmp_path)
    assert result.errors == []
    counts = {path.name: tables for path, tables in result.imported.items()}
    # iptables-logs.log: 4 lines, the third has no IN= (crowdsec's deliberately broken "XX=")
    assert counts == {
        "iptables-logs.log": {"firewall": 3},
        "iptables-scan-multi-port.log": {"firewall": 49},
        "proxmox-iptables.log": {"firewall": 10},
    }
    assert [(p.path.name, p.line, p.reason) for p in result.problems.records] == [
        ("iptables-logs.log", 3, "netfilter line without an IN= field")
    ]
    assert len(rows) == 62
    assert {row["source_file"] for row in rows} == {str(p) for p in folder.iterdir()}


def test_kernel_lines_field_by_field(samples: Path) -> None:
    """Every row of the scan sample against the KEY=value tokens of its raw line."""
    path = samples / SAMPLES / "iptables-scan-multi-port.log"
    rows, problems = _read(path)
    lines = path.read_text().splitlines()
    assert problems.bad_records == 0
    assert len(rows) == len(lines) == 49
    for row, line in zip(rows, lines, strict=True):
        fields = _fields(line)
        assert (row["orig_ip"], row["resp_ip"]) == (fields["SRC"], fields["DST"])
        assert (row["orig_port"], row["resp_port"]) == (int(fields["SPT"]), int(fields["DPT"]))
        assert (row["packet_length"], row["ttl"]) == (int(fields["LEN"]), int(fields["TTL"]))
        assert row["proto"] == fields["PROTO"].lower() == "tcp"
        assert (row["in_interface"], row["out_interface"], row["direction"]) == (
            fields["IN"],
            None,
            "in",
        )
        assert row["device"] == line.split()[3]
        assert row["tcp_flags"] == ("SYN" if "SYN" in line.split() else None)
        assert row["uid"] is None


def test_named_values_of_the_kernel_samples(samples: Path) -> None:
    rows, _ = _read(samples / SAMPLES / "iptables-logs.log")
    first, dotted, dropped = rows
    # line 1: no --log-prefix, so the verdict is unknown
    assert (first["action"], first["reason"], first["tcp_flags"]) == (None, None, "SYN")
    # line 2: "IN=enp.1s0" (crowdsec calls it malformed, but VLAN names such as vmbr0.94 have dots)
    assert dotted["in_interface"] == "enp.1s0"
    # line 4: "IPTABLES-DROP: ... PROTO=UDP SPT=49007 DPT=53 LEN=56": the IP header's LEN=76 wins
    assert dropped["ts"] == datetime(2026, 9, 27, 20, 56, 38, tzinfo=UTC)  # year from the mtime
    assert (dropped["action"], dropped["reason"], dropped["device"]) == (
        "deny",
        "IPTABLES-DROP",
        "ubuntu-focal",
    )
    assert (dropped["proto"], dropped["orig_port"], dropped["resp_port"]) == ("udp", 49007, 53)
    assert (dropped["packet_length"], dropped["ttl"], dropped["tcp_flags"]) == (76, 64, None)


def test_ufw_prefixes_of_the_scan_sample(samples: Path) -> None:
    rows, _ = _read(samples / SAMPLES / "iptables-scan-multi-port.log")
    by_reason: dict[str | None, set[str | None]] = {}
    for row in rows:
        by_reason.setdefault(row["reason"], set()).add(row["action"])
    assert by_reason == {None: {None}, "[UFW BLOCK]": {"deny"}, "[UFW AUDIT]": {None}}


def test_proxmox_lines(samples: Path) -> None:
    rows, problems = _read(samples / SAMPLES / "proxmox-iptables.log")
    assert problems.bad_records == 0
    policy, accept = rows[0], rows[1]
    # "0 3 PVEFW-HOST-IN 20/Jun/2022:13:09:14 +0200 policy DROP: IN=vmbr0.94 ... PROTO=UDP"
    assert policy["ts"] == datetime(2022, 6, 20, 11, 9, 14, tzinfo=UTC)
    assert (policy["action"], policy["reason"], policy["rule"]) == (
        "deny",
        "policy DROP",
        "PVEFW-HOST-IN",
    )
    assert (policy["proto"], policy["resp_port"], policy["device"]) == ("udp", 3784, None)
    assert (accept["action"], accept["reason"], accept["tcp_flags"]) == ("allow", "ACCEPT", "SYN")
    # bridged: PHYSIN/PHYSOUT name the VM's ports
    assert (rows[3]["in_interface"], rows[3]["out_interface"]) == ("fwln101i0", "tap101i0")
    assert (rows[3]["action"], rows[3]["direction"]) == ("deny", "in")  # REJECT on tap101i0-IN
    # "PVEFW-reject: ... SRC=2a0a:1580::a ... HOPLIMIT=64": IPv6, TTL from the hop limit
    assert (rows[5]["orig_ip"], rows[5]["ttl"], rows[5]["action"]) == ("2a0a:1580::a", 64, "deny")
    # "0 1 PVEFW-HOST-OUT ... REJECT: OUT=vmbr0.94 SRC=..": no IN= at all
    assert (rows[7]["direction"], rows[7]["in_interface"], rows[7]["out_interface"]) == (
        "out",
        None,
        "vmbr0.94",
    )
    # "0 5 GROUP-security1-IN ... IN=fwbr101i0": logged without a prefix
    assert (rows[8]["rule"], rows[8]["reason"], rows[8]["action"]) == (
        "GROUP-security1-IN",
        None,
        None,
    )
    assert [row["action"] for row in rows].count("deny") == 7


@pytest.mark.parametrize(
    ("prefix", "action"),
    [
        ("[UFW BLOCK]", "deny"),
        ("[UFW LIMIT BLOCK]", "deny"),
        ("[UFW ALLOW]", "allow"),
        ("[UFW AUDIT]", None),
        ("IPTABLES-DROP:", "deny"),
        ("policy DROP", "deny"),
        ("PVEFW-reject", "deny"),
        ("filter_IN_public_REJECT", "deny"),
        ("Shorewall:net2fw:DROP:", "deny"),
        ("SFW2-INext-ACC-TCP", "allow"),
        ("ACCEPT", "allow"),
        ("iptables denied:", "deny"),
        ("INVALID", None),
        ("ACCEPT-then-DROP", None),
        ("", None),
        (None, None),
    ],
)
def test_action_of_prefix(prefix: str | None, action: str | None) -> None:
    assert action_of(prefix) == action


def test_bad_lines_are_reported_and_the_rest_is_read(tmp_path: Path) -> None:
    path = _log(
        tmp_path,
        f"{KERNEL}\n"
        "Jun  8 14:34:34 fw sshd[12]: Accepted publickey for root from 10.0.0.1 port 22\n"
        "Jun  8 14:34:35 fw kernel: [5003.1] OUT=eth0 SRC=10.0.0.1 DST=10.0.0.2 LEN=40 PROTO=TCP\n"
        "garbage without a header\n"
        "[ 5004.000001] IN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 LEN=40 PROTO=UDP SPT=1 DPT=2\n"
        "Jun  8 14:34:36 fw kernel: [5005.1] IN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 PROTO=TCP"
        " SPT=x DPT=2\n"
        "Feb 30 14:34:36 fw kernel: [5006.1] IN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 PROTO=UDP\n"
        "Jun  8 14:34:37 fw kernel: [5007.1] usb 1-1: new high-speed USB device\n"
        "Jun  8 14:34:37 fw kernel: [5007.2] IN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 PROTO=UDP"
        " SPT=70000 DPT=2\n"
        "\n"
        f"{KERNEL.replace('14:34:33', '14:34:38')}\n",
    )
    rows, problems = _read(path)
    assert [row["ts"] for row in rows] == [
        datetime(2022, 6, 8, 14, 34, 33, tzinfo=UTC),
        datetime(2022, 6, 8, 14, 34, 38, tzinfo=UTC),
    ]
    assert [(p.line, p.reason) for p in problems.records] == [
        (3, "netfilter line without an IN= field"),
        (4, "not a syslog line"),
        (5, "netfilter line without a wall-clock time (dmesg uptime only)"),
        (6, "bad port 'x'"),
        (7, "bad timestamp 'Feb 30 14:34:36': day is out of range for month"),
        (9, "bad port '70000'"),
    ]


def test_icmp_error_keeps_the_outer_packet(tmp_path: Path) -> None:
    """An ICMP error quotes the packet it is about in brackets, with its own SRC= and PROTO=."""
    path = _log(
        tmp_path,
        "Jun  8 14:34:33 fw kernel: DROP IN=eth0 OUT= SRC=192.0.2.1 DST=10.0.0.5 LEN=56"
        " TOS=0x00 PREC=0x00 TTL=250 ID=0 PROTO=ICMP TYPE=3 CODE=3 [SRC=10.0.0.5"
        " DST=192.0.2.1 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=TCP SPT=5 DPT=6"
        " WINDOW=0 RES=0x00 SYN URGP=0 ]\n",
    )
    (row,), _ = _read(path)
    assert (row["orig_ip"], row["resp_ip"], row["proto"]) == ("192.0.2.1", "10.0.0.5", "icmp")
    assert (row["orig_port"], row["resp_port"], row["tcp_flags"]) == (None, None, None)
    assert (row["packet_length"], row["ttl"], row["action"]) == (56, 250, "deny")


def test_journald_rfc3339_and_dmesg_stamps(tmp_path: Path) -> None:
    fields = KERNEL.split("kernel: ", 1)[1]
    path = _log(
        tmp_path,
        f"2022-06-08T14:34:33.250000+02:00 fw kernel: {fields}\n"
        f"<4>1 2022-06-08T12:34:34Z fw kernel - - - {fields}\n"
        f"[Wed Jun  8 14:34:35 2022] {fields.split('] ', 1)[1]}\n",
    )
    rows, problems = _read(path, ReadOptions(timezone="Europe/Berlin"))
    assert problems.bad_records == 0
    assert [row["ts"] for row in rows] == [
        datetime(2022, 6, 8, 12, 34, 33, 250000, tzinfo=UTC),  # carries its offset
        datetime(2022, 6, 8, 12, 34, 34, tzinfo=UTC),
        datetime(2022, 6, 8, 12, 34, 35, tzinfo=UTC),  # dmesg -T: local time, CEST
    ]
    assert [row["device"] for row in rows] == ["fw", "fw", None]


def test_syslog_stamps_follow_the_configured_zone(tmp_path: Path) -> None:
    path = _log(tmp_path, f"{KERNEL.replace('Jun  8', 'Jan  2')}\n{KERNEL}\n")
    utc, _ = _read(path)
    berlin, _ = _read(path, ReadOptions(timezone="Europe/Berlin"))
    assert [row["ts"] for row in utc] == [
        datetime(2022, 1, 2, 14, 34, 33, tzinfo=UTC),
        datetime(2022, 6, 8, 14, 34, 33, tzinfo=UTC),
    ]
    assert [row["ts"] for row in berlin] == [
        datetime(2022, 1, 2, 13, 34, 33, tzinfo=UTC),  # CET, UTC+1
        datetime(2022, 6, 8, 12, 34, 33, tzinfo=UTC),  # CEST, UTC+2
    ]


def test_every_firewall_sample_is_detected_as_its_format(samples: Path) -> None:
    for name, fmt in FIREWALL_SAMPLES.items():
        assert detect(samples / name).format == fmt, name
    found = {str(p.relative_to(samples)) for p in samples.glob("firewall-*/*/*") if p.is_file()}
    assert found == set(FIREWALL_SAMPLES)


def test_firewall_sniffers_accept_only_their_own_files(samples: Path) -> None:
    """No other reader takes a firewall sample, and no firewall reader takes another sample."""
    firewall = {"iptables", "pfsense", "cisco-asa"}
    for path in sorted(p for p in samples.rglob("*") if p.is_file()):
        head = head_of(path)
        accepted = {reader.format for reader in READERS if reader.sniff(head)}
        expected = FIREWALL_SAMPLES.get(str(path.relative_to(samples)))
        if expected is not None:
            assert accepted == {expected}, path
        else:
            assert not accepted & firewall, path
