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
from homecall.store.schema import schema_of

__all__ = ["DEFAULT_STORE", "Import", "SourceRecord", "Store", "content_hash"]

log = logging.getLogger(__name__)

DEFAULT_STORE = Path("homecall-store")
MANIFEST_VERSION = 1
_US_PER_DAY = 86_400_000_000
ZSTD_LEVEL = 3  # measured: level 3 writes ~3x faster than 9 for a few % larger files


def content_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, the identity of a source in the manifest."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


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
        first_day = None if start_us is None else start_us // _US_PER_DAY
        last_day = None if end_us is None else end_us // _US_PER_DAY
        out = []
        for entry in self.manifest()["files"]:
            if entry["table"] != table:
                continue
            day = entry["day_index"]
            if (first_day is not None and day < first_day) or (
                last_day is not None and day > last_day
            ):
                continue
            out.append(self.root / entry["path"])
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
        """Remove what a killed import left: staging folders and files the manifest does not list."""
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


@dataclass(slots=True)
class _Writer:
    path: Path
    writer: pq.ParquetWriter
    rows: int = 0


@dataclass(slots=True)
class Import:
    """One import job: sources are written to staging, then committed together."""

    store: Store
    staging: Path
    known: dict[str, Any] = field(init=False)
    files: list[dict[str, Any]] = field(init=False)
    _added: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        manifest = self.store.manifest()
        self.known = manifest["sources"]
        self.files = list(manifest["files"])

    def has(self, sha256: str) -> bool:
        """True when a source with these bytes is already stored or staged."""
        return sha256 in self.known or sha256 in self._added

    def add(
        self,
        path: Path,
        sha256: str,
        fmt: str,
        batches: Iterable[tuple[str, pa.RecordBatch]],
        bad_records: Callable[[], int] = lambda: 0,
    ) -> dict[str, int]:
        """Stage one source's batches; returns rows per table. `bad_records` is asked after reading."""
        writers: dict[tuple[str, int], _Writer] = {}
        rows: dict[str, int] = {}
        first: int | None = None
        last: int | None = None
        stem = sha256[:16]
        try:
            for table, batch in batches:
                if batch.num_rows == 0:
                    continue
                ts = batch.column("ts")
                bounds = pc.min_max(ts.cast(pa.int64()))
                lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
                if lo is not None:
                    first = lo if first is None else min(first, lo)
                    last = hi if last is None else max(last, hi)
                for day, part in _split_by_day(batch, lo, hi):
                    key = (table, day)
                    if key not in writers:
                        writers[key] = self._open(table, day, stem)
                    writers[key].writer.write_batch(part)
                    writers[key].rows += part.num_rows
                rows[table] = rows.get(table, 0) + batch.num_rows
        finally:
            for w in writers.values():
                w.writer.close()
        self._added[sha256] = {
            "record": SourceRecord(
                sha256=sha256,
                path=str(path),
                format=fmt,
                imported_at=datetime.now(UTC).isoformat(),
                rows=rows,
                bad_records=bad_records(),
                first_ts_us=first,
                last_ts_us=last,
            ),
            "writers": writers,
        }
        return rows

    def forget(self, sha256: str) -> None:
        """Drop a staged source (and its staged files) from this import."""
        added = self._added.pop(sha256, None)
        for w in (added or {}).get("writers", {}).values():
            w.path.unlink(missing_ok=True)

    def _open(self, table: str, day: int | None, stem: str) -> _Writer:
        label = _day_label(day)
        folder = self.staging / "tables" / table / f"day={label}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}-{uuid.uuid4().hex[:8]}.parquet"
        writer = pq.ParquetWriter(
            path, schema_of(table), compression="zstd", compression_level=ZSTD_LEVEL
        )
        return _Writer(path, writer)

    def commit(self) -> None:
        """Move staged files into the store, then publish them with one manifest replace."""
        if not self._added:
            return
        sources = dict(self.known)
        for sha256, added in self._added.items():
            record: SourceRecord = added["record"]
            sources[sha256] = dataclasses.asdict(record)
            for (table, day), w in added["writers"].items():
                relative = w.path.relative_to(self.staging)
                target = self.store.root / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(w.path, target)
                self.files.append(
                    {
                        "table": table,
                        "day": _day_label(day),
                        "day_index": day if day is not None else -1,
                        "path": relative.as_posix(),
                        "rows": w.rows,
                        "source": sha256,
                    }
                )
        manifest = {"version": MANIFEST_VERSION, "sources": sources, "files": self.files}
        self.store.write_json_atomic("manifest.json", json.dumps(manifest, indent=1))


def _day_label(day: int | None) -> str:
    if day is None:
        return "unknown"
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")


def _split_by_day(
    batch: pa.RecordBatch, lo: int | None, hi: int | None
) -> Iterator[tuple[int | None, pa.RecordBatch]]:
    if lo is None or hi is None:
        yield None, batch
        return
    if lo // _US_PER_DAY == hi // _US_PER_DAY and batch.column("ts").null_count == 0:
        yield lo // _US_PER_DAY, batch
        return
    days = pc.floor(
        pc.divide(batch.column("ts").cast(pa.int64()).cast(pa.float64()), float(_US_PER_DAY))
    )
    days = days.cast(pa.int64())
    for day in pc.unique(days).to_pylist():
        mask = pc.is_null(days) if day is None else pc.equal(days, day)
        yield day, batch.filter(pc.fill_null(mask, False))
