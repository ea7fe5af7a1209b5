"""Off-hours activity: an internal host that is quiet outside working hours except for a few
destinations, judged against its own baseline (docs/detection.md#off-hours).

Working hours are local (`timezone`, daylight saving applied), with weekend days and holidays
off. Every outbound contact counts once: connections keyed by the name they were made for (TLS
SNI, HTTP Host) or else the address, plus proxied requests and TLS/HTTP records without a
conn.log record; names are grouped by registered domain (listed sites by their own suffix).
Per (host, destination), the share of the destination's contacts that fall out of hours is
compared with the share of the host's own other contacts that do (background traffic left
out): a workstation silent at night that talks to one site at 03:00 is flagged, a server busy
around the clock is not flagged for being on. Social-media and webmail sites out of hours are
named as such (someone is at the keyboard) and never damped for being popular; timers by
design (updates, antivirus, push, NTP: `intel.services`, `intel.lists`) and destinations many
hosts reach out of hours are lowered, and left out of the host's baseline.

Local time is computed inside the engine (`working_hours`: a constant interval per
daylight-saving period), so the classification runs unchanged on DuckDB and Spark and no
timestamp leaves the engine; only the candidates' counts are pulled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.common import (
    fleet_share,
    lowered,
    most_common_port,
    named_contacts,
    prevalence_factor,
    sample_uids,
    scaled_log,
    utc,
    with_uids,
)
from homecall.detectors.long_connection import NOT_UNICAST
from homecall.detectors.working_hours import (
    Schedule,
    is_off_hours,
    local_time,
    off_time_ratio,
    utc_offsets,
)
from homecall.findings import Finding, rank
from homecall.intel import lists
from homecall.intel.services import KNOWN_PORTS, KNOWN_SUFFIXES, known_service
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "OffHoursConfig",
    "OffHoursScore",
    "activity",
    "off_hours_score",
    "run",
    "schedule_of",
]

log = logging.getLogger(__name__)

_IP_LITERAL = r"^[0-9.]+$|:"


@dataclass(frozen=True, slots=True, kw_only=True)
class OffHoursConfig:
    """Settings under [detectors.off-hours] in homecall.toml."""

    working_hours: str = "08:00-18:00"  # local "HH:MM-HH:MM"; "22:00-06:00" for a night shift
    timezone: str = "UTC"  # IANA zone of the working hours ("Europe/Berlin"), DST applied
    weekend_days: tuple[str, ...] = ("Saturday", "Sunday")  # whole days off
    holidays: tuple[str, ...] = ()  # whole days off, local dates "YYYY-MM-DD"
    # Fewer out-of-hours contacts with a destination are a glance at a site (a bank, the news);
    # an implant's check-ins or a hands-on session make more.
    min_off_events: int = 10
    # Prior weight, in contacts, of "busy around the clock" for a host's own off-hours share:
    # a host with little traffic of its own has no baseline and is not called quiet.
    baseline_events: float = 20.0
    quiet_floor: float = 0.3  # share of the score a host busy around the clock keeps
    max_score: float = 0.7  # out of hours is context, not a technique: at most "medium"
    events_full: float = 200.0  # out-of-hours contacts for the full volume weight
    days_full: float = 3.0  # days with out-of-hours contacts for the full repetition weight
    # Sites people use (lists.site categories): out of hours someone is at the keyboard, so
    # they are named, and never damped for being popular in the fleet.
    human_categories: tuple[str, ...] = ("social-media", "webmail")
    machine_categories: tuple[str, ...] = ("push", "antivirus")  # timers by design (+ services)
    machine_damping: float = 0.3  # updates, antivirus, push, NTP keep 30 % of their score
    shared_ratio: float = 0.1  # a destination 10 % of the fleet reaches out of hours...
    shared_damping: float = 0.9  # ...is a fleet-wide timer: its score is cut by up to 90 %
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this
    min_score: float = 0.25  # below: an evening's browsing, a stray update

    def __post_init__(self) -> None:
        schedule_of(self)  # raises ValueError (a ConfigError at load) on a bad setting


def schedule_of(cfg: OffHoursConfig) -> Schedule:
    """The working hours of `cfg` as numbers (ValueError on a bad setting)."""
    return Schedule.parse(cfg.working_hours, cfg.timezone, cfg.weekend_days, cfg.holidays)


@dataclass(frozen=True, slots=True)
class OffHoursScore:
    """The score and the shares behind it (0..1 each)."""

    score: float
    dst_off_ratio: float  # the destination's contacts out of hours
    host_off_ratio: float  # the host's other contacts out of hours
    baseline_ratio: float  # the same with the prior: what the host is judged against
    excess: float  # dst_off_ratio - baseline_ratio, at least 0
    quiet: float  # 1 - baseline_ratio / window off share: how idle the host is out of hours


def off_hours_score(
    dst_off: int,
    dst_total: int,
    other_off: int,
    other_total: int,
    off_days: int,
    *,
    prior: float,
    cfg: OffHoursConfig,
) -> OffHoursScore:
    """max_score x excess x (quiet_floor + (1 - quiet_floor) x quiet) x volume, where
    volume = 0.2 + 0.5 w(dst_off) + 0.3 min(1, off_days / days_full); context factors apart.
    `other_*`: the host's own contacts with everything else, out of hours and in total."""
    baseline = (other_off + cfg.baseline_events * prior) / (other_total + cfg.baseline_events)
    dst_ratio = dst_off / max(dst_total, 1)
    excess = max(0.0, dst_ratio - baseline)
    quiet = min(1.0, max(0.0, 1.0 - baseline / max(prior, 1e-9)))
    volume = (
        0.2 + 0.5 * scaled_log(dst_off, cfg.events_full) + 0.3 * min(1.0, off_days / cfg.days_full)
    )
    quiet_weight = cfg.quiet_floor + (1.0 - cfg.quiet_floor) * quiet
    score = cfg.max_score * excess * quiet_weight * volume
    host_ratio = other_off / other_total if other_total > 0 else 0.0
    return OffHoursScore(min(1.0, score), dst_ratio, host_ratio, baseline, excess, quiet)


