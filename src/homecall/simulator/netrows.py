"""Conn rows the network techniques share: TCP attempts nobody answers and UDP datagrams with or
without an answer (Zeek: S0 with history S or D, REJ for a refused SYN)."""

from __future__ import annotations

import ipaddress

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from homecall.simulator.flows import STATES, Columns, ephemeral_ports, tcp_conns
from homecall.simulator.zeeklog import UNSET

__all__ = ["REJ", "S0", "SF", "day_times", "draw_addresses", "tcp_attempts", "udp_rows"]

SF, S0, REJ = (STATES.index(s) for s in ("SF", "S0", "REJ"))
_UDP_HEADER_BYTES = 28


def draw_addresses(
    rng: np.random.Generator, blocks: tuple[str, ...], n: int, used: set[int]
) -> npt.NDArray[np.uint32]:
    """n distinct addresses from the CIDR blocks (which must be public), none in (and all added
    to) used, none ending in .0 or .255: addresses.draw_public_ips for thousands at once."""
    networks = [ipaddress.IPv4Network(block) for block in blocks]
    base = np.array([int(net.network_address) for net in networks], dtype=np.int64)
    size = np.array([net.num_addresses for net in networks], dtype=np.int64)
    found = np.zeros(0, dtype=np.int64)
    while found.size < n:
        k = 2 * (n - found.size) + 16
        which = rng.integers(0, len(networks), size=k)
        ip = base[which] + 1 + (rng.random(k) * (size[which] - 2)).astype(np.int64)
        ip = ip[(ip & 0xFF != 0) & (ip & 0xFF != 255)]
        ip = ip[~np.isin(ip, found) & ~np.isin(ip, np.fromiter(used, np.int64, len(used)))]
        _, first = np.unique(ip, return_index=True)
        found = np.concatenate([found, ip[np.sort(first)]])[:n]
    used.update(found.tolist())
    return found.astype(np.uint32)


def day_times(ts_us: npt.NDArray[np.int64], day_start_us: int) -> npt.NDArray[np.intp]:
    """Indexes of the times that fall in the day starting at day_start_us."""
    return np.flatnonzero((ts_us >= day_start_us) & (ts_us < day_start_us + 86_400_000_000))


def tcp_attempts(
    rng: np.random.Generator,
    *,
    ts_us: npt.NDArray[np.int64],
    orig_h: npt.NDArray[np.uint32],
    resp_h: npt.NDArray[np.uint32],
    resp_p: npt.NDArray[np.int64] | int,
    state: npt.NDArray[np.int64],
) -> Columns:
    """Connection attempts that carried no data: unanswered SYNs (S0) or refused ones (REJ)."""
    n = len(ts_us)
    zeros = np.zeros(n, dtype=np.int64)
    return tcp_conns(
        rng, ts_us=ts_us, orig_h=orig_h, resp_h=resp_h, resp_p=resp_p, service="-",
        orig_bytes=zeros, resp_bytes=zeros, duration_us=zeros, state=state,
    )  # fmt: skip


def udp_rows(
    rng: np.random.Generator,
    *,
    ts_us: npt.NDArray[np.int64],
    orig_h: npt.NDArray[np.uint32],
    resp_h: npt.NDArray[np.uint32],
    resp_p: npt.NDArray[np.int64],
    orig_pkts: npt.NDArray[np.int64],
    payload: npt.NDArray[np.int64],  # bytes of each datagram the originator sends
    answer: npt.NDArray[np.int64],  # bytes of the one answer; 0 for none
    duration_us: npt.NDArray[np.int64],
    orig_p: npt.NDArray[np.int64] | None = None,
    service: str = "-",
) -> Columns:
    """UDP conn rows: answered ones SF (history Dd), the rest S0 (history D); a lone unanswered
    datagram has no duration or byte counts in Zeek's log."""
    n = len(ts_us)
    answered = answer > 0
    lone = ~answered & (orig_pkts == 1)
    orig_bytes = orig_pkts * payload
    return {
        "ts": ts_us,
        "id.orig_h": orig_h,
        "id.orig_p": ephemeral_ports(rng, n) if orig_p is None else orig_p,
        "id.resp_h": resp_h,
        "id.resp_p": np.asarray(resp_p, dtype=np.int64),
        "proto": "udp",
        "service": service,
        "duration": np.where(lone, UNSET, duration_us),
        "orig_bytes": np.where(lone, UNSET, orig_bytes),
        "resp_bytes": np.where(lone, UNSET, answer),
        "conn_state": pa.array(np.where(answered, "SF", "S0"), pa.string()),
        "history": pa.array(np.where(answered, "Dd", "D"), pa.string()),
        "orig_pkts": orig_pkts,
        "orig_ip_bytes": orig_bytes + _UDP_HEADER_BYTES * orig_pkts,
        "resp_pkts": answered.astype(np.int64),
        "resp_ip_bytes": np.where(answered, answer + _UDP_HEADER_BYTES, 0),
    }
