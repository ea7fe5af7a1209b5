"""simulate(): an enterprise's Zeek logs with injected C2, a folder per UTC day, and truth.json."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import INTERNAL_NETWORKS, MAX_HOSTS, int_to_ip
from homecall.simulator.browsing import browsing_day, rare_domains_per_day
from homecall.simulator.bypass import (
    DohRun,
    PlainRun,
    bypass_count,
    doh_day,
    doh_truth,
    plain_day,
    plain_truth,
    plan_doh,
    plan_plain,
)
from homecall.simulator.c2 import C2Plan, plan_c2, schedule
from homecall.simulator.catalogue import Catalogue, build_catalogue
from homecall.simulator.dga_hosts import DgaRun, dga_count, dga_day, dga_truth, plan_dga
from homecall.simulator.dns import resolve_times
from homecall.simulator.dns_decoys import DecoyRun, decoy_day, decoy_truth, plan_decoys
from homecall.simulator.flows import Flows, concat, finalize, row_count
from homecall.simulator.flux import FluxRun, flux_count, flux_day, flux_truth, plan_flux
from homecall.simulator.hosts import Fleet, Presence, build_fleet, build_presence
from homecall.simulator.implant import implant_flows
from homecall.simulator.network_c2 import NetworkDay, NetworkLogs, NetworkWorld, network_day
from homecall.simulator.network_plan import plan_network
from homecall.simulator.nrd import FEED_NAME, Feed, candidates, plan_feed, suffixes, write_feed
from homecall.simulator.office import office_day
from homecall.simulator.periodic import ServiceRun, periodic_day, periodic_truth, plan_periodic
from homecall.simulator.squid import AccessLog
from homecall.simulator.truth import C2Truth, SimulationResult, iso_utc, write_truth
from homecall.simulator.tunnel import (
    TunnelRun,
    plan_tunnels,
    tunnel_count,
    tunnel_day,
    tunnel_truth,
)
from homecall.simulator.volume import (
    VolumeRun,
    busiest_hour,
    plan_spike,
    spike_count,
    spike_day,
    spike_truth,
)
from homecall.simulator.web_world import WebLogs, WebWorld, plan_web, web_day
from homecall.simulator.zeeklog import LOGS, write_log

__all__ = ["DEFAULT_START", "simulate"]

log = logging.getLogger(__name__)

DEFAULT_START = dt.date(2026, 11, 23)  # a Monday
DAY_US = 86_400 * 1_000_000


class _Stream(IntEnum):
    """Independent random streams, so one part's draws never shift another's."""

    CATALOGUE = 1
    FLEET = 2
    PRESENCE = 3
    C2 = 4
    PERIODIC = 5
    BROWSING = 6
    OFFICE = 7
    UIDS = 8
    IMPLANT = 9
    PLACEMENT = 10
    DGA = 11
    TUNNEL = 12
    FLUX = 13
    DECOYS = 14
    BYPASS = 15
    DOH = 16
    VOLUME = 17
    FEED = 18
    WEB = 19
    WEB_DAY = 20
    NETWORK = 21
    NETWORK_DAY = 22
    FIREWALL = 23


@dataclass(frozen=True, slots=True)
class _C2Run:
    """One C2 instance's connections over the whole simulation."""

    plan: C2Plan
    conn_us: npt.NDArray[np.int64]
    first: npt.NDArray[np.bool_]  # the first connection of a check-in
    resolve: npt.NDArray[np.bool_]  # a DNS lookup precedes it (start, then when the TTL ran out)
    checkins: int


@dataclass(frozen=True, slots=True)
class _World:
    """Everything that stays the same from one simulated day to the next."""

    seed: int
    start_us: int
    rare_per_day: int
    cat: Catalogue
    fleet: Fleet
    presence: Presence
    services: list[ServiceRun]
    c2: list[_C2Run]
    dns: _DnsWorld
    feed: Feed
    web: WebWorld | None
    network: NetworkWorld | None


@dataclass(frozen=True, slots=True)
class _Day:
    """One day's flows, the web-truth tag of each conn row, the proxy's log lines, and the
    network runs' rows (the last conn rows of `flows`)."""

    flows: Flows
    tags: npt.NDArray[np.int64]
    access: AccessLog
    network: NetworkDay


