from __future__ import annotations

import socket
from itertools import count
from pathlib import Path
from typing import Any

import dpkt
import pytest

from homecall.detectors import irc
from homecall.detectors.irc import IrcConfig, irc_score, known_network
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store, store_of

CFG = IrcConfig()
START = 1_709_625_600.0  # 2024-03-05 08:00 UTC
_uid = count()

BOT, BOTNET, PORT_ONLY, DEV, GAMERS, AIRPLAY, DEAD = (
    "10.0.0.21",
    [f"10.0.1.{i}" for i in range(1, 7)],
    "10.0.0.30",
    "10.0.0.40",
    [f"10.0.2.{i}" for i in range(1, 6)],
    "10.0.0.41",
    "10.0.0.42",
)


def _conn(ts: float, src: str, dst: str, port: int, **fields: Any) -> dict[str, Any]:
    return {
        "ts": ts,
        "uid": fields.pop("uid", None) or f"C{next(_uid)}",
        "id.orig_h": src,
        "id.orig_p": 50000,
        "id.resp_h": dst,
        "id.resp_p": port,
        "proto": "tcp",
        "duration": fields.pop("duration", 30.0),
        "orig_bytes": fields.pop("orig_bytes", 400),
        "resp_bytes": fields.pop("resp_bytes", 900),
        "conn_state": fields.pop("conn_state", "SF"),
        "orig_pkts": 6,
        "resp_pkts": 0 if fields.get("unanswered") else 6,
        **{k: v for k, v in fields.items() if k != "unanswered"},
    }


def _tls(row: dict[str, Any], name: str) -> dict[str, Any]:
    keys = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")
    return {**{k: row[k] for k in keys}, "version": "TLSv13", "server_name": name}


def _logs() -> dict[str, list[dict[str, Any]]]:
    """A bot idling 5 h in an IRC channel on port 8080 (PING/PONG only); six hosts reconnecting
    to one IRC server on 6667 every 10 min (a botnet's channel); one short try of 6667 with no
    protocol seen; a developer on Libera.Chat over TLS for 8 h; five gamers in Twitch chat
    (IRC over TLS on 6697); AirPlay on port 7000 inside; an unanswered try of 6667."""
    conn = [
        _conn(START, BOT, "203.0.113.50", 8080, service="irc", duration=18000.0,
              orig_bytes=9000, resp_bytes=11000),
    ]  # fmt: skip
    for n, host in enumerate(BOTNET):
        conn += [
            _conn(START + 600 * k + n, host, "198.51.100.7", 6667, service="irc", duration=20.0)
            for k in range(36)
        ]
    conn.append(_conn(START + 50, PORT_ONLY, "192.0.2.9", 6667, duration=2.0))
    dev = _conn(START, DEV, "130.185.232.126", 6697, service="ssl", duration=28800.0,
                orig_bytes=400_000, resp_bytes=3_000_000)  # fmt: skip
    conn.append(dev)
    ssl = [_tls(dev, "irc.libera.chat")]
    for n, host in enumerate(GAMERS):
        chat = _conn(START + 100 * n, host, "34.212.92.60", 6697, service="ssl", duration=7200.0,
                     orig_bytes=50_000, resp_bytes=900_000)  # fmt: skip
        conn.append(chat)
        ssl.append(_tls(chat, "irc.chat.twitch.tv"))
    conn.append(_conn(START, AIRPLAY, "10.0.0.99", 7000, service="http", duration=600.0))
    conn.append(_conn(START, AIRPLAY, "17.253.1.1", 7000, service="http", duration=600.0))
    conn.append(_conn(START, DEAD, "192.0.2.77", 6667, conn_state="S0", unanswered=True))
    return {"conn": conn, "ssl": ssl}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return store_of(tmp_path_factory.mktemp("irc"), _logs())


@pytest.fixture(scope="module")
def found(store: Store) -> list[Finding]:
    return list(irc.run(open_store(store), CFG))


