"""The network side of the simulated day (docs/simulator.md): the gateway's netfilter log, the
injected network C2 and their look-alikes, checked against the written logs and truth.json."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import re
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from homecall.simulator import (
    BenignNetwork,
    FirewallTruth,
    NetworkC2Truth,
    SimulationResult,
    simulate,
)
from homecall.sources import detect, iptables
from homecall.sources.problems import Problems

from .conftest import ZeekLog

DAY = "2026-11-23"
INTERNAL = ipaddress.ip_network("10.0.0.0/8")
RESOLVER, RELAY, SCANNER, NVR = "10.0.0.53", "10.0.1.25", "10.0.1.50", "10.0.4.20"
ReadLog = Callable[[Path], ZeekLog]
# The kernel's LOG target behind rsyslog, as in ../shared/c2-samples/firewall-iptables
LINE = re.compile(
    r"^[A-Z][a-z]{2} [ 1-3]\d \d{2}:\d{2}:\d{2} gw kernel: \[ *\d+\.\d{6}\] \[UFW BLOCK\] "
    r"IN=(eth1 OUT=eth0|eth0 OUT=) MAC=[0-9a-f:]{41} SRC=[\d.]+ DST=[\d.]+ LEN=\d+ "
    r"TOS=0x00 PREC=0x00 TTL=\d+ ID=\d+( DF)? "
    r"PROTO=(TCP SPT=\d+ DPT=\d+ WINDOW=\d+ RES=0x00 SYN URGP=0|UDP SPT=\d+ DPT=\d+ LEN=\d+)$"
)


def _rows(log: ZeekLog) -> list[dict[str, str]]:
    return [dict(zip(log.fields, row, strict=True)) for row in log.rows]


def _firewall(path: Path) -> tuple[list[dict[str, object]], Problems]:
    problems = Problems()
    batches = [batch for table, batch in iptables.read(path, problems) if table == "firewall"]
    rows = pa.Table.from_batches(batches).to_pylist() if batches else []
    return rows, problems


def _one(entries: tuple[NetworkC2Truth, ...], kind: str, port: int | None = None) -> NetworkC2Truth:
    found = [e for e in entries if e.kind == kind and (port is None or e.port == port)]
    assert len(found) == 1, (kind, port, found)
    return found[0]


def _benign(result: SimulationResult, kind: str) -> BenignNetwork:
    found = [b for b in result.benign_network if b.kind == kind]
    assert len(found) == 1, kind
    return found[0]


@pytest.fixture(scope="module")
def conn(default_run: SimulationResult, read_log: ReadLog) -> list[dict[str, str]]:
    return _rows(read_log(default_run.out / DAY / "conn.log"))


@pytest.fixture(scope="module")
def smtp(default_run: SimulationResult, read_log: ReadLog) -> list[dict[str, str]]:
    return _rows(read_log(default_run.out / DAY / "smtp.log"))


@pytest.fixture(scope="module")
def firewall(default_run: SimulationResult) -> list[dict[str, object]]:
    rows, problems = _firewall(default_run.out / DAY / "firewall" / "kern.log")
    assert problems.bad_records == 0, [str(p) for p in problems.records]
    return rows


def test_layout_truth_json_and_result(default_run: SimulationResult) -> None:
    day = default_run.out / DAY
    assert list(default_run.network_logs) == [day / "smtp.log", day / "firewall" / "kern.log"]
    assert set(default_run.network_rows) == {"smtp", "firewall"}
    truth = json.loads((default_run.out / "truth.json").read_text())
    assert list(truth)[-3:] == ["firewall", "network_c2", "benign_network"]
    assert FirewallTruth(**{**truth["firewall"], **_tuples(truth["firewall"])}) == (
        default_run.firewall
    )
    assert [NetworkC2Truth(**{**e, **_tuples(e)}) for e in truth["network_c2"]] == list(
        default_run.network_c2
    )
    assert [BenignNetwork(**e) for e in truth["benign_network"]] == list(default_run.benign_network)
    kinds = Counter(c.kind for c in default_run.network_c2)
    assert kinds == {"proxy-bypass": 1, "irc": 2, "p2p": 1, "mail-from-endpoint": 1}
    assert {b.kind for b in default_run.benign_network} == {
        "app-direct", "teams-media", "ntp-direct", "internet-scan", "irc-tls", "resolver",
        "vuln-scanner", "cdn-heavy", "mail-relay", "mail-submission",
    }  # fmt: skip
    assert {b.detector for b in default_run.benign_network} == {
        "proxy-bypass",
        "irc",
        "p2p-fanout",
        "mail-from-endpoint",
    }
    busy = {c.src for c in default_run.c2} | {d.src for d in default_run.dga}
    busy |= {w.src for w in default_run.web_c2} | {a.src for a in default_run.user_agents}
    assert not {c.src for c in default_run.network_c2} & busy  # one technique a host


def _tuples(entry: dict[str, object]) -> dict[str, object]:
    return {k: tuple(v) for k, v in entry.items() if isinstance(v, list)}


def test_the_firewall_log_is_netfilter_syslog_that_the_iptables_reader_takes(
    default_run: SimulationResult, firewall: list[dict[str, object]]
) -> None:
    path = default_run.out / DAY / "firewall" / "kern.log"
    lines = path.read_text().splitlines()
    assert lines
    assert [line for line in lines if not LINE.match(line)] == []
    assert detect(path).format == iptables.FORMAT
    fw = default_run.firewall
    assert fw is not None
    assert len(firewall) == len(lines) == fw.lines == default_run.network_rows["firewall"]
    assert {(r["action"], r["reason"], r["device"]) for r in firewall} == {
        ("deny", "[UFW BLOCK]", "gw")
    }
    start = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    assert all(start <= r["ts"] < start + dt.timedelta(days=1) for r in firewall)  # year: mtime
    stamps = [r["ts"] for r in firewall]
    assert stamps == sorted(stamps)
    inbound = [r for r in firewall if r["in_interface"] == fw.outside_interface]
    outbound = [r for r in firewall if r["in_interface"] == fw.inside_interface]
    assert len(inbound) == fw.denied_inbound
    assert len(outbound) == fw.denied_outbound
    assert {r["resp_ip"] for r in inbound} == {fw.public_address}
    assert all(r["out_interface"] == fw.outside_interface for r in outbound)
    assert {r["orig_ip"] for r in outbound} <= set(fw.proxy_only)
    assert default_run.proxy is not None
    assert fw.proxy_only == default_run.proxy.hosts
    assert all(r["tcp_flags"] == "SYN" for r in firewall if r["proto"] == "tcp")


def test_every_denied_attempt_is_an_unanswered_conn_row_seen_inside(
    default_run: SimulationResult, conn: list[dict[str, str]], firewall: list[dict[str, object]]
) -> None:
    fw = default_run.firewall
    assert fw is not None
    assert fw.sensor == "inside"
    pool = {entry.split()[1] for entry in fw.allowed_direct}
    direct = [
        r for r in conn
        if r["id.orig_h"] in fw.proxy_only
        and ipaddress.ip_address(r["id.resp_h"]) not in INTERNAL
        and (r["proto"], r["id.resp_p"], r["id.resp_h"] in pool) != ("udp", "123", True)
    ]  # fmt: skip
    assert direct  # the sensor sees the attempts the gateway drops...
    assert {r["conn_state"] for r in direct} == {"S0"}  # ...and none of them is answered
    assert {r["history"] for r in direct} <= {"S", "D"}
    packets = Counter(
        (r["orig_ip"], r["orig_port"], r["resp_ip"], r["resp_port"], r["proto"])
        for r in firewall
        if r["in_interface"] == fw.inside_interface
    )
    expected: Counter[tuple[object, ...]] = Counter()
    for r in direct:
        key = (r["id.orig_h"], int(r["id.orig_p"]), r["id.resp_h"], int(r["id.resp_p"]), r["proto"])
        expected[key] += int(r["orig_pkts"])
    assert packets == expected  # one line per SYN (retransmissions too) or datagram
    ntp = [r for r in conn if r["id.orig_h"] in fw.proxy_only and r["id.resp_p"] == "123"]
    assert {r["conn_state"] for r in ntp if r["id.resp_h"] in pool} == {"SF"}  # allowed


def test_the_direct_c2_is_denied_every_five_minutes(
    default_run: SimulationResult, conn: list[dict[str, str]], firewall: list[dict[str, object]]
) -> None:
    c2 = _one(default_run.network_c2, "proxy-bypass")
    assert default_run.proxy is not None
    assert c2.src in default_run.proxy.hosts
    assert ipaddress.ip_address(c2.dst).is_global
    rows = [r for r in conn if (r["id.orig_h"], r["id.resp_h"]) == (c2.src, c2.dst)]
    assert len(rows) == c2.connections == c2.failed > 200  # a day at 300 s +- 20 %
    assert {(r["id.resp_p"], r["conn_state"], r["service"]) for r in rows} == {("443", "S0", "-")}
    lines = [r for r in firewall if (r["orig_ip"], r["resp_ip"]) == (c2.src, c2.dst)]
    assert len(lines) == c2.firewall_lines == sum(int(r["orig_pkts"]) for r in rows)
    starts = sorted(float(r["ts"]) for r in rows)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert statistics.median(gaps) == pytest.approx(c2.period_s, rel=0.05)
    assert max(gaps) <= c2.period_s * (1 + c2.jitter_ratio) * 1.01  # a desktop: always on
    assert set(c2.uids) <= {r["uid"] for r in rows}
    assert len(c2.uids) == 50
    assert c2.first_seen.startswith(DAY)
    assert c2.peers == 1


def test_irc_bots_hold_long_quiet_sessions_and_reconnect(
    default_run: SimulationResult, conn: list[dict[str, str]], read_log: ReadLog
) -> None:
    for port in (6667, 443):
        bot = _one(default_run.network_c2, "irc", port)
        rows = [r for r in conn if (r["id.orig_h"], r["id.resp_h"]) == (bot.src, bot.dst)]
        assert len(rows) == bot.connections >= 3  # reconnects
        assert {r["id.resp_p"] for r in rows} == {str(port)}
        answered = [r for r in rows if r["conn_state"] not in ("S0", "REJ")]
        assert {r["service"] for r in answered} == {"irc"}  # Zeek's DPD, on 443 too
        assert len(rows) - len(answered) == bot.failed
        longest = max(float(r["duration"]) for r in answered)
        assert longest == pytest.approx(bot.longest_s)
        assert longest > 3_600
        for r in answered:  # PINGs and PONGs: a few kB an hour
            hours = float(r["duration"]) / 3_600
            assert int(r["orig_bytes"]) + int(r["resp_bytes"]) < 10_000 + 8_000 * hours
            assert int(r["orig_pkts"]) >= float(r["duration"]) / 240
    named = _one(default_run.network_c2, "irc", 443)
    dns = _rows(read_log(default_run.out / DAY / "dns.log"))
    assert any(r["id.orig_h"] == named.src and r["answers"] == named.dst for r in dns)
    user = _benign(default_run, "irc-tls")
    ssl = _rows(read_log(default_run.out / DAY / "ssl.log"))
    mine = [r for r in ssl if r["id.orig_h"] == user.src and r["id.resp_p"] == "6697"]
    assert mine
    assert {r["server_name"] for r in mine} == {"irc.libera.chat"}
    assert len(mine) == user.connections


def test_the_p2p_bot_fans_out_over_udp_and_mostly_fails(
    default_run: SimulationResult, conn: list[dict[str, str]]
) -> None:
    bot = _one(default_run.network_c2, "p2p")
    assert (bot.src, bot.dst, bot.port) == (NVR, None, None)
    rows = [r for r in conn if r["id.orig_h"] == bot.src]
    assert len(rows) == bot.connections
    peers = {r["id.resp_h"] for r in rows}
    assert len(peers) == bot.peers > 1_000
    assert all(ipaddress.ip_address(p).is_global for p in peers)
    assert len({p.rsplit(".", 2)[0] for p in peers}) > 200  # /16 networks
    udp = [r for r in rows if r["proto"] == "udp"]
    assert len(udp) > 0.7 * len(rows)
    assert len({r["id.orig_p"] for r in udp}) == 1  # a DHT node on its one port
    failed = [r for r in rows if r["conn_state"] in ("S0", "REJ")]
    assert len(failed) == bot.failed > 0.6 * len(rows)
    assert sum(int(r["id.resp_p"]) > 1024 for r in rows) > 0.99 * len(rows)


def test_look_alikes_that_fan_out(
    default_run: SimulationResult, conn: list[dict[str, str]], read_log: ReadLog
) -> None:
    resolver = _benign(default_run, "resolver")
    upstream = [r for r in conn if r["id.orig_h"] == RESOLVER]
    assert {(r["proto"], r["id.resp_p"], r["conn_state"]) for r in upstream} == {
        ("udp", "53", "SF")
    }
    assert len({r["id.resp_h"] for r in upstream}) == resolver.peers > 100
    dns_uids = set(read_log(default_run.out / DAY / "dns.log").column("uid"))
    assert not dns_uids & {r["uid"] for r in upstream}  # its recursion is in conn.log only
    scanner = _benign(default_run, "vuln-scanner")
    probes = [r for r in conn if r["id.orig_h"] == SCANNER]
    assert scanner.expected == "scan"
    assert len(probes) == scanner.connections
    assert all(ipaddress.ip_address(r["id.resp_h"]) in INTERNAL for r in probes)
    targets = Counter(r["id.resp_h"] for r in probes)
    assert len(targets) > 200  # a sweep of every host...
    assert max(targets.values()) > 1_000  # ...then the first 1,024 ports of a server
    heavy = _benign(default_run, "cdn-heavy")
    mine = [r for r in conn if r["id.orig_h"] == heavy.src and r["id.resp_p"] == "443"]
    assert len({r["id.resp_h"] for r in mine}) > 400
    answered = sum(r["conn_state"] in ("SF", "RSTO", "RSTR") for r in mine)
    assert answered > 0.9 * len(mine)


def test_the_spam_bot_and_the_mail_that_is_not_spam(
    default_run: SimulationResult, conn: list[dict[str, str]], smtp: list[dict[str, str]]
) -> None:
    assert len(smtp) == default_run.network_rows["smtp"]
    by_uid = {r["uid"]: r for r in conn}
    for row in smtp:
        assert by_uid[row["uid"]]["id.resp_p"] == row["id.resp_p"]  # every row has its conn row
    bot = _one(default_run.network_c2, "mail-from-endpoint")
    sessions = [r for r in conn if r["id.orig_h"] == bot.src and r["id.resp_p"] == "25"]
    assert len(sessions) == bot.connections > 300
    assert len({r["id.resp_h"] for r in sessions}) == bot.peers > 100
    mine = [r for r in smtp if r["id.orig_h"] == bot.src]
    assert len(mine) == bot.messages
    assert len({r["mailfrom"] for r in mine}) == bot.senders > 0.9 * bot.messages  # forged
    recipients = {a for r in mine for a in r["rcptto"].split(",")}
    assert len(recipients) == bot.recipients > bot.messages
    assert {r["tls"] for r in mine} == {"F"}
    assert any("spamhaus" in r["last_reply"] for r in mine)
    relay = _benign(default_run, "mail-relay")
    assert relay.src == RELAY
    out = [r for r in smtp if r["id.orig_h"] == RELAY]
    into = [r for r in smtp if r["id.resp_h"] == RELAY]
    assert out
    assert into
    assert sum(r["tls"] == "T" for r in out) > 0.8 * len(out)  # STARTTLS: no envelope seen
    assert all(r["mailfrom"] == "-" for r in out if r["tls"] == "T")
    assert any(ipaddress.ip_address(r["id.orig_h"]) not in INTERNAL for r in into)
    assert {r["id.orig_h"] for r in into if r["id.orig_h"].startswith("10.")} >= {"10.0.3.10"}
    submission = _benign(default_run, "mail-submission")
    user = [r for r in smtp if r["id.orig_h"] == submission.src]
    assert {(r["id.resp_p"], r["tls"], r["mailfrom"]) for r in user} == {("587", "T", "-")}


def test_benign_denials_and_the_internet_knocking(
    default_run: SimulationResult, firewall: list[dict[str, object]]
) -> None:
    fw = default_run.firewall
    assert fw is not None
    for kind in ("app-direct", "teams-media", "ntp-direct"):
        lines = sum(b.firewall_lines for b in default_run.benign_network if b.kind == kind)
        assert lines > 0, kind
    teams = _benign(default_run, "teams-media")
    stun = [r for r in firewall if r["proto"] == "udp" and 3478 <= int(r["resp_port"]) <= 3481]
    assert len(stun) == teams.firewall_lines
    scans = _benign(default_run, "internet-scan")
    assert scans.firewall_lines == fw.denied_inbound > 500
    assert scans.connections == 0  # dropped outside: the sensor never sees them
    inbound = [r for r in firewall if r["in_interface"] == fw.outside_interface]
    assert len({r["orig_ip"] for r in inbound}) == scans.peers
    ports = Counter(r["resp_port"] for r in inbound)
    assert ports[23] > ports[80]  # telnet worms outnumber the research scanners


def test_small_fleets_get_only_the_internet_and_runs_are_reproducible(tmp_path: Path) -> None:
    tiny = simulate(tmp_path / "tiny", hosts=10, days=1, seed=4)
    assert (tiny.network_c2, tiny.firewall.proxy_only if tiny.firewall else None) == ((), ())
    assert [b.kind for b in tiny.benign_network] == ["internet-scan"]
    rows, problems = _firewall(tiny.out / DAY / "firewall" / "kern.log")
    assert problems.bad_records == 0
    assert rows
    assert {r["in_interface"] for r in rows} == {"eth0"}
    assert tiny.network_rows["smtp"] == 0
    first = simulate(tmp_path / "a", hosts=25, days=1, seed=5)
    again = simulate(tmp_path / "b", hosts=25, days=1, seed=5)
    kinds = {c.kind for c in first.network_c2}
    assert kinds == {"proxy-bypass", "irc", "p2p", "mail-from-endpoint"}
    for path in first.network_logs:
        twin = again.out / path.relative_to(first.out)
        assert path.read_bytes() == twin.read_bytes(), path


def test_days_continue_the_network_runs(week_run: SimulationResult) -> None:
    days = sorted(p.name for p in week_run.out.iterdir() if p.is_dir())
    bypass = _one(week_run.network_c2, "proxy-bypass")
    assert (bypass.first_seen[:10], bypass.last_seen[:10]) == (days[0], days[-1])
    uptimes = []
    for folder in days:
        path = week_run.out / folder / "firewall" / "kern.log"
        rows, problems = _firewall(path)
        assert problems.bad_records == 0
        assert {r["ts"].date().isoformat() for r in rows} == {folder}
        first = path.read_text().splitlines()[0]
        clock = re.search(r"\[ *(\d+\.\d+)\]", first)
        assert clock is not None
        uptimes.append(float(clock.group(1)))
    assert uptimes == sorted(uptimes)  # one boot: the kernel's clock runs on across the days
