"""The capture reader on real captures (checked against their PROVENANCE.txt, Zeek's own notices
for them, and dpkt's reading of the same packets), and hand-built connections (TCP states,
timeouts, services). File formats and link types: test_pcap_files.py."""

from __future__ import annotations

import socket
import struct
from collections import Counter
from pathlib import Path

import dpkt
import pytest

from homecall.sources import detect, pcap
from tests.sources.pcap_build import (
    ACK,
    CLIENT,
    RST,
    SERVER,
    SYN,
    T0_US,
    ethernet,
    read,
    session,
    tcp_packet,
    udp_packet,
    write_pcap,
)

CALDERA = "pcap/corelight-caldera"


def _ip_frames(path: Path) -> list[tuple[int, bytes]]:
    """(ts_us, frame) of every IPv4/IPv6 frame of a classic Ethernet pcap, read by dpkt."""
    out = []
    with path.open("rb") as stream:
        for ts, frame in dpkt.pcap.Reader(stream):
            kind = struct.unpack("!H", frame[12:14])[0]
            if kind in (0x0800, 0x86DD):
                out.append((round(ts * 1_000_000), frame))
    return out


def _notices(path: Path) -> list[tuple[str, str, int, str, int]]:
    """(proto, orig_h, orig_p, resp_h, resp_p) of Zeek's notices for a capture (the filtered
    sandcat baseline has no uid column)."""
    out = []
    for line in path.read_text().splitlines():
        if line.startswith(("#", "ts\t")):
            continue
        f = line.split("\t")
        if path.name.endswith(".filtered"):
            f.insert(1, "")
        out.append((f[9], f[2], int(f[3]), f[4], int(f[5])))
    return out


# ---------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    "magic", ["d4c3b2a1", "a1b2c3d4", "4d3cb2a1", "a1b23c4d", "0a0d0d0a00000000 4d3c2b1a"]
)
def test_sniff_accepts_every_capture_magic(magic: str) -> None:
    head = bytes.fromhex(magic.replace(" ", "")) + bytes(40)
    if head[:4] == b"\x0a\x0d\x0d\x0a":
        head = head[:12] + bytes(40)
    assert pcap.sniff(head)


@pytest.mark.parametrize(
    "head",
    [b"#separator \\x09\n#path\tconn\n", b'{"ts": 1}\n', b"\x1f\x8b\x08", b"\xa1\xb2\xc3", b""],
)
def test_sniff_rejects_other_files(head: bytes) -> None:
    assert not pcap.sniff(head)


def test_every_sample_capture_is_detected_as_pcap(samples: Path) -> None:
    captures = sorted((samples / "pcap").rglob("*.pcap"))
    assert len(captures) == 7
    assert {detect(p).format for p in captures} == {"pcap"}


# ------------------------------------------------------------------ real captures


def test_sandcat_beacons_are_http_posts_to_beacon(samples: Path) -> None:
    tables, problems = read(samples / CALDERA / "sandcat.pcap")
    assert problems.records == []
    beacons = [r for r in tables["http"] if r["uri"] == "/beacon"]
    assert {(r["method"], r["user_agent"], r["host"]) for r in beacons} == {
        ("POST", "Go-http-client/1.1", "172.18.0.2")
    }  # PROVENANCE.txt: sandcat POSTs /beacon with UA Go-http-client/1.1
    assert {(r["orig_ip"], r["resp_ip"], r["resp_port"]) for r in beacons} == {
        ("172.18.0.3", "172.18.0.2", 8888)
    }
    assert all(r["status_code"] == 200 for r in beacons)
    posts = 0  # request lines in the client's segments, read by dpkt
    for _, frame in _ip_frames(samples / CALDERA / "sandcat.pcap"):
        segment = dpkt.ethernet.Ethernet(frame).data.data
        posts += isinstance(segment, dpkt.tcp.TCP) and segment.data.startswith(b"POST /beacon ")
    assert len(beacons) == posts == 58  # PROVENANCE.txt's 29 beacons: 58 POSTs, in pairs
    download = [r for r in tables["http"] if r["uri"] == "/file/download"]
    assert [(r["method"], r["user_agent"]) for r in download] == [("POST", "curl/7.68.0")]


def test_caldera_notice_connections_are_conn_rows_with_zeeks_orientation(samples: Path) -> None:
    for name in ("sandcat", "ragdoll", "manx-tcp", "manx-udp"):
        tables, _ = read(samples / CALDERA / f"{name}.pcap")
        conns = {
            (r["proto"], r["orig_ip"], r["orig_port"], r["resp_ip"], r["resp_port"])
            for r in tables["conn"]
        }
        baseline = samples / CALDERA / "baseline-notice"
        notice_file = next(baseline.glob(f"{name}.notice.log*"))
        assert set(_notices(notice_file)) <= conns, name