@dataclass(frozen=True, slots=True)
class _DnsWorld:
    """The DNS techniques and their decoys, drawn for the whole simulation."""

    dga: list[DgaRun]
    tunnels: list[TunnelRun]
    flux: list[FluxRun]
    decoys: DecoyRun
    plain: list[PlainRun]  # a C2 implant's lookups at a public resolver
    doh: list[DohRun]
    spikes: list[VolumeRun]
    hosts: frozenset[int] = frozenset()  # every host running a DNS technique or a C2 implant


def simulate(
    out: Path,
    *,
    hosts: int = 200,
    days: int = 1,
    seed: int = 0,
    start: dt.date | None = None,
) -> SimulationResult:
    """Write OUT/<date>/{conn,dns,http,ssl,x509,smtp}.log, OUT/<date>/squid/access.log (from 20
    hosts up), OUT/<date>/firewall/kern.log, OUT/truth.json and OUT/nrd.txt (the
    newly-registered-domain feed); same arguments, same bytes."""
    if not 1 <= hosts <= MAX_HOSTS:
        raise ValueError(f"hosts must be in 1..{MAX_HOSTS}, got {hosts}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    start = start or DEFAULT_START
    dates = [start + dt.timedelta(days=d) for d in range(days)]
    world = _build_world(seed, hosts, dates)
    files: list[Path] = []
    rows = dict.fromkeys(LOGS, 0)
    web = WebLogs(world.web, world.start_us // 1_000_000)
    network = NetworkLogs(world.network, world.start_us)
    for d, date in enumerate(dates):
        day = _day_flows(world, d)
        logs = finalize(day.flows, _rng(seed, _Stream.UIDS, d))
        web.collect(logs["conn"], day.tags)
        folder = out / date.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        opened = dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)
        for name in LOGS:
            path = folder / f"{name}.log"
            rows[name] += write_log(path, name, logs[name], opened, opened + dt.timedelta(days=1))
            files.append(path)
        web.write(folder, logs["ssl"], day.access, opened)
        network.write(folder, logs["conn"], day.network, opened, _rng(seed, _Stream.FIREWALL, d))
        del logs, day  # a day's rows are large; free them before the next day is drawn
        log.info("simulated %s (%d/%d days)", date, d + 1, days)

    c2 = tuple(_truth(run, int(world.fleet.ips[run.plan.host])) for run in world.c2)
    dga = tuple(dga_truth(run) for run in world.dns.dga)
    tunnels = tuple(tunnel_truth(run) for run in world.dns.tunnels)
    flux = tuple(flux_truth(run) for run in world.dns.flux)
    benign_dns = decoy_truth(world.dns.decoys)
    bypass = tuple(plain_truth(run) for run in world.dns.plain) + tuple(
        found for run in world.dns.doh if (found := doh_truth(run)) is not None
    )
    volume = tuple(spike_truth(run) for run in world.dns.spikes)
    web_found = web.truth()
    proxy_hosts = web_found.proxy.hosts if web_found.proxy else ()
    firewall, network_c2, benign_network = network.truth(proxy_hosts)
    nrd_path = out / FEED_NAME
    write_feed(nrd_path, world.feed, seed)
    truth_path = out / "truth.json"
    result = SimulationResult(
        out=out,
        files=(*files, truth_path),
        rows=rows,
        c2=c2,
        dga=dga,
        dns_tunnel=tunnels,
        fast_flux=flux,
        benign_dns=benign_dns,
        dns_bypass=bypass,
        dns_volume=volume,
        young_domains=world.feed.young,
        nrd_file=nrd_path,
        **{f.name: getattr(web_found, f.name) for f in dataclasses.fields(web_found)},
        web_logs=tuple(web.paths),
        web_rows=web.rows,
        firewall=firewall,
        network_c2=network_c2,
        benign_network=benign_network,
        network_logs=tuple(network.paths),
        network_rows=dict(network.rows),
    )
    write_truth(
        truth_path,
        seed=seed,
        hosts=hosts,
        days=days,
        start=start,
        internal_networks=INTERNAL_NETWORKS,
        c2=c2,
        benign_periodic=periodic_truth(world.services),
        dga=dga,
        dns_tunnel=tunnels,
        fast_flux=flux,
        benign_dns=benign_dns,
        dns_bypass=bypass,
        dns_volume=volume,
        young_domains=world.feed.young,
        web=result,
    )
    return result


def _build_world(seed: int, hosts: int, dates: list[dt.date]) -> _World:
    """Draw the destinations, the fleet, the users' days, the C2, the periodic services, the
    DNS techniques and the newly-registered-domain feed."""
    start_us = _epoch_us(dates[0])
    rare_per_day = rare_domains_per_day(hosts)
    cat = build_catalogue(_rng(seed, _Stream.CATALOGUE), rare_per_day * len(dates))
    fleet = build_fleet(_rng(seed, _Stream.FLEET), hosts, len(cat.sites))
    presence = build_presence(_rng(seed, _Stream.PRESENCE), fleet, dates)
    plans = plan_c2(_rng(seed, _Stream.C2), fleet.is_laptop, cat.used_ips(), set(cat.ids))
    c2 = [
        _run_c2(_rng(seed, _Stream.C2, i + 1), plan, start_us, len(dates))
        for i, plan in enumerate(plans)
    ]
    services = plan_periodic(
        _rng(seed, _Stream.PERIODIC), cat, fleet, presence, start_us, len(dates)
    )
    c2, plain = _bypass_c2(_rng(seed, _Stream.BYPASS), c2, fleet, start_us)
    used_ips = cat.used_ips() | {plan.dst for plan in plans}
    taken = set(cat.ids) | suffixes(cat.names) | {plan.domain for plan in plans if plan.domain}
    dns = _plan_dns(
        seed, dates, cat, fleet, presence, {plan.host for plan in plans}, used_ips, taken
    )
    dns = dataclasses.replace(dns, plain=plain)
    web = plan_web(
        lambda key: _rng(seed, _Stream.WEB, key), cat, fleet, presence, start_us=start_us,
        days=len(dates), busy=set(dns.hosts), used_ips=used_ips, taken=taken,
        c2=[(r.plan, int(fleet.ips[r.plan.host]), r.conn_us) for r in c2],
    )  # fmt: skip
    named = [(r.plan.domain, int(fleet.ips[r.plan.host])) for r in c2 if r.plan.domain]
    found = candidates(named, dns.dga, dns.tunnels, dns.flux, dns.spikes, dates)
    feed = plan_feed(_rng(seed, _Stream.FEED), found, dates, taken)
    network = plan_network(
        lambda key: _rng(seed, _Stream.NETWORK, key), web, cat, fleet, presence,
        start_us=start_us, days=len(dates), busy=set(dns.hosts), used_ips=used_ips, taken=taken,
    )  # fmt: skip
    return _World(
        seed, start_us, rare_per_day, cat, fleet, presence, services, c2, dns, feed, web, network
    )


def _bypass_c2(
    rng: np.random.Generator, c2: list[_C2Run], fleet: Fleet, start_us: int
) -> tuple[list[_C2Run], list[PlainRun]]:
    """From 20 hosts up, one implant that names its server sends those lookups to a public
    resolver instead of the internal one."""
    named = [i for i, run in enumerate(c2) if run.plan.domain and run.resolve.any()]
    if not bypass_count(fleet.size) or not named:
        return c2, []
    i = named[int(rng.integers(len(named)))]
    run = c2[i]
    host_ip = int(fleet.ips[run.plan.host])
    plain = plan_plain(rng, run.plan, host_ip, run.conn_us[run.resolve], start_us)
    runs = list(c2)
    runs[i] = dataclasses.replace(run, resolve=np.zeros_like(run.resolve))
    return runs, [plain]


def _plan_dns(
    seed: int,
    dates: list[dt.date],
    cat: Catalogue,
    fleet: Fleet,
    presence: Presence,
    c2_hosts: set[int],
    used_ips: set[int],
    taken: set[str],
) -> _DnsWorld:
    """Place the DGA, tunnel, fast-flux, DoH and DNS-burst hosts, then draw their lookups and
    the decoys."""
    start_s = _epoch_us(dates[0]) / 1e6
    dga_hosts, tunnel_hosts, flux_hosts = _place(
        _rng(seed, _Stream.PLACEMENT), fleet, presence, c2_hosts
    )
    busy = c2_hosts | {*dga_hosts, *tunnel_hosts, *flux_hosts}
    spare = _spare(_rng(seed, _Stream.PLACEMENT, 1), presence, busy)
    doh_hosts = spare[: bypass_count(fleet.size)]
    spike_hosts = spare[len(doh_hosts) : len(doh_hosts) + spike_count(fleet.size)]
    flux: list[FluxRun] = []
    for host in flux_hosts:
        flux += plan_flux(
            _rng(seed, _Stream.FLUX), host, flux_count(fleet.size), fleet, presence, start_s,
            len(dates), used_ips, taken,
        )  # fmt: skip
    dga = plan_dga(_rng(seed, _Stream.DGA), dga_hosts, fleet, presence, dates, used_ips, taken)
    tunnels = plan_tunnels(
        _rng(seed, _Stream.TUNNEL), tunnel_hosts, fleet, presence, start_s, len(dates), taken
    )
    decoys = plan_decoys(_rng(seed, _Stream.DECOYS), cat, fleet, presence, start_s, used_ips)
    doh = [plan_doh(_rng(seed, _Stream.DOH), h, fleet, presence, start_s) for h in doh_hosts]
    drawn = [r.queries for r in dga] + [r.queries for r in tunnels] + [r.queries for r in flux]
    drawn += [g.queries for g in decoys.groups] + [r.bootstrap for r in doh]
    peak = busiest_hour(drawn)  # the burst must stand above every drawn host's busiest hour
    rng = _rng(seed, _Stream.VOLUME)
    spikes = [
        found
        for h in spike_hosts
        if (found := plan_spike(rng, h, fleet, presence, start_s, peak, used_ips, taken))
    ]
    busy |= {*doh_hosts, *spike_hosts}
    return _DnsWorld(dga, tunnels, flux, decoys, [], doh, spikes, frozenset(busy))


def _spare(rng: np.random.Generator, presence: Presence, busy: set[int]) -> list[int]:
    """Hosts running no other technique in random order, those whose user ever comes in first."""
    present = set(np.flatnonzero(~np.isnan(presence.arrive_s).all(axis=0)).tolist())
    order = [h for h in rng.permutation(presence.arrive_s.shape[1]).tolist() if h not in busy]
    return sorted(order, key=lambda h: h not in present)


def _place(
    rng: np.random.Generator, fleet: Fleet, presence: Presence, c2_hosts: set[int]
) -> tuple[list[int], list[int], list[int]]:
    """Distinct hosts for the DGA, tunnels and fast flux: machines switched on at some time,
    none a C2 host while others remain; tunnels on desktops first (they stay on)."""
    never_on = fleet.is_laptop & np.isnan(presence.arrive_s).all(axis=0)
    order = sorted(
        rng.permutation(fleet.size).tolist(), key=lambda h: (bool(never_on[h]), h in c2_hosts)
    )
    tunnels = sorted(order, key=lambda h: bool(fleet.is_laptop[h]))[: tunnel_count(fleet.size)]
    rest = [h for h in order if h not in tunnels]
    dga = rest[: dga_count(fleet.size)]
    flux = rest[len(dga) : len(dga) + min(1, flux_count(fleet.size))]
    return dga, tunnels, flux


def _day_flows(world: _World, day: int) -> _Day:
    """All traffic of one day (browsing, office life, periodic services, the implants, the DNS,
    web and network techniques), the web-truth tag of each conn row, and the proxy's log lines."""
    seed, cat, fleet, presence = world.seed, world.cat, world.fleet, world.presence
    day_start_us = world.start_us + day * DAY_US
    rare = cat.rare[day * world.rare_per_day : (day + 1) * world.rare_per_day]
    base = [
        browsing_day(
            _rng(seed, _Stream.BROWSING, day), cat, fleet, presence, day, day_start_us, rare
        ),
        office_day(_rng(seed, _Stream.OFFICE, day), cat, fleet, presence, day, day_start_us),
        periodic_day(
            _rng(seed, _Stream.PERIODIC, day + 1), cat, fleet, world.services, day_start_us
        ),
    ]
    parts: list[Flows] = []
    tags: list[npt.NDArray[np.int64]] = []
    access = AccessLog.empty()
    decoys = decoy_day(_rng(seed, _Stream.DECOYS, day), world.dns.decoys, day_start_us)
    if world.web is not None:
        found = web_day(
            world.web, lambda key: _rng(seed, _Stream.WEB_DAY, day, key), day_start_us, base,
            decoys,
        )  # fmt: skip
        parts.append(found.flows)
        tags.append(found.tags)
        access = found.log
    else:
        parts += [*base, decoys]
        tags += [np.full(row_count(p.conn), -1, dtype=np.int64) for p in (*base, decoys)]
    for i, run in enumerate(world.c2):
        host_ip = int(fleet.ips[run.plan.host])
        flows = _c2_day(_rng(seed, _Stream.IMPLANT, day, i), run, host_ip, day_start_us)
        parts.append(flows)
        tag = world.web.cs_tag if world.web is not None and world.web.cs_c2 == i else -1
        checkins = int(
            ((run.conn_us >= day_start_us) & (run.conn_us < day_start_us + DAY_US)).sum()
        )
        tags.append(np.where(np.arange(row_count(flows.conn)) < checkins, tag, -1))
    dns = _dns_day(world, day, day_start_us)
    parts.append(dns)
    tags.append(np.full(row_count(dns.conn), -1, dtype=np.int64))
    net = network_day(
        world.network, lambda key: _rng(seed, _Stream.NETWORK_DAY, day, key), day_start_us
    )
    parts.append(net.flows)  # last: NetworkLogs finds its rows at the end of the day's conn
    tags.append(np.full(row_count(net.flows.conn), -1, dtype=np.int64))
    return _Day(concat(parts), np.concatenate(tags), access, net)


def _dns_day(world: _World, day: int, day_start_us: int) -> Flows:
    """One day of the DNS techniques (their decoys are drawn with the web traffic)."""
    seed, dns = world.seed, world.dns
    parts = [
        dga_day(_rng(seed, _Stream.DGA, day, i), r, day_start_us) for i, r in enumerate(dns.dga)
    ]
    parts += [
        tunnel_day(_rng(seed, _Stream.TUNNEL, day, i), r, day_start_us)
        for i, r in enumerate(dns.tunnels)
    ]
    parts += [
        flux_day(_rng(seed, _Stream.FLUX, day, i), r, day_start_us) for i, r in enumerate(dns.flux)
    ]
    parts += [
        plain_day(_rng(seed, _Stream.BYPASS, day, i), r, day_start_us)
        for i, r in enumerate(dns.plain)
    ]
    parts += [
        doh_day(_rng(seed, _Stream.DOH, day, i), r, day_start_us) for i, r in enumerate(dns.doh)
    ]
    parts += [
        spike_day(_rng(seed, _Stream.VOLUME, day, i), r, day_start_us)
        for i, r in enumerate(dns.spikes)
    ]
    return concat(parts)


def _rng(seed: int, stream: _Stream, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(stream), *keys])


