"""Columnar rows of simulated traffic: connections plus the dns/http/ssl rows that point at them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import is_internal
from homecall.simulator.zeeklog import LOGS, UNSET, Column

__all__ = [
    "APP_LOGS",
    "STATES",
    "Columns",
    "Flows",
    "concat",
    "constant",
    "ephemeral_ports",
    "finalize",
    "make_uids",
    "row_count",
    "stack_columns",
    "strings",
    "take_rows",
    "tcp_conns",
    "udp_conns",
]

Columns = dict[str, Column]
APP_LOGS = ("dns", "http", "ssl")
STATES = ("SF", "S0", "REJ", "RSTO", "RSTR")
_ESTABLISHED = np.array([True, False, False, True, True])
_HISTORIES = {  # Zeek history strings seen for each state, with how often
    "SF": (("ShADadFf", 0.62), ("ShADadfF", 0.24), ("ShADdaFf", 0.14)),
    "S0": (("S", 1.0),),
    "REJ": (("Sr", 1.0),),
    "RSTO": (("ShADadR", 0.55), ("ShADadFR", 0.45)),
    "RSTR": (("ShADadr", 0.6), ("ShADadFr", 0.4)),
}
_HISTORY_TEXT = pa.array([text for state in STATES for text, _ in _HISTORIES[state]])
_TCP_HEADER_BYTES = 52  # IPv4 20 + TCP 20 + timestamp option 12
_UDP_HEADER_BYTES = 28
_BASE62 = np.frombuffer(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8
)
UID_CHARS = 17


@dataclass(frozen=True, slots=True)
class Flows:
    """Rows for conn and the application logs; each app row's `conn` column indexes `conn`."""

    conn: Columns = field(default_factory=dict)
    dns: Columns = field(default_factory=dict)
    http: Columns = field(default_factory=dict)
    ssl: Columns = field(default_factory=dict)


def row_count(columns: Columns) -> int:
    """Rows in a column set (0 when empty or all-constant)."""
    for value in columns.values():
        if not isinstance(value, str | int):
            return len(value)
    return 0


def strings(values: Sequence[str] | npt.NDArray[Any]) -> Any:
    """A pyarrow string array from Python or NumPy strings."""
    return pa.array(values, type=pa.string())


def constant(value: str, n: int) -> Any:
    """A string column repeating one value."""
    return pa.array([value], type=pa.string()).take(pa.array(np.zeros(n, dtype=np.int64)))


def concat(parts: Sequence[Flows]) -> Flows:
    """Stack flows; app rows' `conn` indexes are shifted to the stacked conn rows."""
    offsets = np.cumsum([0] + [row_count(part.conn) for part in parts])
    logs: dict[str, Columns] = {}
    for log in LOGS:
        pieces = [
            (getattr(part, log), int(offset))
            for part, offset in zip(parts, offsets[:-1], strict=True)
        ]
        pieces = [(cols, offset) for cols, offset in pieces if row_count(cols)]
        logs[log] = _stack(log, pieces)
    return Flows(**logs)


def take_rows(columns: Columns, index: npt.NDArray[np.int64]) -> Columns:
    """The rows at `index` of a column set; a str column (one value for every row) stays one."""
    picked = pa.array(np.asarray(index, dtype=np.int64))
    taken: Columns = {}
    for name, value in columns.items():
        if isinstance(value, str):
            taken[name] = value
        elif isinstance(value, pa.Array | pa.ChunkedArray):
            taken[name] = value.take(picked)
        else:
            taken[name] = np.asarray(value)[index]
    return taken


def stack_columns(parts: Sequence[Columns]) -> Columns:
    """The rows of column sets with the same columns, one after another (`conn` unchanged)."""
    return _stack("rows", [(part, 0) for part in parts if row_count(part)])