def activity(tables: Tables) -> ir.Table:
    """Every outbound contact of an internal host once: (ts, uid, src, name, dst_ip, dst_port).

    A connection in conn.log carries the name it was made for when a TLS SNI or HTTP Host
    gave one. Contacts without an outbound connection of their own (requests through a proxy,
    whose connection goes to the proxy; proxy logs; TLS/HTTP logs without conn.log) count once
    per uid, or once per record when they have none.
    """
    conn = tables.oriented("conn")
    out = conn.filter((conn.direction == "outbound") & ~conn.dst.re_search(NOT_UNICAST))
    contacts = named_contacts(tables)
    names = (
        contacts.filter(contacts.uid.notnull()).group_by("uid").aggregate(name=contacts.name.max())
    )
    keyed = out.left_join(names, "uid")
    direct = keyed.select("ts", "uid", "src", "name", dst_ip=keyed.dst, dst_port=keyed.dst_port)
    alone = contacts.anti_join(out.select("uid"), "uid")
    once = (
        alone.filter(alone.uid.notnull())
        .group_by("uid")
        .aggregate(
            ts=alone.ts.min(),
            src=alone.src.max(),
            name=alone.name.max(),
            dst_ip=alone.dst.max(),
            dst_port=alone.dst_port.max(),
        )
    )
    loose = alone.filter(alone.uid.isnull()).select(
        "ts", "uid", "src", "name", dst_ip=alone.dst, dst_port=alone.dst_port
    )
    return ibis.union(direct, once.select(*direct.columns), loose)


