"""A large, realistic capture for benchmarks: a classic pcap (Ethernet, microseconds) of an office
network seen at its uplink, in time order.

2,000 internal hosts (10.1.0.0/16) open sessions at random (Poisson) times, at a rate that
fills the capture with 1 GB every four hours (from 2025-11-27 22:00 UTC): a DNS lookup to the
internal resolver, then HTTPS (TCP handshake, a ClientHello naming the server, ServerHello and
certificate, TLS application records, FIN) or plain HTTP (GET with Host and User-Agent, an HTML
response in MSS-sized segments); some sessions are only lookups, NTP or pings (ICMP echo). Five
hosts also beacon to a C2 server over HTTP every 60 s +-20 % (`BEACONS`). Headers are real
(valid IPv4, TCP and UDP checksums, sequence numbers), payloads are slices of reused templates,
so a gigabyte takes tens of seconds to write. The same seed gives the same bytes.

    write_capture(path, target_bytes, seed=0) -> packets written
    python benchmarks/synthetic_pcap.py OUT.pcap [--bytes 1000000000] [--seed 0]
"""

from __future__ import annotations

import argparse
import heapq
import random
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

__all__ = ["BEACONS", "DNS_SERVER", "START_US", "write_capture"]

START_US = 1_764_280_800 * 1_000_000  # 2025-11-27 22:00 UTC: 1 GB crosses midnight
BYTES_PER_S = 1e9 / (4 * 3600)  # the uplink's mean load: a gigabyte takes four hours
HOSTS = 2_000
SERVERS = 6_000
DNS_SERVER = "10.1.0.2"
# (internal host, C2 server, port): HTTP check-ins every BEACON_PERIOD_S +- BEACON_JITTER
BEACONS = (
    ("10.1.3.17", "185.220.101.44", 8080),
    ("10.1.7.201", "45.137.21.9", 80),
    ("10.1.2.99", "91.215.85.18", 443),
    ("10.1.6.5", "194.26.29.113", 8443),
    ("10.1.4.150", "5.188.206.14", 80),
)
BEACON_PERIOD_S = 60.0
BEACON_JITTER = 0.2
MSS = 1448
SNAPLEN = 65535
_MAC_HOST = b"\x00\x1b\x21\x3a\x4f\x10"
_MAC_GATEWAY = b"\x00\x0c\x29\x8e\x11\x01"
_WORDS = ("news", "shop", "cloud", "data", "mail", "app", "static", "cdn", "api", "media", "img")
_TLDS = ("com", "net", "org", "de", "io", "co.uk", "fr", "nl", "info", "xyz")
_AGENTS = (
    b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/131.0.0.0 Safari/537.36",
    b"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    b"Microsoft-Delivery-Optimization/10.0",
)
_PUBLIC_FIRST_OCTETS = (23, 34, 52, 93, 104, 142, 151, 157, 185, 199, 203, 216)


def write_capture(path: Path, target_bytes: int, seed: int = 0) -> int:
    """Write a capture of about `target_bytes` bytes (it stops at the first packet past it) to
    `path`; returns the number of packets written."""
    world = _World(random.Random(seed))
    mean_bytes = _mean_session_bytes(seed)
    duration_s = max(target_bytes / BYTES_PER_S, 60.0)
    rate = max(target_bytes / mean_bytes, 1.0) / duration_s  # sessions per second
    rng = random.Random(seed + 1)
    pending: list[tuple[int, int, bytes]] = []  # (ts_us, sequence, frame): a time-ordered heap
    beacons = [(START_US + int(rng.uniform(0, BEACON_PERIOD_S) * 1e6), i) for i in range(5)]
    heapq.heapify(beacons)
    written_bytes, packets, order = 24, 0, 0
    now_us = START_US
    header = struct.Struct("<IIII")
    with path.open("wb", buffering=1 << 22) as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1))
        while written_bytes < target_bytes:
            now_us += int(rng.expovariate(rate) * 1e6) + 1
            while beacons[0][0] <= now_us:
                at_us, which = heapq.heappop(beacons)
                for ts_us, frame in world.beacon(at_us, which):
                    order += 1
                    heapq.heappush(pending, (ts_us, order, frame))
                jitter = rng.uniform(1 - BEACON_JITTER, 1 + BEACON_JITTER)
                heapq.heappush(beacons, (at_us + int(BEACON_PERIOD_S * jitter * 1e6), which))
            for ts_us, frame in world.session(now_us):
                order += 1
                heapq.heappush(pending, (ts_us, order, frame))
            while pending and pending[0][0] <= now_us and written_bytes < target_bytes:
                ts_us, _, frame = heapq.heappop(pending)
                seconds, micros = divmod(ts_us, 1_000_000)
                out.write(header.pack(seconds, micros, len(frame), len(frame)))
                out.write(frame)
                written_bytes += 16 + len(frame)
                packets += 1
    return packets


