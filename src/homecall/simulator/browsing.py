"""People browsing: diurnal bursts of page loads, each a lookup then TLS or HTTP connections."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from homecall.simulator.catalogue import Catalogue
from homecall.simulator.dns import cache_misses, lookups
from homecall.simulator.flows import Flows, concat
from homecall.simulator.hosts import Fleet, Presence, site_weights
from homecall.simulator.internet import BROWSERS
from homecall.simulator.pages import page_requests, plan_responses
from homecall.simulator.web import WEB_STATES, Sizes, draw_states, sized_conns, tls_rows

__all__ = ["Visits", "browsing_day", "group_starts", "rare_domains_per_day", "visit_flows"]

SESSIONS_PER_HOUR = 6.0  # page bursts an average user starts per working hour
EXTRA_PAGES_MEAN = 1.5  # further pages in a burst, Poisson
PAGE_GAP_S = 40.0  # mean think time between pages of a burst
THIRD_PARTY_PER_PAGE = 2.5  # embedded-resource domains contacted per page, Poisson
FAVOURITE_RATIO = 0.55  # pages that are one of the user's own usual sites
RARE_VISITS_PER_DAY = 4.0  # long-tail domains a present user opens per day
TWO_VISITOR_RATIO = 0.2  # long-tail domains that a second host opens too
LUNCH_FACTOR = 0.35
AFTER_HOURS_FACTOR = 0.03  # tabs left open on desktops: auto-refresh, chat
THIRD_PARTY_ZIPF = 0.9
MAIN_SIZES = Sizes(
    orig_bytes=1_800, resp_bytes=30_000, duration_s=0.8, sigma=1.5, keepalive_ratio=0.45
)
THIRD_SIZES = Sizes(
    orig_bytes=900, resp_bytes=7_000, duration_s=0.4, sigma=1.6, keepalive_ratio=0.3
)
HTTP_REQUEST_BYTES = 550  # median plain-HTTP GET: request line, headers, cookies
REDIRECT_RATIO = 0.03  # page visits typed without https://, answered 301 on port 80
_RESUMED_RATIO = 0.35


@dataclass(frozen=True, slots=True)
class Visits:
    """A host contacting a domain: one or more connections after a lookup if its cache expired."""

    host: npt.NDArray[np.int64]
    t_s: npt.NDArray[np.float64]  # seconds after the day's 00:00 UTC
    domain: npt.NDArray[np.int64]
    is_main: npt.NDArray[np.bool_]  # the page itself rather than an embedded resource

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Visits:
        """The visits at index (or where a mask is true)."""
        return Visits(self.host[index], self.t_s[index], self.domain[index], self.is_main[index])

    def repeat(self, counts: npt.NDArray[np.int64]) -> Visits:
        """Each visit repeated counts times (one row per connection)."""
        return Visits(
            np.repeat(self.host, counts),
            np.repeat(self.t_s, counts),
            np.repeat(self.domain, counts),
            np.repeat(self.is_main, counts),
        )


def browsing_day(
    rng: np.random.Generator,
    cat: Catalogue,
    fleet: Fleet,
    presence: Presence,
    day: int,
    day_start_us: int,
    rare: npt.NDArray[np.int64],
) -> Flows:
    """One day of browsing by every host; `rare` are the long-tail domains opened that day."""
    host, t_s = _page_times(rng, fleet, presence, day)
    sites = _page_sites(rng, cat, fleet, host)
    rare_host, rare_t, rare_domain = _rare_visits(rng, fleet, presence, day, rare)
    host = np.concatenate([host, rare_host])
    t_s = np.concatenate([t_s, rare_t])
    mains = Visits(host, t_s, np.concatenate([sites, rare_domain]), np.ones(len(host), np.bool_))
    visits = _with_third_parties(rng, cat, mains)
    visits = visits.take(visits.t_s < 86_390)  # a burst that spills past midnight stops there
    return visit_flows(rng, cat, fleet, visits, day_start_us)


def rare_domains_per_day(hosts: int) -> int:
    """How many new long-tail domains a day of browsing by `hosts` users needs."""
    return math.ceil(hosts * RARE_VISITS_PER_DAY / (1 + TWO_VISITOR_RATIO))


def _rate(
    fleet: Fleet,
    presence: Presence,
    day: int,
    host: npt.NDArray[np.int64],
    t_s: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Relative browsing intensity (0..1) of each host at each time."""
    arrive = presence.arrive_s[day, host]
    leave = presence.leave_s[day, host]
    lunch = fleet.lunch_h[host] * 3600
    with np.errstate(invalid="ignore"):
        working = (t_s >= arrive) & (t_s < leave)
        at_lunch = (t_s >= lunch) & (t_s < lunch + 2700)
        morning = working & (t_s < arrive + 3600)  # mail and news first thing
        after = ~working & ~np.isnan(arrive) & ~fleet.is_laptop[host]
    rate = np.where(working, np.where(at_lunch, LUNCH_FACTOR, np.where(morning, 1.0, 0.8)), 0.0)
    return np.where(after, AFTER_HOURS_FACTOR, rate)


