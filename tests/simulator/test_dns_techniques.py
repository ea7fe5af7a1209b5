"""DGA, DNS tunnel, fast flux and their benign decoys: the logs hold what truth.json says."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from homecall.config import Config
from homecall.pipeline import import_paths
from homecall.simulator import SimulationResult, simulate
from homecall.simulator.addresses import MAIL_GATEWAY, MONITORING_SERVER, int_to_ip
from homecall.simulator.dga import FAMILIES
from homecall.simulator.truth import BenignDns, DgaTruth, FluxTruth, TunnelTruth
from homecall.store import Store
from homecall.store.tables import connect, open_tables

from .conftest import ZeekLog

ReadLog = Callable[[Path], ZeekLog]
DAY = dt.date(2026, 11, 23)
ALPHABETS = {  # iodine: base32 data behind a hex user-id character
    "dnscat2": set("0123456789abcdef"),
    "iodine": set("abcdefghijklmnopqrstuvwxyz0123456789"),
}
GATEWAY = int_to_ip(MAIL_GATEWAY)
MONITOR = int_to_ip(MONITORING_SERVER)


class Rows:
    """A parsed log's rows as dicts, by source address (one day of the default run)."""

    def __init__(self, log: ZeekLog, src: str | None = None) -> None:
        i = log.fields.index("id.orig_h")
        self.rows = [
            dict(zip(log.fields, row, strict=True)) for row in log.rows if src in (None, row[i])
        ]

    def where(self, test: Callable[[dict[str, str]], bool]) -> list[dict[str, str]]:
        return [row for row in self.rows if test(row)]


@dataclass(frozen=True)
class Logs:
    """The default run's day: dns.log as dicts, the other logs as parsed."""

    dns: Rows
    conn: ZeekLog
    named: dict[str, str]  # uid -> HTTP Host or TLS SNI

    def conn_from(self, src: str) -> Rows:
        return Rows(self.conn, src)


@pytest.fixture(scope="module")
def logs(default_run: SimulationResult, read_log: ReadLog) -> Logs:
    day = default_run.out / DAY.isoformat()
    http, ssl = read_log(day / "http.log"), read_log(day / "ssl.log")
    named = dict(zip(http.column("uid"), http.column("host"), strict=True))
    named.update(zip(ssl.column("uid"), ssl.column("server_name"), strict=True))
    return Logs(Rows(read_log(day / "dns.log")), read_log(day / "conn.log"), named)


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def _slash16(ip: str) -> str:
    return ip.rsplit(".", 2)[0]


def _split(times: list[float], gap_s: float) -> list[list[int]]:
    """Indexes of sorted times, grouped where consecutive times are closer than gap_s."""
    groups: list[list[int]] = [[0]]
    for i in range(1, len(times)):
        if times[i] - times[i - 1] > gap_s:
            groups.append([])
        groups[-1].append(i)
    return groups


def test_dga_hosts_query_their_family_names_as_the_truth_says(
    default_run: SimulationResult, logs: Logs
) -> None:
    dns = logs.dns
    assert len(default_run.dga) == 4
    assert {t.family for t in default_run.dga} == {"random-letters", "hex-hash", "wordlist"}
    families = {family.name: family for family in FAMILIES}
    for truth in default_run.dga:
        family = families[truth.family]
        generated = set(family.generate(DAY, family.key, family.names_per_day))
        mine = [r for r in dns.rows if r["id.orig_h"] == truth.src and r["query"] in generated]
        rows = sorted(mine, key=lambda r: float(r["ts"]))
        assert len(rows) == truth.queries
        assert {r["qtype_name"] for r in rows} == {"A"}
        assert len({r["query"] for r in rows}) == truth.domains_tried
        nx = [r for r in rows if r["rcode_name"] == "NXDOMAIN"]
        assert len(nx) == truth.nxdomains >= 0.95 * truth.queries  # nearly all NXDOMAIN
        resolved = [r for r in rows if r["rcode_name"] == "NOERROR"]
        assert {r["query"] for r in resolved} == set(truth.resolved_domains)
        assert {(r["answers"], r["TTLs"]) for r in resolved} == {(truth.c2, "300.000000")}
        # bursts: dozens to hundreds of names in minutes, each ending at the first name that
        # resolved or after the family's maximum
        times = [float(r["ts"]) for r in rows]
        bursts = _split(times, 300.0)
        assert len(bursts) == truth.bursts
        assert max(len(b) for b in bursts) >= 50
        for burst in bursts:
            assert times[burst[-1]] - times[burst[0]] < 600
            answered = [i for i in burst if rows[i]["rcode_name"] == "NOERROR"]
            assert answered in ([], [burst[-1]])
            assert answered or len(burst) == min(family.names_per_burst, family.names_per_day)


