"""Office life besides browsing: logons, file shares, intranet, installed software, DNS noise."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import DOMAIN_CONTROLLERS, FILE_SERVER
from homecall.simulator.browsing import Visits, visit_flows
from homecall.simulator.catalogue import INTERNAL_NAMES, Catalogue
from homecall.simulator.dns import failed_lookups, lookups, named_lookups
from homecall.simulator.flows import Flows, concat, strings
from homecall.simulator.hosts import Fleet, Presence, is_on
from homecall.simulator.internet import BROWSERS, INTERNAL_DOMAIN, RARE_WORDS
from homecall.simulator.periodic import SERVICES
from homecall.simulator.web import CLEAN, Sizes, draw_states, sized_conns

__all__ = ["office_day"]

_US = 1_000_000
# (port, service, sizes, connections at logon): Kerberos tickets, LDAP policy, SYSVOL group policy
_LOGON = (
    (88, "krb_tcp", Sizes(1_500, 1_600, 0.01, 0.3), 3),
    (389, "ldap_tcp", Sizes(2_000, 6_000, 0.05, 0.8), 2),
    (445, "gssapi,smb,krb", Sizes(8_000, 40_000, 1.0, 1.0), 1),
)
_SHARE_SIZES = Sizes(20_000, 200_000, 30.0, 2.0)
SHARE_SESSIONS_PER_DAY = 5.0
INTRANET_VISITS_PER_DAY = 6.0
SOFTWARE_CALLS_PER_HOUR = 1.2  # irregular background calls (browser, Office, sync clients)
WPAD_LOOKUPS_PER_DAY = 3.0  # WinHTTP proxy auto-discovery, never answered
DEAD_LOOKUPS_PER_DAY = 0.5  # stale or expired names
_STALE_INTERNAL = ("fs02", "printer3", "sccm", "old-intranet", "sharepoint2016", "exch01")


def office_day(
    rng: np.random.Generator,
    cat: Catalogue,
    fleet: Fleet,
    presence: Presence,
    day: int,
    day_start_us: int,
) -> Flows:
    """Everything internal and automatic a working day brings, for every host."""
    present = np.flatnonzero(~np.isnan(presence.arrive_s[day]))
    arrive = presence.arrive_s[day, present]
    leave = presence.leave_s[day, present]
    return concat(
        [
            _logons(rng, cat, fleet, present, day_start_us + (arrive * _US).astype(np.int64)),
            _file_shares(rng, fleet, present, arrive, leave, day_start_us),
            _intranet(rng, cat, fleet, present, arrive, leave, day_start_us),
            _software(rng, cat, fleet, presence, day, day_start_us),
            _dns_noise(rng, cat, fleet, present, arrive, leave, day_start_us),
        ]
    )


def _times_at_work(
    rng: np.random.Generator,
    present: npt.NDArray[np.int64],
    arrive: npt.NDArray[np.float64],
    leave: npt.NDArray[np.float64],
    per_day: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Poisson(per_day) events per present host, uniform over their working hours."""
    counts = rng.poisson(per_day, size=present.size)
    index = np.repeat(np.arange(present.size), counts)
    t_s = arrive[index] + rng.random(index.size) * (leave[index] - arrive[index])
    return present[index], t_s


def _logons(
    rng: np.random.Generator,
    cat: Catalogue,
    fleet: Fleet,
    present: npt.NDArray[np.int64],
    logon_us: npt.NDArray[np.int64],
) -> Flows:
    """At logon: find a domain controller, get Kerberos tickets, read policy from SYSVOL."""
    host_ip = fleet.ips[present]
    dc = np.array(DOMAIN_CONTROLLERS, dtype=np.uint32)[present % 2]
    dc_name = np.array([cat.ids[f"dc0{k}.{INTERNAL_DOMAIN}"] for k in (1, 2)])[present % 2]
    dc_lookup = lookups(rng, cat, host_ip, logon_us + 30_000, dc_name)
    srv = named_lookups(
        rng,
        host_ip,
        logon_us,
        query=f"_ldap._tcp.dc._msdcs.{INTERNAL_DOMAIN}",
        answers=f"dc01.{INTERNAL_DOMAIN},dc02.{INTERNAL_DOMAIN}",
        ttl_s=600,
        qtype=33,
    )
    parts = [srv, dc_lookup]
    for port, service, sizes, count in _LOGON:
        ts_us = np.repeat(logon_us, count) + rng.integers(
            200_000, 4_000_000, size=present.size * count
        )
        parts.append(
            Flows(
                conn=sized_conns(
                    rng,
                    ts_us=ts_us,
                    orig_h=np.repeat(host_ip, count),
                    resp_h=np.repeat(dc, count),
                    resp_p=np.full(ts_us.size, port),
                    sizes=sizes,
                    state=draw_states(rng, ts_us.size, CLEAN),
                    service=service,
                )
            )
        )
    return concat(parts)