@pytest.mark.parametrize(
    ("base", "longest_s", "quiet", "regularity", "hosts", "expected"),
    [
        (0.3, 2.0, 0.0, 0.0, 1, 0.9 * (0.3 + 0.15 * 2 / 3600)),  # a port, briefly: "low"
        (0.45, 3600.0, 0.0, 0.0, 1, 0.9 * 0.6),  # IRC for an hour on its port: "medium"
        (0.6, 18000.0, 1.0, 0.0, 1, 0.9 * 0.85),  # off its port, idle for hours: "high"
        (0.45, 20.0, 0.0, 1.0, 5, 0.9 * (0.45 + 0.15 * 20 / 3600 + 0.1 + 0.3)),  # a botnet
        (0.6, 3600.0, 1.0, 1.0, 9, 0.9),  # everything: capped at max_score
    ],
)
def test_irc_score_hand_worked(
    base: float, longest_s: float, quiet: float, regularity: float, hosts: int, expected: float
) -> None:
    assert irc_score(base, longest_s, quiet, regularity, hosts, CFG) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("names", "network"),
    [
        (["irc.libera.chat"], "libera.chat"),
        (["IRC.OFTC.NET."], "oftc.net"),
        (["chat.example.com", "irc-ws.chat.twitch.tv"], "twitch.tv"),
        (["libera.chat.evil.example"], None),  # a look-alike name is not the network
        ([], None),
    ],
)
def test_known_networks_by_name(names: list[str], network: str | None) -> None:
    assert known_network(names, CFG) == network


def test_irc_off_its_port_and_the_botnet_channel_rank_first(found: list[Finding]) -> None:
    top = found[: 1 + len(BOTNET)]
    assert {f.src for f in top} == {BOT, *BOTNET}
    bot = next(f for f in found if f.src == BOT)
    assert (bot.dst, bot.dst_port) == ("203.0.113.50", 8080)
    assert bot.evidence["off_irc_port"] is True
    assert bot.evidence["keepalive_only"] is True
    assert bot.score == pytest.approx(irc_score(0.6, 18000.0, 1.0, 0.0, 1, CFG))
    assert bot.severity == "high"
    assert "port 8080 is not an IRC port" in bot.summary
    member = next(f for f in found if f.src == BOTNET[0])
    assert member.evidence["dst_hosts"] == len(BOTNET)
    assert member.evidence["reconnect_period_s"] == pytest.approx(600.0, rel=0.01)
    assert member.evidence["reconnect_regularity"] > 0.9
    assert f"{len(BOTNET)} internal hosts use this server" in member.summary
    assert member.score >= 0.75


def test_well_known_networks_are_reported_low(found: list[Finding]) -> None:
    by_src = {f.src: f for f in found}
    dev = by_src[DEV]
    assert dev.evidence["known_network"] == "libera.chat"
    assert dev.evidence["kind"] == "port"  # TLS on 6697: the protocol itself is not visible
    assert dev.score == CFG.known_floor  # 8 h of TLS on 6697, halved, kept "low"
    assert "libera.chat is a well-known IRC network" in dev.summary
    for host in GAMERS:  # five hosts in Twitch chat are no botnet
        assert by_src[host].evidence["known_network"] == "twitch.tv"
        assert by_src[host].severity == "low"
        assert "internal hosts use this server" not in by_src[host].summary


def test_ports_alone_and_look_alikes(found: list[Finding], store: Store) -> None:
    by_src = {f.src: f for f in found}
    assert by_src[PORT_ONLY].evidence["kind"] == "port"
    assert by_src[PORT_ONLY].score < 0.3  # an IRC port once, nothing more: barely "low"
    assert AIRPLAY not in by_src  # port 7000 speaking HTTP is not IRC
    assert DEAD not in by_src  # one unanswered try
    every = list(irc.run(open_store(store), IrcConfig(min_score=0.0)))
    dead = next(f for f in every if f.src == DEAD)
    assert dead.score == pytest.approx(irc_score(0.3, 30.0, 0.0, 0.0, 0, CFG) * 0.6)
    assert "no connection was answered" in dead.summary
    assert min(f.score for f in found) >= CFG.min_score