def test_dga_c2_is_called_after_a_name_resolved(default_run: SimulationResult, logs: Logs) -> None:
    dns = logs.dns
    for truth in default_run.dga:
        resolved = [
            float(r["ts"])
            for r in dns.rows
            if r["id.orig_h"] == truth.src and r["answers"] == truth.c2
        ]
        calls = [r for r in logs.conn_from(truth.src).rows if r["id.resp_h"] == truth.c2]
        assert len(calls) == truth.c2_connections > 0
        assert {(r["id.resp_p"], r["conn_state"]) for r in calls} == {(str(truth.c2_port), "SF")}
        for call in calls:
            ts = float(call["ts"])
            assert any(0 < ts - t < 65 for t in resolved), call["uid"]
            assert logs.named[call["uid"]] in truth.resolved_domains
    by_family: dict[str, set[str]] = {}
    for truth in default_run.dga:
        by_family.setdefault(truth.family, set()).add(truth.c2)
    assert all(len(c2s) == 1 for c2s in by_family.values())  # one botnet, one C2


def test_dns_tunnels_encode_data_under_one_zone(default_run: SimulationResult, logs: Logs) -> None:
    tunnels = {t.kind: t for t in default_run.dns_tunnel}
    assert set(tunnels) == {"dnscat2", "iodine"}
    assert tunnels["dnscat2"].qtypes == ("CNAME", "MX", "TXT")
    assert tunnels["iodine"].qtypes == ("NULL",)
    for truth in tunnels.values():
        assert truth.zone.endswith("." + truth.domain)
        rows = [r for r in logs.dns.rows if r["query"].endswith("." + truth.zone)]
        assert {r["id.orig_h"] for r in rows} == {truth.src}
        assert {r["id.resp_h"] for r in rows} == {"10.0.0.53"}  # through the internal resolver
        assert len(rows) == truth.queries
        assert sorted({r["qtype_name"] for r in rows}) == list(truth.qtypes)
        long_labels = []
        for r in rows:
            name, answer = r["query"], r["answers"]
            labels = name.removesuffix("." + truth.zone).split(".")
            assert len(name) <= 253
            assert all(1 <= len(label) <= 63 for label in labels)
            assert set("".join(labels)) <= ALPHABETS[truth.kind]
            long_labels += [label for label in labels if len(label) >= 40]
            assert (r["rcode_name"], r["TTLs"]) == ("NOERROR", f"{truth.answer_ttl_s}.000000")
            if r["qtype_name"] == "TXT":
                _, size, text = answer.split(" ")
                assert int(size) == len(text)
            elif r["qtype_name"] in ("CNAME", "MX"):
                assert answer.endswith("." + truth.zone)
            else:
                assert answer == "<unknown type=10>"  # Zeek does not parse NULL records
        assert len(long_labels) >= 0.3 * truth.data_queries
        bits = {"dnscat2": 4, "iodine": 5}[truth.kind]  # hex, base32
        assert np.mean([_entropy(label) for label in long_labels]) > bits - 0.6  # high entropy
        intervals = np.diff(sorted(float(r["ts"]) for r in rows))
        idle = intervals[intervals > 1.0]  # data goes back to back, well under a second apart
        assert np.median(idle) == pytest.approx(truth.poll_s, rel=0.05)  # steady polling
        assert truth.data_queries < truth.queries / 2


def test_fast_flux_answers_rotate_over_many_networks(
    default_run: SimulationResult, logs: Logs
) -> None:
    assert len(default_run.fast_flux) == 2
    assert len({t.src for t in default_run.fast_flux}) == 1
    for truth in default_run.fast_flux:
        rows = [r for r in logs.dns.rows if r["query"] == truth.name]
        assert {r["id.orig_h"] for r in rows} == {truth.src}
        assert len(rows) == truth.lookups
        assert truth.ttl_s <= 300
        answers = [r["answers"].split(",") for r in rows]
        assert all(4 <= len(a) <= 6 for a in answers)
        assert {r["TTLs"] for r in rows} == {
            ",".join([f"{truth.ttl_s}.000000"] * k) for k in {len(a) for a in answers}
        }
        ips = {ip for a in answers for ip in a}
        assert ips == set(truth.ips)
        assert len(ips) >= 30
        assert len({_slash16(ip) for ip in ips}) == truth.slash16s >= 0.8 * len(ips)
        assert all(ipaddress.ip_address(ip).is_global for ip in ips)
        calls = [r for r in logs.conn_from(truth.src).rows if r["id.resp_h"] in ips]
        assert len(calls) == truth.connections > 0
        assert {r["id.resp_h"] for r in calls} == set(truth.contacted)
        assert {r["id.resp_p"] for r in calls} == {str(truth.dst_port)}
        lookups = [(float(r["ts"]), a[0]) for r, a in zip(rows, answers, strict=True)]
        for call in calls:
            assert logs.named[call["uid"]] == truth.name
            ts = float(call["ts"])
            assert any(0 < ts - t < 2 and ip == call["id.resp_h"] for t, ip in lookups)


