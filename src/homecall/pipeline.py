"""The one place that wires sources -> store -> detectors -> findings (for the CLI and web UI)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from homecall.config import Config, build_section
from homecall.errors import InputError, StoreError, UnknownFormatError
from homecall.findings import Finding, rank
from homecall.sources import DEFAULT_OPTIONS, Problems, ReadOptions, detect
from homecall.store import (
    WHOLE_STORE,
    Import,
    Store,
    Window,
    content_hash,
    quick_fingerprint,
)

if TYPE_CHECKING:
    from homecall.detectors import Detector

__all__ = [
    "FINDINGS_FILE",
    "HuntResult",
    "ImportResult",
    "Progress",
    "analyse",
    "discover",
    "hunt",
    "import_paths",
    "load_findings",
    "save_findings",
    "window_of",
]

log = logging.getLogger(__name__)

FINDINGS_FILE = "findings.jsonl"

# Progress(phase, done, total): the CLI draws it; library code only calls it.
Progress = Callable[[str, float, float | None], None]


def _no_progress(phase: str, done: float, total: float | None) -> None:
    del phase, done, total


@dataclass(slots=True)
class ImportResult:
    """What an import did, file by file."""

    imported: dict[Path, dict[str, int]] = field(default_factory=dict)
    duplicates: list[Path] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    problems: Problems = field(default_factory=Problems)
    hashes: list[str] = field(default_factory=list)  # every source named, new or already stored

    @property
    def rows(self) -> int:
        """Rows added in all."""
        return sum(sum(t.values()) for t in self.imported.values())


@dataclass(frozen=True, slots=True)
class HuntResult:
    """An import followed by an analysis."""

    imported: ImportResult
    findings: list[Finding]
    window: Window


def discover(paths: Iterable[Path]) -> list[Path]:
    """Files under `paths` in a stable order (directories walked, hidden entries skipped)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
        elif path.exists():
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or directory")
    return found


def import_paths(
    paths: Sequence[Path],
    store: Store,
    *,
    sensor: str | None = None,
    progress: Progress = _no_progress,
    options: ReadOptions = DEFAULT_OPTIONS,
) -> ImportResult:
    """Import every readable file under `paths` into `store`, atomically for the whole call.

    `sensor` names where the logs come from (kept in every row's `sensor` column); `options`
    say how to read what logs leave out (the zone of local-time syslog stamps).
    """
    files = discover(paths)
    total = float(sum(f.stat().st_size for f in files)) or 1.0
    result = ImportResult()
    done = 0.0
    progress("import", 0.0, total)
    with store.importing() as job, ThreadPoolExecutor(max_workers=1) as hasher:
        for path in files:
            _import_one(path, job, result, sensor, hasher, options)
            done += path.stat().st_size
            progress("import", done, total)
    return result


def _import_one(
    path: Path,
    job: Import,
    result: ImportResult,
    sensor: str | None,
    hasher: Executor,
    options: ReadOptions,
) -> None:
    try:
        reader = detect(path)
    except UnknownFormatError as exc:
        result.problems.skip(path, exc.reason)
        return
    except InputError as exc:
        result.errors.append(exc)
        return
    quick = quick_fingerprint(path)
    if job.might_have(quick):
        known = content_hash(path)
        if job.has(known):
            result.hashes.append(known)
            result.duplicates.append(path)
            return
        digest: Callable[[], str] = lambda: known  # noqa: E731
    else:  # new for sure: hash it beside the parsing (measured: 0.9 s of 10 on a 1.4 GB log)
        digest = hasher.submit(content_hash, path).result
    before = result.problems.for_file(path)
    try:
        sha256, rows = job.add(
            path,
            digest,
            reader.format,
            reader.read(path, result.problems, options),
            quick=quick,
            sensor=sensor,
            bad_records=lambda: result.problems.for_file(path) - before,
        )
    except InputError as exc:  # the source's staged files are never committed
        result.errors.append(exc)
        return
    result.hashes.append(sha256)
    if rows:
        result.imported[path] = rows
    elif any(p.path == path for p in result.problems.skipped):
        job.forget(sha256)  # a log type we do not import: not remembered, so not "already stored"


def window_of(store: Store, hashes: Iterable[str]) -> Window:
    """The time span covered by the given sources (the whole store when none are given)."""
    sources = store.sources()
    chosen = [sources[h] for h in hashes if h in sources] or list(sources.values())
    starts = [s.first_ts_us for s in chosen if s.first_ts_us is not None]
    ends = [s.last_ts_us for s in chosen if s.last_ts_us is not None]
    return Window(min(starts) if starts else None, max(ends) if ends else None)


def analyse(
    store: Store,
    config: Config,
    *,
    detectors: Sequence[str] | None = None,
    window: Window = WHOLE_STORE,
    engine: str = "duckdb",
    progress: Progress = _no_progress,
) -> list[Finding]:
    """Run the detectors over the store's tables in `window`; findings ranked, best first."""
    # Imported here, not at the top: Ibis and the detectors cost a third of a second at start-up,
    # which `homecall import` does not need.
    from homecall.detectors import by_name
    from homecall.store.tables import connect, open_tables

    if not store.exists():
        raise StoreError(f"{store.root}: no store here; run `homecall import` first")
    chosen = by_name(list(detectors) if detectors is not None else None)
    backend = connect(engine)
    tables = open_tables(store, config.internal, backend, window)
    findings: list[Finding] = []
    for done, detector in enumerate(chosen):
        progress(f"detect {detector.name}", float(done), float(len(chosen)))
        settings = _settings(detector, config)
        findings.extend(detector.run(tables, settings))
    progress("detect", float(len(chosen)), float(len(chosen)))
    return rank(findings)


def _settings(detector: Detector, config: Config) -> object:
    section = config.detectors.get(detector.name, {})
    return build_section(
        detector.config, section, where=f"detectors.{detector.name}", path=config.path
    )


def save_findings(store: Store, findings: Sequence[Finding]) -> Path:
    """Replace the store's findings file (JSON Lines) atomically."""
    return store.write_json_atomic(FINDINGS_FILE, "".join(f.to_json() + "\n" for f in findings))


def load_findings(store: Store) -> list[Finding]:
    """The findings of the last hunt, ranked."""
    path = store.root / FINDINGS_FILE
    if not path.is_file():
        raise StoreError(f"{store.root}: no findings yet; run `homecall hunt` first")
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found.append(Finding.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{path}:{number}: damaged finding ({exc})") from exc
    return rank(found)


def hunt(
    paths: Sequence[Path],
    store: Store,
    config: Config,
    *,
    detectors: Sequence[str] | None = None,
    engine: str = "duckdb",
    sensor: str | None = None,
    progress: Progress = _no_progress,
) -> HuntResult:
    """Import what is under `paths`, analyse the span they cover, save and return the findings."""
    imported = import_paths(
        paths, store, sensor=sensor, progress=progress, options=config.read_options
    )
    if not store.exists():
        raise InputError("nothing importable under " + ", ".join(str(p) for p in paths))
    window = window_of(store, imported.hashes)
    findings = analyse(
        store, config, detectors=detectors, window=window, engine=engine, progress=progress
    )
    save_findings(store, findings)
    return HuntResult(imported, findings, window)
