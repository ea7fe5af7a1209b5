"""Tiny hand-built Zeek JSON logs, imported through the pipeline like any capture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from homecall.config import Config
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, Tables, Window, connect, open_tables

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