def _decoys(run: SimulationResult, kind: str) -> list[BenignDns]:
    return [entry for entry in run.benign_dns if entry.kind == kind]


def test_cdn_decoys_rotate_short_ttl_answers_inside_one_or_two_networks(
    default_run: SimulationResult, logs: Logs
) -> None:
    cdn = _decoys(default_run, "cdn")
    assert len(cdn) == 2
    for entry in cdn:
        rows = [r for r in logs.dns.rows if r["query"] == entry.domain]
        assert len(rows) == entry.queries
        assert len({r["id.orig_h"] for r in rows}) == entry.hosts >= 100  # the whole office
        ttls = {float(ttl) for r in rows for ttl in r["TTLs"].split(",")}
        assert max(ttls) == entry.max_ttl_s <= 60
        ips = {ip for r in rows for ip in r["answers"].split(",")}
        assert len(ips) == entry.ips >= 10
        assert len({_slash16(ip) for ip in ips}) == entry.slash16s <= 2
        assert len({r["answers"] for r in rows}) > 50  # the answers rotate
        assert list(logs.named.values()).count(str(entry.domain)) == entry.queries  # downloads


def test_reverse_dns_nxdomain_and_reputation_decoys_are_as_listed(
    default_run: SimulationResult, logs: Logs
) -> None:
    dns = logs.dns
    ptr = dns.where(lambda r: r["qtype_name"] == "PTR")
    assert all(r["query"].endswith(".in-addr.arpa") for r in ptr)
    entries = _decoys(default_run, "ptr") + _decoys(default_run, "ptr-sweep")
    assert len(ptr) == sum(e.queries for e in entries)
    assert sum(r["rcode_name"] == "NXDOMAIN" for r in ptr) == sum(e.nxdomains for e in entries)
    (sweep,) = _decoys(default_run, "ptr-sweep")
    monitor = [r for r in ptr if r["id.orig_h"] == MONITOR]
    assert (sweep.src, sweep.hosts, sweep.queries) == (MONITOR, 1, len(monitor))
    assert len({r["query"] for r in monitor}) == 200  # every workstation, again and again
    assert {r["answers"].split(".", 1)[1] for r in monitor} == {"acme.internal"}
    for kind, qtype in (("dnsbl", "A"), ("hash-reputation", "TXT")):
        (entry,) = _decoys(default_run, kind)
        rows = dns.where(lambda r, e=entry: r["query"].endswith("." + str(e.domain)))
        assert entry.src == GATEWAY
        assert {(r["id.orig_h"], r["qtype_name"]) for r in rows} == {(GATEWAY, qtype)}
        assert len(rows) == entry.queries
        assert sum(r["rcode_name"] == "NXDOMAIN" for r in rows) == entry.nxdomains
        assert entry.queries > entry.nxdomains > 0.8 * entry.queries
    dnsbl = dns.where(lambda r: r["query"].endswith(".zen.spamhaus.org"))
    assert all(r["answers"].startswith("127.0.0.") for r in dnsbl if r["answers"] != "-")
    hashes = dns.where(lambda r: r["query"].endswith(".malware.hash.cymru.com"))
    assert all(len(r["query"].split(".")[0]) == 32 for r in hashes)  # MD5 in hex
    (suffix,) = _decoys(default_run, "search-suffix")
    appended = dns.where(
        lambda r: r["query"].endswith(".acme.internal")
        and "." in r["query"].removesuffix(".acme.internal")
        and r["qtype_name"] == "A"
    )  # fmt: skip
    assert len(appended) == suffix.queries == suffix.nxdomains
    assert all(r["rcode_name"] == "NXDOMAIN" for r in appended)
    assert len({r["id.orig_h"] for r in appended}) == suffix.hosts
    (typo,) = _decoys(default_run, "typo")
    assert typo.queries == typo.nxdomains > 0


