"""Hand-built captures for the pcap search tests, and an index of them built without homecall's
reader: classic pcap and pcapng written with dpkt, walked record by record with struct and
dpkt's block classes."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pyarrow as pa

from homecall.store import Store, content_hash, quick_fingerprint, schema_of

MIDNIGHT_NS = 1_764_288_000 * 10**9  # 2025-11-28 00:00 UTC
RAW_IP = 101  # LINKTYPE_RAW: packets start with the IP header

# (time ns, src, sport, dst, dport, payload): two days, three hosts, TCP and UDP
FLOWS = [
    (MIDNIGHT_NS - 7_200 * 10**9 + 123_456_789, "10.0.0.1", 40000, "192.0.2.9", 443, b"A" * 40),
    (MIDNIGHT_NS - 60 * 10**9 + 5, "10.0.0.2", 53000, "10.0.0.53", 53, b"B" * 30),
    (MIDNIGHT_NS + 1_000, "10.0.0.1", 40001, "192.0.2.9", 8888, b"C" * 300),
    (MIDNIGHT_NS + 3_600 * 10**9 + 999_999_999, "10.0.0.3", 41000, "198.51.100.7", 80, b"D"),
]


def _ip(src: str, sport: int, dst: str, dport: int, payload: bytes) -> dpkt.ip.IP:
    udp = dport == 53
    transport = (
        dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
        if udp
        else dpkt.tcp.TCP(sport=sport, dport=dport, flags=dpkt.tcp.TH_ACK, data=payload)
    )
    return dpkt.ip.IP(
        src=bytes(map(int, src.split("."))),
        dst=bytes(map(int, dst.split("."))),
        p=dpkt.ip.IP_PROTO_UDP if udp else dpkt.ip.IP_PROTO_TCP,
        data=transport,
    )


def packets(link_type: int = dpkt.pcap.DLT_EN10MB) -> list[tuple[int, bytes]]:
    """(time ns, frame) of three packets per flow (request, answer, request), in time order."""
    out = []
    for flow_ns, src, sport, dst, dport, payload in FLOWS:
        for k, (a, ap, b, bp) in enumerate(
            [(src, sport, dst, dport), (dst, dport, src, sport), (src, sport, dst, dport)]
        ):
            ip = _ip(a, ap, b, bp, payload * (k + 1))
            frame = (
                bytes(ip)
                if link_type == RAW_IP
                else bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip))
            )
            out.append((flow_ns + k * 1_000_017_000, frame))  # 1.000017 s apart
    return sorted(out)


def write_pcap(
    path: Path, *, nano: bool = False, link_type: int = dpkt.pcap.DLT_EN10MB, shift_ns: int = 0
) -> Path:
    with path.open("wb") as stream:
        dpkt.pcap.Writer(stream, nano=nano, linktype=link_type)  # writes the file header
        for ts_ns, frame in ((t + shift_ns, f) for t, f in packets(link_type)):
            # records by hand: dpkt takes float seconds, which cannot hold every nanosecond
            seconds, fraction = divmod(ts_ns, 10**9)
            fraction = fraction if nano else fraction // 1000
            stream.write(struct.pack("<IIII", seconds, fraction, len(frame), len(frame)) + frame)
    return path


def write_pcapng(
    path: Path, *, tsresol: int = 6, link_type: int = dpkt.pcap.DLT_EN10MB, append: bool = False
) -> Path:
    """One section (appended after the file's sections with `append`) with one interface."""
    buffer = io.BytesIO()
    resolution = dpkt.pcapng.PcapngOptionLE(
        code=dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL, data=bytes([tsresol])
    )
    options = [resolution, dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_ENDOFOPT)]
    idb = dpkt.pcapng.InterfaceDescriptionBlockLE(snaplen=65535, linktype=link_type, opts=options)
    writer = dpkt.pcapng.Writer(buffer, idb=idb)
    for ts_ns, frame in packets(link_type):
        ticks = ts_ns // 10 ** (9 - tsresol)
        epb = dpkt.pcapng.EnhancedPacketBlockLE(
            ts_high=ticks >> 32,
            ts_low=ticks & 0xFFFFFFFF,
            caplen=len(frame),
            pkt_len=len(frame),
            pkt_data=frame,
        )
        writer.writepkt(epb)
    with path.open("ab" if append else "wb") as stream:
        stream.write(buffer.getvalue())
    return path


