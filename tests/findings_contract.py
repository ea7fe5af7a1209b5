"""Checks a JSON finding against the field table in docs/findings.md (the documented contract)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "findings.md"
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "string or null": (str, type(None)),
    "int or null": (int, type(None)),
    "float": (float, int),
    "severity": (str,),
    "timestamp": (str,),
    "object": (dict,),
}


def documented_fields() -> dict[str, str]:
    """Rows `| name | type | ... |` of the "Fields" table in docs/findings.md."""
    fields: dict[str, str] = {}
    in_table = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## Fields"):
            in_table = True
            continue
        if in_table and line.startswith("## "):
            break
        match = re.match(r"^\|\s*`(\w+)`\s*\|\s*([^|]+?)\s*\|", line)
        if in_table and match:
            fields[match.group(1)] = match.group(2)
    return fields


def check_record(record: dict[str, Any]) -> None:
    """Raise AssertionError when `record` breaks the documented contract."""
    fields = documented_fields()
    assert set(record) == set(fields), set(record) ^ set(fields)
    for name, kind in fields.items():
        assert isinstance(record[name], _TYPES[kind]), (name, kind, record[name])
    assert 0.0 <= record["score"] <= 1.0
    assert record["severity"] in {"info", "low", "medium", "high", "critical"}
    first = datetime.fromisoformat(record["first_seen"])
    last = datetime.fromisoformat(record["last_seen"])
    assert record["first_seen"].endswith("Z")
    assert first <= last
    assert isinstance(record["evidence"].get("uids", []), list)
    assert len(record["evidence"].get("uids", [])) <= 20
