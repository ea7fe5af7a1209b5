"""The packets behind a finding: query the `packets` table, copy the records out of the captures.

`search` runs one DuckDB query straight over the packets Parquet files (days pruned from the
time bounds, the rest left to filter pushdown), ordered by capture and byte offset, then opens
each capture once and copies the selected records by seek and read (docs/pcap-search.md).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from homecall.errors import InputError, StoreError
from homecall.findings import Finding
from homecall.pcap_records import (
    Capture,
    CaptureFormat,
    LinkTypeError,
    PcapngWriter,
    PcapWriter,
    Writer,
    capture_format,
    open_capture,
)
from homecall.store import Store, quick_fingerprint

__all__ = [
    "FlowScope",
    "PacketQuery",
    "SearchResult",
    "Selected",
    "capture_format",
    "parse_time",
    "pick_finding",
    "search",
    "select",
]

log = logging.getLogger(__name__)

# Progress(phase, done, total), the signature of homecall.pipeline.Progress.
Progress = Callable[[str, float, float | None], None]
OUT_BUFFER_BYTES = 1 << 20
PROGRESS_EVERY = 10_000  # records between progress calls: often enough to move, rarely enough
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_SECONDS = re.compile(r"\d+(\.\d+)?")


def _no_progress(phase: str, done: float, total: float | None) -> None:
    del phase, done, total


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowScope:
    """The flows behind a finding: its `uids`, and every flow between `src` and `dst` (when dst
    is an IP address) with a packet in [start_us, end_us]. All packets of those flows are kept."""

    src: str
    dst: str | None
    start_us: int
    end_us: int
    uids: tuple[str, ...] = ()

    @classmethod
    def of(cls, finding: Finding) -> FlowScope:
        """The flows of `finding`; InputError when it names neither uids nor an IP destination."""
        uids = finding.evidence.get("uids") or []
        dst = _ip_or_none(finding.dst)
        if not uids and dst is None:
            raise InputError(
                f"the {finding.detector} finding about {finding.src} -> {finding.dst or '-'} has"
                " no uids and no IP destination; search with --host, --port, --start and --end"
            )
        return cls(
            src=_ip_or_none(finding.src) or finding.src,
            dst=dst,
            start_us=_us(finding.first_seen),
            end_us=_us(finding.last_seen),
            uids=tuple(str(u) for u in uids),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketQuery:
    """Which packets: every kind of condition given must hold; several values of one kind are
    alternatives. A host or port matches either end; times are UTC microseconds, inclusive."""

    hosts: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    start_us: int | None = None
    end_us: int | None = None
    uids: tuple[str, ...] = ()
    flows: FlowScope | None = None

    def __post_init__(self) -> None:
        for host in self.hosts:
            ipaddress.ip_address(host)  # ValueError for a name or a typo
        for port in self.ports:
            if not 0 <= port <= 65535:
                raise ValueError(f"port {port} is not in 0..65535")
        if self.start_us is not None and self.end_us is not None and self.start_us > self.end_us:
            raise ValueError("the start is after the end")

    @property
    def is_empty(self) -> bool:
        """True when no condition is given (it would select every packet of the store)."""
        return not (
            self.hosts
            or self.ports
            or self.uids
            or self.flows
            or self.start_us is not None
            or self.end_us is not None
        )


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What `search` wrote: packets per capture (in the order written), and in which format."""

    out: Path
    packets: dict[Path, int]
    format: CaptureFormat
    is_nanosecond: bool

    @property
    def total(self) -> int:
        """Packets written in all."""
        return sum(self.packets.values())


