"""One contract over the whole registry (scikit-learn's estimator checks, for detectors)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from homecall.config import Config
from homecall.detectors import DETECTORS, Detector
from homecall.pipeline import import_paths
from homecall.simulator import simulate
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, Window, connect, open_tables
from tests.conftest import SimulatedDay
from tests.detectors.packet_flows import (
    Flow,
    binary_channel,
    fleet_delays,
    marked,
    sending,
    store_of,
)
from tests.findings_contract import check_record

# Real captures (njRAT's conn.log, dnscat2's Zeek JSON, Simda's dns/http/conn, RITA's beacon
# through a proxy, Hide'N Seek's Suricata eve.json, Slips' mixed Zeek JSON with spam), a
# hand-built capture with covert channels, a simulated day
# of 30 hosts with every injected technique, and the demo's day of 200 hosts: each detector must
# find something in one of them (its own tests check *what* it finds). DuckDB and Spark must
# agree on the small day, where most detectors find something (Spark takes seconds a query, so
# one store keeps the suite short; the detectors' own tests add Spark checks of their own).
REAL = {
    "njrat": "zeek-tsv/stratosphere-security-datasets/001-zeek-scenario-malicious",
    "dnscat2": "zeek-json/rita-dnscat2-subset",
    "simda": "zeek-tsv/stratosphere-security-datasets/005-zeek-scenario-malicious",
    "proxy-beacon": "zeek-tsv/rita-proxy-beacon",
    "hide-and-seek": "suricata-eve/idps-comparison-test7-hide-and-seek",
    "slips-mixed": "zeek-json/slips-test9-mixed",
}
# An empty window holds no rows whatever the store: one store of conn only, one of every table,
# one of packets. Repeatability is checked on every store but the 200-host day (run once there:
# the small simulated day has the same techniques), to keep the suite under 15 minutes.
EMPTY_WINDOW_STORES = ("njrat", "simulated", "covert")
RUN_ONCE = ("day",)
# detectors whose own tests compare DuckDB and Spark (on hand-built stores made for them): the
# registry's parity check leaves them out to keep the suite under 15 minutes on 2 cores
OWN_SPARK_TESTS = {
    "rare-destination",
    "suspicious-domain",
    "young-domain",
    "direct-ip",
    "dns-bypass",
    "risky-tld",
    "odd-port",
    "off-hours",
    "uri-command",
    "user-agent",
    "http-anomaly",
    "long-connection",
    "domain-fronting",
    "tls-anomaly",
    "covert-timing",
    "header-anomaly",
    "proxy-bypass",
    "irc",
    "p2p-fanout",
    "mail-from-endpoint",
}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("contract-sim")
    simulate(out, hosts=30, days=1, seed=7)
    return out


@pytest.fixture(scope="module")
def stores(
    samples: Path,
    simulated: Path,
    simulated_day: SimulatedDay,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Store, Path | None]]:
    """name -> (store, its newly-registered-domain feed, if the simulator wrote one)."""
    root = tmp_path_factory.mktemp("contract")
    found: dict[str, tuple[Store, Path | None]] = {}
    for name, sample in REAL.items():
        found[name] = (Store(root / name), None)
        import_paths([samples / sample], found[name][0])
    found["simulated"] = (Store(root / "simulated"), simulated / "nrd.txt")
    import_paths([simulated], found["simulated"][0])
    found["day"] = (simulated_day.store, simulated_day.truth.nrd_file)
    found["covert"] = (_covert_capture(root / "covert"), None)
    return found


@pytest.fixture(scope="module")
def simulated_store(simulated: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The small simulated day alone, for the Spark run (which needs none of the other stores)."""
    store = Store(tmp_path_factory.mktemp("contract-spark") / "simulated")
    import_paths([simulated], store)
    return store


def _covert_capture(folder: Path) -> Store:
    """A hand-built capture (the real ones hold no covert channel): 20 ordinary flows, a binary
    timing channel among them, and Rowland's covert_tcp text in IP IDs."""
    rng = np.random.default_rng(3)
    server = Flow("10.0.9.99", "198.51.100.7", 443)
    flows = [
        sending(Flow(f"10.0.9.{i}", "198.51.100.7", 443), fleet_delays(rng, 300))
        for i in range(1, 21)
    ]
    delays, _ = binary_channel(rng, 300, zero_s=0.05, one_s=0.15, jitter_s=0.01)
    text = [c * 256 for c in b"the covert_tcp channel carries a line of text " * 2]
    idle = sending(Flow("10.0.9.98", "198.51.100.8", 80), np.full(len(text) - 1, 0.2))
    flows += [sending(server, delays), marked(idle, ip_id=text, ip_flags=0)]
    return store_of(folder, flows)


def _config(detector: Detector, nrd: Path | None) -> object:
    """Default settings, except the newly-registered-domain feed the simulator writes."""
    if detector.name == "young-domain" and nrd is not None:
        return detector.config(nrd_file=str(nrd))
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
def test_empty_window_gives_no_findings(
    detector: Detector, stores: dict[str, tuple[Store, Path | None]]
) -> None:
    for name in EMPTY_WINDOW_STORES:
        store, _ = stores[name]
        assert _run(detector, store, Window(start_us=10**15, end_us=10**15 + 1)) == []


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.name)
def test_runs_are_repeatable_and_findings_follow_the_contract(
    detector: Detector, stores: dict[str, tuple[Store, Path | None]]
) -> None:
    total = 0
    for name, (store, nrd) in stores.items():
        config = _config(detector, nrd)
        first = _run(detector, store, config=config)
        if name not in RUN_ONCE:
            assert first == _run(detector, store, config=config)
        total += len(first)
        for record in first:
            check_record(json.loads(json.dumps(record)))
            assert record["detector"] == detector.name
            assert record["src"] in str(record["summary"])
    assert total, f"{detector.name} found nothing in the real captures or the simulated days"


@pytest.mark.spark
@pytest.mark.parametrize(
    "detector", [d for d in DETECTORS if d.name not in OWN_SPARK_TESTS], ids=lambda d: d.name
)
def test_duckdb_and_spark_agree(
    detector: Detector, simulated: Path, simulated_store: Store, spark: object
) -> None:
    config = _config(detector, simulated / "nrd.txt")
    on_duckdb = _run(detector, simulated_store, config=config)
    on_spark = _run(detector, simulated_store, config=config, engine="spark", session=spark)
    assert on_spark == on_duckdb
