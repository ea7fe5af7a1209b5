"""One contract over the whole registry (scikit-learn's estimator checks, for detectors)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from homecall.config import Config
from homecall.detectors import DETECTORS, Detector
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, Window, connect, open_tables
from tests.findings_contract import check_record


@pytest.fixture(scope="module")
def store(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(tmp_path_factory.mktemp("contract") / "store")
    import_paths(
        [samples / "zeek-tsv/stratosphere-security-datasets/001-zeek-scenario-malicious"], store
    )
    return store


def _run(detector: Detector, store: Store, window: Window = WHOLE_STORE) -> list[dict[str, object]]:
    tables = open_tables(store, Config().internal, connect(), window)
    return [f.to_dict() for f in detector.run(tables, detector.config())]


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_default_config_constructs_with_documented_defaults(detector: Detector) -> None:
    config = detector.config()
    assert dataclasses.is_dataclass(config)
    assert all(f.default is not dataclasses.MISSING for f in dataclasses.fields(config))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, dataclasses.fields(config)[0].name, None)


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_empty_window_gives_no_findings(detector: Detector, store: Store) -> None:
    assert _run(detector, store, Window(start_us=10**15, end_us=10**15 + 1)) == []


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_runs_are_repeatable_and_findings_follow_the_contract(
    detector: Detector, store: Store
) -> None:
    first, second = _run(detector, store), _run(detector, store)
    assert first == second
    assert first, f"{detector.name} found nothing on the njRAT capture"
    for record in first:
        check_record(json.loads(json.dumps(record)))
        assert record["detector"] == detector.name
        assert record["src"] in str(record["summary"])


HAS_SPARK = importlib.util.find_spec("pyspark") is not None and shutil.which("java") is not None


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    if not HAS_SPARK:
        pytest.skip("pyspark or Java is not installed (pip install homecall[spark])")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.mark.spark
@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_duckdb_and_spark_agree(detector: Detector, store: Store, spark: object) -> None:
    on_duckdb = _run(detector, store)
    tables = open_tables(store, Config().internal, connect("spark", session=spark), WHOLE_STORE)
    on_spark = [f.to_dict() for f in detector.run(tables, detector.config())]
    assert on_spark == on_duckdb
