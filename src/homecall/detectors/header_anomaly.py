"""Header anomalies: IP and TCP header fields used as storage covert channels
(docs/detection.md#header-anomaly).

Per flow and direction of a packet capture (the `packets` table): packets with the TCP reserved
bits set (the 3 left after RFC 3168 took two for CWR and ECE and RFC 3540 one for NS), with NS
(historic since RFC 8311), with an urgent pointer but no URG, with the IPv4 reserved "evil" bit;
IP IDs that carry data (printable ASCII, repeated values, a constant with DF clear) instead of
counting up or looking random; TTLs and DSCPs that keep changing within the direction; TCP
options a stack does not send. A single odd packet is noise, so each technique needs several
packets and the score grows with packets and distinct techniques (Rowland 1997, Murdoch and
Lewis 2005, Zander et al. 2007). Set-based work is Ibis; the scoring is NumPy over batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.common import utc
from homecall.detectors.segments import Floats
from homecall.findings import MAX_UIDS, Finding, rank
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "HeaderAnomalyConfig",
    "Techniques",
    "flow_counts",
    "id_pattern",
    "run",
    "technique_strengths",
]

log = logging.getLogger(__name__)

FLOW = ["uid", "from_orig"]
# TCP option kinds stacks send (IANA "TCP Option Kind Numbers"): EOL, NOP, MSS, window scale,
# SACK permitted, SACK, timestamps, MD5 (RFC 2385), Quick-Start (4782), user timeout (5482),
# TCP-AO (5925), MPTCP (8684), Fast Open (7413), TCP-ENO (8547), experiments (4727, 6994).
KNOWN_OPTIONS = (0, 1, 2, 3, 4, 5, 8, 19, 27, 28, 29, 30, 34, 69, 253, 254)
SYN_ONLY_OPTIONS = (2, 3, 4)  # MSS (RFC 9293 3.7.1), window scale (RFC 7323), SACK-permitted
ID_MODULUS = 65536
PRINTABLE = (0x20, 0x7E)
TECHNIQUES = (
    "tcp-reserved",
    "tcp-ns",
    "urgent-pointer",
    "ip-evil-bit",
    "ip-id",
    "ttl",
    "dscp",
    "tcp-options",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderAnomalyConfig:
    """Settings under [detectors.header-anomaly] in homecall.toml."""

    min_packets: int = 3  # packets a flag technique needs: one or two are a middlebox's noise
    min_changes: int = 4  # TTL / DSCP changes within a direction: a route change makes 1 or 2
    min_ids: int = 8  # IP IDs needed to judge their pattern (random IDs: P(8 printable) < 1e-6)
    # a host-wide counter advances between a flow's packets by what the host sent elsewhere
    counter_step_max: int = 4096  # ID steps of 1..4095 count up
    counter_ratio: float = 0.5  # IDs with this share of steps counting up are a stack's counter
    ascii_ratio: float = 0.8  # IDs that are printable ASCII pairs (random: 14 %)
    repeat_ratio: float = 0.3  # IDs seen before in the direction (random: n / 131,072)
    packets_full: int = 50  # affected packets giving a technique its full weight
    activity_floor: float = 0.5  # share of a technique's weight its minimum packets carry
    reserved_weight: float = 0.6  # bits no stack sets: "medium" alone, two techniques "high"
    evil_bit_weight: float = 0.6  # the IPv4 reserved flag: no stack sets it either
    urgent_weight: float = 0.55  # a pointer without URG: only a buggy stack leaves one
    ip_id_weight: float = 0.55  # IDs carrying data (a few embedded stacks repeat IDs)
    ttl_weight: float = 0.45  # TTL modulation (paths change TTLs too)
    dscp_weight: float = 0.4  # DSCP modulation (applications may re-mark their traffic)
    options_weight: float = 0.4  # odd options (experiments, old stacks)
    ns_weight: float = 0.3  # NS: the ECN nonce, historic but set by a few old stacks
    remote_ttl_factor: float = 0.5  # the remote side's TTLs change on the way (load balancing)
    min_score: float = 0.25  # below: not reported


def flow_counts(tables: Tables, cfg: HeaderAnomalyConfig) -> ir.Table:
    """One row per flow direction with at least one anomalous packet or pattern candidate:
    counts of packets per technique and the figures of the ID, TTL and DSCP sequences.
    Backend-neutral."""
    p = _in_sequence(tables)
    counted = _conditions(p, cfg)
    seq = p._seq
    nonzero_id = (seq & (p.ip_id != 0)).ifelse(p.ip_id, ibis.null("int32"))
    any_id = (~p._rst).ifelse(p.ip_id, ibis.null("int32"))
    keys = [*FLOW, "src", "dst", "dst_port", "sender", "proto", "resp_port"]
    counts = p.group_by(keys).aggregate(
        packets=ibis._.count(),
        first_seen=p.ts.min(),
        last_seen=p.ts.max(),
        ttl_min=p.ttl.min(),
        ttl_max=p.ttl.max(),
        dscp_values=p._dscp.nunique(),
        id_distinct=nonzero_id.nunique(),
        id_min=any_id.min(),
        id_max=any_id.max(),
        tcp_options_example=counted["tcp_options"].ifelse(p.tcp_options, ibis.null("string")).max(),
        **{name: cond.fill_null(False).ifelse(1, 0).sum() for name, cond in counted.items()},
    )
    suspect = (
        (counts.tcp_reserved > 0)
        | (counts.tcp_ns > 0)
        | (counts.urgent_pointer > 0)
        | (counts.ip_evil_bit > 0)
        | (counts.tcp_options > 0)
        | (counts.ttl_changes >= cfg.min_changes)
        | (counts.dscp_changes >= cfg.min_changes)
        | _id_suspect(counts, cfg)
    )
    return counts.filter(suspect)


def _in_sequence(tables: Tables) -> ir.Table:
    """The oriented packets with their sender, DSCP, and the TTL, DSCP and ID of the packet
    before in the direction's sequence (`_seq`: neither a RST nor a copy)."""
    p = tables.oriented("packets")
    p = p.filter(p.uid.notnull() & p.from_orig.notnull())
    in_time = ["ts", "pcap_offset"]
    whole = ibis.window(group_by=FLOW, order_by=in_time)
    # A packet with the ID and size of the one before is a copy (a retransmission keeping its
    # ID, or a capture seeing it on both sides of a router, one hop's TTL apart); RSTs come
    # from middleboxes too (injected, with their own TTL and ID). The sequence tests skip both.
    is_copy = (
        p.ip_id.notnull()
        & (p.ip_id == p.ip_id.lag().over(whole))
        & (p.payload_len == p.payload_len.lag().over(whole))
    )
    is_rst = (p.proto == "tcp") & _bit(p.tcp_flags.fill_null(0), 4)
    p = p.mutate(
        sender=(p.from_orig == (p.orig_ip == p.src)).ifelse(p.src, p.dst),
        _dscp=p.tos // 4,  # the low two bits are ECN (RFC 3168): routers change them
        _rst=is_rst,
        _seq=~is_rst & ~is_copy.fill_null(False),
    )
    window = ibis.window(group_by=[*FLOW, "_seq"], order_by=in_time)
    return p.mutate(
        _prev_ttl=p.ttl.lag().over(window),
        _prev_dscp=p._dscp.lag().over(window),
        _prev_id=p.ip_id.lag().over(window),
    )


