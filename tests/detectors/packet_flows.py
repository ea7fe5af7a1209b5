"""Hand-built packet captures for the covert-channel detectors: flows of packets with known
timing and headers, written into a store as the `packets` and `conn` tables a PCAP reader
would give, plus generators of covert timing channels with known ground truth.

The legitimate delays come from a model (a two-state Markov-modulated log-normal process:
bursts and pauses, as in interactive and web traffic) or from real flows handed in; the
covert channels are the textbook ones: a binary channel (two delays encoding bits, with
jitter: Cabuk et al. 2004's IPCTC family), a model-based channel (delays drawn i.i.d. from a
legitimate flow's distribution, Gianvecchio et al. 2008) and JitterBug (Shah, Molina and Blaze
2006: each keystroke delayed so that its delay modulo a window w is 0 or w / 2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from homecall.store import Store
from homecall.store.schema import schema_of

T0_US = 1_709_629_200_000_000  # 2024-03-05 09:00:00 UTC
_uid = count(1)


# ------------------------------------------------------------------------- delays (seconds)


def legit_delays(
    rng: np.random.Generator,
    n: int,
    *,
    burst_s: float = 0.03,
    pause_s: float = 0.6,
    stay: float = 0.85,
    sigma: float = 0.9,
) -> np.ndarray:
    """n delays of a bursty flow: a Markov chain between a burst state (log-normal around
    burst_s) and a pause state (around pause_s), staying in a state with probability `stay`."""
    state = np.zeros(n, dtype=int)
    flips = rng.random(n) > stay
    state = np.cumsum(flips) % 2
    median = np.where(state == 0, burst_s, pause_s)
    return median * np.exp(sigma * rng.standard_normal(n))


def fleet_delays(rng: np.random.Generator, n: int) -> np.ndarray:
    """A legitimate flow with parameters of its own (some chatty, some slow)."""
    return legit_delays(
        rng,
        n,
        burst_s=float(rng.uniform(0.01, 0.06)),
        pause_s=float(rng.uniform(0.3, 1.5)),
        stay=float(rng.uniform(0.7, 0.95)),
        sigma=float(rng.uniform(0.6, 1.1)),
    )


def binary_channel(
    rng: np.random.Generator, n: int, *, zero_s: float, one_s: float, jitter_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """(delays, bits): random (encrypted) bits, a 0 sent as a delay of zero_s and a 1 as one_s,
    each with Gaussian jitter of sd jitter_s."""
    bits = rng.integers(0, 2, n)
    delays = np.where(bits == 1, one_s, zero_s) + jitter_s * rng.standard_normal(n)
    return np.maximum(delays, 1e-4), bits


def model_based_channel(rng: np.random.Generator, n: int, legit: np.ndarray) -> np.ndarray:
    """Delays drawn i.i.d. from a legitimate flow's distribution (inverse CDF of uniform
    coded bits): the marginal of real traffic, without its correlation."""
    return np.sort(legit)[rng.integers(0, len(legit), n)]


def jitterbug(
    rng: np.random.Generator,
    keystrokes: np.ndarray,
    *,
    window_s: float,
    noise_s: float,
    rotate: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(delays, bits): each keystroke's delay stretched by the least amount making it 0
    (bit 0) or window_s / 2 (bit 1) modulo window_s, then measured with Gaussian noise of sd
    noise_s; `rotate` shifts each target by a pseudo-random amount (JitterBug's defence
    against exactly the residue test)."""
    bits = rng.integers(0, 2, len(keystrokes))
    target = bits * window_s / 2
    if rotate:
        target = (target + rng.uniform(0, window_s, len(keystrokes))) % window_s
    residue = np.mod(keystrokes, window_s)
    stretch = np.mod(target - residue, window_s)
    delays = keystrokes + stretch + noise_s * rng.standard_normal(len(keystrokes))
    return np.maximum(delays, 1e-4), bits


# ------------------------------------------------------------------------- packets


@dataclass(frozen=True)
class Flow:
    """One flow: its endpoints and packets (ts_us, from_orig, payload_len), plus header fields
    per packet (`headers`: column -> one value per packet, None for the default)."""

    orig_ip: str
    resp_ip: str
    resp_port: int
    orig_port: int = 50000
    proto: str = "tcp"
    uid: str = field(default_factory=lambda: f"P{next(_uid):017d}")
    ts_us: Sequence[int] = ()
    from_orig: Sequence[bool] = ()
    payload_len: Sequence[int] = ()
    headers: dict[str, Sequence[Any]] = field(default_factory=dict)