def _page_times(
    rng: np.random.Generator, fleet: Fleet, presence: Presence, day: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Page loads of all hosts: sessions by thinning a Poisson process, then pages per session."""
    expected = SESSIONS_PER_HOUR * 24 * fleet.activity
    counts = rng.poisson(expected)
    host = np.repeat(np.arange(fleet.size), counts)
    t_s = rng.uniform(0, 86_400, size=len(host))
    accept = rng.random(len(host)) < _rate(fleet, presence, day, host, t_s)
    host, t_s = host[accept], t_s[accept]
    pages = 1 + rng.poisson(EXTRA_PAGES_MEAN, size=len(host))
    gaps = rng.exponential(PAGE_GAP_S, size=int(pages.sum()))
    first = group_starts(pages)
    gaps[first] = 0.0
    cumulative = np.cumsum(gaps)
    t_s = np.repeat(t_s, pages) + cumulative - np.repeat(cumulative[first], pages)
    return np.repeat(host, pages), t_s


def _page_sites(
    rng: np.random.Generator, cat: Catalogue, fleet: Fleet, host: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The site of each page: one of the user's favourites or any site by popularity."""
    favourite = fleet.favourites[host, rng.integers(0, fleet.favourites.shape[1], size=len(host))]
    anywhere = rng.choice(len(cat.sites), size=len(host), p=site_weights(len(cat.sites)))
    index = np.where(rng.random(len(host)) < FAVOURITE_RATIO, favourite, anywhere)
    return cat.sites[index]


def _rare_visits(
    rng: np.random.Generator,
    fleet: Fleet,
    presence: Presence,
    day: int,
    rare: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Each long-tail domain of the day opened by one host (or two), while they are at work."""
    present = np.flatnonzero(~np.isnan(presence.arrive_s[day]))
    if present.size == 0 or rare.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros(0), empty
    weights = fleet.activity[present] / fleet.activity[present].sum()
    visitors = np.where(rng.random(rare.size) < TWO_VISITOR_RATIO, 2, 1)
    domain = np.repeat(rare, visitors)
    host = rng.choice(present, size=domain.size, p=weights)
    arrive = presence.arrive_s[day, host]
    leave = presence.leave_s[day, host]
    t_s = arrive + rng.random(domain.size) * np.maximum(leave - arrive, 60)
    return host, t_s, domain


def _with_third_parties(rng: np.random.Generator, cat: Catalogue, mains: Visits) -> Visits:
    """Add the embedded-resource domains each page pulls in, a moment after the page."""
    count = rng.poisson(THIRD_PARTY_PER_PAGE, size=len(mains.host))
    host = np.repeat(mains.host, count)
    t_s = np.repeat(mains.t_s, count) + rng.uniform(0.15, 3.0, size=host.size)
    weights = 1.0 / np.arange(1, len(cat.third_party) + 1) ** THIRD_PARTY_ZIPF
    domain = cat.third_party[
        rng.choice(len(cat.third_party), size=host.size, p=weights / weights.sum())
    ]
    return Visits(
        np.concatenate([mains.host, host]),
        np.concatenate([mains.t_s, t_s]),
        np.concatenate([mains.domain, domain]),
        np.concatenate([mains.is_main, np.zeros(host.size, dtype=np.bool_)]),
    )


def group_starts(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Index of each group's first row once rows are repeated counts times (groups non-empty)."""
    starts: npt.NDArray[np.int64] = (np.cumsum(counts) - counts).astype(np.int64)
    return starts


def visit_flows(
    rng: np.random.Generator, cat: Catalogue, fleet: Fleet, visits: Visits, day_start_us: int
) -> Flows:
    """Lookups where the host's cache has expired, then the visits' connections and app rows."""
    ts_us = day_start_us + (visits.t_s * 1e6).astype(np.int64)
    miss = cache_misses(visits.host, visits.domain, ts_us, cat.ttl_s[visits.domain])
    ip = fleet.ips[visits.host]
    dns_a = lookups(rng, cat, ip[miss], ts_us[miss], visits.domain[miss], qtype=1)
    delay = np.zeros(len(ts_us), dtype=np.int64)
    delay[miss] = dns_a.conn["duration"] + rng.integers(200, 3_000, size=int(miss.sum()))
    six = miss & fleet.queries_aaaa[visits.host]
    dns_aaaa = lookups(rng, cat, ip[six], ts_us[six] + 150, visits.domain[six], qtype=28)
    # a typed address without https:// first gets a 301 from port 80
    redirect = (
        visits.is_main & ~cat.is_http[visits.domain] & (rng.random(len(ts_us)) < REDIRECT_RATIO)
    )
    extra = np.minimum(rng.poisson(0.6, size=len(ts_us)), 3)
    conns = 1 + redirect + np.where(visits.is_main, extra, 0)
    first = group_starts(conns)
    offset = rng.integers(10_000, 1_500_000, size=int(conns.sum()))  # later connections
    offset[first] = 0
    is_redirect = np.zeros(offset.size, dtype=np.bool_)
    is_redirect[first] = redirect
    start = np.repeat(ts_us + delay, conns) + offset
    rows = visits.repeat(conns)
    return concat([dns_a, dns_aaaa, _connections(rng, cat, fleet, rows, start, is_redirect)])


def _connections(
    rng: np.random.Generator,
    cat: Catalogue,
    fleet: Fleet,
    rows: Visits,
    ts_us: npt.NDArray[np.int64],
    is_redirect: npt.NDArray[np.bool_],
) -> Flows:
    """Connections, TLS on 443 or plain HTTP on 80 as the domain serves (or to be redirected)."""
    parts = []
    for main, sizes in ((True, MAIN_SIZES), (False, THIRD_SIZES)):
        pick = np.flatnonzero(rows.is_main == main)
        domain, host, start = rows.domain[pick], rows.host[pick], ts_us[pick]
        plain = cat.is_http[domain] | is_redirect[pick]
        state = draw_states(rng, pick.size, WEB_STATES)
        fixed = np.flatnonzero(plain)
        planned = plan_responses(
            rng, [cat.names[d] for d in domain[fixed]], is_redirect[pick][fixed], main
        )
        status = np.zeros(pick.size, dtype=np.int64)
        status[fixed] = planned.status
        known = np.full(pick.size, -1, dtype=np.int64)
        known[fixed] = planned.resp_bytes
        request = np.full(pick.size, -1, dtype=np.int64)  # one GET: its headers and cookies
        request[fixed] = rng.lognormal(np.log(HTTP_REQUEST_BYTES), 0.4, size=fixed.size)
        conn = sized_conns(
            rng,
            ts_us=start,
            orig_h=fleet.ips[host],
            resp_h=cat.pick_ips(rng, domain),
            resp_p=np.where(plain, 80, 443),
            sizes=sizes,
            state=state,
            orig_bytes=request,
            resp_bytes=known,
        )
        up = np.isin(state, (0, 3, 4))
        tls = np.flatnonzero(up & ~plain)
        web = np.flatnonzero(up & plain)
        ssl = tls_rows(
            rng,
            conn=tls,
            ts_us=start[tls],
            duration_us=conn["duration"][tls],
            server_name=cat.name_text.take(pa.array(domain[tls])),
            server=domain[tls],
            tls13=cat.is_tls13[domain[tls]],
            resumed=rng.random(tls.size) < _RESUMED_RATIO,
            cert_fps=cat.cert_fps.take(pa.array(domain[tls])),
        )
        http = page_requests(
            rng,
            conn=web,
            ts_us=start[web],
            duration_us=conn["duration"][web],
            host=[cat.names[d] for d in domain[web]],
            user_agent=[BROWSERS[b][0] for b in fleet.browser[host[web]]],
            status=status[web],
            resp_bytes=conn["resp_bytes"][web],
            is_main=main,
        )
        parts.append(Flows(conn=conn, ssl=ssl, http=http))
    return concat(parts)