def _conditions(p: ir.Table, cfg: HeaderAnomalyConfig) -> dict[str, ir.BooleanValue]:
    """Per packet, what each count of `flow_counts` counts."""
    flags = p.tcp_flags.fill_null(0)
    ip_flags = p.ip_flags.fill_null(0)
    is_tcp, seq, has_id = p.proto == "tcp", p._seq, p.ip_id.notnull()
    step = (p.ip_id - p._prev_id + ID_MODULUS) % ID_MODULUS
    high, low = p.ip_id // 256, p.ip_id % 256
    # the option kinds between doubled commas (",,2,,4,,"): each kind its own ",k," to match
    options = ibis.literal(",").concat(p.tcp_options.fill_null("").replace(",", ",,"), ",")
    known = "|".join(str(k) for k in KNOWN_OPTIONS)
    syn_only = "|".join(str(k) for k in SYN_ONLY_OPTIONS)
    return {
        "tcp_reserved": is_tcp & (p.tcp_reserved.fill_null(0) != 0),
        "tcp_ns": is_tcp & _bit(flags, 256),
        "urgent_pointer": is_tcp & (p.urgent_ptr.fill_null(0) != 0) & ~_bit(flags, 32),
        "ip_evil_bit": _bit(ip_flags, 4),
        "tcp_options": is_tcp
        & (
            (options.re_replace(f",({known}),", "").replace(",", "") != "")
            | (~_bit(flags, 2) & options.re_search(f",({syn_only}),"))
        ),
        "ttl_changes": seq & p._prev_ttl.notnull() & (p.ttl != p._prev_ttl),
        "ttl_rises": seq & p._prev_ttl.notnull() & (p.ttl > p._prev_ttl),
        "ttl_falls": seq & p._prev_ttl.notnull() & (p.ttl < p._prev_ttl),
        "dscp_changes": seq & p._prev_dscp.notnull() & (p._dscp != p._prev_dscp),
        "ids": seq & has_id,
        "ids_nonzero": seq & has_id & (p.ip_id != 0),
        "id_steps": seq & has_id & p._prev_id.notnull(),
        "id_counter_steps": seq & (step >= 1) & (step < cfg.counter_step_max),
        "id_ascii": seq & (p.ip_id != 0) & _printable(high) & (_printable(low) | (low == 0)),
        "df_clear": seq & has_id & ~_bit(ip_flags, 2),
        "all_ids": ~p._rst & has_id,  # copies included: a constant ID repeats
        "all_df_clear": ~p._rst & has_id & ~_bit(ip_flags, 2),
    }