def _file_shares(
    rng: np.random.Generator,
    fleet: Fleet,
    present: npt.NDArray[np.int64],
    arrive: npt.NDArray[np.float64],
    leave: npt.NDArray[np.float64],
    day_start_us: int,
) -> Flows:
    """SMB sessions to the file server: long, large, irregular."""
    host, t_s = _times_at_work(rng, present, arrive, leave, SHARE_SESSIONS_PER_DAY)
    ts_us = day_start_us + (t_s * _US).astype(np.int64)
    conn = sized_conns(
        rng,
        ts_us=ts_us,
        orig_h=fleet.ips[host],
        resp_h=np.full(host.size, FILE_SERVER, dtype=np.uint32),
        resp_p=np.full(host.size, 445),
        sizes=_SHARE_SIZES,
        state=draw_states(rng, host.size, (0.97, 0.0, 0.0, 0.03, 0.0)),
        service="gssapi,smb,krb",
    )
    return Flows(conn=conn)


def _intranet(
    rng: np.random.Generator,
    cat: Catalogue,
    fleet: Fleet,
    present: npt.NDArray[np.int64],
    arrive: npt.NDArray[np.float64],
    leave: npt.NDArray[np.float64],
    day_start_us: int,
) -> Flows:
    """Intranet, wiki and ticketing over HTTPS to internal servers."""
    host, t_s = _times_at_work(rng, present, arrive, leave, INTRANET_VISITS_PER_DAY)
    sites = np.array(
        [
            cat.ids[name]
            for name in INTERNAL_NAMES
            if name.split(".")[0] in ("intranet", "wiki", "jira")
        ]
    )
    domain = sites[rng.integers(0, sites.size, size=host.size)]
    visits = Visits(host, t_s, domain, np.ones(host.size, dtype=np.bool_))
    return visit_flows(rng, cat, fleet, visits, day_start_us)


def _software(
    rng: np.random.Generator,
    cat: Catalogue,
    fleet: Fleet,
    presence: Presence,
    day: int,
    day_start_us: int,
) -> Flows:
    """Installed software calling its vendors at irregular times, day and night, while on."""
    periodic = {cat.ids[service.domain] for service in SERVICES}
    candidates = np.concatenate([cat.background, cat.plain_http])
    domains = np.array([d for d in candidates if d not in periodic], dtype=np.int64)
    counts = rng.poisson(SOFTWARE_CALLS_PER_HOUR * 24, size=fleet.size)
    host = np.repeat(np.arange(fleet.size), counts)
    t_s = rng.uniform(0, 86_390, size=host.size)
    keep = is_on(fleet, presence, np.full(host.size, day), host, t_s)
    host, t_s = host[keep], t_s[keep]
    domain = domains[rng.integers(0, domains.size, size=host.size)]
    visits = Visits(host, t_s, domain, np.zeros(host.size, dtype=np.bool_))
    return visit_flows(rng, cat, fleet, visits, day_start_us)


def _dns_noise(
    rng: np.random.Generator,
    cat: Catalogue,
    fleet: Fleet,
    present: npt.NDArray[np.int64],
    arrive: npt.NDArray[np.float64],
    leave: npt.NDArray[np.float64],
    day_start_us: int,
) -> Flows:
    """NXDOMAIN answers: Chromium's random-name probes at start, WPAD, stale and expired names."""
    chromium = np.array(["Chrome/" in agent for agent, _ in BROWSERS])[fleet.browser[present]]
    probe_hosts = np.repeat(present[chromium], 3)
    probe_t = np.repeat(arrive[chromium], 3) + rng.uniform(20, 240, size=probe_hosts.size)
    lengths = rng.integers(7, 16, size=probe_hosts.size)
    letters = rng.integers(0, 26, size=(probe_hosts.size, 15)) + ord("a")
    probes = [
        bytes(row[:k].astype(np.uint8)).decode() for row, k in zip(letters, lengths, strict=True)
    ]
    wpad_hosts, wpad_t = _times_at_work(rng, present, arrive, leave, WPAD_LOOKUPS_PER_DAY)
    dead_hosts, dead_t = _times_at_work(rng, present, arrive, leave, DEAD_LOOKUPS_PER_DAY)
    dead = _dead_names(rng, dead_hosts.size, cat.ids)
    host = np.concatenate([probe_hosts, wpad_hosts, dead_hosts])
    t_s = np.concatenate([probe_t, wpad_t, dead_t])
    names = probes + [f"wpad.{INTERNAL_DOMAIN}"] * wpad_hosts.size + dead
    return failed_lookups(
        rng, fleet.ips[host], day_start_us + (t_s * _US).astype(np.int64), strings(names)
    )


def _dead_names(rng: np.random.Generator, n: int, live: dict[str, int]) -> list[str]:
    """Names that no longer resolve: stale internal servers and expired small sites."""
    stale = [f"{name}.{INTERNAL_DOMAIN}" for name in _STALE_INTERNAL]
    words = rng.integers(len(RARE_WORDS), size=(n, 2))
    names = []
    for internal, k, (a, b) in zip(
        rng.random(n) < 0.5, rng.integers(1 << 16, size=n), words, strict=True
    ):
        expired = f"{RARE_WORDS[a]}{RARE_WORDS[b]}.com"
        names.append(stale[k % len(stale)] if internal or expired in live else expired)
    return names