def _stack(log: str, pieces: list[tuple[Columns, int]]) -> Columns:
    if not pieces:
        return {}
    names = list(pieces[0][0])
    for cols, _ in pieces:
        if list(cols) != names:
            raise ValueError(f"{log}: parts have different columns")
    stacked: Columns = {}
    for name in names:
        values = [cols[name] for cols, _ in pieces]
        if name == "conn":
            stacked[name] = np.concatenate(
                [v + off for v, (_, off) in zip(values, pieces, strict=True)]
            )
        elif all(isinstance(v, str) for v in values) and len(set(values)) == 1:
            stacked[name] = values[0]
        elif any(isinstance(v, pa.Array | str) for v in values):
            arrays = [
                constant(v, row_count(cols)) if isinstance(v, str) else v
                for v, (cols, _) in zip(values, pieces, strict=True)
            ]
            stacked[name] = pa.concat_arrays([a.cast(pa.string()) for a in arrays])
        else:
            stacked[name] = np.concatenate(values)
    return stacked


def make_uids(rng: np.random.Generator, n: int, prefix: str = "C") -> Any:
    """n distinct Zeek-style ids: the prefix and 17 base62 characters."""
    digits = rng.integers(0, 62, size=(n, UID_CHARS), dtype=np.int64)
    while True:  # distinct leading ten digits (62**10 < 2**63) make distinct ids
        key = digits[:, :10] @ (62 ** np.arange(10, dtype=np.int64))
        _, first = np.unique(key, return_index=True)
        if first.size == n:
            break
        again = np.setdiff1d(np.arange(n), first)
        digits[again] = rng.integers(0, 62, size=(again.size, UID_CHARS), dtype=np.int64)
    width = 1 + UID_CHARS
    data = np.empty((n, width), dtype=np.uint8)
    data[:, 0] = ord(prefix)
    data[:, 1:] = _BASE62[digits]
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())]
    )