def _mean_session_bytes(seed: int) -> float:
    """Bytes per session (records included), measured on a sample of 400 sessions."""
    world = _World(random.Random(seed + 2))
    total = sum(16 + len(f) for i in range(400) for _, f in world.session(START_US + i))
    return total / 400


def _checksum(*parts: bytes) -> int:
    """The Internet checksum of the concatenated parts (each but the last of even length):
    the ones' complement sum of 16-bit words is the bytes' big-endian value modulo 0xFFFF."""
    data = b"".join(parts)
    if len(data) % 2:
        data += b"\0"
    return 0xFFFF - int.from_bytes(data, "big") % 0xFFFF or 0xFFFF


def _ip4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


@dataclass
class _Flow:
    """One transport conversation between an internal host and a server."""

    client: bytes
    server: bytes
    sport: int
    dport: int
    client_seq: int = 0
    server_seq: int = 0


@dataclass
class _World:
    """Hosts, servers and payload templates; builds the frames of sessions."""

    rng: random.Random
    hosts: list[bytes] = field(init=False)
    host_weights: list[float] = field(init=False)  # cumulative: a few busy hosts, a long tail
    servers: list[tuple[bytes, bytes]] = field(init=False)  # (address, name)
    server_weights: list[float] = field(init=False)  # cumulative, Zipf-like popularity
    next_port: dict[bytes, int] = field(default_factory=dict)
    ip_id: int = 0
    html: bytes = field(init=False)
    noise: bytes = field(init=False)

    def __post_init__(self) -> None:
        rng = self.rng
        self.hosts = [_ip4(f"10.1.{i // 250}.{i % 250 + 3}") for i in range(HOSTS)]
        rng.shuffle(self.hosts)
        self.host_weights = list(accumulate(1 / (rank + 20) ** 0.8 for rank in range(HOSTS)))
        self.server_weights = list(accumulate(1 / (rank + 3) for rank in range(SERVERS)))
        self.servers = []
        for i in range(SERVERS):
            first = _PUBLIC_FIRST_OCTETS[i % len(_PUBLIC_FIRST_OCTETS)]
            address = bytes([first, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)])
            sub = "www." if rng.random() < 0.6 else ""
            name = f"{sub}{rng.choice(_WORDS)}{rng.randrange(10**5)}.{rng.choice(_TLDS)}"
            self.servers.append((address, name.encode()))
        words = [w.encode() for w in _WORDS]
        self.html = b"".join(
            b"<div class=\"%s\"><a href=\"/%s/%d\">%s %s</a></div>\n"
            % (rng.choice(words), rng.choice(words), rng.randrange(10**6), rng.choice(words),
               rng.choice(words))
            for _ in range(20_000)
        )  # fmt: skip
        self.noise = rng.randbytes(1 << 20)

    # -- sessions ---------------------------------------------------------------------------

    def session(self, t_us: int) -> Iterator[tuple[int, bytes]]:
        """The frames of one session started at `t_us` by a random host."""
        rng = self.rng
        host = rng.choices(self.hosts, cum_weights=self.host_weights)[0]
        server, name = rng.choices(self.servers, cum_weights=self.server_weights)[0]
        kind = rng.random()
        if kind < 0.04:
            yield from self._ping(t_us, host, server)
            return
        if kind < 0.07:
            yield from self._ntp(t_us, host, server)
            return
        t_us = yield from self._dns(t_us, host, name, server)
        if kind < 0.25:
            return
        rtt_us = rng.randrange(4_000, 90_000)
        if kind < 0.75:
            yield from self._https(t_us + 200, host, server, name, rtt_us)
        else:
            yield from self._http(t_us + 200, host, server, name, rtt_us)

    def beacon(self, t_us: int, which: int) -> Iterator[tuple[int, bytes]]:
        """One C2 check-in: an HTTP POST with a small body and a small answer."""
        host, server, port = BEACONS[which]
        flow = self._flow(_ip4(host), _ip4(server), port)
        body = self.noise[which * 64 : which * 64 + 48].hex().encode()
        request = (
            b"POST /submit.php?id=%d HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: %s\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            % (which, server.encode(), port, _AGENTS[0], len(body), body)
        )
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n" + self.noise[:8].hex().encode()
        yield from self._tcp(t_us, flow, 40_000, [(True, request), (False, answer)])

    def _flow(self, client: bytes, server: bytes, dport: int) -> _Flow:
        port = self.next_port.get(client, 49152 + self.rng.randrange(8000))
        self.next_port[client] = port + 1 if port < 65535 else 49152
        rng = self.rng
        return _Flow(client, server, port, dport, rng.getrandbits(32), rng.getrandbits(32))

    def _dns(
        self, t_us: int, host: bytes, name: bytes, address: bytes
    ) -> Iterator[tuple[int, bytes]]:
        resolver = _ip4(DNS_SERVER)
        flow = self._flow(host, resolver, 53)
        ident = self.rng.getrandbits(16)
        question = b"".join(bytes([len(p)]) + p for p in name.split(b".")) + b"\0\0\1\0\1"
        query = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question
        answer = struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question
        answer += struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + address
        yield t_us, self._udp(flow, True, query)
        done = t_us + self.rng.randrange(300, 30_000)
        yield done, self._udp(flow, False, answer)
        return done

    def _ntp(self, t_us: int, host: bytes, server: bytes) -> Iterator[tuple[int, bytes]]:
        flow = self._flow(host, server, 123)
        yield t_us, self._udp(flow, True, b"\x23" + self.noise[:47])
        yield t_us + self.rng.randrange(5_000, 60_000), self._udp(flow, False, self.noise[48:96])

    def _ping(self, t_us: int, host: bytes, server: bytes) -> Iterator[tuple[int, bytes]]:
        ident = self.rng.getrandbits(16)
        payload = self.noise[200:256]
        rtt = self.rng.randrange(5_000, 60_000)
        for seq in range(4):
            for kind, src, dst, at in ((8, host, server, 0), (0, server, host, rtt)):
                head = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
                icmp = head[:2] + struct.pack("!H", _checksum(head, payload)) + head[4:] + payload
                yield t_us + seq * 1_000_000 + at, self._ip(src, dst, 1, icmp)

    def _https(
        self, t_us: int, host: bytes, server: bytes, name: bytes, rtt_us: int
    ) -> Iterator[tuple[int, bytes]]:
        rng = self.rng
        flow = self._flow(host, server, 443)
        hello = _client_hello(name, rng.randbytes(32))
        certificate = b"\x16\x03\x03" + struct.pack("!H", 3200) + self._slice(self.noise, 3200)
        talk = [(True, hello), (False, certificate), (True, self._record(64))]
        for _ in range(rng.randrange(1, 4)):
            talk.append((True, self._record(rng.randrange(120, 900))))
            talk.append((False, self._record(min(int(rng.lognormvariate(9.5, 1.6)), 2_000_000))))
        yield from self._tcp(t_us, flow, rtt_us, talk)

    def _http(
        self, t_us: int, host: bytes, server: bytes, name: bytes, rtt_us: int
    ) -> Iterator[tuple[int, bytes]]:
        rng = self.rng
        flow = self._flow(host, server, 80)
        path = b"/%s/%d.html" % (rng.choice(_WORDS).encode(), rng.randrange(10**6))
        request = b"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: */*\r\n\r\n" % (
            path,
            name,
            rng.choice(_AGENTS),
        )
        size = min(int(rng.lognormvariate(9.0, 1.5)), 2_000_000)
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % size
            + self._slice(self.html, size)
        )
        yield from self._tcp(t_us, flow, rtt_us, [(True, request), (False, answer)])

    # -- transport ----------------------------------------------------------------------------

    def _tcp(
        self, t_us: int, flow: _Flow, rtt_us: int, talk: list[tuple[bool, bytes]]
    ) -> Iterator[tuple[int, bytes]]:
        """Handshake, the messages of `talk` (from the client when True) in MSS segments with
        an ACK every two, and the FIN exchange."""
        syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
        mss_option = struct.pack("!BBH", 2, 4, MSS) + b"\x01\x03\x03\x07"
        yield t_us, self._segment(flow, True, syn, b"", mss_option)
        flow.client_seq += 1
        t_us += rtt_us
        yield t_us, self._segment(flow, False, syn | ack, b"", mss_option)
        flow.server_seq += 1
        t_us += 150
        yield t_us, self._segment(flow, True, ack, b"")
        for from_client, message in talk:
            t_us += rtt_us // 2
            for sent, start in enumerate(range(0, len(message), MSS), start=1):
                chunk = message[start : start + MSS]
                last = start + MSS >= len(message)
                yield t_us, self._segment(flow, from_client, ack | (psh if last else 0), chunk)
                t_us += 12 + len(chunk) // 100
                if sent % 2 == 0 or last:
                    yield t_us + rtt_us // 2, self._segment(flow, not from_client, ack, b"")
        t_us += rtt_us
        yield t_us, self._segment(flow, True, fin | ack, b"")
        flow.client_seq += 1
        t_us += rtt_us
        yield t_us, self._segment(flow, False, fin | ack, b"")
        flow.server_seq += 1
        yield t_us + rtt_us // 2, self._segment(flow, True, ack, b"")

    def _segment(
        self, flow: _Flow, from_client: bool, flags: int, payload: bytes, options: bytes = b""
    ) -> bytes:
        src, dst = (flow.client, flow.server) if from_client else (flow.server, flow.client)
        sport, dport = (flow.sport, flow.dport) if from_client else (flow.dport, flow.sport)
        seq, ack_no = (
            (flow.client_seq, flow.server_seq)
            if from_client
            else (flow.server_seq, flow.client_seq)
        )
        offset = (20 + len(options)) // 4 << 12
        head = struct.pack(
            "!HHIIHHHH", sport, dport, seq & 0xFFFFFFFF, ack_no & 0xFFFFFFFF,
            offset | flags, 64240, 0, 0,
        ) + options  # fmt: skip
        length = len(head) + len(payload)
        pseudo = src + dst + struct.pack("!HH", 6, length)
        check = struct.pack("!H", _checksum(pseudo, head, payload))
        if from_client:
            flow.client_seq += len(payload)
        else:
            flow.server_seq += len(payload)
        return self._ip(src, dst, 6, head[:16] + check + head[18:] + payload)

    def _udp(self, flow: _Flow, from_client: bool, payload: bytes) -> bytes:
        src, dst = (flow.client, flow.server) if from_client else (flow.server, flow.client)
        sport, dport = (flow.sport, flow.dport) if from_client else (flow.dport, flow.sport)
        head = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
        pseudo = src + dst + struct.pack("!HH", 17, 8 + len(payload))
        check = struct.pack("!H", _checksum(pseudo, head, payload))
        return self._ip(src, dst, 17, head[:6] + check + payload)

    def _ip(self, src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        ttl = 128 if src[0] == 10 else 52
        head = struct.pack(
            "!BBHHHBBH", 0x45, 0, 20 + len(payload), self.ip_id, 0x4000, ttl, proto, 0
        )
        head += src + dst
        head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
        macs = _MAC_GATEWAY + _MAC_HOST if src[0] == 10 else _MAC_HOST + _MAC_GATEWAY
        return macs + b"\x08\x00" + head + payload

    def _record(self, size: int) -> bytes:
        """A TLS application-data stream of `size` bytes in records of at most 16 KiB."""
        parts = []
        while size > 0:
            length = min(size, 16384)
            parts.append(
                b"\x17\x03\x03" + struct.pack("!H", length) + self._slice(self.noise, length)
            )
            size -= length
        return b"".join(parts)

    def _slice(self, blob: bytes, size: int) -> bytes:
        if size <= len(blob):
            start = self.rng.randrange(len(blob) - size + 1)
            return blob[start : start + size]
        return (blob * (size // len(blob) + 1))[:size]


def _client_hello(name: bytes, random_bytes: bytes) -> bytes:
    """A TLS 1.2-framed ClientHello with the usual ciphers and a server_name extension."""
    ciphers = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
    sni = struct.pack("!HHBH", len(name) + 3, 0, 0, len(name)) + name
    extensions = (
        struct.pack("!HH", 0, len(sni)) + sni
        + bytes.fromhex("000a000a0008001d001700180019")  # supported groups
        + bytes.fromhex("000b00020100")  # point formats
        + bytes.fromhex("0010000e000c02683208687474702f312e31")  # ALPN h2, http/1.1
        + bytes.fromhex("002b0007060304030303")  # supported versions
    )  # fmt: skip
    body = (
        b"\x03\x03" + random_bytes + b"\x20" + random_bytes[::-1]
        + struct.pack("!H", len(ciphers)) + ciphers + b"\x01\x00"
        + struct.pack("!H", len(extensions)) + extensions
    )  # fmt: skip
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--bytes", type=float, default=1e9, help="target size (default 1 GB)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    count = write_capture(args.out, int(args.bytes), args.seed)
    size = args.out.stat().st_size
    seconds = time.perf_counter() - started
    print(f"{args.out}: {count:,} packets, {size:,} bytes in {seconds:.1f} s")


if __name__ == "__main__":
    main()