def test_ragdoll_weather_requests(samples: Path) -> None:
    tables, _ = read(samples / CALDERA / "ragdoll.pcap")
    weather = [r for r in tables["http"] if r["uri"] == "/weather"]
    notices = _notices(samples / CALDERA / "baseline-notice" / "ragdoll.notice.log")
    c2_ports = {orig_p for _, _, orig_p, _, _ in notices} - {45576, 37944}  # the downloads
    assert {r["orig_port"] for r in weather} == c2_ports
    assert {r["user_agent"] for r in weather} == {"python-requests/2.32.3"}  # PROVENANCE.txt


def test_slips_cc_has_one_tls_session_per_connection_to_testing_com(samples: Path) -> None:
    path = samples / "pcap/slips-test-cc/test-cc-capture-1.pcap"
    tables, problems = read(path)
    assert problems.records == []
    syns: Counter[str] = Counter()  # connection attempts per server address, read by dpkt
    for _, frame in _ip_frames(path):
        ip = dpkt.ethernet.Ethernet(frame).data
        if isinstance(ip.data, dpkt.tcp.TCP) and ip.data.flags & (SYN | ACK) == SYN:
            syns[socket.inet_ntoa(ip.dst)] += 1
    tls = tables["tls"]
    assert len(tls) == 299  # PROVENANCE.txt: 299 HTTPS connections
    assert Counter(r["resp_ip"] for r in tls) == syns  # 297 to .21, 2 to .20 (DNS rotation)
    assert {(r["orig_ip"], r["resp_port"]) for r in tls} == {("147.32.80.37", 443)}
    assert {r["server_name"] for r in tls} == {"testing.com"}
    assert all(r["established"] for r in tls)
    assert {r["version"] for r in tls} == {"TLSv13"}  # certificates are encrypted: no chain
    assert all(r["cert_chain"] is None for r in tls)
    ssl_conns = [r for r in tables["conn"] if r["service"] == "ssl"]
    assert {r["uid"] for r in ssl_conns} == {r["uid"] for r in tls}
    assert {r["conn_state"] for r in ssl_conns} == {"SF"}


def test_packets_are_every_ip_frame_with_its_record_offset(samples: Path) -> None:
    path = samples / "pcap/slips-test7-hide-and-seek/test7-malicious.pcap"
    tables, _ = read(path)
    rows = tables["packets"]
    frames = _ip_frames(path)
    assert len(rows) == len(frames)
    assert [r["caplen"] for r in rows] == [len(f) for _, f in frames]
    assert sum(r["ip_version"] == 6 for r in rows) == sum(
        f[12:14] == b"\x86\xdd" for _, f in frames
    )
    assert {r["source_file"] for r in rows} == {str(path.resolve())}
    data = path.read_bytes()
    for row, (ts_us, frame) in zip(rows, frames, strict=True):
        seconds, micros, caplen, _ = struct.unpack_from("<IIII", data, row["pcap_offset"])
        assert seconds * 1_000_000 + micros == ts_us
        start = row["pcap_offset"] + 16
        assert data[start : start + caplen] == frame
    conn_uids = {r["uid"] for r in tables["conn"]}
    assert {r["uid"] for r in rows} <= conn_uids


def test_truncated_capture_keeps_the_packets_before_and_names_the_cut_one(
    samples: Path, tmp_path: Path
) -> None:
    data = (samples / CALDERA / "ragdoll.pcap").read_bytes()
    offset, number = 24, 0
    while number < 99:  # the byte offset of the 100th record, by its headers
        offset += 16 + struct.unpack_from("<I", data, offset + 8)[0]
        number += 1
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: offset + 16 + 10])
    tables, problems = read(cut)
    [problem] = problems.records
    assert (problem.path, problem.line) == (cut, 100)
    assert "truncated record" in problem.reason
    whole = tmp_path / "whole.pcap"
    whole.write_bytes(data[:offset])
    assert len(tables["packets"]) == len(_ip_frames(whole))


# ------------------------------------------------------------------ connections


def _conn(tmp_path: Path, frames: list[tuple[int, bytes]]) -> list[dict[str, object]]:
    path = tmp_path / "c.pcap"
    write_pcap(path, frames)
    tables, problems = read(path)
    assert problems.records == []
    return sorted(tables["conn"], key=lambda r: r["ts"])  # type: ignore[arg-type,return-value]


