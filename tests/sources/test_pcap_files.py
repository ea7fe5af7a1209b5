"""The capture reader on hand-built files: classic pcap variants, pcapng, gzip, link types,
snap length, fragments and IPv6; and where dpkt's readers fall short of it (why pcap_file.py
walks the records itself)."""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import dpkt
import pytest

from homecall.errors import MalformedInputError
from homecall.sources import detect, pcap
from homecall.sources.fileio import head_of
from tests.sources.pcap_build import (
    CLIENT,
    SERVER,
    T0_US,
    ethernet,
    pcapng_section,
    read,
    session,
    udp_packet,
    write_pcap,
    write_pcapng,
)


def _frames() -> list[tuple[int, bytes]]:
    return session(
        [(True, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"), (False, b"HTTP/1.1 204 N\r\n\r\n")]
    )


@pytest.mark.parametrize(
    ("nanoseconds", "big_endian"), [(False, True), (True, False), (True, True)]
)
def test_classic_variants_read_alike(tmp_path: Path, nanoseconds: bool, big_endian: bool) -> None:
    frames = _frames()
    path = tmp_path / "v.pcap"
    offsets = write_pcap(path, frames, nanoseconds=nanoseconds, big_endian=big_endian)
    tables, problems = read(path)
    assert problems.records == []
    assert [r["ts"].timestamp() * 1e6 for r in tables["packets"]] == [t for t, _ in frames]
    assert [r["pcap_offset"] for r in tables["packets"]] == offsets
    [http] = tables["http"]
    assert (http["uri"], http["status_code"]) == ("/a", 204)


def test_pcapng_with_two_interfaces_and_resolutions(tmp_path: Path) -> None:
    frames = _frames()
    raw = [(ts, frame[14:], 1) for ts, frame in frames[::2]]  # every other packet: raw IP
    eth = [(ts, frame, 0) for ts, frame in frames[1::2]]
    merged = sorted(raw + eth)
    path = tmp_path / "two.pcapng"
    offsets = write_pcapng(path, merged, interfaces=[(1, 6), (101, 9)])  # us and ns
    assert pcap.sniff(head_of(path))
    tables, problems = read(path)
    assert problems.records == []
    rows = tables["packets"]
    assert [r["pcap_offset"] for r in rows] == offsets
    data = path.read_bytes()
    assert all(struct.unpack_from("<I", data, o)[0] == 6 for o in offsets)  # Enhanced Packet
    assert [r["ts"].timestamp() * 1e6 for r in rows] == [t for t, _, _ in merged]
    [conn] = tables["conn"]
    assert (conn["conn_state"], conn["history"]) == ("SF", "ShADadFf")


def test_pcapng_sections_of_either_byte_order(tmp_path: Path) -> None:
    frames = _frames()
    half = len(frames) // 2
    first, first_offsets = pcapng_section([(t, f, 0) for t, f in frames[:half]], [(1, 6)])
    second, second_offsets = pcapng_section(
        [(t, f, 0) for t, f in frames[half:]], [(1, 9)], big_endian=True
    )
    path = tmp_path / "sections.pcapng"
    path.write_bytes(first + second)
    tables, problems = read(path)
    assert problems.records == []
    offsets = first_offsets + [len(first) + o for o in second_offsets]
    assert [r["pcap_offset"] for r in tables["packets"]] == offsets
    assert [r["ts"].timestamp() * 1e6 for r in tables["packets"]] == [t for t, _ in frames]
    [conn] = tables["conn"]
    assert conn["history"] == "ShADadFf"


def test_gzip_capture_is_read_with_offsets_into_its_decompressed_bytes(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pcap"
    offsets = write_pcap(plain, _frames())
    packed = tmp_path / "packed.pcap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert detect(packed).format == "pcap"
    tables, problems = read(packed)
    assert problems.records == []
    assert [r["pcap_offset"] for r in tables["packets"]] == offsets


@pytest.mark.parametrize("link", ["raw", "sll", "sll2", "null", "vlan", "qinq"])
def test_link_types(tmp_path: Path, link: str) -> None:
    frames = _frames()
    types = {"raw": 101, "sll": 113, "sll2": 276, "null": 0, "vlan": 1, "qinq": 1}
    out = []
    for ts, frame in frames:
        ip = frame[14:]
        if link == "raw":
            data = ip
        elif link == "sll":
            data = struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\0\0", 0x0800) + ip
        elif link == "sll2":
            data = struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\x02" * 6 + b"\0\0") + ip
        elif link == "null":
            data = struct.pack("<I", 2) + ip
        else:
            data = ethernet(dpkt.ip.IP(ip), vlans=(100,) if link == "vlan" else (10, 20))
        out.append((ts, data))
    path = tmp_path / f"{link}.pcap"
    write_pcap(path, out, link_type=types[link])
    tables, problems = read(path)
    assert problems.records == []
    assert len(tables["packets"]) == len(frames)
    [conn] = tables["conn"]
    assert (conn["orig_ip"], conn["resp_ip"], conn["service"]) == (CLIENT, SERVER, "http")


def test_unsupported_link_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "wifi.pcap"
    write_pcap(path, [(T0_US, b"\x00" * 40)], link_type=105)
    with pytest.raises(MalformedInputError, match=r"link type 105 \(IEEE802_11\)"):
        read(path)


def test_snaplen_cut_packets_keep_their_header_fields(tmp_path: Path) -> None:
    frames = session([(True, b"GET / HTTP/1.1\r\n\r\n"), (False, b"HTTP/1.1 200 OK\r\n"
                      b"Content-Length: 1000\r\n\r\n" + b"x" * 1000)])  # fmt: skip
    path = tmp_path / "snap.pcap"
    write_pcap(path, frames, snaplen=68)
    tables, problems = read(path)
    assert problems.records == []
    message = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000
    big = [r for r in tables["packets"] if r["payload_len"] == len(message)]
    assert len(big) == 1
    assert big[0]["caplen"] == 68
    assert big[0]["ip_len"] == 40 + len(message)


def test_ipv4_fragments_take_the_first_fragments_ports(tmp_path: Path) -> None:
    datagram = udp_packet(CLIENT, 40000, SERVER, 9999, b"z" * 100)
    raw = bytes(datagram)
    header, body = raw[:20], raw[20:]
    first = bytearray(header + body[:64])
    struct.pack_into("!H", first, 2, 20 + 64)
    struct.pack_into("!H", first, 6, 0x2000)  # more fragments, offset 0
    second = bytearray(header + body[64:])
    struct.pack_into("!H", second, 2, 20 + len(body) - 64)
    struct.pack_into("!H", second, 6, 64 // 8)
    orphan = bytearray(second)
    struct.pack_into("!H", orphan, 4, 777)  # another datagram's later fragment
    frames = [(T0_US + i, bytes(f)) for i, f in enumerate([first, second, orphan])]
    path = tmp_path / "frag.pcap"
    write_pcap(path, frames, link_type=101)
    tables, problems = read(path)
    assert problems.records == []
    rows = tables["packets"]
    assert rows[0]["uid"] == rows[1]["uid"] is not None
    assert (rows[1]["orig_port"], rows[1]["resp_port"]) == (40000, 9999)
    assert rows[2]["uid"] is None
    assert rows[2]["orig_ip"] == CLIENT
    [conn] = tables["conn"]
    assert (conn["orig_pkts"], conn["orig_bytes"]) == (2, 100)  # UDP length of the datagram


def test_ipv6_with_extension_headers_and_icmpv6_echo(tmp_path: Path) -> None:
    src, dst = (
        bytes.fromhex("20010db8" + "00" * 11 + "01"),
        bytes.fromhex("20010db8" + "00" * 11 + "02"),
    )
    udp = bytes(dpkt.udp.UDP(sport=40000, dport=53, data=b"q" * 12))
    hop_by_hop = bytes([17, 0]) + b"\x01\x04\x00\x00\x00\x00"  # next: UDP; PadN
    v6 = struct.pack("!IHBB16s16s", 0x60000000, len(hop_by_hop) + len(udp), 0, 64, src, dst)
    echo = struct.pack("!BBHHH", 128, 0, 0, 1, 1) + b"ping"
    reply = struct.pack("!BBHHH", 129, 0, 0, 1, 1) + b"ping"
    frames = [
        (T0_US, v6 + hop_by_hop + udp),
        (T0_US + 10, struct.pack("!IHBB16s16s", 0x60000000, len(echo), 58, 64, src, dst) + echo),
        (T0_US + 20, struct.pack("!IHBB16s16s", 0x60000000, len(reply), 58, 64, dst, src) + reply),
    ]
    path = tmp_path / "v6.pcap"
    write_pcap(path, frames, link_type=229)
    tables, problems = read(path)
    assert problems.records == []
    by_proto = {r["proto"]: r for r in tables["conn"]}
    assert by_proto["udp"]["resp_port"] == 53
    icmp = by_proto["icmp"]  # request and reply are one flow: ports are (type, reply type)
    assert (icmp["orig_ip"], icmp["orig_port"], icmp["resp_port"]) == ("2001:db8::1", 128, 129)
    assert (icmp["orig_pkts"], icmp["resp_pkts"]) == (1, 1)
    assert [r["ip_version"] for r in tables["packets"]] == [6, 6, 6]


# ------------------------------------------------- where dpkt's readers fall short of pcap_file


def test_dpkt_pcap_reader_yields_a_cut_record_as_if_whole(tmp_path: Path) -> None:
    frames = _frames()
    path = tmp_path / "cut.pcap"
    write_pcap(path, frames)
    path.write_bytes(path.read_bytes()[:-10])
    with path.open("rb") as stream:
        got = list(dpkt.pcap.Reader(stream))
    assert all(len(item) == 2 for item in got)  # (time, bytes): no offset, caplen, wire length
    size = len(frames[-1][1])
    assert [len(data) for _, data in got] == [len(f) for _, f in frames[:-1]] + [size - 10]
    tables, problems = read(path)  # pcap_file knows the record's caplen
    [problem] = problems.records
    assert (problem.line, problem.reason) == (
        len(frames),
        f"truncated record: {size - 10} of {size} bytes captured",
    )
    assert len(tables["packets"]) == len(frames) - 1


def test_dpkt_pcapng_reader_reads_every_interface_as_the_first(tmp_path: Path) -> None:
    frames = _frames()
    raw = [(ts, frame[14:], 1) for ts, frame in frames[::2]]  # interface 1: raw IP, ns
    merged = sorted(raw + [(ts, frame, 0) for ts, frame in frames[1::2]])
    path = tmp_path / "two.pcapng"
    write_pcapng(path, merged, interfaces=[(1, 6), (101, 9)])
    with path.open("rb") as stream:
        reader = dpkt.pcapng.Reader(stream)
        assert reader.datalink() == 1  # one link type for the whole file
        times = [ts for ts, _ in reader]
    pairs = zip(times, merged, strict=True)
    ns_packets = [(t, expected) for t, (expected, _, face) in pairs if face == 1]
    assert all(round(t) == expected // 1000 for t, expected in ns_packets)  # 1000 times too big
    tables, _ = read(path)
    assert [r["ts"].timestamp() * 1e6 for r in tables["packets"]] == [t for t, _, _ in merged]


def test_dpkt_pcapng_reader_drops_a_section_of_the_other_byte_order() -> None:
    frames = _frames()
    half = len(frames) // 2
    first, _ = pcapng_section([(t, f, 0) for t, f in frames[:half]], [(1, 6)])
    second, _ = pcapng_section([(t, f, 0) for t, f in frames[half:]], [(1, 6)], big_endian=True)
    got = list(dpkt.pcapng.Reader(io.BytesIO(first + second)))
    assert len(got) == half  # silently; test_pcapng_sections_of_either_byte_order reads all
