"""The workstations of the simulated enterprise: who they are and when their users are in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import host_ips
from homecall.simulator.internet import BROWSERS

__all__ = [
    "FAVOURITES",
    "Fleet",
    "Presence",
    "at_work",
    "build_fleet",
    "build_presence",
    "is_on",
    "is_on_at",
    "site_weights",
]

FAVOURITES = 10  # sites each user returns to all day (mail, intranet SaaS, news)
LAPTOP_RATIO = 0.35  # laptops leave with their users; desktops stay on overnight
ABSENCE_RATIO = 0.05  # leave, sickness, travel on a working day
WEEKEND_WORKER_RATIO = 0.06
_SITE_ZIPF = 1.1  # popularity exponent over the site list


@dataclass(frozen=True, slots=True)
class Fleet:
    """Per-host attributes that stay the same for the whole simulation."""

    ips: npt.NDArray[np.uint32]
    is_laptop: npt.NDArray[np.bool_]
    activity: npt.NDArray[np.float64]  # browsing intensity relative to the average user
    browser: npt.NDArray[np.int64]  # index into internet.BROWSERS
    queries_aaaa: npt.NDArray[np.bool_]  # dual-stack resolver stub: asks AAAA next to A
    favourites: npt.NDArray[np.int64]  # (hosts, FAVOURITES) indexes into catalogue.sites
    lunch_h: npt.NDArray[np.float64]  # UTC hour the user leaves for lunch

    @property
    def size(self) -> int:
        """Number of hosts."""
        return len(self.ips)


@dataclass(frozen=True, slots=True)
class Presence:
    """When each user is at the desk, per simulated day: seconds after 00:00 UTC, NaN if away."""

    arrive_s: npt.NDArray[np.float64]  # (days, hosts)
    leave_s: npt.NDArray[np.float64]


def site_weights(n_sites: int) -> npt.NDArray[np.float64]:
    """Zipf-like popularity of the site list (rank 1 first), summing to 1."""
    weights = (1.0 / np.arange(1, n_sites + 1) ** _SITE_ZIPF).astype(np.float64)
    normalised: npt.NDArray[np.float64] = weights / weights.sum()
    return normalised


def build_fleet(rng: np.random.Generator, hosts: int, n_sites: int) -> Fleet:
    """Draw the workstations: form factor, user habits and browser."""
    shares = np.array([share for _, share in BROWSERS])
    favourites = np.stack(
        [
            rng.choice(n_sites, size=FAVOURITES, replace=False, p=site_weights(n_sites))
            for _ in range(hosts)
        ]
    )
    return Fleet(
        ips=host_ips(hosts),
        is_laptop=rng.random(hosts) < LAPTOP_RATIO,
        activity=rng.lognormal(0.0, 0.5, size=hosts),
        browser=rng.choice(len(BROWSERS), size=hosts, p=shares / shares.sum()),
        queries_aaaa=rng.random(hosts) < 0.3,
        favourites=favourites.astype(np.int64),
        lunch_h=np.clip(rng.normal(12.1, 0.35, size=hosts), 11.3, 13.2),
    )


def build_presence(rng: np.random.Generator, fleet: Fleet, dates: list[dt.date]) -> Presence:
    """Arrival and departure of every user on every date (weekends mostly empty)."""
    n = fleet.size
    base_arrive = np.clip(rng.normal(8.2, 0.55, size=n), 6.5, 10.5)
    base_leave = np.clip(rng.normal(17.2, 0.7, size=n), 15.0, 20.0)
    weekend_worker = rng.random(n) < WEEKEND_WORKER_RATIO
    arrive = np.empty((len(dates), n))
    leave = np.empty((len(dates), n))
    for d, date in enumerate(dates):
        arrive[d] = (base_arrive + rng.normal(0, 0.3, size=n)) * 3600
        leave[d] = (base_leave + rng.normal(0, 0.4, size=n)) * 3600
        if date.weekday() >= 5:
            away = ~weekend_worker | (rng.random(n) < 0.5)
            arrive[d] += 3600 * 1.5
            leave[d] -= 3600 * 3.0
        else:
            away = rng.random(n) < ABSENCE_RATIO
        arrive[d, away] = np.nan
        leave[d, away] = np.nan
    return Presence(arrive_s=arrive, leave_s=leave)


def at_work(
    presence: Presence,
    day: npt.NDArray[np.int64],
    host: npt.NDArray[np.int64],
    t_s: npt.NDArray[np.float64],
    margin_s: float = 0.0,
) -> npt.NDArray[np.bool_]:
    """Whether each host's user is in at t_s seconds into the given day (widened by margin_s)."""
    arrive = presence.arrive_s[day, host] - margin_s
    leave = presence.leave_s[day, host] + margin_s
    with np.errstate(invalid="ignore"):
        return (t_s >= arrive) & (t_s < leave)


def is_on(
    fleet: Fleet,
    presence: Presence,
    day: npt.NDArray[np.int64],
    host: npt.NDArray[np.int64],
    t_s: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """Whether the machine is powered on: desktops always, laptops around their user's day."""
    return ~fleet.is_laptop[host] | at_work(presence, day, host, t_s, margin_s=900)


def is_on_at(
    fleet: Fleet, presence: Presence, host: int, ts_s: npt.NDArray[np.float64], start_s: float
) -> npt.NDArray[np.bool_]:
    """is_on for one host at epoch seconds, start_s being the simulation's first midnight."""
    day = ((ts_s - start_s) // 86_400).astype(np.int64)
    t_s = ts_s - start_s - day * 86_400
    return is_on(fleet, presence, day, np.full(ts_s.size, host, dtype=np.int64), t_s)
