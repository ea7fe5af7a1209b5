"""Bad records and skipped files found while reading; counted, never raised."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Problem", "Problems"]

KEEP_FIRST = 20  # per file: enough to show the user what is wrong without flooding the report


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad record (line is 1-based, None when the reader cannot tell) or one skipped file."""

    path: Path
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.reason}"


@dataclass(slots=True)
class Problems:
    """Bad records per file (the first few kept, all counted) and skipped files."""

    records: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    counts: Counter[Path] = field(default_factory=Counter)

    def add(self, path: Path, line: int | None, reason: str) -> None:
        """Record a bad record; reading goes on."""
        self.counts[path] += 1
        if self.counts[path] <= KEEP_FIRST:
            self.records.append(Problem(path, line, reason))

    def skip(self, path: Path, reason: str) -> None:
        """Record a file that was deliberately not imported (for example a Zeek weird.log)."""
        self.skipped.append(Problem(path, None, reason))

    @property
    def bad_records(self) -> int:
        """How many bad records in all."""
        return sum(self.counts.values())

    def for_file(self, path: Path) -> int:
        """How many bad records in `path`."""
        return self.counts[path]
