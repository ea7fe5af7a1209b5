"""What the readers that parse with DuckDB share: a private connection, the compression and
quoting of read_* arguments, and the error path that finds the lines DuckDB skipped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb

from homecall.sources.fileio import is_gzip, open_text
from homecall.sources.problems import Problems

__all__ = ["compression", "connect", "lit", "locate_bad_json"]


def connect() -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB: UTC, and no progress bar of its own on the terminal."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def compression(path: Path) -> str:
    """The `compression` argument of DuckDB's readers for `path`, from its content."""
    return "gzip" if is_gzip(path) else "uncompressed"


def lit(text: str) -> str:
    """`text` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def locate_bad_json(
    path: Path,
    problems: Problems,
    expected: int,
    unusable: Callable[[object], str | None],
    leftover: str,
) -> None:
    """Error path only: report the line numbers of the `expected` records DuckDB could not use.

    A line that is not JSON, or whose record `unusable` names a reason for, is reported with its
    number; records that parse here but not in DuckDB (an unparseable time) are reported as
    `leftover`, without a line number.
    """
    found = 0
    with open_text(path) as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.add(path, number, f"not valid JSON ({exc.msg})")
                found += 1
                continue
            reason = unusable(record)
            if reason is not None:
                problems.add(path, number, reason)
                found += 1
    for _ in range(expected - found):
        problems.add(path, None, leftover)
