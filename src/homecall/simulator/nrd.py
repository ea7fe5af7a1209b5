"""A newly-registered-domain feed for the simulation (DIR/nrd.txt, the young-domain detector's
`nrd_file`) and its truth (truth.YoungTruth).

Most C2 domains are registered days before an intrusion; some operators buy a domain registered
long ago instead, so that checks on new domains pass it (AGED_RATIO). The feed lists every young
one with its registration date among thousands of other new names no simulated host visits, as a
real feed does; long-standing domains are not in it. Lines are "domain<TAB>YYYY-MM-DD" under a
'#' header whose first date is the feed's ("Time of Compilation", as xRuffKez/NRD writes it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from homecall.simulator.addresses import int_to_ip
from homecall.simulator.dga import FIRST_WORDS, LETTER_TLDS, SECOND_WORDS
from homecall.simulator.dga_hosts import DgaRun
from homecall.simulator.flux import FluxRun
from homecall.simulator.internet import C2_WORDS, RARE_TLDS, RARE_WORDS
from homecall.simulator.truth import YoungTruth
from homecall.simulator.tunnel import TunnelRun
from homecall.simulator.volume import VolumeRun

__all__ = [
    "FEED_NAME",
    "Candidate",
    "Feed",
    "candidates",
    "plan_feed",
    "registered_domain",
    "suffixes",
    "write_feed",
]

FEED_NAME = "nrd.txt"
NOISE_NAMES = 4_000  # other new names in the feed (a real daily feed holds ~100,000)
FEED_SPAN_DAYS = 30  # the feed covers registrations of this many days up to its date
YOUNG_DAYS = (1, 20)  # a young C2 domain was registered this many days before the start
DGA_LEAD_DAYS = (1, 2)  # a DGA operator registers a day's name this many days ahead
AGED_RATIO = 0.25  # C2 domains bought after years with another owner: not in the feed
_TLDS = (
    ("com", 0.42), ("xyz", 0.08), ("top", 0.07), ("shop", 0.06), ("online", 0.05), ("net", 0.05),
    ("org", 0.04), ("store", 0.03), ("site", 0.03), ("info", 0.03), ("icu", 0.02), ("vip", 0.02),
    ("app", 0.02), ("io", 0.02), ("co", 0.02), ("de", 0.02), ("co.uk", 0.02),
)  # fmt: skip
_WORDS = (
    "agent alpha best bet bingo bloom boost bright buy casino cash chic coin crypto daily deal "
    "dream easy eco elite expert fancy fresh fun gold happy hot invest jet joy king loan lucky "
    "luxe magic mega mister modern my nova one pay planet plus prime pro quick quest real rich "
    "royal shine smart soft solar spot super swift top trend true ultra urban vibe viva wave "
    "win wise world zen zone"
)
# none of the simulation's other vocabularies, so no feed name spells a site hosts visit
_EXCLUDED = {*RARE_WORDS, *C2_WORDS, *FIRST_WORDS, *SECOND_WORDS}
NOISE_WORDS = tuple(word for word in _WORDS.split() if word not in _EXCLUDED)
# the public suffixes of two labels among the simulation's TLDs (its names use no others)
_TWO_LABELS = {tld for tld, _ in (*RARE_TLDS, *_TLDS) if "." in tld} | {
    tld for tld in LETTER_TLDS if "." in tld
}


def registered_domain(name: str) -> str:
    """The registered domain of a name the simulation made up: "api.edge-data.co.uk" ->
    "edge-data.co.uk" (the Public Suffix List agrees for every TLD the simulator uses)."""
    labels = name.lower().rstrip(".").split(".")
    keep = 3 if ".".join(labels[-2:]) in _TWO_LABELS else 2
    return ".".join(labels[-keep:])


def suffixes(names: Iterable[str]) -> set[str]:
    """Every suffix of two labels or more of the names: their registered domains among them."""
    found: set[str] = set()
    for name in names:
        labels = name.split(".")
        found.update(".".join(labels[i:]) for i in range(len(labels) - 1))
    return found


@dataclass(frozen=True, slots=True)
class Candidate:
    """A registered domain of the simulated attackers, with the hosts that looked it up."""

    domain: str
    role: str  # c2, dns-tunnel, fast-flux, dga, exfiltration
    hosts: frozenset[int]  # hosts whose lookups of names under it were answered
    used_on: dt.date | None = None  # DGA: the day its name is generated for; else None


@dataclass(frozen=True, slots=True)
class Feed:
    """The feed's date and lines, and the young attackers' domains hosts looked up."""

    feed_date: dt.date
    entries: tuple[tuple[str, dt.date], ...]  # (domain, registered), by date then domain
    young: tuple[YoungTruth, ...]


def candidates(
    c2: Sequence[tuple[str, int]],
    dga: Sequence[DgaRun],
    tunnels: Sequence[TunnelRun],
    flux: Sequence[FluxRun],
    spikes: Sequence[VolumeRun],
    dates: Sequence[dt.date],
) -> list[Candidate]:
    """The attackers' registered domains and the hosts whose lookups of them were answered;
    `c2`: (name, host address) of every implant that calls its server by name."""
    found = [Candidate(registered_domain(name), "c2", frozenset({host_ip})) for name, host_ip in c2]
    found += [Candidate(run.domain, "dns-tunnel", frozenset({run.host_ip})) for run in tunnels]
    found += [
        Candidate(
            registered_domain(run.name),
            "fast-flux",
            frozenset({run.host_ip} if len(run.queries) else ()),
        )
        for run in flux
    ]
    found += [
        Candidate(domain, "exfiltration", frozenset({run.host_ip}))
        for run in spikes
        if run.kind == "exfiltration"
        for domain in run.domains
    ]
    resolved: dict[str, set[int]] = {}
    for run in dga:
        names = run.queries.query.to_pylist()
        for name, rcode in zip(names, run.queries.rcode.tolist(), strict=True):
            if rcode == 0:
                resolved.setdefault(name, set()).add(run.host_ip)
    registered = sorted({item for run in dga for item in run.registered})
    found += [
        Candidate(registered_domain(name), "dga", frozenset(resolved.get(name, ())), dates[day])
        for day, name in registered
    ]
    return found


def plan_feed(
    rng: np.random.Generator,
    candidates: Sequence[Candidate],
    dates: Sequence[dt.date],
    avoid: Collection[str],
) -> Feed:
    """Registration dates for the candidates (DGA names: just before their day; others: days
    before the start, or long ago for AGED_RATIO of them) and NOISE_NAMES new names not in avoid."""
    feed_date = dates[-1]
    registered: dict[str, tuple[dt.date, Candidate]] = {}
    for candidate in candidates:
        if candidate.domain in registered:
            continue
        if candidate.used_on is not None:
            lead = int(rng.integers(DGA_LEAD_DAYS[0], DGA_LEAD_DAYS[1] + 1))
            registered[candidate.domain] = (candidate.used_on - dt.timedelta(days=lead), candidate)
        elif rng.random() >= AGED_RATIO:
            days = int(rng.integers(YOUNG_DAYS[0], YOUNG_DAYS[1] + 1))
            registered[candidate.domain] = (dates[0] - dt.timedelta(days=days), candidate)
    taken = set(avoid) | {c.domain for c in candidates}
    entries = [(domain, when) for domain, (when, _) in registered.items()]
    entries += [
        (name, feed_date - dt.timedelta(days=int(age)))
        for name, age in zip(
            _noise(rng, NOISE_NAMES, taken),
            rng.integers(0, FEED_SPAN_DAYS, size=NOISE_NAMES).tolist(),
            strict=True,
        )
    ]
    hosts: dict[str, set[int]] = {}
    for candidate in candidates:
        hosts.setdefault(candidate.domain, set()).update(candidate.hosts)
    young = [
        YoungTruth(
            domain=domain,
            registered=when.isoformat(),
            hosts=tuple(sorted((int_to_ip(h) for h in hosts[domain]), key=_ip_key)),
            role=candidate.role,
        )
        for domain, (when, candidate) in sorted(registered.items())
        if hosts[domain]
    ]
    return Feed(feed_date, tuple(sorted(entries, key=lambda e: (e[1], e[0]))), tuple(young))


def _noise(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    """Names shaped like a day's registrations: word pairs, words and digits, random letters."""
    tlds = [tld for tld, _ in _TLDS]
    weights = np.array([weight for _, weight in _TLDS])
    found: list[str] = []
    seen = set(taken)
    while len(found) < count:
        n = count - len(found) + 16
        words = rng.integers(len(NOISE_WORDS), size=(n, 2)).tolist()
        digits = rng.integers(2, 5_000, size=n).tolist()
        letters = rng.integers(0, 26, size=(n, 10)) + ord("a")
        lengths = rng.integers(6, 11, size=n).tolist()
        shapes = rng.choice(5, size=n, p=[0.35, 0.15, 0.15, 0.15, 0.2]).tolist()
        picked = rng.choice(len(tlds), size=n, p=weights / weights.sum()).tolist()
        for (i, j), d, row, k, shape, t in zip(
            words, digits, letters, lengths, shapes, picked, strict=True
        ):
            a, b = NOISE_WORDS[i], NOISE_WORDS[j]
            label = (f"{a}{b}", f"{a}-{b}", f"{a}{b}{d}", f"{a}{d}")[shape] if shape < 4 else (
                bytes(row[:k].astype(np.uint8)).decode()
            )  # fmt: skip
            name = f"{label}.{tlds[t]}"
            if a != b and name not in seen and len(found) < count:
                seen.add(name)
                found.append(name)
    return found


def write_feed(path: Path, feed: Feed, seed: int) -> None:
    """Write the feed (same arguments, same bytes)."""
    first = min((when for _, when in feed.entries), default=feed.feed_date)
    header = [
        f"# Time of Compilation: {feed.feed_date.isoformat()}",
        f"# Domains registered since {first.isoformat()} (homecall simulation, seed {seed})",
        "# domain<TAB>registration date",
    ]
    lines = [f"{domain}\t{when.isoformat()}" for domain, when in feed.entries]
    path.write_text("\n".join([*header, *lines]) + "\n", encoding="utf-8")


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(part) for part in ip.split("."))