def scan(path: Path) -> Iterator[tuple[int, int, int, bytes]]:
    """(offset, ts ns, link type, frame) of every packet record, walked independently of
    homecall: classic pcap record by record, pcapng block by block with dpkt's block classes."""
    data = path.read_bytes()
    if data[:4] != b"\x0a\x0d\x0d\x0a":
        nano = data[:4] == struct.pack("<I", 0xA1B23C4D)
        link_type = struct.unpack_from("<I", data, 20)[0]
        at = 24
        while at < len(data):
            seconds, fraction, caplen, _ = struct.unpack_from("<IIII", data, at)
            ts_ns = seconds * 10**9 + (fraction if nano else fraction * 1000)
            yield at, ts_ns, link_type, data[at + 16 : at + 16 + caplen]
            at += 16 + caplen
        return
    at = 0
    interfaces: list[tuple[int, int]] = []
    while at < len(data):
        kind, length = struct.unpack_from("<II", data, at)
        block = data[at : at + length]
        if kind == 0x0A0D0D0A:
            interfaces = []
        elif kind == 1:
            idb = dpkt.pcapng.InterfaceDescriptionBlockLE(block)
            resol = next((o.data[0] for o in idb.opts if o.code == 9), 6)
            interfaces.append((idb.linktype, resol))
        elif kind == 6:
            epb = dpkt.pcapng.EnhancedPacketBlockLE(block)
            link_type, resol = interfaces[epb.iface_id]
            ticks = (epb.ts_high << 32) | epb.ts_low
            yield at, ticks * 10 ** (9 - resol), link_type, epb.pkt_data
        at += length


def index(path: Path) -> pa.RecordBatch:
    """The packets rows of `path` as a PCAP reader writes them (flows by 5-tuple, first packet
    = originator), built from `scan` so that the tests do not depend on homecall's reader."""
    schema = schema_of("packets")
    rows: dict[str, list[object]] = {name: [] for name in schema.names}
    flows: dict[frozenset[tuple[str, int]], tuple[str, str, int, str, int]] = {}
    for offset, ts_ns, link_type, frame in scan(path):
        ip = dpkt.ip.IP(frame) if link_type == RAW_IP else dpkt.ethernet.Ethernet(frame).data
        src, dst = ".".join(map(str, ip.src)), ".".join(map(str, ip.dst))
        key = frozenset([(src, ip.data.sport), (dst, ip.data.dport)])
        if key not in flows:
            flows[key] = (f"F{path.stem}{len(flows)}", src, ip.data.sport, dst, ip.data.dport)
        uid, orig, orig_port, resp, resp_port = flows[key]
        values = {
            "ts": ts_ns // 1000,
            "uid": uid,
            "orig_ip": orig,
            "orig_port": orig_port,
            "resp_ip": resp,
            "resp_port": resp_port,
            "proto": "udp" if isinstance(ip.data, dpkt.udp.UDP) else "tcp",
            "from_orig": src == orig,
            "pcap_offset": offset,
            "caplen": len(frame),
            "source_file": str(path.resolve()),
        }
        for name in schema.names:
            rows[name].append(values.get(name))
    return pa.RecordBatch.from_pydict(rows, schema=schema)


def indexed_store(root: Path, *captures: Path) -> Store:
    store = Store(root)
    with store.importing() as job:
        for path in captures:
            job.add(
                path,
                lambda p=path: content_hash(p),
                "pcap",
                [("packets", index(path))],
                quick=quick_fingerprint(path),
            )
    return store


def of_hosts(path: Path, *hosts: str) -> list[tuple[int, int, bytes]]:
    """(ts ns, link type, frame) of the packets of `path` from or to one of `hosts`, by a scan."""
    wanted = {bytes(map(int, h.split("."))) for h in hosts}
    out = []
    for _, ts_ns, link_type, frame in scan(path):
        ip = dpkt.ip.IP(frame) if link_type == RAW_IP else dpkt.ethernet.Ethernet(frame).data
        if ip.src in wanted or ip.dst in wanted:
            out.append((ts_ns, link_type, frame))
    return out


def written(path: Path) -> list[tuple[int, int, bytes]]:
    return [(ts_ns, link_type, frame) for _, ts_ns, link_type, frame in scan(path)]


def scan_ip(path: Path) -> list[tuple[int, str, int, str, int, bytes]]:
    """(ts us, src, sport, dst, dport, frame) of every IPv4 packet, by a full scan with dpkt."""
    out = []
    with path.open("rb") as stream:
        for ts, frame in dpkt.pcap.Reader(stream):
            ip = dpkt.ethernet.Ethernet(frame).data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            ports = (ip.data.sport, ip.data.dport) if hasattr(ip.data, "sport") else (0, 0)
            src, dst = dpkt.utils.inet_to_str(ip.src), dpkt.utils.inet_to_str(ip.dst)
            out.append((round(ts * 1e6), src, ports[0], dst, ports[1], frame))
    return out