def ephemeral_ports(rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
    """Client source ports from the Windows dynamic range 49152-65535."""
    return rng.integers(49152, 65536, size=n)


def tcp_conns(
    rng: np.random.Generator,
    *,
    ts_us: npt.NDArray[np.int64],
    orig_h: npt.NDArray[np.uint32],
    resp_h: npt.NDArray[np.uint32],
    resp_p: npt.NDArray[np.int64] | int,
    service: Column,
    orig_bytes: npt.NDArray[np.int64],
    resp_bytes: npt.NDArray[np.int64],
    duration_us: npt.NDArray[np.int64],
    state: npt.NDArray[np.int64],
) -> Columns:
    """TCP conn rows; packets, IP bytes and history follow the state (an index into STATES)."""
    n = len(ts_us)
    up = _ESTABLISHED[state]
    syns = np.where(state == STATES.index("S0"), rng.integers(1, 4, size=n), 1)
    orig_bytes = np.where(up, orig_bytes, 0)
    resp_bytes = np.where(up, resp_bytes, 0)
    orig_pkts = np.where(up, 3 + -(-orig_bytes // 1200) + resp_bytes // 2920, syns)
    resp_pkts = np.where(up, 2 + -(-resp_bytes // 1380) + orig_bytes // 2920, 0)
    resp_pkts = np.where(state == STATES.index("REJ"), 1, resp_pkts)
    handshake_us = rng.integers(900, 40_000, size=n)
    retries_us = (2 ** (syns - 1) - 1) * 1_000_000 + rng.integers(0, 20_000, size=n)  # RTO 1 s, 2 s
    duration = np.where(up, duration_us, np.where(syns > 1, retries_us, 0))
    duration = np.where(state == STATES.index("REJ"), handshake_us, duration)
    single = ~up & (resp_pkts == 0) & (syns == 1)  # one SYN: Zeek leaves duration/bytes unset
    return {
        "ts": ts_us,
        "id.orig_h": orig_h,
        "id.orig_p": ephemeral_ports(rng, n),
        "id.resp_h": resp_h,
        "id.resp_p": np.broadcast_to(resp_p, n).astype(np.int64),
        "proto": "tcp",
        "service": _service_if_up(service, up),
        "duration": np.where(single, UNSET, duration),
        "orig_bytes": np.where(single, UNSET, orig_bytes),
        "resp_bytes": np.where(single, UNSET, resp_bytes),
        "conn_state": strings(STATES).take(pa.array(state)),
        "history": _HISTORY_TEXT.take(pa.array(_draw_history(rng, state))),
        "orig_pkts": orig_pkts,
        "orig_ip_bytes": orig_bytes + _TCP_HEADER_BYTES * orig_pkts,
        "resp_pkts": resp_pkts,
        "resp_ip_bytes": resp_bytes + np.where(up, _TCP_HEADER_BYTES, 40) * resp_pkts,
    }


def udp_conns(
    rng: np.random.Generator,
    *,
    ts_us: npt.NDArray[np.int64],
    orig_h: npt.NDArray[np.uint32],
    resp_h: npt.NDArray[np.uint32],
    resp_p: int,
    service: str,
    orig_bytes: npt.NDArray[np.int64],
    resp_bytes: npt.NDArray[np.int64],
    duration_us: npt.NDArray[np.int64],
    orig_p: npt.NDArray[np.int64] | None = None,
) -> Columns:
    """One request/one reply UDP conn rows (DNS, NTP): state SF, history Dd."""
    n = len(ts_us)
    return {
        "ts": ts_us,
        "id.orig_h": orig_h,
        "id.orig_p": ephemeral_ports(rng, n) if orig_p is None else orig_p,
        "id.resp_h": resp_h,
        "id.resp_p": np.full(n, resp_p, dtype=np.int64),
        "proto": "udp",
        "service": service,
        "duration": duration_us,
        "orig_bytes": orig_bytes,
        "resp_bytes": resp_bytes,
        "conn_state": "SF",
        "history": "Dd",
        "orig_pkts": np.ones(n, dtype=np.int64),
        "orig_ip_bytes": orig_bytes + _UDP_HEADER_BYTES,
        "resp_pkts": np.ones(n, dtype=np.int64),
        "resp_ip_bytes": resp_bytes + _UDP_HEADER_BYTES,
    }


def finalize(flows: Flows, rng: np.random.Generator) -> dict[str, Columns]:
    """Full Zeek columns per log: uids drawn for conn rows, copied to the rows pointing at them."""
    conn = dict(flows.conn)
    n = row_count(conn)
    uids = make_uids(rng, n)
    internal_orig = is_internal(np.asarray(conn["id.orig_h"], dtype=np.uint32))
    internal_resp = is_internal(np.asarray(conn["id.resp_h"], dtype=np.uint32))
    conn.update(
        {
            "uid": uids,
            "local_orig": internal_orig.astype(np.int8),
            "local_resp": internal_resp.astype(np.int8),
            "missed_bytes": "0",
            "tunnel_parents": "-",  # unset, not empty: Zeek 6 logs "-" outside tunnels
        }
    )
    logs = {"conn": conn}
    for log in APP_LOGS:
        app = dict(getattr(flows, log))
        if not row_count(app):
            logs[log] = {}  # written as a header-only log
            continue
        index = np.asarray(app.pop("conn"), dtype=np.int64)
        app["uid"] = uids.take(pa.array(index))
        for name in ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"):
            app[name] = np.asarray(conn[name])[index]
        logs[log] = app
    return logs


def _service_if_up(service: Column, up: npt.NDArray[np.bool_]) -> Any:
    text = constant(service, len(up)) if isinstance(service, str) else service
    return pc.if_else(pa.array(up), text, pa.scalar(None, pa.string()))


def _draw_history(rng: np.random.Generator, state: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Index into _HISTORY_TEXT: one of the state's history strings, by its weight."""
    starts = np.cumsum([0] + [len(_HISTORIES[s]) for s in STATES])
    choice = np.zeros(len(state), dtype=np.int64)
    u = rng.random(len(state))
    for k, name in enumerate(STATES):
        cumulative = np.cumsum([w for _, w in _HISTORIES[name]])
        rows = state == k
        choice[rows] = starts[k] + np.minimum(
            np.searchsorted(cumulative, u[rows]), len(cumulative) - 1
        )
    return choice