def _id_suspect(counts: ir.Table, cfg: HeaderAnomalyConfig) -> ir.BooleanValue:
    """IDs that may carry data: enough of them, not a counter, mostly ASCII or repeated; or
    one non-zero ID on every packet, DF clear."""
    nonzero = counts.ids_nonzero
    constant = (
        (counts.id_min == counts.id_max)
        & (counts.id_min != 0)
        & (counts.all_ids >= cfg.min_ids)
        & (counts.all_df_clear == counts.all_ids)
    )
    return constant | (
        (nonzero >= cfg.min_ids)
        & (counts.id_counter_steps < cfg.counter_ratio * counts.id_steps)
        & (
            (counts.id_ascii >= cfg.ascii_ratio * nonzero)
            | (counts.id_distinct <= (1.0 - cfg.repeat_ratio) * nonzero)
        )
    )


def _bit(column: ir.IntegerValue, value: int) -> ir.BooleanValue:
    """Whether the bit of `value` (a power of two) is set: arithmetic, portable to every engine."""
    return (column // value) % 2 == 1


def _printable(byte: ir.IntegerValue) -> ir.BooleanValue:
    return (byte >= PRINTABLE[0]) & (byte <= PRINTABLE[1])


@dataclass(frozen=True, slots=True)
class Techniques:
    """Per flow direction: packets (or changes) behind each technique, its strength 0..1, the
    IP ID pattern seen ("ascii", "constant", "repeats" or ""), and the combined score."""

    affected: dict[str, Floats]
    strengths: dict[str, Floats]
    id_pattern: np.ndarray
    score: Floats


def technique_strengths(c: dict[str, np.ndarray], cfg: HeaderAnomalyConfig) -> Techniques:
    """Score flow directions from their counts (`flow_counts` columns as arrays): each
    technique weight x activity, activity = floor + (1 - floor) x log-scaled affected packets
    from its minimum to packets_full; score = 1 - prod(1 - strength)."""
    n = len(c["packets"])
    pattern, id_affected = id_pattern(c, cfg)
    probe = (c["ttl_rises"] < 2) | (c["ttl_falls"] < 2)  # a monotone series: traceroute
    affected = {
        "tcp-reserved": c["tcp_reserved"],
        "tcp-ns": c["tcp_ns"],
        "urgent-pointer": c["urgent_pointer"],
        "ip-evil-bit": c["ip_evil_bit"],
        "ip-id": id_affected,
        "ttl": np.where(probe, 0, c["ttl_changes"]),
        "dscp": c["dscp_changes"],
        "tcp-options": c["tcp_options"],
    }
    minimum = {"ttl": cfg.min_changes, "dscp": cfg.min_changes, "ip-id": cfg.min_ids}
    remote = c["sender"] != c["src"]
    weights = {
        "tcp-reserved": np.full(n, cfg.reserved_weight),
        "tcp-ns": np.full(n, cfg.ns_weight),
        "urgent-pointer": np.full(n, cfg.urgent_weight),
        "ip-evil-bit": np.full(n, cfg.evil_bit_weight),
        "ip-id": np.full(n, cfg.ip_id_weight),
        "ttl": cfg.ttl_weight * np.where(remote, cfg.remote_ttl_factor, 1.0),
        "dscp": np.full(n, cfg.dscp_weight),
        "tcp-options": np.full(n, cfg.options_weight),
    }
    strengths = {}
    keep = np.ones(n)
    for name in TECHNIQUES:
        k = np.asarray(affected[name], dtype=np.float64)
        low = minimum.get(name, cfg.min_packets)
        strength = weights[name] * _activity(k, low, cfg)
        strengths[name] = strength
        keep *= 1.0 - strength
    floats = {name: np.asarray(v, dtype=np.float64) for name, v in affected.items()}
    return Techniques(floats, strengths, pattern, 1.0 - keep)


def id_pattern(c: dict[str, np.ndarray], cfg: HeaderAnomalyConfig) -> tuple[np.ndarray, Floats]:
    """Each direction's IP ID pattern ("ascii", "constant", "repeats" or "") and the IDs
    behind it. Only IDs that do not count up are judged, and repeats only with DF clear (RFC
    6864 lets an atomic datagram carry any ID)."""
    ids = c["ids"].astype(np.float64)
    nonzero = c["ids_nonzero"].astype(np.float64)
    counter = c["id_counter_steps"] / np.maximum(c["id_steps"], 1)
    judged = (nonzero >= cfg.min_ids) & (counter < cfg.counter_ratio)
    ascii_share = c["id_ascii"] / np.maximum(nonzero, 1)
    repeats = nonzero - c["id_distinct"]
    df_clear = c["df_clear"] >= 0.5 * np.maximum(ids, 1)
    constant = (
        (c["id_min"] == c["id_max"])
        & (c["id_min"] != 0)
        & (c["all_ids"] >= cfg.min_ids)
        & (c["all_df_clear"] == c["all_ids"])
    )
    pattern = np.select(
        [
            judged & (ascii_share >= cfg.ascii_ratio),
            constant,
            judged & df_clear & (repeats >= cfg.repeat_ratio * nonzero),
        ],
        ["ascii", "constant", "repeats"],
        default="",
    )
    affected = np.select(
        [pattern == "ascii", pattern == "constant", pattern == "repeats"],
        [c["id_ascii"], c["all_ids"], repeats],
        default=0,
    )
    return pattern, np.asarray(affected, dtype=np.float64)


def _activity(k: Floats, minimum: int, cfg: HeaderAnomalyConfig) -> Floats:
    """0 under `minimum` affected packets, then floor rising log-scaled to 1 at packets_full."""
    span = max(cfg.packets_full - minimum, 1)
    rise = np.log10(1.0 + np.maximum(k - minimum, 0.0)) / np.log10(1.0 + span)
    level = cfg.activity_floor + (1.0 - cfg.activity_floor) * np.minimum(rise, 1.0)
    return np.where(k >= minimum, level, 0.0)


def run(tables: Tables, cfg: HeaderAnomalyConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    flagged: dict[tuple[str, str, int | None], list[dict[str, Any]]] = {}
    for batch in tables.batches(flow_counts(tables, cfg).order_by(FLOW)):
        columns = {name: _array(batch.column(name)) for name in batch.schema.names}
        scored = technique_strengths(columns, cfg)
        rows = batch.to_pylist()
        for i in np.flatnonzero((scored.score >= cfg.min_score) & (scored.score > 0)):
            row = rows[i] | {
                "score": float(scored.score[i]),
                "pattern": str(scored.id_pattern[i]),
                "affected": {t: int(scored.affected[t][i]) for t in TECHNIQUES},
                "strengths": {t: round(float(scored.strengths[t][i]), 3) for t in TECHNIQUES},
            }
            key = (str(row["src"]), str(row["dst"]), row["dst_port"])
            flagged.setdefault(key, []).append(row)
    texts = _id_texts(tables, [r for rs in flagged.values() for r in rs if r["pattern"] == "ascii"])
    yield from rank(_finding(rows, texts) for rows in flagged.values())


def _array(column: pa.Array) -> np.ndarray:
    """A column as NumPy: numbers with nulls as 0, anything else as objects."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return np.asarray(column.fill_null(0).to_numpy(zero_copy_only=False))
    return np.asarray(column.to_pylist(), dtype=object)


TEXT_IDS = 64  # IP IDs decoded into the evidence


def _id_texts(tables: Tables, rows: list[dict[str, Any]]) -> dict[tuple[str, bool], str]:
    """The first TEXT_IDS IP IDs of each listed flow direction, as text (printable bytes; a
    zero low byte, covert_tcp's encoding, left out; others as '.')."""
    if not rows:
        return {}
    wanted = pa.table(
        {"uid": [r["uid"] for r in rows], "from_orig": [bool(r["from_orig"]) for r in rows]}
    )
    p = tables["packets"].semi_join(tables.memtable(wanted), FLOW)
    p = p.filter(p.ip_id.notnull() & (p.ip_id != 0))
    ranked = p.mutate(_n=ibis.row_number().over(group_by=FLOW, order_by=["ts", "pcap_offset"]))
    picked = ranked.filter(ranked._n < TEXT_IDS).select(*FLOW, "ip_id", "_n")
    ids: dict[tuple[str, bool], list[tuple[int, int]]] = {}
    for batch in tables.batches(picked):
        for uid, side, value, n in zip(
            *(batch.column(k).to_pylist() for k in batch.schema.names), strict=True
        ):
            ids.setdefault((uid, side), []).append((n, value))
    return {key: "".join(_decode(v) for _, v in sorted(values)) for key, values in ids.items()}


def _decode(value: int) -> str:
    high, low = divmod(value, 256)
    text = chr(high) if PRINTABLE[0] <= high <= PRINTABLE[1] else "."
    if low:
        text += chr(low) if PRINTABLE[0] <= low <= PRINTABLE[1] else "."
    return text


PHRASES = {
    "tcp-reserved": "{k} set TCP reserved bits",
    "tcp-ns": "{k} set the historic NS bit",
    "urgent-pointer": "{k} carried an urgent pointer without URG",
    "ip-evil-bit": "{k} set the IPv4 reserved (evil) bit",
    "ip-id": "{k} had IP IDs carrying data ({pattern})",
    "ttl": "the TTL changed {k} times",
    "dscp": "the DSCP changed {k} times",
    "tcp-options": "{k} carried TCP options no stack sends",
}


def _finding(rows: list[dict[str, Any]], texts: dict[tuple[str, bool], str]) -> Finding:
    """One finding per (src, dst, dst_port): the strongest flow direction's figures."""
    best = max(rows, key=lambda r: (r["score"], r["uid"], r["from_orig"]))
    src, dst, port = str(best["src"]), str(best["dst"]), best["dst_port"]
    affected, strengths = best["affected"], best["strengths"]
    techniques = [t for t in TECHNIQUES if strengths[t] > 0]
    evidence: dict[str, Any] = {
        "sender": best["sender"],
        "proto": best["proto"],
        "service_port": best["resp_port"],
        "packets": best["packets"],
        "techniques": techniques,
        "strengths": {t: strengths[t] for t in techniques},
        **{
            f"{t.replace('-', '_')}_packets": affected[t]
            for t in techniques
            if t not in ("ttl", "dscp")
        },
    }
    if "ip-id" in techniques:
        evidence |= {
            "ip_id_pattern": best["pattern"],
            "ip_id_counter_ratio": round(best["id_counter_steps"] / max(best["id_steps"], 1), 3),
            "ip_id_ascii_ratio": round(best["id_ascii"] / max(best["ids_nonzero"], 1), 3),
            "ip_id_distinct": best["id_distinct"],
            "ip_id_df_clear_packets": best["df_clear"],
        }
        text = texts.get((best["uid"], bool(best["from_orig"])))
        if text:
            evidence["ip_id_text"] = text
    if "ttl" in techniques:
        evidence |= {
            "ttl_changes": best["ttl_changes"],
            "ttl_min": best["ttl_min"],
            "ttl_max": best["ttl_max"],
        }
    if "dscp" in techniques:
        evidence |= {"dscp_changes": best["dscp_changes"], "dscp_values": best["dscp_values"]}
    if "tcp-options" in techniques:
        evidence["tcp_options_example"] = best["tcp_options_example"]
    evidence["flagged_flows"] = len({r["uid"] for r in rows})
    ordered = sorted(rows, key=lambda r: (utc(r["first_seen"]), r["uid"]))
    evidence["uids"] = list(dict.fromkeys(r["uid"] for r in ordered))[:MAX_UIDS]
    reasons = ", ".join(
        PHRASES[t].format(k=affected[t], pattern=best["pattern"]) for t in techniques
    )
    return Finding(
        detector="header-anomaly",
        src=src,
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=best["score"],
        first_seen=utc(min(r["first_seen"] for r in rows)),
        last_seen=utc(max(r["last_seen"] for r in rows)),
        summary=(
            f"{src} -> {dst}:{port}: header fields used to hide data in the packets "
            f"{best['sender']} sent: {reasons} (of {best['packets']} packets)."
        ),
        evidence=evidence,
    )


DETECTOR = Detector(
    name="header-anomaly",
    requires=("packets",),
    config=HeaderAnomalyConfig,
    run=run,
    description="IP and TCP header fields used to hide data (storage covert channels)",
)