def test_naive_rules_flag_the_decoys_with_the_techniques(
    default_run: SimulationResult, logs: Logs
) -> None:
    """Each decoy trips the obvious rule for a technique, so detectors have to do better."""
    dns = logs.dns.rows
    nx = Counter(r["id.orig_h"] for r in dns if r["rcode_name"] == "NXDOMAIN")
    many_nx = {src for src, count in nx.items() if count >= 200}
    assert {t.src for t in default_run.dga if t.nxdomains >= 200} <= many_nx
    assert GATEWAY in many_nx
    names: dict[tuple[str, str], set[str]] = {}
    for r in dns:
        zone = ".".join(r["query"].split(".")[-2:])
        names.setdefault((r["id.orig_h"], zone), set()).add(r["query"])
    many_names = {key for key, seen in names.items() if len(seen) >= 150}
    assert {(t.src, ".".join(t.domain.split(".")[-2:])) for t in default_run.dns_tunnel} <= (
        many_names
    )
    assert {(MONITOR, "in-addr.arpa"), (GATEWAY, "spamhaus.org")} <= many_names
    rotating = {
        r["query"]
        for r in dns
        if r["qtype_name"] == "A" and r["TTLs"] != "-" and float(r["TTLs"].split(",")[0]) <= 300
    }
    answered: dict[str, set[str]] = {name: set() for name in rotating}
    for r in dns:
        if r["query"] in answered:
            answered[r["query"]].update(r["answers"].split(","))
    many_ips = {name for name, ips in answered.items() if len(ips) >= 10}
    assert {t.name for t in default_run.fast_flux} <= many_ips
    assert {e.domain for e in _decoys(default_run, "cdn")} <= many_ips


def _as_tuples(item: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}


def test_truth_json_keeps_its_keys_and_adds_the_dns_techniques(
    default_run: SimulationResult,
) -> None:
    truth = json.loads((default_run.out / "truth.json").read_text())
    assert list(truth)[:11] == [  # test_dns_more.py checks the keys after these
        "seed", "hosts", "days", "start", "internal_networks", "c2", "benign_periodic",
        "dga", "dns_tunnel", "fast_flux", "benign_dns",
    ]  # fmt: skip
    assert [DgaTruth(**_as_tuples(x)) for x in truth["dga"]] == list(default_run.dga)
    assert [TunnelTruth(**_as_tuples(x)) for x in truth["dns_tunnel"]] == list(
        default_run.dns_tunnel
    )
    assert [FluxTruth(**_as_tuples(x)) for x in truth["fast_flux"]] == list(default_run.fast_flux)
    assert [BenignDns(**_as_tuples(x)) for x in truth["benign_dns"]] == list(default_run.benign_dns)


def test_techniques_go_to_distinct_hosts_chosen_by_the_seed(tmp_path: Path) -> None:
    first = simulate(tmp_path / "a", hosts=25, days=1, seed=5)
    again = simulate(tmp_path / "b", hosts=25, days=1, seed=5)
    other = simulate(tmp_path / "c", hosts=25, days=1, seed=6)
    assert (len(first.dga), len(first.dns_tunnel), len(first.fast_flux)) == (1, 1, 1)
    srcs = [first.dga[0].src, first.dns_tunnel[0].src, first.fast_flux[0].src]
    assert len(set(srcs)) == 3
    assert not set(srcs) & {c2.src for c2 in first.c2}
    assert (first.dga, first.dns_tunnel, first.fast_flux, first.benign_dns) == (
        again.dga, again.dns_tunnel, again.fast_flux, again.benign_dns,
    )  # fmt: skip
    assert first.dga != other.dga
    tiny = simulate(tmp_path / "d", hosts=10, days=1, seed=5)
    assert (tiny.dga, tiny.dns_tunnel, tiny.fast_flux) == ((), (), ())
    assert {e.kind for e in tiny.benign_dns} >= {"cdn", "ptr-sweep", "dnsbl"}


def test_the_readers_take_every_row_of_a_small_run(tmp_path: Path) -> None:
    result = simulate(tmp_path / "logs", hosts=25, days=1, seed=5)
    imported = import_paths([tmp_path / "logs"], Store(tmp_path / "store"))
    assert imported.problems.bad_records == 0
    assert not imported.errors
    tables = open_tables(Store(tmp_path / "store"), Config().internal, connect())
    dns = tables["dns"]
    assert tables.to_pyarrow(dns.count().as_table()).column(0)[0].as_py() == result.rows["dns"]
    (tunnel,) = result.dns_tunnel
    rows = tables.to_pyarrow(
        dns.filter(dns.query.endswith("." + tunnel.zone)).select("qtype_name", "answers", "ttls_s")
    )
    assert rows.num_rows == tunnel.queries
    assert set(rows.column("qtype_name").to_pylist()) == set(tunnel.qtypes)
    assert {tuple(t) for t in rows.column("ttls_s").to_pylist()} == {(60.0,)}
