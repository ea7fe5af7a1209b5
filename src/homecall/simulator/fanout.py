"""Hosts that talk to many peers: a P2P bot (truth kind p2p) and the benign hosts that fan out
too, the internal resolver recursing to many name servers, a vulnerability scanner sweeping the
network, and a workstation pulling a busy day's worth of CDN resources.

The bot imitates Mozi and Hide'N Seek on an IoT device: a DHT node on one UDP port querying
peers of its routing table on their random high ports, a third of which are still alive, and
TCP exchanges with peers' high ports, most of them never answered or refused.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import (
    DOMAIN_CONTROLLERS,
    FILE_SERVER,
    INTRANET_SERVERS,
    LINUX_SERVERS,
    MAIL_GATEWAY,
    MONITORING_SERVER,
    PROXY,
    RESOLVER,
    WEB_SERVER,
    ip_to_int,
)
from homecall.simulator.browsing import Visits, visit_flows
from homecall.simulator.dns import Queries, query_flows
from homecall.simulator.firewall_log import BOT_BLOCKS
from homecall.simulator.flows import STATES, Columns, Flows, concat, tcp_conns
from homecall.simulator.hosts import is_on, site_weights
from homecall.simulator.internet import HOSTING, INTERNAL_DOMAIN
from homecall.simulator.netrows import REJ, S0, SF, draw_addresses, udp_rows
from homecall.simulator.network_c2 import NetDay, NetRun, benign_entry, c2_entry
from homecall.simulator.tls_c2 import INSPECTED
from homecall.simulator.web_runs import WebContext

__all__ = [
    "DHT_ROUTERS",
    "P2P_DEVICE",
    "VULN_SCANNER",
    "plan_heavy",
    "plan_p2p",
    "plan_resolver",
    "plan_scanner",
]

DAY_US = 86_400_000_000
P2P_DEVICE = ip_to_int("10.0.4.20")  # the camera recorder (NVR) in the facilities network
VULN_SCANNER = ip_to_int("10.0.1.50")  # the vulnerability scanner (Nessus)
# BitTorrent DHT bootstrap nodes Mozi hard-codes: router.bittorrent.com, dht.transmissionbt.com,
# router.utorrent.com and two more
DHT_ROUTERS = ("67.215.246.10", "87.98.162.88", "82.221.103.244", "212.129.33.59", "130.239.18.159")
_DHT_PORT = 6881
_POOL = 6_000  # nodes in the bot's routing table over the simulation
_ALIVE_RATIO = 0.3  # nodes that still answer (the rest are rebooted routers, new addresses)
_UDP_GAP_S = 30.0  # mean gap between DHT queries (find_node, get_peers, ping)
_TCP_GAP_S = 150.0  # mean gap between TCP exchanges with peers
_BOOTSTRAP_GAP_S = 4 * 3600.0  # it re-asks the bootstrap nodes every few hours
# Name servers the resolver recurses to: root (a-m.root-servers.net), .com/.net
# (a-m.gtld-servers.net) and authoritative hosting (Cloudflare, Route 53, Google, Akamai, Azure)
_ROOTS = (
    "198.41.0.4", "170.247.170.2", "192.33.4.12", "199.7.91.13", "192.203.230.10", "192.5.5.241",
    "192.112.36.4", "198.97.190.53", "192.36.148.17", "192.58.128.30", "193.0.14.129",
    "199.7.83.42", "202.12.27.33",
)  # fmt: skip
_GTLD = (
    "192.5.6.30", "192.33.14.30", "192.26.92.30", "192.31.80.30", "192.12.94.30", "192.35.51.30",
    "192.42.93.30", "192.54.112.30", "192.43.172.30", "192.48.79.30", "192.52.178.30",
    "192.41.162.30", "192.55.83.30",
)  # fmt: skip
_NS_BLOCKS = (
    "173.245.58.0/24", "108.162.192.0/22", "205.251.192.0/21", "216.239.32.0/22",
    "23.61.199.0/24", "40.90.4.0/24", "13.107.24.0/24",
)  # fmt: skip
_UPSTREAM_PER_HOST = 12.0  # the resolver's cache misses a day, per user in the office
_SCAN_PORTS = (21, 22, 23, 25, 80, 135, 139, 443, 445, 3389, 5985, 8080)
_WINDOWS_OPEN = (135, 139, 445)
# internal servers: (address, open ports, Linux: closed ports refuse, else they drop)
_SERVERS = (
    *((dc, (53, 88, 135, 139, 389, 445, 464, 636, 3268, 3389), False) for dc in DOMAIN_CONTROLLERS),
    (FILE_SERVER, (135, 139, 445, 3389), False),
    *((ip, (80, 135, 443, 445, 3389), False) for ip in INTRANET_SERVERS),
    (MAIL_GATEWAY, (22, 25, 587), True),
    (MONITORING_SERVER, (22, 80, 443, 5666), True),
    (PROXY, (22, 3128), True),
    (WEB_SERVER, (22, 80), True),
    (RESOLVER, (22, 53), True),
    *((ip, (22, 80, 443, 8080), True) for ip in LINUX_SERVERS),
)
_HEAVY_PER_HOUR = 150.0  # resources fetched an hour by the busy workstation


def plan_p2p(rng: np.random.Generator, ctx: WebContext) -> NetRun:
    """The NVR's P2P node, all day: DHT queries over UDP from its fixed port, TCP exchanges."""
    pool = draw_addresses(rng, BOT_BLOCKS, _POOL, ctx.used_ips)
    routers = np.array([ip_to_int(ip) for ip in DHT_ROUTERS], dtype=np.uint32)
    ctx.used_ips.update(int(ip) for ip in routers)
    udp_port = rng.integers(1025, 65536, size=_POOL)
    tcp_port = rng.integers(1025, 65536, size=_POOL)
    alive = rng.random(_POOL) < _ALIVE_RATIO
    weight = 1.0 / np.arange(1, _POOL + 1) ** 0.6  # routing-table favourites come back
    weight = rng.permutation(weight / weight.sum())
    node_port = int(rng.integers(10_000, 60_000))

    def draw(g: np.random.Generator, day_start_us: int) -> NetDay:
        udp_ts = _arrivals(g, day_start_us, _UDP_GAP_S)
        boot_ts = _arrivals(g, day_start_us, _BOOTSTRAP_GAP_S)
        peer = g.choice(_POOL, size=udp_ts.size, p=weight)
        k, n = boot_ts.size * routers.size, udp_ts.size
        answered = np.concatenate([np.ones(k, bool), alive[peer] & (g.random(n) < 0.85)])
        rtt = (g.lognormal(np.log(0.18), 0.6, k + n) * 1e6).astype(np.int64)
        udp = udp_rows(
            g,
            ts_us=np.concatenate([np.repeat(boot_ts, routers.size), udp_ts]),
            orig_h=np.full(k + n, P2P_DEVICE, np.uint32),
            resp_h=np.concatenate([np.tile(routers, boot_ts.size), pool[peer]]),
            resp_p=np.concatenate([np.full(k, _DHT_PORT), udp_port[peer]]),
            orig_pkts=np.ones(k + n, dtype=np.int64),
            payload=g.integers(90, 112, size=k + n),
            answer=np.where(answered, g.integers(180, 460, size=k + n), 0),
            duration_us=np.where(answered, rtt, 0),
            orig_p=np.full(k + n, node_port, dtype=np.int64),
        )
        tcp_ts = _arrivals(g, day_start_us, _TCP_GAP_S)
        m = tcp_ts.size
        other = g.choice(_POOL, size=m, p=weight)
        up = alive[other] & (g.random(m) < 0.6)
        state = np.where(up, SF, np.where(g.random(m) < 0.3, REJ, S0))
        tcp = tcp_conns(
            g, ts_us=tcp_ts, orig_h=np.full(m, P2P_DEVICE, np.uint32), resp_h=pool[other],
            resp_p=tcp_port[other], service="-", orig_bytes=g.integers(60, 600, size=m),
            resp_bytes=g.integers(100, 4_000, size=m),
            duration_us=(g.lognormal(np.log(0.8), 0.8, m) * 1e6).astype(np.int64), state=state,
        )  # fmt: skip
        return NetDay(concat([Flows(conn=udp), Flows(conn=tcp)]))

    entry = c2_entry(
        "p2p", P2P_DEVICE, None, None, proto="tcp+udp", service=None, family="mozi-dht"
    )
    return NetRun(entry, draw)


