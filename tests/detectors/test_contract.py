"""One contract over the whole registry (scikit-learn's estimator checks, for detectors)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from homecall.config import Config
from homecall.detectors import DETECTORS, Detector
from homecall.pipeline import import_paths
from homecall.simulator import simulate
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, Window, connect, open_tables
from tests.findings_contract import check_record

# Real captures (njRAT's conn.log, dnscat2's Zeek JSON, Simda's dns/http/conn) and a simulated
# day of 30 hosts with every injected technique: each detector must find something in one of
# them (its own tests check *what* it finds).
REAL = {
    "njrat": "zeek-tsv/stratosphere-security-datasets/001-zeek-scenario-malicious",
    "dnscat2": "zeek-json/rita-dnscat2-subset",
    "simda": "zeek-tsv/stratosphere-security-datasets/005-zeek-scenario-malicious",
}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("contract-sim")
    simulate(out, hosts=30, days=1, seed=7)
    return out


@pytest.fixture(scope="module")
def stores(
    samples: Path, simulated: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Store]:
    root = tmp_path_factory.mktemp("contract")
    paths = {name: samples / sample for name, sample in REAL.items()} | {"simulated": simulated}
    found = {}
    for name, path in paths.items():
        found[name] = Store(root / name)
        import_paths([path], found[name])
    return found


def _config(detector: Detector, simulated: Path) -> object:
    """Default settings, except the newly-registered-domain feed the simulator writes."""
    if detector.name == "young-domain":
        return detector.config(nrd_file=str(simulated / "nrd.txt"))
    return detector.config()


def _run(
    detector: Detector,
    store: Store,
    window: Window = WHOLE_STORE,
    config: object | None = None,
    engine: str = "duckdb",
    **options: object,
) -> list[dict[str, object]]:
    tables = open_tables(store, Config().internal, connect(engine, **options), window)
    settings = detector.config() if config is None else config
    return [f.to_dict() for f in detector.run(tables, settings)]


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_default_config_constructs_with_documented_defaults(detector: Detector) -> None:
    config = detector.config()
    assert dataclasses.is_dataclass(config)
    assert all(f.default is not dataclasses.MISSING for f in dataclasses.fields(config))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, dataclasses.fields(config)[0].name, None)


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_empty_window_gives_no_findings(detector: Detector, stores: dict[str, Store]) -> None:
    for store in stores.values():
        assert _run(detector, store, Window(start_us=10**15, end_us=10**15 + 1)) == []


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_runs_are_repeatable_and_findings_follow_the_contract(
    detector: Detector, stores: dict[str, Store], simulated: Path
) -> None:
    total = 0
    for store in stores.values():
        config = _config(detector, simulated)
        first = _run(detector, store, config=config)
        assert first == _run(detector, store, config=config)
        total += len(first)
        for record in first:
            check_record(json.loads(json.dumps(record)))
            assert record["detector"] == detector.name
            assert record["src"] in str(record["summary"])
    assert total, f"{detector.name} found nothing in the real captures or the simulated day"


@pytest.mark.spark
@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_duckdb_and_spark_agree(
    detector: Detector, stores: dict[str, Store], simulated: Path, spark: object
) -> None:
    for store in stores.values():
        config = _config(detector, simulated)
        on_duckdb = _run(detector, store, config=config)
        on_spark = _run(detector, store, config=config, engine="spark", session=spark)
        assert on_spark == on_duckdb
