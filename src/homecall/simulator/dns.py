"""DNS lookups through the internal resolver (or another one): the udp/53 conn row and its dns.log
row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import RESOLVER
from homecall.simulator.catalogue import Catalogue
from homecall.simulator.flows import Flows, udp_conns

__all__ = [
    "QTYPES",
    "Queries",
    "cache_misses",
    "failed_lookups",
    "interval_text",
    "lookups",
    "named_lookups",
    "query_flows",
    "resolve_times",
]

QTYPES = {1: "A", 5: "CNAME", 10: "NULL", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV"}
_RESOLVER_HIT_RATIO = 0.75  # answers already in the resolver's cache (remaining TTL < TTL)
_HEADER_BYTES = 12 + 4 + 11  # DNS header, qtype/qclass, EDNS0 OPT record


def lookups(
    rng: np.random.Generator,
    cat: Catalogue,
    host_ip: npt.NDArray[np.uint32],
    ts_us: npt.NDArray[np.int64],
    domain: npt.NDArray[np.int64],
    qtype: int = 1,
    answered_by: int | None = None,
) -> Flows:
    """Successful A (or AAAA) lookups of catalogue domains; AAAA without IPv6 gets no answer.

    Queries leave at ts_us or, given answered_by (a day's start), early enough for the answer
    to arrive just before ts_us, though not before answered_by.
    """
    n = len(ts_us)
    hit = rng.random(n) < _RESOLVER_HIT_RATIO
    rtt = np.where(hit, rng.lognormal(np.log(600), 0.5, n), rng.lognormal(np.log(22_000), 0.7, n))
    ts_us = _sent(rng, ts_us, rtt.astype(np.int64), answered_by)
    ttl = cat.ttl_s[domain]
    remaining = np.where(hit, (rng.random(n) * ttl).astype(np.int64) + 1, ttl)
    take = pa.array(domain)
    if qtype == 1:
        answers = cat.a_answers.take(take)
        count = cat.ip_count[domain]
    else:
        answers = cat.aaaa_answers.take(take)
        count = np.where(pc.is_null(answers).to_numpy(zero_copy_only=False), 0, 1)
    ttls = _ttl_vectors(cat.cname_ttls.take(take), remaining, count)
    ttls = pc.if_else(pc.is_null(answers), pa.scalar(None, pa.string()), ttls)
    return _rows(
        rng,
        host_ip=host_ip,
        ts_us=ts_us,
        query=cat.name_text.take(take),
        qtype=qtype,
        rcode=np.zeros(n, dtype=np.int64),
        rtt_us=rtt.astype(np.int64),
        answers=answers,
        ttls=ttls,
    )


def named_lookups(
    rng: np.random.Generator,
    host_ip: npt.NDArray[np.uint32],
    ts_us: npt.NDArray[np.int64],
    *,
    query: str,
    answers: str,
    ttl_s: int,
    qtype: int = 1,
    answered_by: int | None = None,
) -> Flows:
    """Lookups of one name outside the catalogue, answered fresh by its authoritative server;
    ts_us and answered_by as in lookups()."""
    n = len(ts_us)
    count = answers.count(",") + 1
    rtt = rng.lognormal(np.log(45_000), 0.5, n).astype(np.int64)
    return _rows(
        rng,
        host_ip=host_ip,
        ts_us=_sent(rng, ts_us, rtt, answered_by),
        query=pa.array([query] * n, type=pa.string()),
        qtype=qtype,
        rcode=np.zeros(n, dtype=np.int64),
        rtt_us=rtt,
        answers=pa.array([answers] * n, type=pa.string()),
        ttls=_ttl_vectors(pa.array([""] * n, pa.string()), np.full(n, ttl_s), np.full(n, count)),
    )


def failed_lookups(
    rng: np.random.Generator,
    host_ip: npt.NDArray[np.uint32],
    ts_us: npt.NDArray[np.int64],
    names: Any,
) -> Flows:
    """A lookups answered NXDOMAIN (typos, dead sites, browser probes, WPAD)."""
    n = len(ts_us)
    return _rows(
        rng,
        host_ip=host_ip,
        ts_us=ts_us,
        query=names,
        qtype=1,
        rcode=np.full(n, 3, dtype=np.int64),
        rtt_us=rng.lognormal(np.log(30_000), 0.8, n).astype(np.int64),
        answers=pa.nulls(n, pa.string()),
        ttls=pa.nulls(n, pa.string()),
    )


@dataclass(frozen=True, slots=True)
class Queries:
    """Lookups drawn ahead for a whole simulation, cut into days later; one entry per dns row."""

    host_ip: npt.NDArray[np.uint32]
    ts_us: npt.NDArray[np.int64]
    query: Any  # pyarrow strings
    qtype: npt.NDArray[np.int64]  # a key of QTYPES
    rcode: npt.NDArray[np.int64]  # 0 NOERROR, 3 NXDOMAIN
    answers: Any  # pyarrow strings as Zeek's answers vector ("a,b"); null without an answer
    ttl_s: npt.NDArray[np.int64]  # TTL of every record in the answer
    rtt_us: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.ts_us)

    def take(self, rows: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Queries:
        """The queries at rows (indexes or a mask)."""
        index = np.flatnonzero(rows) if rows.dtype == np.bool_ else rows
        picked = pa.array(index, type=pa.int64())
        return Queries(
            self.host_ip[index],
            self.ts_us[index],
            self.query.take(picked),
            self.qtype[index],
            self.rcode[index],
            self.answers.take(picked),
            self.ttl_s[index],
            self.rtt_us[index],
        )

    def between(self, start_us: int, end_us: int) -> Queries:
        """The queries sent in [start_us, end_us)."""
        return self.take((self.ts_us >= start_us) & (self.ts_us < end_us))

    @staticmethod
    def stack(parts: Sequence[Queries]) -> Queries:
        """All parts' queries in one."""
        if not parts:
            return Queries.empty()
        return Queries(
            np.concatenate([q.host_ip for q in parts]).astype(np.uint32),
            np.concatenate([q.ts_us for q in parts]).astype(np.int64),
            pa.concat_arrays([q.query for q in parts]),
            np.concatenate([q.qtype for q in parts]).astype(np.int64),
            np.concatenate([q.rcode for q in parts]).astype(np.int64),
            pa.concat_arrays([q.answers for q in parts]),
            np.concatenate([q.ttl_s for q in parts]).astype(np.int64),
            np.concatenate([q.rtt_us for q in parts]).astype(np.int64),
        )

    @staticmethod
    def empty() -> Queries:
        """No queries."""
        none = pa.array([], type=pa.string())
        ints = np.zeros(0, dtype=np.int64)
        return Queries(np.zeros(0, np.uint32), ints, none, ints, ints, none, ints, ints)


def query_flows(rng: np.random.Generator, queries: Queries, resolver: int = RESOLVER) -> Flows:
    """The conn and dns rows of drawn queries sent to `resolver` (an answer's records all carry
    its TTL)."""
    answers = queries.answers
    answered = pc.invert(pc.is_null(answers)).to_numpy(zero_copy_only=False)
    commas = pc.count_substring(pc.fill_null(answers, ""), ",").to_numpy(zero_copy_only=False)
    count = np.where(answered, commas + 1, 0).astype(np.int64)
    n = len(queries)
    ttls = _ttl_vectors(pa.array([""] * n, pa.string()), queries.ttl_s, count)
    return _rows(
        rng,
        host_ip=queries.host_ip,
        ts_us=queries.ts_us,
        query=queries.query,
        qtype=queries.qtype,
        rcode=queries.rcode,
        rtt_us=queries.rtt_us,
        answers=answers,
        ttls=pc.if_else(pa.array(answered), ttls, pa.scalar(None, pa.string())),
        resolver=resolver,
    )


def _sent(
    rng: np.random.Generator,
    ts_us: npt.NDArray[np.int64],
    rtt_us: npt.NDArray[np.int64],
    answered_by: int | None,
) -> npt.NDArray[np.int64]:
    """When queries leave: at ts_us, or early enough that the answer precedes ts_us."""
    if answered_by is None:
        return ts_us
    margin = rng.integers(200, 3_000, size=len(ts_us))  # the stub hands the answer over
    sent: npt.NDArray[np.int64] = np.maximum(ts_us - rtt_us - margin, answered_by)
    return sent


def _rows(
    rng: np.random.Generator,
    *,
    host_ip: npt.NDArray[np.uint32],
    ts_us: npt.NDArray[np.int64],
    query: Any,
    qtype: int | npt.NDArray[np.int64],
    rcode: npt.NDArray[np.int64],
    rtt_us: npt.NDArray[np.int64],
    answers: Any,
    ttls: Any,
    resolver: int = RESOLVER,
) -> Flows:
    n = len(ts_us)
    query_bytes = _HEADER_BYTES + 2 + pc.utf8_length(query).to_numpy().astype(np.int64)
    answer_text = pc.utf8_length(pc.fill_null(answers, "")).to_numpy().astype(np.int64)
    answer_bytes = np.where(rcode == 3, 72, 14 * (answer_text > 0) + answer_text)  # SOA if NX
    conn = udp_conns(
        rng,
        ts_us=ts_us,
        orig_h=host_ip,
        resp_h=np.full(n, resolver, dtype=np.uint32),
        resp_p=53,
        service="dns",
        orig_bytes=query_bytes,
        resp_bytes=query_bytes + answer_bytes,
        duration_us=rtt_us,
    )
    dns = {
        "conn": np.arange(n, dtype=np.int64),
        "ts": ts_us,
        "proto": "udp",
        "trans_id": rng.integers(0, 65536, size=n),
        "rtt": rtt_us,
        "query": query,
        "qclass": "1",
        "qclass_name": "C_INTERNET",
        "qtype": str(qtype) if isinstance(qtype, int) else pc.cast(pa.array(qtype), pa.string()),
        "qtype_name": QTYPES[qtype] if isinstance(qtype, int) else _qtype_names(qtype),
        "rcode": rcode,
        "rcode_name": pc.if_else(pa.array(rcode == 3), "NXDOMAIN", "NOERROR"),
        "AA": "F",
        "TC": "F",
        "RD": "T",
        "RA": "T",
        "Z": "0",
        "answers": answers,
        "TTLs": ttls,
        "rejected": "F",
    }
    return Flows(conn=conn, dns=dns)


def _qtype_names(qtype: npt.NDArray[np.int64]) -> Any:
    codes = sorted(QTYPES)
    index = np.searchsorted(codes, qtype)
    if not np.array_equal(np.asarray(codes)[np.minimum(index, len(codes) - 1)], qtype):
        raise ValueError(f"qtypes must be among {codes}")
    return pa.array([QTYPES[code] for code in codes], pa.string()).take(pa.array(index))


def interval_text(seconds: npt.NDArray[np.int64]) -> Any:
    """Whole seconds -> Zeek interval text ("300.000000")."""
    return pc.binary_join_element_wise(pc.cast(pa.array(seconds), pa.string()), "000000", ".")


def _ttl_vectors(cname_ttls: Any, remaining_s: npt.NDArray[np.int64], count: Any) -> Any:
    """The TTLs vector: the CNAMEs' TTLs then `count` times the records' remaining TTL."""
    one = pc.binary_join_element_wise(interval_text(remaining_s), "", ",")
    repeated = pc.binary_repeat(one, pa.array(np.asarray(count, dtype=np.int64)))
    return pc.utf8_rtrim(pc.binary_join_element_wise(cname_ttls, repeated, ""), ",")


def cache_misses(
    host: npt.NDArray[np.int64],
    domain: npt.NDArray[np.int64],
    ts_us: npt.NDArray[np.int64],
    ttl_s: npt.NDArray[np.int64],
) -> npt.NDArray[np.bool_]:
    """Visits that need a lookup: a host's first visit of a domain or one after its TTL ran out.

    Approximates the stub resolver's cache by the gap since the previous visit.
    """
    order = np.lexsort((ts_us, domain, host))
    h, d, t = host[order], domain[order], ts_us[order]
    first = np.ones(len(order), dtype=np.bool_)
    first[1:] = (h[1:] != h[:-1]) | (d[1:] != d[:-1])
    expired = np.zeros(len(order), dtype=np.bool_)
    expired[1:] = (t[1:] - t[:-1]) > ttl_s[order][1:] * 1_000_000
    miss = np.empty(len(order), dtype=np.bool_)
    miss[order] = first | expired
    return miss


def resolve_times(ts_us: npt.NDArray[np.int64], ttl_s: int) -> npt.NDArray[np.bool_]:
    """For one host's sorted connections to one name: which ones a fresh lookup precedes."""
    resolve = np.zeros(len(ts_us), dtype=np.bool_)
    i = 0
    while i < len(ts_us):
        resolve[i] = True
        i = int(np.searchsorted(ts_us, ts_us[i] + ttl_s * 1_000_000, side="left"))
    return resolve