@dataclass(frozen=True, slots=True)
class Selected:
    """The rows a query selected, by capture (earliest first) and offset within each."""

    captures: list[tuple[Path, pa.Table]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Packets selected in all."""
        return sum(t.num_rows for _, t in self.captures)


def parse_time(text: str) -> int:
    """UTC microseconds of an ISO-8601 time (without a zone: UTC) or of epoch seconds."""
    text = text.strip()
    if _EPOCH_SECONDS.fullmatch(text):
        try:
            return int(Decimal(text) * 1_000_000)
        except InvalidOperation as exc:  # pragma: no cover - the pattern admits only numbers
            raise ValueError(f"not a time: {text!r}") from exc
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (ISO 8601 such as 2024-12-18T19:02:00Z, or epoch seconds)"
        ) from None
    return _us(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def pick_finding(findings: Sequence[Finding], ident: str) -> Finding:
    """The finding `ident` names: its rank as `homecall findings` prints it (1 = first), or its
    key DETECTOR/SRC[/DST[/PORT]] (`-` for a missing dst); InputError when none or several."""
    if ident.isdigit():
        number = int(ident)
        if not 1 <= number <= len(findings):
            raise InputError(f"no finding #{number}: the last hunt has {len(findings)}")
        return findings[number - 1]
    wanted = ident.split("/")
    if len(wanted) < 2 or len(wanted) > 4:
        raise InputError(
            f"{ident!r}: a finding is named by its number or DETECTOR/SRC[/DST[/PORT]]"
        )
    matches = [
        (rank, f)
        for rank, f in enumerate(findings, start=1)
        if [_text(v) for v in f.key[: len(wanted)]] == wanted
    ]
    if len(matches) == 1:
        return matches[0][1]
    if not matches:
        raise InputError(f"no finding of the last hunt matches {ident!r}")
    listed = "; ".join(f"#{rank} {_describe(f)}" for rank, f in matches[:5])
    raise InputError(f"{len(matches)} findings match {ident!r} ({listed}); name one by its number")


def select(store: Store, query: PacketQuery) -> Selected:
    """The packets rows `query` selects, by capture (as indexed) and byte offset."""
    if query.is_empty:
        raise ValueError("an empty query selects every packet; give at least one condition")
    if not store.exists() or not store.files("packets"):
        raise StoreError(f"{store.root}: no packets indexed here; run `homecall pcap index` first")
    files = _files(store, query.start_us, query.end_us)
    if not files:
        return Selected()
    where = _conditions(store, query)
    sql = (
        "SELECT source_file, pcap_offset, caplen, epoch_us(ts) AS ts_us"
        f" FROM {_scan(files)} WHERE {where} AND pcap_offset IS NOT NULL AND caplen IS NOT NULL"
        " ORDER BY source_file, pcap_offset"
    )
    log.debug("packets query: %s", sql)
    con = _connect()
    try:
        table = con.execute(sql).to_arrow_table()
    finally:
        con.close()
    return Selected(_split_by_capture(table))


def search(
    store: Store,
    query: PacketQuery,
    out: Path,
    *,
    capture_dir: Path | None = None,
    progress: Progress = _no_progress,
) -> SearchResult | None:
    """Write the packets `query` selects to `out` (classic pcap, or pcapng when their link types
    differ); None, and nothing written, when no packet matches."""
    selected = select(store, query)
    if not selected.total:
        return None
    known = {record.quick for record in store.sources().values()}
    captures = [(_locate(Path(name), capture_dir, known), rows) for name, rows in selected.captures]
    opened = [(open_capture(path), rows) for path, rows in captures]
    try:
        return _write(out, opened, selected.total, progress)
    finally:
        for capture, _ in opened:
            capture.close()


def _write(
    out: Path, opened: list[tuple[Capture, pa.Table]], total: int, progress: Progress
) -> SearchResult:
    """Copy the records to a temporary file beside `out`, renamed to `out` once complete."""
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            result = _copy(tmp, opened, total, progress)
        except LinkTypeError:  # a pcapng section met late had another link type: now known
            result = _copy(tmp, opened, total, progress)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return replace(result, out=out)


def _copy(
    tmp: Path, opened: list[tuple[Capture, pa.Table]], total: int, progress: Progress
) -> SearchResult:
    link_types = sorted(set().union(*(capture.link_types for capture, _ in opened)))
    is_nanosecond = any(capture.is_nanosecond for capture, _ in opened)
    largest = max(pc.max(rows.column("caplen")).as_py() for _, rows in opened)
    snaplen = max(largest, *(capture.snaplen for capture, _ in opened))
    fmt: CaptureFormat = "pcap" if len(link_types) == 1 else "pcapng"
    written: dict[Path, int] = {}
    done = 0
    progress("copy packets", 0.0, float(total))
    with tmp.open("wb", buffering=OUT_BUFFER_BYTES) as stream:
        writer: Writer = (
            PcapWriter(stream, link_types[0], snaplen, nanosecond=is_nanosecond)
            if fmt == "pcap"
            else PcapngWriter(stream, link_types, snaplen, nanosecond=is_nanosecond)
        )
        for capture, rows in opened:
            for record in capture.records(rows):
                writer.write(record)
                done += 1
                if done % PROGRESS_EVERY == 0:
                    progress("copy packets", float(done), float(total))
            written[capture.path] = written.get(capture.path, 0) + rows.num_rows
    progress("copy packets", float(total), float(total))
    return SearchResult(tmp, written, fmt, is_nanosecond)


def _locate(indexed: Path, capture_dir: Path | None, known: set[str]) -> Path:
    """Where the capture indexed as `indexed` is now (in `capture_dir` when given, else where
    it was indexed); InputError when it is in neither place or its content changed."""
    places = [indexed] if capture_dir is None else [capture_dir / indexed.name, indexed]
    path = next((p for p in places if p.is_file()), None)
    if path is None:
        hint = (
            f"it is not in {capture_dir} either"
            if capture_dir is not None
            else "if it moved, pass --capture-dir DIR (the folder it is in now)"
        )
        raise InputError(f"{indexed}: indexed capture not found; {hint}")
    if quick_fingerprint(path) not in known:
        raise InputError(
            f"{path}: not the capture that was indexed (its content changed since);"
            " index it again into a new store"
        )
    return path


def _files(store: Store, start_us: int | None, end_us: int | None) -> list[Path]:
    return store.files("packets", start_us=start_us, end_us=end_us)


def _scan(files: Sequence[Path]) -> str:
    listed = ", ".join(_lit(str(f)) for f in files)
    return f"read_parquet([{listed}], hive_partitioning = false)"


def _conditions(store: Store, query: PacketQuery) -> str:
    """The WHERE clause. Values are inlined as literals, not bound: a prepared statement costs
    DuckDB's Python client a second on its first use (measured), and literals let the scan
    prune row groups. Hosts are checked addresses, ports and times integers, uids quoted."""
    parts: list[str] = []
    if query.hosts:
        hosts = _list(str(ipaddress.ip_address(h)) for h in query.hosts)
        parts.append(f"(orig_ip IN ({hosts}) OR resp_ip IN ({hosts}))")
    if query.ports:
        ports = ", ".join(str(int(p)) for p in query.ports)
        parts.append(f"(orig_port IN ({ports}) OR resp_port IN ({ports}))")
    if query.start_us is not None:
        parts.append(f"ts >= {_time(query.start_us)}")
    if query.end_us is not None:
        parts.append(f"ts <= {_time(query.end_us)}")
    if query.uids:
        parts.append(f"uid IN ({_list(query.uids)})")
    if query.flows is not None:
        parts.append(_flows(store, query.flows))
    return " AND ".join(parts)


def _flows(store: Store, scope: FlowScope) -> str:
    """uid IN the finding's uids, or IN the uids of the pair's flows active in its span."""
    alternatives = []
    if scope.uids:
        alternatives.append(f"uid IN ({_list(scope.uids)})")
    files = _files(store, scope.start_us, scope.end_us)
    if scope.dst is not None and files:
        src, dst = _lit(scope.src), _lit(scope.dst)
        pair = f"(orig_ip = {src} AND resp_ip = {dst}) OR (orig_ip = {dst} AND resp_ip = {src})"
        alternatives.append(
            f"uid IN (SELECT DISTINCT uid FROM {_scan(files)} WHERE ({pair})"
            f" AND ts BETWEEN {_time(scope.start_us)} AND {_time(scope.end_us)})"
        )
    return "(" + (" OR ".join(alternatives) or "false") + ")"


def _split_by_capture(table: pa.Table) -> list[tuple[Path, pa.Table]]:
    """Runs of one source_file in a table sorted by it, the capture whose first selected packet
    is earliest first (rotated captures come out in time order)."""
    if not table.num_rows:
        return []
    names = table.column("source_file").to_pylist()
    stamps = table.column("ts_us")
    runs = []
    start = 0
    for i in range(1, len(names) + 1):
        if i == len(names) or names[i] != names[start]:
            first = pc.min(stamps.slice(start, i - start)).as_py()
            runs.append((first, names[start], table.slice(start, i - start)))
            start = i
    return [(Path(name), rows) for _, name, rows in sorted(runs, key=lambda r: r[:2])]


def _list(values: Iterable[str]) -> str:
    return ", ".join(_lit(v) for v in values)


def _time(us: int) -> str:
    return f"make_timestamptz({int(us)})"


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def _ip_or_none(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _describe(f: Finding) -> str:
    port = f":{f.dst_port}" if f.dst_port is not None else ""
    return f"{f.detector} {f.src} -> {f.dst or '-'}{port}"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