def _arrivals(
    g: np.random.Generator, day_start_us: int, mean_gap_s: float
) -> npt.NDArray[np.int64]:
    """Poisson arrivals over one day, sorted."""
    n = g.poisson(86_400 / mean_gap_s)
    return np.sort(day_start_us + (g.random(n) * DAY_US).astype(np.int64))


def plan_resolver(rng: np.random.Generator, ctx: WebContext) -> NetRun:
    """The internal resolver's own queries (its cache misses, more when people are in):
    iterative, to each name's authoritative servers, now and then to the root and .com/.net.
    They are in conn.log only: the site's Zeek drops the DNS records of the resolver's own
    recursion (its clients' lookups are logged already), as it drops the proxy's own."""
    cat = ctx.cat
    outside = np.array(
        [d for d, name in enumerate(cat.names) if not name.endswith(INTERNAL_DOMAIN)],
        dtype=np.int64,
    )
    weight = site_weights(outside.size)
    name_servers = np.concatenate(
        [
            draw_addresses(rng, _NS_BLOCKS, 100, ctx.used_ips),
            draw_addresses(rng, HOSTING.blocks, 150, ctx.used_ips),
        ]
    )
    roots = np.array([ip_to_int(ip) for ip in _ROOTS], dtype=np.uint32)
    gtld = np.array([ip_to_int(ip) for ip in _GTLD], dtype=np.uint32)
    first_ns = rng.integers(0, name_servers.size, size=len(cat.names))  # each name's NS pair

    def draw(g: np.random.Generator, day_start_us: int) -> NetDay:
        day = (day_start_us - ctx.start_us) // DAY_US
        arrive, leave = ctx.presence.arrive_s[day], ctx.presence.leave_s[day]
        present = np.flatnonzero(~np.isnan(arrive))
        counts = g.poisson(_UPSTREAM_PER_HOST, size=present.size)
        who = np.repeat(present, counts)
        t_s = arrive[who] + g.random(who.size) * (leave[who] - arrive[who])
        night = g.random(int(0.15 * who.size)) * 86_400  # servers and desktops resolve at night
        t_s = np.sort(np.concatenate([t_s, night]))
        n = t_s.size
        domain = outside[g.choice(outside.size, size=n, p=weight)]
        level = g.choice(3, size=n, p=[0.87, 0.05, 0.08])  # authoritative, root, TLD
        ns = name_servers[(first_ns[domain] + g.integers(0, 2, size=n)) % name_servers.size]
        server = np.where(level == 0, ns, np.where(level == 1, roots[g.integers(0, 13, n)],
                                                   gtld[g.integers(0, 13, n)]))  # fmt: skip
        aaaa = g.random(n) < 0.3
        take = pa.array(domain)
        answers = pc.if_else(pa.array(aaaa), cat.aaaa_answers.take(take), cat.a_answers.take(take))
        authoritative = level == 0
        answers = pc.if_else(pa.array(authoritative), answers, pa.nulls(n, pa.string()))
        queries = Queries(
            host_ip=np.full(n, RESOLVER, dtype=np.uint32),
            ts_us=day_start_us + (t_s * 1e6).astype(np.int64),
            query=cat.name_text.take(take),
            qtype=np.where(aaaa, 28, 1).astype(np.int64),
            rcode=np.zeros(n, dtype=np.int64),
            answers=answers,
            ttl_s=cat.ttl_s[domain],
            rtt_us=(g.lognormal(np.log(25_000), 0.7, n)).astype(np.int64),
        )
        flows = query_flows(g, queries, resolver=RESOLVER)  # conn.log only: see plan_resolver
        conn = {**flows.conn, "id.resp_h": server.astype(np.uint32)}
        return NetDay(Flows(conn=conn))

    entry = benign_entry(
        "resolver", "p2p-fanout", dst=None, port=53, proto="udp",
        detail="the internal resolver recursing to root, TLD and authoritative name servers",
    )  # fmt: skip
    return NetRun(entry, draw)


