"""DNS bypass, a DNS volume burst and the newly-registered-domain feed: the logs and nrd.txt hold
what truth.json says."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homecall.config import Config
from homecall.detectors import dns_bypass, dns_volume, young_domain
from homecall.intel import rdap
from homecall.intel.lists import read_newly_registered
from homecall.pipeline import import_paths
from homecall.simulator import SimulationResult, simulate
from homecall.simulator.bypass import DOH_SERVICES
from homecall.simulator.nrd import NOISE_NAMES, registered_domain
from homecall.simulator.truth import BypassTruth, VolumeTruth, YoungTruth
from homecall.simulator.volume import SUBDOMAIN_WORDS
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, connect, open_tables

from .conftest import ZeekLog

ReadLog = Callable[[Path], ZeekLog]
DAY = dt.date(2026, 11, 23)
RESOLVER = "10.0.0.53"
SERVICE_IPS = {service.name: set(service.ips) for service in DOH_SERVICES}


def _rows(log: ZeekLog) -> list[dict[str, str]]:
    return [dict(zip(log.fields, row, strict=True)) for row in log.rows]


def _day_rows(run: SimulationResult, read_log: ReadLog, name: str) -> list[dict[str, str]]:
    days = sorted(p for p in run.out.iterdir() if p.is_dir())
    return [row for day in days for row in _rows(read_log(day / f"{name}.log"))]


def _iso(ts: str) -> str:
    """Zeek's "seconds.micros" -> truth's ISO-8601 text, digit for digit."""
    seconds, micros = ts.split(".")
    moment = dt.datetime.fromtimestamp(int(seconds), dt.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{micros}Z"


def _bypass(run: SimulationResult, kind: str) -> BypassTruth:
    (found,) = [b for b in run.dns_bypass if b.kind == kind]
    return found


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, SimulationResult]:
    """25-host days whose seeds draw a subdomain scan (5) and an exfiltration burst (11)."""
    out = tmp_path_factory.mktemp("small")
    return {seed: simulate(out / str(seed), hosts=25, days=1, seed=seed) for seed in (5, 11)}


def test_an_implant_sends_its_c2_lookups_to_a_public_resolver(
    default_run: SimulationResult, read_log: ReadLog
) -> None:
    plain = _bypass(default_run, "plain-dns")
    assert plain.resolver in {"8.8.8.8", "1.1.1.1"}
    assert (plain.dst_port, plain.cause) == (53, "c2-implant")
    (c2,) = [c for c in default_run.c2 if c.src == plain.src]
    assert c2.domain is not None
    day = default_run.out / DAY.isoformat()
    dns = _rows(read_log(day / "dns.log"))
    outside = [r for r in dns if r["id.resp_h"] == plain.resolver]
    assert len(outside) == plain.queries_or_connections > 0
    assert {(r["id.orig_h"], r["id.resp_p"], r["proto"]) for r in outside} == {
        (plain.src, "53", "udp")
    }
    assert {(r["query"], r["answers"], r["RD"], r["rcode_name"]) for r in outside} == {
        (c2.domain, c2.dst, "T", "NOERROR")
    }
    assert (_iso(outside[0]["ts"]), _iso(outside[-1]["ts"])) == (plain.first_seen, plain.last_seen)
    # the implant never asks the internal resolver; its C2 calls follow its own lookups
    assert not [r for r in dns if r["query"] == c2.domain and r["id.resp_h"] == RESOLVER]
    conn = read_log(day / "conn.log")
    by_uid = {row[1]: dict(zip(conn.fields, row, strict=True)) for row in conn.rows}
    assert {
        tuple(by_uid[r["uid"]][k] for k in ("service", "conn_state", "local_orig", "local_resp"))
        for r in outside
    } == {("dns", "SF", "T", "F")}


def test_a_browser_sends_dns_over_https_at_a_steady_rate(
    default_run: SimulationResult, read_log: ReadLog
) -> None:
    doh = _bypass(default_run, "doh")
    assert doh.src != _bypass(default_run, "plain-dns").src
    assert (doh.resolver in SERVICE_IPS, doh.dst_port, doh.cause) == (True, 443, "browser")
    day = default_run.out / DAY.isoformat()
    ssl = [r for r in _rows(read_log(day / "ssl.log")) if r["server_name"] == doh.resolver]
    assert len(ssl) == doh.queries_or_connections
    assert {r["id.orig_h"] for r in ssl} == {doh.src}
    assert {r["id.resp_h"] for r in ssl} <= SERVICE_IPS[doh.resolver]
    assert {(r["id.resp_p"], r["version"]) for r in ssl} == {("443", "TLSv13")}
    conn = {row[1]: row[0] for row in read_log(day / "conn.log").rows}
    stamps = sorted((conn[r["uid"]] for r in ssl), key=float)
    assert (_iso(stamps[0]), _iso(stamps[-1])) == (doh.first_seen, doh.last_seen)
    opened = [float(ts) for ts in stamps]
    gaps = [b - a for a, b in itertools.pairwise(opened)]
    mean_gap_s = (opened[-1] - opened[0]) / len(gaps)
    assert 150 < mean_gap_s < 600  # one every few minutes while the user works
    assert max(gaps) < 3_600  # steady: no hour without one
    # the browser finds its DoH server through the internal resolver first
    lookups = [
        r
        for r in _rows(read_log(day / "dns.log"))
        if r["query"] == doh.resolver and r["id.orig_h"] == doh.src
    ]
    assert lookups
    assert {r["id.resp_h"] for r in lookups} == {RESOLVER}
    assert set(lookups[0]["answers"].split(",")) == SERVICE_IPS[doh.resolver]


def test_the_internal_resolver_serves_nearly_every_host(
    default_run: SimulationResult, read_log: ReadLog
) -> None:
    dns = read_log(default_run.out / DAY.isoformat() / "dns.log")
    servers = Counter(dns.column("id.resp_h"))
    plain = _bypass(default_run, "plain-dns")
    assert set(servers) == {RESOLVER, plain.resolver}
    clients = {
        src for src, dst in zip(dns.column("id.orig_h"), dns.column("id.resp_h"), strict=True)
        if dst == RESOLVER
    }  # fmt: skip
    assert len(clients) >= 190  # of 200 workstations, plus the servers
    assert plain.src in clients  # the infected host's other software uses it as usual


def _hourly(run: SimulationResult, read_log: ReadLog) -> Counter[tuple[str, int]]:
    counts: Counter[tuple[str, int]] = Counter()
    for day in sorted(p for p in run.out.iterdir() if p.is_dir()):
        dns = read_log(day / "dns.log")
        hours = (int(float(ts)) // 3600 for ts in dns.column("ts"))
        counts.update(zip(dns.column("id.orig_h"), hours, strict=False))
    return counts


def _runs(default_run: SimulationResult, small: dict[int, SimulationResult]) -> list[Any]:
    return [default_run, *small.values()]


def test_the_burst_stands_above_every_hour_of_every_host(
    default_run: SimulationResult, small_runs: dict[int, SimulationResult], read_log: ReadLog
) -> None:
    cfg = dns_volume.DnsVolumeConfig()
    for run in _runs(default_run, small_runs):
        (burst,) = run.dns_volume
        assert 3_000 <= burst.queries <= 6_000
        assert burst.queries >= cfg.min_queries_per_hour
        hour = int(dt.datetime.fromisoformat(burst.hour_start).timestamp()) // 3600
        counts = _hourly(run, read_log)
        mine = {h: n for (src, h), n in counts.items() if src == burst.src}
        assert max(mine, key=mine.__getitem__) == hour
        assert mine[hour] >= burst.queries
        others = sorted(n for h, n in mine.items() if h != hour)
        assert len(others) >= cfg.min_buckets  # a baseline of its own
        assert others[-1] * 5 < burst.queries
        peaks: dict[str, int] = {}
        for (src, _), n in counts.items():
            if src != burst.src:
                peaks[src] = max(peaks.get(src, 0), n)
        assert max(peaks.values()) * 1.5 <= burst.queries  # tunnels, mail gateway included


def test_the_burst_is_a_scan_or_an_exfiltration_in_one_hour(
    default_run: SimulationResult, small_runs: dict[int, SimulationResult], read_log: ReadLog
) -> None:
    runs = _runs(default_run, small_runs)
    assert {run.dns_volume[0].kind for run in runs} == {"subdomain-scan", "exfiltration"}
    for run in runs:
        (burst,) = run.dns_volume
        start = dt.datetime.fromisoformat(burst.hour_start).timestamp()
        rows = [
            r
            for r in _day_rows(run, read_log, "dns")
            if r["id.orig_h"] == burst.src and registered_domain(r["query"]) in burst.domains
        ]
        assert len(rows) == burst.queries
        assert len({r["query"] for r in rows}) == burst.names == burst.queries
        assert {r["id.resp_h"] for r in rows} == {RESOLVER}
        assert all(start <= float(r["ts"]) < start + 3600 for r in rows)
        assert {rdap.registry_domain(r["query"]) for r in rows} == set(burst.domains)
        nx = sum(r["rcode_name"] == "NXDOMAIN" for r in rows)
        if burst.kind == "subdomain-scan":
            assert 2 <= len(burst.domains) <= 4
            labels = {r["query"].split(".")[0] for r in rows}
            assert set(SUBDOMAIN_WORDS[:20]) <= labels  # the wordlist's head, for each domain
            assert 0.95 * len(rows) < nx < len(rows)  # only www, mail, vpn... exist
        else:
            assert len(burst.domains) == 1
            assert nx == 0
            assert min(len(r["query"]) for r in rows) > 100  # encoded data in every name


def test_nrd_txt_reads_with_the_detector_reader(default_run: SimulationResult) -> None:
    assert default_run.nrd_file == default_run.out / "nrd.txt"
    assert default_run.nrd_file not in default_run.files  # not a log
    young = {y.domain: y for y in default_run.young_domains}
    aged = {registered_domain(c.domain) for c in default_run.c2 if c.domain} - set(young)
    wanted = frozenset({*young, *aged, "google.com", "microsoft.com"})
    feed = read_newly_registered(default_run.nrd_file, wanted)
    assert feed.feed_date == DAY
    assert feed.entries >= NOISE_NAMES + len(young)
    assert {d: w.isoformat() for d, w in feed.dates.items() if w} == {
        d: y.registered for d, y in young.items()
    }
    assert set(feed.dates) == set(young)  # aged C2 domains and old sites are not listed
    assert aged  # a quarter of operators buy an old domain
    for y in young.values():
        age = (DAY - dt.date.fromisoformat(y.registered)).days
        assert (1 <= age <= 2) if y.role == "dga" else (1 <= age <= 20), y


def test_the_feed_lists_exactly_the_young_domains_hosts_used(
    default_run: SimulationResult, read_log: ReadLog
) -> None:
    """Every domain a simulated host resolved or connected to by name, against the feed."""
    day = default_run.out / DAY.isoformat()
    answered: dict[str, set[str]] = {}
    for r in _rows(read_log(day / "dns.log")):
        if r["rcode_name"] == "NOERROR" and (domain := rdap.registry_domain(r["query"])):
            answered.setdefault(domain, set()).add(r["id.orig_h"])
    used = set(answered)
    used |= {rdap.registry_domain(n) for n in read_log(day / "ssl.log").column("server_name")}
    used |= {rdap.registry_domain(n) for n in read_log(day / "http.log").column("host")}
    listed = {
        line.split("\t")[0]
        for line in default_run.out.joinpath("nrd.txt").read_text().splitlines()
        if not line.startswith("#")
    }
    young = {y.domain: y for y in default_run.young_domains}
    assert used & listed == set(young)
    assert {d: set(answered[d]) for d in young} == {d: set(y.hosts) for d, y in young.items()}
    roles = Counter(y.role for y in young.values())
    assert {"c2", "dga"} <= set(roles)
    assert all(ipaddress.ip_address(h).is_private for y in young.values() for h in y.hosts)


def test_a_multi_day_feed_dates_dga_names_by_their_day(
    week_run: SimulationResult, read_log: ReadLog
) -> None:
    assert week_run.nrd_file is not None
    start = dt.date(2026, 11, 28)
    feed = read_newly_registered(
        week_run.nrd_file, frozenset(y.domain for y in week_run.young_domains)
    )
    assert feed.feed_date == start + dt.timedelta(days=2)  # compiled on the last day
    dga = [y for y in week_run.young_domains if y.role == "dga"]
    assert dga
    for y in dga:
        registered = dt.date.fromisoformat(y.registered)
        assert start - dt.timedelta(days=2) <= registered <= start + dt.timedelta(days=1)
    for y in week_run.young_domains:
        if y.role != "dga":
            assert 1 <= (start - dt.date.fromisoformat(y.registered)).days <= 20
    (burst,) = week_run.dns_volume
    assert dt.date.fromisoformat(burst.hour_start[:10]) in {
        start + dt.timedelta(d) for d in range(3)
    }
    assert {b.kind for b in week_run.dns_bypass} == {"plain-dns", "doh"}


def _as_tuples(item: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}


def test_truth_json_keeps_its_keys_and_adds_the_new_ones(default_run: SimulationResult) -> None:
    truth = json.loads((default_run.out / "truth.json").read_text())
    assert list(truth) == [
        "seed", "hosts", "days", "start", "internal_networks", "c2", "benign_periodic",
        "dga", "dns_tunnel", "fast_flux", "benign_dns", "dns_bypass", "dns_volume",
        "young_domains", "proxy", "web_c2", "user_agents", "uri_commands", "domain_fronting",
        "tls_certs", "http_anomalies", "benign_web", "firewall", "network_c2", "benign_network",
    ]  # fmt: skip
    assert [BypassTruth(**x) for x in truth["dns_bypass"]] == list(default_run.dns_bypass)
    assert [VolumeTruth(**_as_tuples(x)) for x in truth["dns_volume"]] == list(
        default_run.dns_volume
    )
    assert [YoungTruth(**_as_tuples(x)) for x in truth["young_domains"]] == list(
        default_run.young_domains
    )


def test_same_seed_same_feed_and_truth_and_small_fleets_get_none(tmp_path: Path) -> None:
    first = simulate(tmp_path / "a", hosts=25, days=1, seed=5)
    again = simulate(tmp_path / "b", hosts=25, days=1, seed=5)
    other = simulate(tmp_path / "c", hosts=25, days=1, seed=6)
    assert first.nrd_file is not None
    assert again.nrd_file is not None
    assert first.nrd_file.read_bytes() == again.nrd_file.read_bytes()
    assert (first.dns_bypass, first.dns_volume, first.young_domains) == (
        again.dns_bypass, again.dns_volume, again.young_domains,
    )  # fmt: skip
    assert first.nrd_file.read_bytes() != (tmp_path / "c" / "nrd.txt").read_bytes()
    assert first.dns_volume != other.dns_volume
    busy = {first.dns_volume[0].src, *(b.src for b in first.dns_bypass)}
    others = {t.src for t in (*first.dga, *first.dns_tunnel, *first.fast_flux)}
    assert first.dns_volume[0].src not in others | {c.src for c in first.c2}
    assert _bypass(first, "doh").src not in others | {c.src for c in first.c2}
    assert len(busy) == 3
    tiny = simulate(tmp_path / "d", hosts=10, days=1, seed=5)
    assert (tiny.dns_bypass, tiny.dns_volume) == ((), ())
    assert tiny.nrd_file is not None
    assert tiny.nrd_file.exists()


def test_the_dns_detectors_find_what_the_truth_says(
    small_runs: dict[int, SimulationResult], tmp_path: Path
) -> None:
    run = small_runs[5]
    store = Store(tmp_path / "store")
    import_paths([run.out], store)
    tables = open_tables(store, Config().internal, connect(), WHOLE_STORE)
    bypass = list(dns_bypass.DETECTOR.run(tables, dns_bypass.DnsBypassConfig()))
    assert {(f.src, f.dst, f.dst_port) for f in bypass} == {
        (b.src, b.resolver, b.dst_port) for b in run.dns_bypass
    }
    volume = list(dns_volume.DETECTOR.run(tables, dns_volume.DnsVolumeConfig()))
    (burst,) = run.dns_volume
    assert volume[0].src == burst.src
    assert volume[0].evidence["peak_bucket_start"] == burst.hour_start.replace(".000000", "")
    nrd = str(run.nrd_file)
    young = list(young_domain.DETECTOR.run(tables, young_domain.YoungDomainConfig(nrd_file=nrd)))
    assert {(f.src, f.dst) for f in young} == {
        (host, y.domain) for y in run.young_domains for host in y.hosts
    }
    assert {f.evidence["registered"] for f in young} == {y.registered for y in run.young_domains}
    assert burst.queries <= volume[0].evidence["peak_queries"]
