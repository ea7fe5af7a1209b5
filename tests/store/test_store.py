from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from homecall.pipeline import import_paths
from homecall.sources.fileio import open_text
from homecall.store import Store
from homecall.store.store import content_hash

ZEEK_TABLE = {"conn": "conn", "dns": "dns", "http": "http", "ssl": "tls", "x509": "x509"}
ZEEK_TABLE |= {"smtp": "smtp", "files": "files", "open_conn": "conn_open", "notice": "alert"}


def _records(path: Path) -> int:
    with open_text(path) as stream:
        return sum(1 for line in stream if line.strip() and not line.startswith("#"))


def _stored_rows(store: Store) -> dict[str, int]:
    """Rows as Parquet says, not as the manifest says: both must agree."""
    counts: dict[str, int] = {}
    for table in ZEEK_TABLE.values():
        counts[table] = sum(pq.ParquetFile(f).metadata.num_rows for f in store.files(table))
    return counts


def _visible(store: Store) -> list[str]:
    return sorted(
        str(f.relative_to(store.root)) for t in ZEEK_TABLE.values() for f in store.files(t)
    )


def test_whole_zeek_sample_tree_imports_with_exact_row_counts(
    samples: Path, tmp_path: Path
) -> None:
    store = Store(tmp_path / "store")
    roots = [samples / "zeek-tsv", samples / "zeek-json"]
    result = import_paths(roots, store)
    assert result.errors == []
    assert result.problems.bad_records == 0
    expected: dict[str, int] = {}
    for path in result.imported:
        kind = path.name.split(".")[0].removeprefix("labeled-")
        expected[ZEEK_TABLE[kind]] = expected.get(ZEEK_TABLE[kind], 0) + _records(path)
    assert _stored_rows(store) == {t: expected.get(t, 0) for t in ZEEK_TABLE.values()}
    assert store.row_counts() == {t: n for t, n in expected.items() if n}
    skipped = {p.path.name for p in result.problems.skipped}
    assert {"weird.log", "dhcp.log", "open_http.log", "open_ssl.log"} <= skipped
    # day partitions: WRCCDC traffic is from 2018-03-24 (PROVENANCE.txt)
    assert any("day=2018-03-24" in f for f in _visible(store))