def plan_scanner(rng: np.random.Generator, ctx: WebContext) -> NetRun:
    """Every night at 01:00 the scanner probes _SCAN_PORTS on every workstation and server,
    then the first 1,024 ports of one server, a different one each night."""
    fleet = ctx.fleet
    rdp = rng.random(fleet.size) < 0.25  # workstations with remote desktop enabled

    def draw(g: np.random.Generator, day_start_us: int) -> NetDay:
        day = (day_start_us - ctx.start_us) // DAY_US
        start_s = 3_600 + g.uniform(0, 600)
        parts = [_sweep(g, ctx, day, day_start_us, start_s, rdp)]
        address, open_ports, linux = _SERVERS[day % len(_SERVERS)]
        ports = np.arange(1, 1_025, dtype=np.int64)
        begin = day_start_us + int((start_s + 1_500) * 1e6)
        ts = begin + np.sort(g.integers(0, 300_000_000, size=ports.size))
        parts.append(_probes(g, ts, address, ports, open_ports, linux))
        return NetDay(concat([Flows(conn=p) for p in parts]))

    entry = benign_entry(
        "vuln-scanner", "p2p-fanout", dst=None, port=None, proto="tcp", expected="scan",
        detail="the nightly discovery scan of every host, and a full scan of one server",
    )  # fmt: skip
    return NetRun(entry, draw)