def _tcp(flags: int, seq: int = 1, ack: int = 0, data: bytes = b"", reverse: bool = False) -> bytes:
    if reverse:
        return ethernet(tcp_packet(SERVER, 80, CLIENT, 40000, flags, seq, ack, data))
    return ethernet(tcp_packet(CLIENT, 40000, SERVER, 80, flags, seq, ack, data))


@pytest.mark.parametrize(
    ("packets", "state", "history"),
    [
        ([_tcp(SYN)], "S0", "S"),
        ([_tcp(SYN), _tcp(RST | ACK, 0, 2, reverse=True)], "REJ", "Sr"),
        ([_tcp(SYN), _tcp(RST, 2)], "RSTOS0", "SR"),
        ([_tcp(SYN), _tcp(SYN | ACK, 9, 2, reverse=True), _tcp(ACK, 2, 10)], "S1", "ShA"),
        (
            [_tcp(SYN), _tcp(SYN | ACK, 9, 2, reverse=True), _tcp(ACK, 2, 10), _tcp(RST, 2, 10)],
            "RSTO",
            "ShAR",
        ),
        ([_tcp(ACK, 5, 9, b"mid"), _tcp(ACK, 9, 8, reverse=True)], "OTH", "Da"),
        ([_tcp(SYN | ACK, 9, 2, reverse=True), _tcp(ACK, 2, 10)], "S1", "^hA"),
    ],
)
def test_tcp_states_in_zeeks_words(
    tmp_path: Path, packets: list[bytes], state: str, history: str
) -> None:
    [conn] = _conn(tmp_path, [(T0_US + i * 1000, p) for i, p in enumerate(packets)])
    assert (conn["conn_state"], conn["history"]) == (state, history)
    assert (conn["orig_ip"], conn["resp_ip"]) == (CLIENT, SERVER)


def test_finished_connection_counts_bytes_and_packets(tmp_path: Path) -> None:
    [conn] = _conn(tmp_path, session([(True, b"a" * 30), (False, b"b" * 700)], sport=7010))
    assert (conn["conn_state"], conn["history"], conn["service"]) == ("SF", "ShADadFf", None)
    assert (conn["orig_bytes"], conn["resp_bytes"]) == (30, 700)
    assert (conn["orig_pkts"], conn["resp_pkts"]) == (6, 4)
    assert conn["orig_ip_bytes"] == 6 * 40 + 30
    assert conn["resp_ip_bytes"] == 4 * 40 + 700
    assert conn["duration_s"] == pytest.approx(0.008)  # the last ACK after both FINs is not counted


def test_idle_timeouts_split_flows(tmp_path: Path) -> None:
    udp = [ethernet(udp_packet(CLIENT, 5000, SERVER, 7011, b"x"))] * 3
    tcp = [_tcp(ACK, 5, 9, b"a"), _tcp(ACK, 6, 9, b"b"), _tcp(ACK, 7, 9, b"c")]
    gaps_s = [0, 59, 59 + 61]  # UDP: 1 minute; TCP: 5 minutes
    frames = [(T0_US + g * 1_000_000, p) for g, p in zip(gaps_s, udp, strict=True)]
    frames += [
        (T0_US + g * 1_000_000 + 5, p) for g, p in zip([0, 299, 299 + 301], tcp, strict=True)
    ]
    conns = _conn(tmp_path, sorted(frames))
    assert sorted((c["proto"], c["orig_pkts"]) for c in conns) == [
        ("tcp", 1),
        ("tcp", 2),
        ("udp", 1),
        ("udp", 2),
    ]


@pytest.mark.parametrize(
    ("client", "server", "service"),
    [
        (b"NICK bot123\r\nUSER bot 0 * :bot\r\n", b":irc.example NOTICE * :hi\r\n", "irc"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", b"SSH-2.0-OpenSSH_9.2\r\n", "ssh"),
        (b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", b"", "ssl"),
        (b"random bytes of a custom protocol", b"more bytes", None),
    ],
)
def test_service_is_found_by_payload_on_any_port(
    tmp_path: Path, client: bytes, server: bytes, service: str | None
) -> None:
    messages = [(True, client)] + ([(False, server)] if server else [])
    [conn] = _conn(tmp_path, session(messages, sport=4444))
    assert conn["service"] == service


def test_smtp_and_ftp_after_a_220_greeting(tmp_path: Path) -> None:
    smtp = session([(False, b"220 mx ESMTP\r\n"), (True, b"EHLO me\r\n")], sport=2525)
    ftp = session(
        [(False, b"220 ftpd\r\n"), (True, b"USER anonymous\r\n")], cport=40001, sport=2121
    )
    services = {c["resp_port"]: c["service"] for c in _conn(tmp_path, sorted(smtp + ftp))}
    assert services == {2525: "smtp", 2121: "ftp"}