def test_reimport_adds_nothing(samples: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    folder = samples / "zeek-tsv/rita-proxy-beacon"
    first = import_paths([folder], store)
    before = (_stored_rows(store), _visible(store))
    second = import_paths([folder], store)
    assert first.rows > 0
    assert second.rows == 0
    assert len(second.duplicates) == len(first.imported)
    assert (_stored_rows(store), _visible(store)) == before


def test_malformed_file_is_reported_and_the_rest_is_kept(samples: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    import_paths(
        [samples / "zeek-tsv/stratosphere-security-datasets/003-zeek-scenario-malicious"], store
    )
    before = _stored_rows(store)
    broken = tmp_path / "in" / "conn.log"
    broken.parent.mkdir()
    broken.write_text("#separator \\x09\n#path\tconn\n1.0\tCa\n")  # no #fields: unreadable
    good = samples / "zeek-tsv/stratosphere-security-datasets/001-zeek-scenario-malicious"
    result = import_paths([broken.parent, good], store)
    assert [(e.path, e.line) for e in result.errors] == [(broken, 3)]  # type: ignore[attr-defined]
    after = _stored_rows(store)
    assert after["conn"] == before["conn"] + 992  # 001 imported, 003 still there
    assert content_hash(broken) not in store.sources()


def test_failed_commit_leaves_store_as_before_and_is_swept(
    samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "store")
    import_paths(
        [samples / "zeek-tsv/stratosphere-security-datasets/003-zeek-scenario-malicious"], store
    )
    manifest = store.manifest_path.read_bytes()
    visible = _visible(store)

    def crash(self: Store, name: str, text: str) -> Path:
        raise KeyboardInterrupt  # killed after the files moved in, before the manifest

    monkeypatch.setattr(Store, "write_json_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        import_paths([samples / "zeek-tsv/rita-proxy-beacon"], store)
    monkeypatch.undo()
    assert store.manifest_path.read_bytes() == manifest
    assert _visible(store) == visible
    on_disk = len(list((store.root / "tables").rglob("*.parquet")))
    assert on_disk > len(visible)  # orphans exist, unlisted
    import_paths([], store)  # the next import sweeps them
    assert len(list((store.root / "tables").rglob("*.parquet"))) == len(visible)


def _big_conn_log(path: Path, rows: int) -> None:
    header = (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
        "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tduration\torig_bytes\n"
        "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tinterval\tcount\n"
    )
    line = "{ts:.6f}\tC{i}\t10.0.{a}.{b}\t{p}\t93.184.216.34\t443\ttcp\t0.5\t{i}\n"
    with path.open("w") as out:
        out.write(header)
        chunk = []
        for i in range(rows):
            chunk.append(
                line.format(ts=1.7e9 + i * 0.01, i=i, a=i % 200, b=i % 250, p=1024 + i % 60000)
            )
            if len(chunk) == 50_000:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))


@pytest.mark.slow
def test_killed_import_leaves_no_partial_data(samples: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    import_paths(
        [samples / "zeek-tsv/stratosphere-security-datasets/003-zeek-scenario-malicious"], store
    )
    manifest = store.manifest_path.read_bytes()
    visible, rows = _visible(store), _stored_rows(store)
    big = tmp_path / "big" / "conn.log"
    big.parent.mkdir()
    _big_conn_log(big, 3_000_000)
    code = "import sys; from homecall.cli import app; sys.argv = ['homecall'] + sys.argv[1:]; app()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "import", str(big), "--store", str(store.root)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    staging = store.root / ".staging"
    deadline = time.monotonic() + 60
    while not any(staging.rglob("*.parquet")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the import finished before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store.manifest_path.read_bytes() == manifest
    assert (_visible(store), _stored_rows(store)) == (visible, rows)
    assert json.loads(manifest)["sources"].keys() == store.sources().keys()
    result = import_paths([big.parent], store)  # a clean re-run imports it whole
    assert result.rows == 3_000_000
    assert not staging.exists() or not any(staging.iterdir())


def test_same_bytes_under_another_name_is_a_duplicate(samples: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    folder = samples / "zeek-tsv/stratosphere-security-datasets/003-zeek-scenario-malicious"
    source = folder / "conn.log"
    import_paths([source], store)
    renamed = tmp_path / "elsewhere" / "conn.18:00:00-19:00:00.log"
    renamed.parent.mkdir()
    renamed.write_bytes(source.read_bytes())
    again = import_paths([renamed], store)
    assert (again.rows, again.duplicates) == (0, [renamed])


def test_files_alike_at_both_ends_are_told_apart(tmp_path: Path) -> None:
    # the quick fingerprint (size, first and last MiB) is only a filter: the full hash decides
    store = Store(tmp_path / "store")
    first, second = tmp_path / "a" / "conn.log", tmp_path / "b" / "conn.log"
    first.parent.mkdir()
    second.parent.mkdir()
    _big_conn_log(first, 60_000)
    text = first.read_text()
    middle = len(text) // 2
    line_start = text.index("\n", middle) + 1
    changed = text[:line_start] + text[line_start:].replace("\tC30", "\tX30", 1)
    assert len(changed) == len(text)
    second.write_text(changed)
    import_paths([first], store)
    result = import_paths([second], store)
    assert result.rows == 60_000
    assert result.duplicates == []


def test_record_without_a_time_is_not_stored(tmp_path: Path) -> None:
    log = tmp_path / "in" / "conn.log"
    log.parent.mkdir()
    _big_conn_log(log, 3)
    lines = log.read_text().splitlines(keepends=True)
    lines[-2] = "-" + lines[-2][lines[-2].index("\t") :]  # unset ts on the second record
    log.write_text("".join(lines))
    store = Store(tmp_path / "store")
    result = import_paths([log.parent], store)
    assert result.rows == 2
    assert _stored_rows(store)["conn"] == 2
