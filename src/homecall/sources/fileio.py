"""Opening input files the same way for every reader: gzip recognised by its magic bytes."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

from homecall.errors import MalformedInputError
from homecall.sources.problems import Problems

__all__ = ["SNIFF_BYTES", "head_of", "is_gzip", "open_text", "parsed_lines"]

R = TypeVar("R")

SNIFF_BYTES = 65536  # enough for any header we sniff, small enough to read for every file


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes, whatever its name."""
    with path.open("rb") as raw:
        return raw.read(2) == b"\x1f\x8b"


def head_of(path: Path, size: int = SNIFF_BYTES) -> bytes:
    """The first `size` bytes of a file, decompressed when it is gzip."""
    try:
        if is_gzip(path):
            with gzip.open(path, "rb") as stream:
                return bytes(stream.read(size))
        with path.open("rb") as raw:
            return raw.read(size)
    except (OSError, EOFError) as exc:
        raise MalformedInputError(path, None, f"cannot read: {exc}") from exc


def open_text(path: Path) -> IO[str]:
    """A text stream over the file, decompressing gzip; undecodable bytes are replaced."""
    if is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


def parsed_lines(
    path: Path, problems: Problems, parse: Callable[[str], R | None], batch_rows: int
) -> Iterator[list[R]]:
    """Rows of a log of one record per line, `batch_rows` at a time: `parse` gives a line's row,
    None for a line of another kind, or ValueError for a bad one, which goes to `problems`
    with its line number while reading goes on. Blank lines are skipped."""
    rows: list[R] = []
    with open_text(path) as stream:
        for number, raw in enumerate(stream, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                row = parse(line)
            except ValueError as exc:
                problems.add(path, number, str(exc))
                continue
            if row is not None:
                rows.append(row)
                if len(rows) >= batch_rows:
                    yield rows
                    rows = []
    if rows:
        yield rows
