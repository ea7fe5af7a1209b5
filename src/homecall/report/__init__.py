"""Reports: findings rendered for people (terminal) and machines (JSON Lines)."""

from __future__ import annotations

from homecall.report.jsonl import write_jsonl
from homecall.report.terminal import findings_table, import_summary

__all__ = ["findings_table", "import_summary", "write_jsonl"]
