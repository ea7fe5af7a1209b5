"""Issue 4: every DNS server log and every Suricata eve file imports through the pipeline
(format recognised by content, no bad record, rows stored as the reader makes them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecall.pipeline import import_paths
from homecall.sources import Problems, detect
from homecall.store import Store

FOLDERS = ("dns-server-bind", "dns-server-dnsmasq", "suricata-eve")


def _files(samples: Path) -> list[Path]:
    return sorted(
        p
        for folder in FOLDERS
        for p in (samples / folder).rglob("*")
        if p.is_file() and p.name != "PROVENANCE.txt"
    )


def test_every_dns_server_and_eve_file_imports(samples: Path, tmp_path: Path) -> None:
    files = _files(samples)
    assert files
    expected_formats = {"dns-server-bind": "bind", "dns-server-dnsmasq": "dnsmasq"}
    dns_rows = 0
    for path in files:
        folder = path.relative_to(samples).parts[0]
        assert detect(path).format == expected_formats.get(folder, "suricata-eve"), path
        problems = Problems()
        dns_rows += sum(b.num_rows for t, b in detect(path).read(path, problems) if t == "dns")
        assert problems.bad_records == 0, path
    result = import_paths([samples / f for f in FOLDERS], Store(tmp_path / "store"))
    assert not result.errors
    assert result.problems.bad_records == 0
    assert not [p for p in result.problems.skipped if p.path.name != "PROVENANCE.txt"]
    stored = sum(tables.get("dns", 0) for tables in result.imported.values())
    assert stored == dns_rows > 0


@pytest.mark.parametrize("folder", FOLDERS)
def test_reimporting_adds_nothing(samples: Path, tmp_path: Path, folder: str) -> None:
    store = Store(tmp_path / "store")
    import_paths([samples / folder], store)
    again = import_paths([samples / folder], store)
    assert again.rows == 0