def test_contract(store: Store) -> None:
    assert_contract(lambda t: irc.run(t, CFG), store)


def test_samples_have_no_irc(samples: Path, tmp_path: Path) -> None:
    # none of the Zeek samples carries IRC (no irc service, no IRC port in conn.log)
    for folder in ("zeek-json/slips-test9-mixed", "zeek-tsv/rita-proxy-beacon"):
        sample = Store(tmp_path / folder.replace("/", "-"))
        import_paths([samples / folder], sample)
        assert list(irc.run(open_store(sample), CFG)) == [], folder


@pytest.mark.spark
def test_duckdb_and_spark_agree(store: Store, spark: object) -> None:
    assert_spark_agrees(lambda t: irc.run(t, CFG), store, spark)


def _irc_capture(path: Path) -> Path:
    """A capture of one IRC session on port 443: the client registers (NICK/USER), the server
    welcomes it, then only PINGs and PONGs every 120 s for an hour, as a bot idles."""
    client, server = socket.inet_aton("10.0.0.21"), socket.inet_aton("203.0.113.50")
    seq = {True: 1000, False: 5000}  # next sequence number, by "from the client"

    def frame(from_client: bool, flags: int, data: bytes = b"") -> bytes:
        tcp = dpkt.tcp.TCP(
            sport=51000 if from_client else 443,
            dport=443 if from_client else 51000,
            seq=seq[from_client],
            ack=seq[not from_client],
            flags=flags,
            data=data,
        )
        seq[from_client] += len(data) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
        src, dst = (client, server) if from_client else (server, client)
        ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, data=tcp, ttl=64)
        ip.len = len(ip)
        return bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip))

    ack, psh = dpkt.tcp.TH_ACK, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH
    packets = [
        (0.0, frame(True, dpkt.tcp.TH_SYN)),
        (0.05, frame(False, dpkt.tcp.TH_SYN | ack)),
        (0.1, frame(True, ack)),
        (0.2, frame(True, psh, b"NICK bot4711\r\nUSER bot4711 0 * :bot\r\n")),
        (0.3, frame(False, psh, b":irc.example.net 001 bot4711 :Welcome\r\n")),
        (0.4, frame(True, psh, b"JOIN #c2\r\n")),
    ]
    for k in range(1, 31):
        packets.append((120.0 * k, frame(False, psh, b"PING :irc.example.net\r\n")))
        packets.append((120.0 * k + 0.05, frame(True, psh, b"PONG :irc.example.net\r\n")))
    packets.append((3600.5, frame(True, dpkt.tcp.TH_FIN | ack)))
    packets.append((3600.55, frame(False, dpkt.tcp.TH_FIN | ack)))
    packets.append((3600.6, frame(True, ack)))
    with path.open("wb") as out:
        writer = dpkt.pcap.Writer(out)
        for offset, data in packets:
            writer.writepkt(data, ts=START + offset)
    return path


def test_irc_found_by_payload_in_a_capture(tmp_path: Path) -> None:
    capture = _irc_capture(tmp_path / "irc.pcap")
    store = Store(tmp_path / "store")
    import_paths([capture], store)
    (bot,) = irc.run(open_store(store), CFG)
    assert (bot.src, bot.dst, bot.dst_port) == ("10.0.0.21", "203.0.113.50", 443)
    assert bot.evidence["kind"] == "protocol"  # the reader saw NICK/USER on port 443
    assert bot.evidence["off_irc_port"] is True
    assert bot.evidence["keepalive_only"] is True
    assert bot.evidence["longest_s"] == pytest.approx(3600.6, abs=0.1)
    assert bot.severity == "high"