def sending(
    flow: Flow,
    delays_s: Iterable[float],
    *,
    start_us: int = T0_US,
    payload: int = 48,
    acks: bool = True,
) -> Flow:
    """`flow` with data packets sent by the originator at the given delays (the first at
    start_us), each answered by a pure ACK from the responder 1 ms later (`acks`)."""
    times = start_us + np.concatenate(([0], np.cumsum(np.round(np.asarray(delays_s) * 1e6))))
    ts, side, size = [], [], []
    for t in times.astype(np.int64):
        ts.append(int(t))
        side.append(True)
        size.append(payload)
        if acks:
            ts.append(int(t) + 1000)
            side.append(False)
            size.append(0)
    return replace(flow, ts_us=ts, from_orig=side, payload_len=size)


def marked(flow: Flow, *, from_orig: bool = True, **columns: Any) -> Flow:
    """`flow` with header columns set on the packets one side sends: a scalar for all of
    them, or a sequence with one value per packet of that side."""
    picked = [i for i, side in enumerate(flow.from_orig) if side == from_orig]
    headers = {k: list(v) for k, v in flow.headers.items()}
    for name, value in columns.items():
        values = headers.setdefault(name, [None] * len(flow.ts_us))
        given = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
        for j, i in enumerate(picked):
            values[i] = given[j % len(given)] if given is not None else value
    return replace(flow, headers=headers)


DEFAULTS: dict[str, Any] = {
    "ip_version": 4,
    "ttl": 64,
    "ip_flags": 2,
    "tos": 0,
    "tcp_reserved": 0,
    "tcp_window": 64240,
    "urgent_ptr": 0,
    "tcp_options": "1,1,8",
    "caplen": 96,
}
TCP_ONLY = ("tcp_flags", "tcp_reserved", "tcp_window", "urgent_ptr", "tcp_options")


def packets_table(flows: Sequence[Flow], source: str = "/captures/test.pcap") -> pa.Table:
    """The packets table of `flows`; IP IDs count up per sender unless given."""
    columns: dict[str, list[Any]] = {name: [] for name in schema_of("packets").names}
    offset = 24
    for flow in flows:
        ids = {True: 1000, False: 30000}
        is_tcp = flow.proto == "tcp"
        for i, ts in enumerate(flow.ts_us):
            orig = bool(flow.from_orig[i])
            payload = int(flow.payload_len[i])
            row = {
                **DEFAULTS,
                "ts": ts,
                "uid": flow.uid,
                "orig_ip": flow.orig_ip,
                "orig_port": flow.orig_port,
                "resp_ip": flow.resp_ip,
                "resp_port": flow.resp_port,
                "proto": flow.proto,
                "from_orig": orig,
                "ip_len": payload + (40 if is_tcp else 28),
                "payload_len": payload,
                "ip_id": ids[orig] % 65536,
                "tcp_flags": 24 if payload else 16,
                "pcap_offset": offset,
                "sensor": None,
                "source_file": source,
            }
            row |= {k: v[i] for k, v in flow.headers.items() if v[i] is not None}
            if not is_tcp:
                row |= dict.fromkeys(TCP_ONLY)
            ids[orig] += 1
            offset += 16 + int(row["caplen"])
            for name in columns:
                columns[name].append(row[name])
    return pa.Table.from_pydict(columns, schema=schema_of("packets"))


def conn_table(flows: Sequence[Flow], source: str = "/captures/test.pcap") -> pa.Table:
    """One conn row per flow, as the reader writes beside the packets (the endpoint tables
    are where `Tables` finds the internal hosts)."""
    rows = []
    for flow in flows:
        ts = list(flow.ts_us)
        rows.append(
            {
                "ts": min(ts),
                "uid": flow.uid,
                "orig_ip": flow.orig_ip,
                "orig_port": flow.orig_port,
                "resp_ip": flow.resp_ip,
                "resp_port": flow.resp_port,
                "proto": flow.proto,
                "duration_s": (max(ts) - min(ts)) / 1e6,
                "orig_pkts": sum(1 for o in flow.from_orig if o),
                "resp_pkts": sum(1 for o in flow.from_orig if not o),
                "source_file": source,
            }
        )
    return pa.Table.from_pylist(rows, schema=schema_of("conn"))


def store_of(folder: Path, flows: Sequence[Flow]) -> Store:
    """FOLDER/store holding the flows' packets and conn rows, as one imported capture."""
    packets, conn = packets_table(flows), conn_table(flows)
    store = Store(folder / "store")
    digest = hashlib.sha256(repr([f.uid for f in flows]).encode()).hexdigest()
    parts = [("packets", b) for b in packets.to_batches()]
    parts += [("conn", b) for b in conn.to_batches()]
    with store.importing() as job:
        job.add(folder / "test.pcap", lambda: digest, "test", parts)
    return store
