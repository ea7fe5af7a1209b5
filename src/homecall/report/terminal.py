"""Findings and import results as Rich renderables; log-derived strings are escaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from homecall.findings import Finding

__all__ = ["findings_table", "import_summary"]

WIDE = 140  # columns needed to give the summary its own column

SEVERITY_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


def findings_table(
    findings: Sequence[Finding], *, top: int | None = None, title: str = "", width: int = 120
) -> Table:
    """A ranked table; below WIDE columns the summary goes under the endpoints in one cell."""
    shown = findings if top is None else findings[:top]
    wide = width >= WIDE
    table = Table(title=title or None, expand=True, show_lines=not wide)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("Severity", no_wrap=True)
    table.add_column("Score", justify="right", no_wrap=True)
    table.add_column("Detector", no_wrap=True)
    if wide:
        table.add_column("Source", no_wrap=True)
        table.add_column("Destination", overflow="fold", max_width=40)
        table.add_column("Why", ratio=1, overflow="fold")
    else:
        table.add_column("Source -> destination, why", ratio=1, overflow="fold")
    for rank, f in enumerate(shown, start=1):
        head: list[str | Text] = [
            str(rank),
            Text(f.severity, style=SEVERITY_STYLE[f.severity]),
            f"{f.score:.2f}",
            f.detector,
        ]
        if wide:
            table.add_row(*head, Text(f.src), Text(_destination(f)), Text(f.summary))
        else:
            cell = Text(f"{f.src} -> {_destination(f)}", style="bold")
            cell.append("\n" + f.summary, style="default")
            table.add_row(*head, cell)
    return table


def _destination(f: Finding) -> str:
    dst = f.dst or "-"
    if f.dst_port is None:
        return dst
    return f"[{dst}]:{f.dst_port}" if ":" in dst else f"{dst}:{f.dst_port}"


def import_summary(
    imported: Mapping[Path, Mapping[str, int]], duplicates: int, skipped: int
) -> str:
    """One line of Rich markup: rows per table, files imported, skipped and already stored."""
    per_table: dict[str, int] = {}
    for rows in imported.values():
        for table, n in rows.items():
            per_table[table] = per_table.get(table, 0) + n
    counts = ", ".join(f"{escape(t)} {n:,}" for t, n in sorted(per_table.items())) or "no rows"
    return (
        f"Imported {len(imported)} file(s): {counts}; "
        f"{duplicates} already stored, {skipped} skipped."
    )
