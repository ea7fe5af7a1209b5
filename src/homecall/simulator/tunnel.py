"""DNS tunnels (dnscat2, iodine): data encoded in the labels of query names under one zone,
answered in records of the same type, polled at a steady rate through the internal resolver
(truth.TunnelTruth).

dnscat2 hex-encodes each packet (packet id, type, session id, sequence and acknowledgement
numbers, then data) and asks for TXT, CNAME or MX records; iodine base32-encodes its upstream
data behind a user-id character and asks for NULL records, which Zeek logs as
"<unknown type=10>". Both poll while idle and send back to back while data flows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import int_to_ip
from homecall.simulator.dns import QTYPES, Queries, query_flows
from homecall.simulator.flows import Flows, strings
from homecall.simulator.hosts import Fleet, Presence, is_on_at
from homecall.simulator.internet import C2_WORDS
from homecall.simulator.truth import TunnelTruth, iso_utc

__all__ = ["TUNNEL_KINDS", "TunnelKind", "TunnelRun", "plan_tunnels", "tunnel_count", "tunnel_day",
           "tunnel_truth"]  # fmt: skip

DAY_S = 86_400
MAX_NAME = 253  # RFC 1035: a name in text form, without the final dot
MAX_LABEL = 63
MAX_TXT = 255  # one character-string of a TXT record
SESSIONS_PER_DAY = 6.0  # operator sessions (commands, file transfers), Poisson
SESSION_MEDIAN_S = 240.0
SESSION_GAP_S = (0.15, 0.6)  # between queries while data flows: the next leaves on the answer
_DNSCAT_HEADER_HEX = 18  # packet id 2 bytes, type 1, session id 2, seq 2, ack 2 (hex)
_IODINE_HEADER = 4  # user id character and three header characters before the data


@dataclass(frozen=True, slots=True)
class TunnelKind:
    """One tool's encoding, record types and polling."""

    name: str
    qtypes: tuple[int, ...]  # drawn uniformly per query
    poll_s: float  # idle polling interval
    answer_ttl_s: int
    alphabet: str  # characters of the encoded labels
    bits_per_char: int
    prefix: str  # first label of the zone under the attacker's domain


TUNNEL_KINDS = (
    TunnelKind("dnscat2", (16, 5, 15), 10.0, 60, "0123456789abcdef", 4, "d"),
    TunnelKind("iodine", (10,), 12.0, 0, "abcdefghijklmnopqrstuvwxyz012345", 5, "t"),
)


@dataclass(frozen=True, slots=True)
class TunnelRun:
    """One tunnel's queries over the whole simulation."""

    kind: TunnelKind
    host_ip: int
    domain: str
    queries: Queries
    is_data: npt.NDArray[np.bool_]

    @property
    def zone(self) -> str:
        """The zone every query name ends with."""
        return f"{self.kind.prefix}.{self.domain}"


def tunnel_count(hosts: int) -> int:
    """Tunnelling hosts: none under 20 hosts, one (dnscat2) under 100, then two (and iodine)."""
    return 0 if hosts < 20 else 1 if hosts < 100 else 2


def plan_tunnels(
    rng: np.random.Generator,
    hosts: Sequence[int],
    fleet: Fleet,
    presence: Presence,
    start_s: float,
    days: int,
    taken_names: set[str],
) -> list[TunnelRun]:
    """The i-th host runs TUNNEL_KINDS[i % 2] to a domain of its own, while the machine is on."""
    runs = []
    for i, host in enumerate(hosts):
        kind = TUNNEL_KINDS[i % len(TUNNEL_KINDS)]
        domain = _domain(rng, taken_names)
        ts_s, is_data = _times(rng, kind, start_s, days)
        keep = is_on_at(fleet, presence, host, ts_s, start_s)
        ts_s, is_data = ts_s[keep], is_data[keep]
        zone = f"{kind.prefix}.{domain}"
        if kind.name == "dnscat2":
            query, qtype, answers = _dnscat2(rng, kind, zone, is_data)
        else:
            query, qtype, answers = _iodine(rng, kind, zone, is_data)
        n = ts_s.size
        queries = Queries(
            host_ip=np.full(n, fleet.ips[host], dtype=np.uint32),
            ts_us=np.round(ts_s * 1e6).astype(np.int64),
            query=strings(query),
            qtype=qtype,
            rcode=np.zeros(n, dtype=np.int64),
            answers=strings(answers),
            ttl_s=np.full(n, kind.answer_ttl_s, dtype=np.int64),
            rtt_us=rng.lognormal(np.log(90_000), 0.35, n).astype(np.int64),  # never cached
        )
        runs.append(TunnelRun(kind, int(fleet.ips[host]), domain, queries, is_data))
    return runs


def _domain(rng: np.random.Generator, taken: set[str]) -> str:
    while True:
        a, b = (C2_WORDS[i] for i in rng.choice(len(C2_WORDS), size=2, replace=False))
        name = f"{a}-{b}.{('com', 'net', 'xyz', 'online')[int(rng.integers(4))]}"
        if name not in taken:
            taken.add(name)
            return name


