"""HTTP and DNS read from hand-built captures: reassembly (split, pipelined, reordered and
retransmitted segments, lost bytes) and DNS transactions (answered, unanswered, unusual types);
and the messages dpkt.http and dpkt.dns cannot read, which is why pcap_http and pcap_dns parse
them."""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import pytest

from tests.sources.pcap_build import (
    ACK,
    CLIENT,
    PSH,
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

C_ISN, S_ISN = 1000, 5000


def _segments(client: list[tuple[int, bytes]], server: list[tuple[int, bytes]]) -> list[bytes]:
    """A handshake, then the client's (stream offset, bytes) segments in the order given, then
    the server's, which acknowledge all the client sent; sequence numbers from the offsets."""
    sent = max((offset + len(data) for offset, data in client), default=0)
    frames = [
        tcp_packet(CLIENT, 40000, SERVER, 80, SYN, C_ISN, 0),
        tcp_packet(SERVER, 80, CLIENT, 40000, SYN | ACK, S_ISN, C_ISN + 1),
        tcp_packet(CLIENT, 40000, SERVER, 80, ACK, C_ISN + 1, S_ISN + 1),
    ]
    for offset, data in client:
        frames.append(tcp_packet(CLIENT, 40000, SERVER, 80, PSH | ACK, C_ISN + 1 + offset,
                                 S_ISN + 1, data))  # fmt: skip
    for offset, data in server:
        frames.append(tcp_packet(SERVER, 80, CLIENT, 40000, PSH | ACK, S_ISN + 1 + offset,
                                 C_ISN + 1 + sent, data))  # fmt: skip
    return [ethernet(ip) for ip in frames]


def _http(tmp_path: Path, frames: list[bytes]) -> list[dict[str, object]]:
    path = tmp_path / "http.pcap"
    write_pcap(path, [(T0_US + 1000 * i, f) for i, f in enumerate(frames)])
    tables, problems = read(path)
    assert problems.records == []
    return sorted(tables["http"], key=lambda r: r["trans_depth"])  # type: ignore[arg-type,return-value]


REQUEST_1 = (
    b"POST /beacon?id=7 HTTP/1.1\r\nHost: c2.example:8080\r\nUser-Agent: Go-http-client/1.1\r\n"
    b"Referer: http://ref.example/\r\nAuthorization: Basic dXNlcjpwYXNz\r\n"
    b"X-Forwarded-For: 10.9.9.9\r\nContent-Length: 11\r\n\r\nhello world"
)
REQUEST_2 = b"GET /two HTTP/1.1\r\nHost: c2.example\r\n\r\n"
RESPONSES = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n3\r\nfgh\r\n0\r\n\r\n"
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope"
)


def _check_two_requests(rows: list[dict[str, object]]) -> None:
    first, second = rows
    assert first["method"] == "POST"
    assert first["uri"] == "/beacon?id=7"
    assert first["host"] == "c2.example"  # the port is dropped, as Zeek does
    assert (first["user_agent"], first["referrer"]) == ("Go-http-client/1.1", "http://ref.example/")
    assert first["username"] == "user"
    assert first["proxied"] == ["X-FORWARDED-FOR -> 10.9.9.9"]
    assert (first["request_body_len"], first["status_code"], first["status_msg"]) == (11, 200, "OK")
    assert (first["response_body_len"], first["version"]) == (8, "1.1")  # chunks 5 + 3
    assert (second["uri"], second["status_code"], second["response_body_len"]) == ("/two", 404, 4)
    assert (first["trans_depth"], second["trans_depth"]) == (1, 2)


def test_pipelined_requests_split_across_segments(tmp_path: Path) -> None:
    stream = REQUEST_1 + REQUEST_2
    client = [(0, stream[:20]), (20, stream[20:97]), (97, stream[97:])]
    server = [(0, RESPONSES[:50]), (50, RESPONSES[50:])]
    _check_two_requests(_http(tmp_path, _segments(client, server)))


