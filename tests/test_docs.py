"""The documentation states what the code does: schema and findings tables are checked here."""

from __future__ import annotations

import re
from pathlib import Path

from homecall.store.schema import SCHEMAS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_schema_doc_lists_every_column_with_its_type() -> None:
    text = (DOCS / "schema.md").read_text(encoding="utf-8")
    for table, schema in SCHEMAS.items():
        section = text.split(f"### `{table}`", 1)[1].split("### ", 1)[0]
        documented = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", section, re.M))
        assert documented == {f.name: str(f.type) for f in schema}, table
