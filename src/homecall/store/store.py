"""The store: Parquet (zstd) files partitioned by table and day, listed by one manifest.

Layout::

    STORE/manifest.json                          the only source of truth: what is imported
    STORE/tables/<table>/day=YYYY-MM-DD/*.parquet
    STORE/findings.jsonl                         the last hunt's findings
    STORE/.staging/<import-id>/                  an import in progress
    STORE/.lock                                  held by the importing process

An import writes beside the store, moves its files in, then replaces the manifest in one
`os.replace`: readers list files from the manifest only, so a killed import leaves the store as
it was, and its leftovers are swept by the next import. Sources are keyed by the SHA-256 of their
bytes, so importing the same file twice adds nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from homecall.errors import StoreError
from homecall.store.schema import Query, schema_of

__all__ = [
    "DEFAULT_STORE",
    "WHOLE_STORE",
    "Import",
    "SourceRecord",
    "Store",
    "Window",
    "content_hash",
]

log = logging.getLogger(__name__)

DEFAULT_STORE = Path("homecall-store")
MANIFEST_VERSION = 1
_US_PER_DAY = 86_400_000_000
QUICK_BYTES = 1 << 20
ZSTD_LEVEL = 3  # measured: level 3 writes ~3x faster than 9 for a few % larger files


@dataclass(frozen=True, slots=True)
class Window:
    """The analysed time range, UTC microseconds, both ends inclusive; None = unbounded."""

    start_us: int | None = None
    end_us: int | None = None


WHOLE_STORE = Window()


def content_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, the identity of a source in the manifest."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def quick_fingerprint(path: Path) -> str:
    """SHA-256 of the size, first and last MiB: equal for equal files, so a file whose
    fingerprint no stored source shares is new, and its full hash can run beside its parsing."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as stream:
        digest.update(stream.read(QUICK_BYTES))
        if size > 2 * QUICK_BYTES:
            stream.seek(size - QUICK_BYTES)
            digest.update(stream.read(QUICK_BYTES))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One imported source file as the manifest remembers it."""

    sha256: str
    path: str
    format: str
    imported_at: str
    rows: dict[str, int]
    bad_records: int
    first_ts_us: int | None
    last_ts_us: int | None
    quick: str = ""  # quick_fingerprint of the file


@dataclass(slots=True)
class Store:
    """A store directory; cheap to construct, reads the manifest on demand."""

    root: Path

    @property
    def manifest_path(self) -> Path:
        """Where the manifest lives."""
        return self.root / "manifest.json"

    def exists(self) -> bool:
        """True once something has been imported."""
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        """The manifest as stored, or an empty one."""
        if not self.exists():
            return {"version": MANIFEST_VERSION, "sources": {}, "files": []}
        try:
            data: dict[str, Any] = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.manifest_path}: unreadable manifest: {exc}") from exc
        if data.get("version") != MANIFEST_VERSION:
            raise StoreError(
                f"{self.manifest_path}: unsupported manifest version {data.get('version')}"
            )
        return data

    def sources(self) -> dict[str, SourceRecord]:
        """Imported sources by content hash."""
        return {h: SourceRecord(**rec) for h, rec in self.manifest()["sources"].items()}

    def files(
        self, table: str, *, start_us: int | None = None, end_us: int | None = None
    ) -> list[Path]:
        """Parquet files of `table` whose day overlaps [start_us, end_us] (UTC microseconds)."""
        return self.files_by_table(start_us=start_us, end_us=end_us).get(table, [])

    def files_by_table(
        self, *, start_us: int | None = None, end_us: int | None = None
    ) -> dict[str, list[Path]]:
        """Every table's Parquet files overlapping the window, from one read of the manifest."""
        first_day = None if start_us is None else start_us // _US_PER_DAY
        last_day = None if end_us is None else end_us // _US_PER_DAY
        out: dict[str, list[Path]] = {}
        for entry in self.manifest()["files"]:
            day = entry["day_index"]
            if first_day is not None and day < first_day:
                continue
            if last_day is not None and day > last_day:
                continue
            out.setdefault(entry["table"], []).append(self.root / entry["path"])
        return out

    def row_counts(self) -> dict[str, int]:
        """Stored rows per table."""
        counts: dict[str, int] = {}
        for entry in self.manifest()["files"]:
            counts[entry["table"]] = counts.get(entry["table"], 0) + entry["rows"]
        return counts

    @contextlib.contextmanager
    def importing(self) -> Iterator[Import]:
        """Lock the store and open an import; it commits on a clean exit, else leaves no trace."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = (self.root / ".lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lock.close()
            raise StoreError(f"{self.root}: another import holds the store lock") from exc
        try:
            self._sweep()
            job = Import(self, self.root / ".staging" / uuid.uuid4().hex)
            try:
                yield job
                job.commit()
            finally:
                shutil.rmtree(job.staging, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def write_json_atomic(self, name: str, text: str) -> Path:
        """Write `text` to STORE/name through a temporary file and one rename."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / name
        tmp = target.with_name(f".{name}.{uuid.uuid4().hex}.tmp")
        with tmp.open("w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        tmp.replace(target)
        return target

    def _sweep(self) -> None:
        """Remove what a killed import left: staging, and files the manifest does not list."""
        shutil.rmtree(self.root / ".staging", ignore_errors=True)
        listed = {entry["path"] for entry in self.manifest()["files"]}
        tables = self.root / "tables"
        if tables.is_dir():
            for file in tables.rglob("*.parquet"):
                if file.relative_to(self.root).as_posix() not in listed:
                    log.info("removing %s, left by an interrupted import", file)
                    file.unlink()
        for tmp in self.root.glob(".*.tmp"):
            tmp.unlink()


@dataclass(frozen=True, slots=True)
class _File:
    table: str
    day: int
    path: Path
    rows: int
    first_us: int | None
    last_us: int | None


@dataclass(slots=True)
class _Staged:
    """The Parquet files of one source being staged: Arrow batches or DuckDB queries."""

    root: Path
    stem: str
    writers: dict[tuple[str, int], pq.ParquetWriter] = field(default_factory=dict)
    written: list[tuple[str, Path]] = field(default_factory=list)

    def batch(self, table: str, batch: pa.RecordBatch) -> None:
        for day, part in _split_by_day(batch):
            key = (table, day)
            if key not in self.writers:
                folder = self.root / table / f"day={_day_label(day)}"
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{self.stem}-{uuid.uuid4().hex[:8]}.parquet"
                self.writers[key] = pq.ParquetWriter(
                    path, schema_of(table), compression="zstd", compression_level=ZSTD_LEVEL
                )
                self.written.append((table, path))
            self.writers[key].write_batch(part)

    def query(self, table: str, query: Query, sensor: str | None) -> None:
        folder = self.root / table
        names = schema_of(table).names
        columns = ", ".join(
            f"{_lit(sensor)} AS sensor" if n == "sensor" and sensor is not None else _ident(n)
            for n in names
        )
        pattern = f"{self.stem}-{uuid.uuid4().hex[:8]}-{{i}}"
        folder.mkdir(parents=True, exist_ok=True)
        before = set(folder.rglob("*.parquet"))
        query.connection.execute(
            f"COPY (SELECT {columns}, CAST(make_timestamp(epoch_us(ts)) AS DATE) AS day"
            f" FROM ({query.sql}) WHERE ts IS NOT NULL)"
            f" TO {_lit(str(folder))} (FORMAT parquet, PARQUET_VERSION V2, COMPRESSION zstd,"
            f" COMPRESSION_LEVEL {ZSTD_LEVEL}, PARTITION_BY (day),"
            f" FILENAME_PATTERN {_lit(pattern)},"
            " OVERWRITE_OR_IGNORE true)"
        )
        self.written.extend((table, p) for p in sorted(set(folder.rglob("*.parquet")) - before))

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()

    def files(self) -> list[_File]:
        """What was written, with rows and time bounds from the Parquet footers."""
        out = []
        for table, path in self.written:
            meta = pq.ParquetFile(path).metadata
            if meta.num_rows == 0:
                path.unlink()
                continue
            first, last = _ts_bounds(meta)
            day = _day_index(path.parent.name.removeprefix("day="))
            out.append(_File(table, day, path, meta.num_rows, first, last))
        return out


@dataclass(slots=True)
class Import:
    """One import job: sources are written to staging, then committed together."""

    store: Store
    staging: Path
    known: dict[str, Any] = field(init=False)
    files: list[dict[str, Any]] = field(init=False)
    _quick: set[str | None] = field(init=False)
    _added: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        manifest = self.store.manifest()
        self.known = manifest["sources"]
        self.files = list(manifest["files"])
        self._quick = {rec.get("quick") for rec in self.known.values()}

    def might_have(self, quick: str) -> bool:
        """False when no stored or staged source has this quick fingerprint (the file is new)."""
        return quick in self._quick

    def has(self, sha256: str) -> bool:
        """True when a source with these bytes is already stored or staged."""
        return sha256 in self.known or sha256 in self._added

    def add(
        self,
        path: Path,
        sha256: Callable[[], str],
        fmt: str,
        parts: Iterable[tuple[str, pa.RecordBatch | Query]],
        *,
        quick: str = "",
        sensor: str | None = None,
        bad_records: Callable[[], int] = lambda: 0,
    ) -> tuple[str, dict[str, int]]:
        """Stage one source's batches or queries; returns its SHA-256 and rows per table.

        `sha256` and `bad_records` are asked after reading (the hash may be computed meanwhile);
        `sensor`, when given, overrides the sensor column.
        """
        staged = _Staged(self.staging / "tables", uuid.uuid4().hex[:16])
        try:
            for table, part in parts:
                if isinstance(part, Query):
                    staged.query(table, part, sensor)
                elif part.num_rows:
                    staged.batch(table, _set_sensor(part, sensor))
        finally:
            staged.close()
        files = staged.files()
        rows: dict[str, int] = {}
        for f in files:
            rows[f.table] = rows.get(f.table, 0) + f.rows
        firsts = [f.first_us for f in files if f.first_us is not None]
        lasts = [f.last_us for f in files if f.last_us is not None]
        digest = sha256()
        self._quick.add(quick)
        self._added[digest] = {
            "record": SourceRecord(
                sha256=digest,
                path=str(path),
                format=fmt,
                imported_at=datetime.now(UTC).isoformat(),
                rows=rows,
                bad_records=bad_records(),
                first_ts_us=min(firsts) if firsts else None,
                last_ts_us=max(lasts) if lasts else None,
                quick=quick,
            ),
            "files": files,
        }
        return digest, rows

    def forget(self, sha256: str) -> None:
        """Drop a staged source (and its staged files) from this import."""
        added = self._added.pop(sha256, None)
        for f in (added or {}).get("files", []):
            f.path.unlink(missing_ok=True)

    def commit(self) -> None:
        """Move staged files into the store, then publish them with one manifest replace."""
        if not self._added:
            return
        sources = dict(self.known)
        for sha256, added in self._added.items():
            record: SourceRecord = added["record"]
            sources[sha256] = dataclasses.asdict(record)
            for f in added["files"]:
                relative = f.path.relative_to(self.staging)
                target = self.store.root / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                f.path.replace(target)
                self.files.append(
                    {
                        "table": f.table,
                        "day": _day_label(f.day),
                        "day_index": f.day,
                        "path": relative.as_posix(),
                        "rows": f.rows,
                        "source": sha256,
                    }
                )
        manifest = {"version": MANIFEST_VERSION, "sources": sources, "files": self.files}
        self.store.write_json_atomic("manifest.json", json.dumps(manifest, indent=1))


def _day_label(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")


def _day_index(label: str) -> int:
    return int(datetime.strptime(label, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()) // 86_400


def _ts_bounds(meta: pq.FileMetaData) -> tuple[int | None, int | None]:
    column = meta.schema.names.index("ts")
    lows, highs = [], []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(column).statistics
        if stats is not None and stats.has_min_max:
            lows.append(_us(stats.min))
            highs.append(_us(stats.max))
    return (min(lows) if lows else None, max(highs) if highs else None)


def _us(value: datetime | int) -> int:
    if isinstance(value, int):
        return value
    return int(value.timestamp()) * 1_000_000 + value.microsecond


def _set_sensor(batch: pa.RecordBatch, sensor: str | None) -> pa.RecordBatch:
    if sensor is None:
        return batch
    i = batch.schema.get_field_index("sensor")
    return batch.set_column(i, "sensor", pa.repeat(pa.scalar(sensor), batch.num_rows))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _split_by_day(batch: pa.RecordBatch) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Rows by UTC day; a row without a time has no day and is not stored. A batch within one
    day (the usual case) is not copied."""
    if batch.column("ts").null_count:
        batch = batch.filter(pc.is_valid(batch.column("ts")))
    days = pc.divide(batch.column("ts").cast(pa.int64()), _US_PER_DAY)  # integer division
    bounds = pc.min_max(days)
    lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    if lo == hi:
        yield lo, batch
        return
    for day in pc.unique(days).to_pylist():
        yield day, batch.filter(pc.equal(days, day))
