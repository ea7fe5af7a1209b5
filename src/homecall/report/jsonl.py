"""Findings as JSON Lines, one finding per line (docs/findings.md)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from homecall.findings import Finding

__all__ = ["write_jsonl"]


def write_jsonl(findings: Iterable[Finding], path: Path) -> int:
    """Write findings to `path` ("-" is not special here); returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as stream:
        for finding in findings:
            stream.write(finding.to_json() + "\n")
            count += 1
    tmp.replace(path)
    return count