def test_reordered_and_retransmitted_segments(tmp_path: Path) -> None:
    stream = REQUEST_1 + REQUEST_2
    client = [(0, stream[:20]), (60, stream[60:]), (0, stream[:20]), (20, stream[20:60])]
    server = [(40, RESPONSES[40:]), (0, RESPONSES[:45])]  # out of order, overlapping
    _check_two_requests(_http(tmp_path, _segments(client, server)))


def test_lost_body_bytes_do_not_lose_the_next_request(tmp_path: Path) -> None:
    stream = REQUEST_1 + REQUEST_2
    body_at = len(REQUEST_1) - 11
    client = [(0, stream[: body_at + 2]), (body_at + 6, stream[body_at + 6 :])]  # 4 body bytes lost
    rows = _http(tmp_path, _segments(client, [(0, RESPONSES)]))
    assert [r["uri"] for r in rows] == ["/beacon?id=7", "/two"]
    assert rows[0]["request_body_len"] == 11


def test_request_without_response_keeps_null_status(tmp_path: Path) -> None:
    [row] = _http(tmp_path, _segments([(0, REQUEST_2)], []))
    assert (row["uri"], row["status_code"], row["response_body_len"]) == ("/two", None, 0)


def test_http_on_an_odd_port_and_a_response_without_length(tmp_path: Path) -> None:
    frames = session(
        [(True, b"GET /x HTTP/1.0\r\n\r\n"), (False, b"HTTP/1.0 200 OK\r\n\r\n0123456789")],
        sport=31337,
    )
    path = tmp_path / "odd.pcap"
    write_pcap(path, frames)
    tables, _ = read(path)
    [row] = tables["http"]
    assert (row["resp_port"], row["response_body_len"]) == (31337, 10)  # read until the close


def _dns_query(ident: int, name: str, qtype: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)


def _dns_answer(query: bytes, answers: list[tuple[int, int, bytes]], rcode: int = 0) -> bytes:
    ident = struct.unpack("!H", query[:2])[0]
    head = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, len(answers), 0, 0)
    rrs = b"".join(struct.pack("!HHHIH", 0xC00C, t, 1, ttl, len(d)) + d for t, ttl, d in answers)
    return head + query[12:] + rrs


def test_dns_transactions(tmp_path: Path) -> None:
    a_query = _dns_query(0x1111, "C2.Example.COM", 1)
    https_query = _dns_query(0x2222, "c2.example.com", 65)
    lost = _dns_query(0x3333, "nowhere.example", 16)
    cname = b"\x03cdn\xc0\x0c"
    answer = _dns_answer(a_query, [(5, 60, cname), (1, 30, bytes([192, 0, 2, 9]))])
    https = _dns_answer(https_query, [(65, 300, b"\x00\x01\x00\x00\x01\x00\x03\x02h2")])
    nx = _dns_answer(lost, [], rcode=3)
    sent = [
        (0, udp_packet(CLIENT, 53000, "10.0.0.53", 53, a_query)),
        (10, udp_packet(CLIENT, 53000, "10.0.0.53", 53, https_query)),
        (2500, udp_packet("10.0.0.53", 53, CLIENT, 53000, answer)),
        (3000, udp_packet("10.0.0.53", 53, CLIENT, 53000, https)),
        (4000, udp_packet(CLIENT, 53001, "10.0.0.53", 53, lost)),
        (9000, udp_packet(CLIENT, 53002, "10.0.0.53", 53, lost)),
        (9500, udp_packet("10.0.0.53", 53, CLIENT, 53002, nx)),
    ]
    path = tmp_path / "dns.pcap"
    write_pcap(path, [(T0_US + at, ethernet(ip)) for at, ip in sent])
    tables, problems = read(path)
    assert problems.records == []
    rows = {(r["trans_id"], r["orig_port"]): r for r in tables["dns"]}
    a = rows[(0x1111, 53000)]
    assert (a["query"], a["qtype_name"], a["qclass_name"]) == ("c2.example.com", "A", "C_INTERNET")
    assert a["answers"] == ["cdn.C2.Example.COM", "192.0.2.9"]  # answers keep their case
    assert a["ttls_s"] == [60.0, 30.0]
    assert (a["rcode_name"], a["rd"], a["ra"], a["rejected"]) == ("NOERROR", True, True, False)
    assert a["rtt_s"] == 0.0025
    assert rows[(0x2222, 53000)]["answers"] == ["<unknown type=65>"]
    unanswered = rows[(0x3333, 53001)]
    assert (unanswered["qtype_name"], unanswered["rcode"], unanswered["answers"]) == (
        "TXT",
        None,
        None,
    )
    nxdomain = rows[(0x3333, 53002)]
    assert (nxdomain["rcode_name"], nxdomain["rejected"]) == ("NXDOMAIN", True)
    assert {r["service"] for r in tables["conn"]} == {"dns"}