def _destinations(tables: Tables, events: ir.Table, cfg: OffHoursConfig) -> ir.Table:
    """events + `dst` and `category`. dst: a listed site's or known service's suffix
    ("mail.google.com" apart from "www.google.com"), else the name's registered domain, else
    the address; category: the site's, "machine" for a known timer-driven service, or null."""
    contacts = named_contacts(tables)  # the names of `events`, without its joins to conn
    named = contacts.filter(contacts.name.notnull() & ~contacts.name.re_search(_IP_LITERAL))
    names = tables.to_pyarrow(named.select("name").distinct().order_by("name"))
    services = {suffix for suffix, _ in KNOWN_SUFFIXES}
    rows: dict[str, list[str | None]] = {"name": [], "domain": [], "category": []}
    for name in names.column("name").to_pylist():
        site = lists.site(name)
        service = lists.longest_suffix(name, services)
        if site is not None:
            domain, category = site.suffix, site.category
        elif service is not None:
            domain, category = service, "machine"
        else:
            domain, category = lists.registrable(name) or name, None
        rows["name"].append(name)
        rows["domain"].append(domain)
        rows["category"].append(category)
    lookup = tables.memtable(pa.table(rows, schema=_LOOKUP))
    joined = events.left_join(lookup, "name")
    return joined.select(
        "ts",
        "uid",
        "src",
        "dst_port",
        name=joined.name,
        dst=joined.domain.fill_null(joined.dst_ip),
        category=joined.category,
    )


_LOOKUP = pa.schema([("name", pa.string()), ("domain", pa.string()), ("category", pa.string())])


def _candidates(
    events: ir.Table,
    schedule: Schedule,
    periods: Sequence[Any],
    fleet: int,
    cfg: OffHoursConfig,
) -> ir.Table:
    """Per (src, dst) with enough out-of-hours contacts: their counts, the pair's contacts that
    count in the host's baseline (`own_*`) and the host's baseline (`host_*`): its contacts
    without background traffic (timers by design, destinations much of the fleet reaches out
    of hours), which runs day and night on any workstation and says nothing of its user."""
    keys = ["src", "dst"]
    local = local_time(events.ts, periods)
    machine = events.category.isin([*cfg.machine_categories, "machine"]).fill_null(False)
    machine = machine | events.dst_port.fill_null(0).isin(sorted(KNOWN_PORTS))
    marked = events.mutate(
        off=is_off_hours(local, schedule), local_day=local.date(), machine=machine
    )
    off = marked.filter(marked.off)
    night = off.group_by("dst").aggregate(off_hosts=off.src.nunique())
    marked = marked.left_join(night, "dst").drop("dst_right")
    widespread = ibis.literal(False)
    if fleet >= cfg.min_fleet:  # as prevalence_factor: fully damped from shared_ratio on
        human = marked.category.isin(cfg.human_categories).fill_null(False)
        many = marked.off_hosts.fill_null(0) - 1 >= cfg.shared_ratio * (fleet - 1)
        widespread = ~human & many
    marked = marked.mutate(own=~(marked.machine | widespread))
    own = marked.filter(marked.own)
    hosts = own.group_by("src").aggregate(
        host_total=own.count(), host_off=own.off.cast("int64").sum()
    )
    off = marked.filter(marked.off)
    pairs = off.group_by(keys).aggregate(
        dst_off=off.count(),
        off_days=off.local_day.nunique(),
        off_hours=off.ts.truncate("h").nunique(),
        category=off.category.max(),
        example_name=off.name.max(),
        first_seen=off.ts.min(),
        last_seen=off.ts.max(),
    )
    pairs = pairs.filter(pairs.dst_off >= cfg.min_off_events)
    kept = marked.semi_join(pairs, keys)
    totals = kept.group_by(keys).aggregate(
        dst_total=kept.count(),
        own_total=kept.own.cast("int64").sum(),
        own_off=(kept.own & kept.off).cast("int64").sum(),
    )
    reach = marked.group_by("dst").aggregate(dst_hosts=marked.src.nunique())
    ports = most_common_port(off.semi_join(pairs, keys), keys)
    joined = pairs.join(totals, keys).join(reach, "dst").join(ports, keys)
    return joined.left_join(hosts, "src").drop("src_right")


def _span(tables: Tables) -> tuple[Any, Any]:
    """First and last record of the window's conn, http and tls tables (plain scans)."""
    stamps = ibis.union(*(tables[name].select("ts") for name in ("conn", "http", "tls")))
    span = tables.to_pyarrow(stamps.aggregate(lo=stamps.ts.min(), hi=stamps.ts.max()))
    return span.column("lo")[0].as_py(), span.column("hi")[0].as_py()


