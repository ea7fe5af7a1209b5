"""simulate(): an enterprise's Zeek logs with injected C2, a folder per UTC day, and truth.json."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import INTERNAL_NETWORKS, MAX_HOSTS, int_to_ip
from homecall.simulator.browsing import browsing_day, rare_domains_per_day
from homecall.simulator.c2 import C2Plan, plan_c2, schedule
from homecall.simulator.catalogue import Catalogue, build_catalogue
from homecall.simulator.dns import resolve_times
from homecall.simulator.flows import Flows, concat, finalize
from homecall.simulator.hosts import Fleet, Presence, build_fleet, build_presence
from homecall.simulator.implant import implant_flows
from homecall.simulator.office import office_day
from homecall.simulator.periodic import ServiceRun, periodic_day, periodic_truth, plan_periodic
from homecall.simulator.truth import C2Truth, SimulationResult, iso_utc, write_truth
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


def simulate(
    out: Path,
    *,
    hosts: int = 200,
    days: int = 1,
    seed: int = 0,
    start: dt.date | None = None,
) -> SimulationResult:
    """Write OUT/<date>/{conn,dns,http,ssl}.log and OUT/truth.json; same arguments, same bytes."""
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
    for d, date in enumerate(dates):
        logs = finalize(_day_flows(world, d), _rng(seed, _Stream.UIDS, d))
        folder = out / date.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        opened = dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)
        for name in LOGS:
            path = folder / f"{name}.log"
            rows[name] += write_log(path, name, logs[name], opened, opened + dt.timedelta(days=1))
            files.append(path)
        del logs  # a day's rows are large; free them before the next day is drawn
        log.info("simulated %s (%d/%d days)", date, d + 1, days)

    c2 = tuple(_truth(run, int(world.fleet.ips[run.plan.host])) for run in world.c2)
    truth_path = out / "truth.json"
    write_truth(
        truth_path,
        seed=seed,
        hosts=hosts,
        days=days,
        start=start,
        internal_networks=INTERNAL_NETWORKS,
        c2=c2,
        benign_periodic=periodic_truth(world.services),
    )
    return SimulationResult(out=out, files=(*files, truth_path), rows=rows, c2=c2)


def _build_world(seed: int, hosts: int, dates: list[dt.date]) -> _World:
    """Draw the destinations, the fleet, the users' days, the C2 and the periodic services."""
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
    return _World(seed, start_us, rare_per_day, cat, fleet, presence, services, c2)


def _day_flows(world: _World, day: int) -> Flows:
    """All traffic of one day: browsing, office life, periodic services and the implants."""
    seed, cat, fleet, presence = world.seed, world.cat, world.fleet, world.presence
    day_start_us = world.start_us + day * DAY_US
    rare = cat.rare[day * world.rare_per_day : (day + 1) * world.rare_per_day]
    parts = [
        browsing_day(
            _rng(seed, _Stream.BROWSING, day), cat, fleet, presence, day, day_start_us, rare
        ),
        office_day(_rng(seed, _Stream.OFFICE, day), cat, fleet, presence, day, day_start_us),
        periodic_day(
            _rng(seed, _Stream.PERIODIC, day + 1), cat, fleet, world.services, day_start_us
        ),
    ]
    for i, run in enumerate(world.c2):
        host_ip = int(fleet.ips[run.plan.host])
        parts.append(_c2_day(_rng(seed, _Stream.IMPLANT, day, i), run, host_ip, day_start_us))
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