def _sweep(
    g: np.random.Generator,
    ctx: WebContext,
    day: int,
    day_start_us: int,
    start_s: float,
    rdp: npt.NDArray[np.bool_],
) -> Columns:
    """The discovery probes: every workstation, then every server, a few ports each."""
    fleet, ports = ctx.fleet, np.array(_SCAN_PORTS, dtype=np.int64)
    hosts = np.arange(fleet.size, dtype=np.int64)
    t_s = (start_s + hosts * 0.8).astype(np.float64)
    on = is_on(fleet, ctx.presence, np.full(hosts.size, day), hosts, t_s)
    k = ports.size
    open_ = np.isin(np.tile(ports, hosts.size), _WINDOWS_OPEN) | (
        np.tile(ports == 3389, hosts.size) & np.repeat(rdp, k)
    )
    up = open_ & np.repeat(on, k)
    ts = (
        day_start_us
        + (np.repeat(t_s, k) * 1e6).astype(np.int64)
        + g.integers(0, 400_000, size=up.size)
    )
    workstations = _probe_rows(
        g, ts, np.repeat(fleet.ips, k).astype(np.uint32), np.tile(ports, hosts.size), up, False
    )
    servers = []
    for j, (address, open_ports, linux) in enumerate(_SERVERS):
        at = day_start_us + int((t_s[-1] + 1 + j * 0.8) * 1e6) if hosts.size else day_start_us
        ts = at + g.integers(0, 400_000, size=k)
        servers.append(_probes(g, ts, address, ports, open_ports, linux))
    return concat([Flows(conn=workstations), *[Flows(conn=s) for s in servers]]).conn


def _probes(
    g: np.random.Generator,
    ts: npt.NDArray[np.int64],
    address: int,
    ports: npt.NDArray[np.int64],
    open_ports: tuple[int, ...],
    linux: bool,
) -> Columns:
    """One server's probed ports: the open ones answer, closed ones refuse (Linux) or drop."""
    up = np.isin(ports, open_ports)
    return _probe_rows(g, ts, np.full(ports.size, address, np.uint32), ports, up, linux)


def _probe_rows(
    g: np.random.Generator,
    ts: npt.NDArray[np.int64],
    dst: npt.NDArray[np.uint32],
    ports: npt.NDArray[np.int64],
    up: npt.NDArray[np.bool_],
    refuse: bool,
) -> Columns:
    n = ts.size
    closed = REJ if refuse else S0
    state = np.where(up, STATES.index("RSTO"), closed)
    return tcp_conns(
        g, ts_us=ts, orig_h=np.full(n, VULN_SCANNER, np.uint32), resp_h=dst, resp_p=ports,
        service="-", orig_bytes=g.integers(0, 40, size=n), resp_bytes=g.integers(0, 300, size=n),
        duration_us=g.integers(2_000, 60_000, size=n), state=state,
    )  # fmt: skip


def plan_heavy(rng: np.random.Generator, ctx: WebContext, host: int) -> NetRun:
    """A workstation whose browser fetches resources from hundreds of CDN and site addresses a
    day (an ad-operations desk): TLS to port 443, answered, after ordinary lookups."""
    cat = ctx.cat
    pool = np.concatenate([cat.sites, cat.third_party, cat.background])
    names = [cat.names[d] for d in pool]
    keep = [
        not n.endswith(INTERNAL_DOMAIN) and not any(n.endswith(i) for i in INSPECTED) for n in names
    ]
    domains = pool[np.array(keep, dtype=np.bool_)]

    def draw(g: np.random.Generator, day_start_us: int) -> NetDay:
        day = (day_start_us - ctx.start_us) // DAY_US
        arrive, leave = ctx.presence.arrive_s[day, host], ctx.presence.leave_s[day, host]
        if np.isnan(arrive):
            return NetDay(Flows())
        n = g.poisson((leave - arrive) / 3_600 * _HEAVY_PER_HOUR)
        visits = Visits(
            host=np.full(n, host, dtype=np.int64),
            t_s=np.sort(g.uniform(arrive, leave, size=n)),
            domain=domains[g.integers(0, domains.size, size=n)],
            is_main=np.zeros(n, dtype=np.bool_),
        )
        return NetDay(visit_flows(g, cat, ctx.fleet, visits, day_start_us))

    entry = benign_entry(
        "cdn-heavy", "p2p-fanout", dst=None, port=443, proto="tcp",
        detail="a browser fetching from hundreds of CDN and site addresses, all answered",
    )  # fmt: skip
    return NetRun(entry, draw)