def run(tables: Tables, cfg: OffHoursConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    schedule = schedule_of(cfg)
    lo, hi = _span(tables)
    if lo is None:
        return
    start, end = utc(lo), utc(hi)
    periods = utc_offsets(schedule.zone, start, end)
    prior = off_time_ratio(schedule, periods, start, end)
    if prior <= 0.0:
        log.info("off-hours: the window lies entirely inside working hours; nothing to judge")
        return
    events = tables.materialize(_destinations(tables, activity(tables), cfg))
    fleet = tables.fleet_size
    ranked = rank(
        f
        for batch in tables.batches(_candidates(events, schedule, periods, fleet, cfg))
        for row in batch.to_pylist()
        if (f := _finding(row, prior, fleet, cfg)) is not None
    )
    if not ranked:
        return
    wanted = pa.table({"src": [f.src for f in ranked], "dst": [f.dst for f in ranked]})
    local = local_time(events.ts, periods)
    off_events = events.filter(is_off_hours(local, schedule))
    uids = sample_uids(tables, off_events, ("src", "dst"), wanted)
    for f in ranked:
        yield with_uids(f, uids.get((f.src, f.dst or ""), []))


def _finding(row: dict[str, Any], prior: float, fleet: int, cfg: OffHoursConfig) -> Finding | None:
    category, port = row["category"], row["dst_port"]
    human = category in cfg.human_categories
    service = known_service(None, port)
    machine = category in cfg.machine_categories or category == "machine" or service is not None
    hosts = int(row["dst_hosts"])
    shared = 1.0
    if not human:
        shared = prevalence_factor(
            hosts,
            fleet,
            ratio=cfg.shared_ratio,
            damping=cfg.shared_damping,
            min_fleet=cfg.min_fleet,
        )
    other_off = int(row["host_off"] or 0) - int(row["own_off"])
    other_total = int(row["host_total"] or 0) - int(row["own_total"])
    found = off_hours_score(
        int(row["dst_off"]),
        int(row["dst_total"]),
        other_off,
        other_total,
        int(row["off_days"]),
        prior=prior,
        cfg=cfg,
    )
    score = found.score * shared * (cfg.machine_damping if machine else 1.0)
    if score < cfg.min_score:
        return None
    src, dst = str(row["src"]), str(row["dst"])
    dst_off, dst_total = int(row["dst_off"]), int(row["dst_total"])
    evidence: dict[str, Any] = {
        "off_hours_contacts": dst_off,
        "contacts": dst_total,
        "dst_off_hours_ratio": round(found.dst_off_ratio, 3),
        "host_off_hours_ratio": round(found.host_off_ratio, 3),
        "host_baseline_ratio": round(found.baseline_ratio, 3),
        "window_off_hours_ratio": round(prior, 3),
        "host_quiet_ratio": round(found.quiet, 3),
        "off_hours_days": int(row["off_days"]),
        "off_hours_active_hours": int(row["off_hours"]),
        "category": category if human else None,
        "example_name": row["example_name"],
        "dst_hosts": hosts,
        "fleet_hosts": fleet,
    }
    what = f"the {category} site {dst}" if human else dst
    summary = (
        f"{src} contacted {what} {dst_off} times outside working hours "
        f"({found.dst_off_ratio:.0%} of its contacts with it), while only "
        f"{found.host_off_ratio:.0%} of its other traffic is out of hours"
    )
    reasons = []
    if machine:
        label = service or (
            "a known update or telemetry service"
            if category == "machine"
            else f"a {category} service"
        )
        evidence["known_service"] = label
        reasons.append(f"{label}: machine traffic")
    reasons += fleet_share(evidence, shared, hosts, fleet)
    summary = lowered(summary, evidence, reasons)
    return Finding(
        detector="off-hours",
        src=src,
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=score,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=summary + ".",
        evidence=evidence,
    )


DETECTOR = Detector(
    name="off-hours",
    requires=("conn",),
    config=OffHoursConfig,
    run=run,
    description="activity outside working hours from hosts otherwise quiet then",
)