def _times(
    rng: np.random.Generator, kind: TunnelKind, start_s: float, days: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Steady idle polls, replaced by back-to-back data queries during operator sessions."""
    end_s = start_s + days * DAY_S
    count = int(days * DAY_S / kind.poll_s * 1.05) + 2
    first = start_s + rng.random() * kind.poll_s  # the tunnel was already up at the start
    steps = kind.poll_s * rng.uniform(0.97, 1.03, count)
    polls = first + np.concatenate([[0.0], np.cumsum(steps)])
    sessions = rng.poisson(SESSIONS_PER_DAY * days)
    begin = np.sort(rng.uniform(start_s, end_s, size=sessions))
    length = rng.lognormal(np.log(SESSION_MEDIAN_S), 0.6, size=sessions)
    busy = [
        b + np.cumsum(rng.uniform(*SESSION_GAP_S, size=int(s / SESSION_GAP_S[0]) + 1))
        for b, s in zip(begin, length, strict=True)
    ]
    busy = [t[t < b + s] for t, b, s in zip(busy, begin, length, strict=True)]
    inside = np.zeros(polls.size, dtype=np.bool_)
    for b, s in zip(begin, length, strict=True):
        inside |= (polls >= b) & (polls < b + s)
    data = np.concatenate([np.zeros(0), *busy])
    times = np.concatenate([polls[~inside], data])
    is_data = np.concatenate(
        [np.zeros(int((~inside).sum()), np.bool_), np.ones(data.size, np.bool_)]
    )
    order = np.argsort(times, kind="stable")
    keep = order[times[order] < end_s]
    return times[keep], is_data[keep]


def _random_text(
    rng: np.random.Generator, lengths: npt.NDArray[np.int64], alphabet: str
) -> list[str]:
    """One random string of each length over the alphabet."""
    chars = np.frombuffer(alphabet.encode(), dtype=np.uint8)
    text = chars[rng.integers(0, chars.size, size=int(lengths.sum()))].tobytes().decode()
    ends = np.cumsum(lengths)
    return [text[end - k : end] for end, k in zip(ends.tolist(), lengths.tolist(), strict=True)]


def _labels(text: str, zone: str) -> str:
    """text split into labels of at most 63 characters, under zone."""
    parts = [text[i : i + MAX_LABEL] for i in range(0, len(text), MAX_LABEL)]
    return ".".join([*parts, zone])


def _room(zone: str) -> int:
    """The most encoded characters that fit in a name under zone, dots between labels included."""
    free = MAX_NAME - len(zone) - 1
    return free - free // (MAX_LABEL + 1)


def _dnscat2(
    rng: np.random.Generator, kind: TunnelKind, zone: str, is_data: npt.NDArray[np.bool_]
) -> tuple[list[str], npt.NDArray[np.int64], list[str]]:
    n = is_data.size
    qtype = np.asarray(kind.qtypes, dtype=np.int64)[rng.integers(0, len(kind.qtypes), size=n)]
    up_room = (_room(zone) - _DNSCAT_HEADER_HEX) // 2
    down_room = np.where(qtype == 16, (MAX_TXT - _DNSCAT_HEADER_HEX) // 2, up_room)
    up = np.where(is_data & (rng.random(n) < 0.5), rng.integers(8, up_room + 1, size=n), 0)
    down = np.where(is_data & (up == 0), (rng.random(n) * down_room).astype(np.int64) + 1, 0)
    session = int(rng.integers(1 << 16))
    seq = np.concatenate([[0], np.cumsum(up)[:-1]]) + int(rng.integers(1 << 16))
    ack = np.concatenate([[0], np.cumsum(down)[:-1]]) + int(rng.integers(1 << 16))
    up_data = _random_text(rng, 2 * up, kind.alphabet)
    down_data = _random_text(rng, 2 * down, kind.alphabet)
    ids = rng.integers(0, 1 << 16, size=(n, 2))
    queries, answers = [], []
    for i in range(n):
        s, a = int(seq[i]) % (1 << 16), int(ack[i]) % (1 << 16)
        sent = f"{ids[i, 0]:04x}01{session:04x}{s:04x}{a:04x}{up_data[i]}"
        back = f"{ids[i, 1]:04x}01{session:04x}{a:04x}{(s + up[i]) % (1 << 16):04x}{down_data[i]}"
        queries.append(_labels(sent, zone))
        answers.append(f"TXT {len(back)} {back}" if qtype[i] == 16 else _labels(back, zone))
    return queries, qtype, answers


def _iodine(
    rng: np.random.Generator, kind: TunnelKind, zone: str, is_data: npt.NDArray[np.bool_]
) -> tuple[list[str], npt.NDArray[np.int64], list[str]]:
    n = is_data.size
    user = "0123456789abcdef"[int(rng.integers(16))]
    room = _room(zone) - _IODINE_HEADER
    length = np.where(is_data, rng.integers(room // 4, room + 1, size=n), 6)
    body = _random_text(rng, length.astype(np.int64), kind.alphabet)
    queries = [
        _labels((f"{user}{b[:3]}{b[3:]}" if data else f"p{user}{b}"), zone)
        for b, data in zip(body, is_data.tolist(), strict=True)
    ]
    answers = [f"<unknown type={kind.qtypes[0]}>"] * n  # Zeek parses no NULL record data
    return queries, np.full(n, kind.qtypes[0], dtype=np.int64), answers


def tunnel_day(rng: np.random.Generator, run: TunnelRun, day_start_us: int) -> Flows:
    """One day of a tunnel's queries."""
    return query_flows(rng, run.queries.between(day_start_us, day_start_us + DAY_S * 1_000_000))


def tunnel_truth(run: TunnelRun) -> TunnelTruth:
    """What a tunnel detector should find about this host."""
    ts = run.queries.ts_us
    used = sorted(set(run.queries.qtype.tolist()))
    return TunnelTruth(
        src=int_to_ip(run.host_ip),
        kind=run.kind.name,
        domain=run.domain,
        zone=run.zone,
        qtypes=tuple(QTYPES[q] for q in used),
        queries=len(run.queries),
        data_queries=int(run.is_data.sum()),
        poll_s=run.kind.poll_s,
        answer_ttl_s=run.kind.answer_ttl_s,
        first_seen=iso_utc(int(ts.min())) if ts.size else None,
        last_seen=iso_utc(int(ts.max())) if ts.size else None,
    )