def _epoch_us(date: dt.date) -> int:
    midnight = dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)
    return int(midnight.timestamp()) * 1_000_000


def _run_c2(rng: np.random.Generator, plan: C2Plan, start_us: int, days: int) -> _C2Run:
    implant = plan.implant
    timing = schedule(
        rng,
        start_us / 1e6,
        start_us / 1e6 + days * 86_400,
        sleep_s=implant.sleep_s,
        jitter_ratio=implant.jitter_ratio,
        jitter_kind=implant.jitter_kind,
        missed_fraction=implant.missed_fraction,
        conns_per_checkin=implant.conns_per_checkin,
    )
    conn_us = np.round(timing.conns_s * 1e6).astype(np.int64)
    first = np.ones(conn_us.size, dtype=np.bool_)
    first[1:] = timing.checkin_of_conn[1:] != timing.checkin_of_conn[:-1]
    resolve = np.zeros(conn_us.size, dtype=np.bool_)
    resolve[first] = resolve_times(conn_us[first], plan.ttl_s)
    return _C2Run(plan, conn_us, first, resolve, int(timing.checkins_s.size))


def _c2_day(rng: np.random.Generator, run: _C2Run, host_ip: int, day_start_us: int) -> Flows:
    rows = (run.conn_us >= day_start_us) & (run.conn_us < day_start_us + DAY_US)
    return implant_flows(
        rng, run.plan, host_ip, run.conn_us[rows], run.first[rows], run.resolve[rows], day_start_us
    )


def _truth(run: _C2Run, host_ip: int) -> C2Truth:
    implant = run.plan.implant
    return C2Truth(
        src=int_to_ip(host_ip),
        dst=int_to_ip(run.plan.dst),
        domain=run.plan.domain,
        dst_port=run.plan.dst_port,
        kind=implant.kind,
        protocol=implant.protocol,
        sleep_s=float(implant.sleep_s),
        jitter_ratio=float(implant.jitter_ratio),
        jitter_kind=implant.jitter_kind,
        missed_fraction=float(implant.missed_fraction),
        conns_per_checkin=implant.conns_per_checkin,
        first_seen=iso_utc(int(run.conn_us[0])),
        last_seen=iso_utc(int(run.conn_us[-1])),
        checkins=run.checkins,
    )
