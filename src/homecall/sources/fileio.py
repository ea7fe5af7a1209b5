"""Opening input files the same way for every reader: gzip recognised by its magic bytes."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO

from homecall.errors import MalformedInputError

__all__ = ["SNIFF_BYTES", "head_of", "is_gzip", "open_text"]

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
