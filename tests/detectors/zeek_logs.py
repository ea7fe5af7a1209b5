"""Tiny hand-built Zeek JSON logs, imported through the pipeline like any capture."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from homecall.config import Config
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, Tables, Window, connect, open_tables
from tests.findings_contract import check_record

Records = dict[str, list[dict[str, Any]]]


def store_of(folder: Path, logs: Records) -> Store:
    """FOLDER/logs/<name>.log (JSON lines with `_path`), imported into FOLDER/store."""
    (folder / "logs").mkdir(parents=True)
    for name, records in logs.items():
        lines = "".join(json.dumps({"_path": name, **r}) + "\n" for r in records)
        (folder / "logs" / f"{name}.log").write_text(lines, encoding="utf-8")
    store = Store(folder / "store")
    import_paths([folder / "logs"], store)
    return store


def open_store(store: Store, window: Window = WHOLE_STORE, engine: Any = None) -> Tables:
    """The store's tables on DuckDB (or `engine`), with the default internal networks."""
    return open_tables(store, Config().internal, engine or connect(), window)


def tables_of(folder: Path, logs: Records) -> Tables:
    """`store_of` then `open_store`."""
    return open_store(store_of(folder, logs))


Run = Callable[[Tables], Iterable[Finding]]
EMPTY = Window(start_us=10**15, end_us=10**15 + 1)


def assert_contract(run: Run, store: Store) -> None:
    """The registry's contract on a hand-built store where the detector finds something:
    repeatable, the documented shape, src named in the summary, nothing in an empty window."""
    first, second = ([f.to_dict() for f in run(open_store(store))] for _ in range(2))
    assert first == second
    assert first
    for record in first:
        check_record(json.loads(json.dumps(record)))
        assert record["src"] in str(record["summary"])
    assert list(run(open_store(store, EMPTY))) == []


def assert_spark_agrees(run: Run, store: Store, session: object) -> None:
    """The same findings on DuckDB and on Spark (`session` from the `spark` fixture)."""
    on_duckdb = [f.to_dict() for f in run(open_store(store))]
    on_spark = [
        f.to_dict() for f in run(open_store(store, engine=connect("spark", session=session)))
    ]
    assert on_spark == on_duckdb