# ----------------------------------- where dpkt.http and dpkt.dns fall short of the reader's own


def test_dpkt_http_cannot_read_heads_the_reader_reads(tmp_path: Path) -> None:
    post = b"POST /beacon HTTP/1.1\r\nHost: c2.example\r\nContent-Length: 11\r\n\r\n"
    with pytest.raises(dpkt.NeedData):
        dpkt.http.Request(post)  # a head without its body (a later segment, or never captured)
    with pytest.raises(dpkt.NeedData):
        dpkt.http.Response(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n")  # to a HEAD
    patch = b"PATCH /x HTTP/1.1\r\nHost: c2.example\r\n\r\n"
    with pytest.raises(dpkt.UnpackError, match="invalid http method"):
        dpkt.http.Request(patch)  # RFC 5789; any token is a method (RFC 9110, 9.1)
    odd = b"GET /caf\xc3\xa9 HTTP/1.1\r\nUser-Agent: \xff\xfebot\r\n\r\n"
    parsed = dpkt.http.Request(odd)
    assert (parsed.uri, parsed.headers["user-agent"]) == ("/caf", "bot")  # bytes dropped
    stream = post + b"hello world" + patch + odd
    answers = b"HTTP/1.1 204 No Content\r\n\r\n" * 3
    rows = _http(tmp_path, _segments([(0, stream[:60]), (60, stream[60:])], [(0, answers)]))
    assert [(r["method"], r["uri"], r["status_code"]) for r in rows] == [
        ("POST", "/beacon", 204),
        ("PATCH", "/x", 204),
        ("GET", "/café", 204),
    ]
    assert (rows[0]["request_body_len"], rows[2]["user_agent"]) == (11, r"\xff\xfebot")


def test_dpkt_dns_rejects_messages_the_reader_reads(tmp_path: Path) -> None:
    query = _dns_query(0x4444, "c2.example.com", 65)
    https = _dns_answer(query, [(65, 300, b"\x00\x01\x00\x00\x01\x00\x03\x02h2")])
    with pytest.raises(dpkt.UnpackError, match="RR type 65 is not supported"):
        dpkt.dns.DNS(https)  # the whole message, for one record of a type it does not know
    tunnel = bytearray(_dns_query(0x5555, "xxxx.t.example", 16))
    tunnel[13:17] = b"\xbc\xfeab"  # a binary label, as in iodine's Base128 encoding
    with pytest.raises(UnicodeDecodeError):
        dpkt.dns.DNS(bytes(tunnel))
    sent = [
        udp_packet(CLIENT, 53000, "10.0.0.53", 53, query),
        udp_packet("10.0.0.53", 53, CLIENT, 53000, https),
        udp_packet(CLIENT, 53001, "10.0.0.53", 53, bytes(tunnel)),
    ]
    path = tmp_path / "dns.pcap"
    write_pcap(path, [(T0_US + 1000 * i, ethernet(ip)) for i, ip in enumerate(sent)])
    tables, problems = read(path)
    assert problems.records == []
    rows = {r["trans_id"]: r for r in tables["dns"]}
    assert rows[0x4444]["answers"] == ["<unknown type=65>"]
    assert rows[0x5555]["query"] == r"\xbc\xfeab.t.example"
