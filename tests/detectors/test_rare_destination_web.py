"""rare-destination on web data: proxy-logged destinations, rare user agents and TLS
fingerprints, and first-seen dates from the store's history (docs/detection.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from homecall.detectors import rare_destination
from homecall.detectors.rare_destination import RareDestinationConfig, familiarity
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables, Window, connect
from tests.detectors.zeek_logs import assert_contract, open_store
from tests.detectors.zeek_web import get, hello, write

CFG = RareDestinationConfig()
DAY1 = datetime(2024, 3, 4, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
HOSTS = [f"10.1.0.{i}" for i in range(10, 17)]
INFECTED = HOSTS[0]
APP_USER = HOSTS[1]  # the only host with a line-of-business app's own agent
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
APP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) LedgerDesk/4.2 (build 1881)"
BROWSER_JA3 = "b32309a26951912be7dba376398abc3b"
IMPLANT_JA3 = "72a589da586844d7f0818ce684948eea"
REPEATS = 300  # requests per host and rare destination a day: enough to pass min_score


def _run(tables: Tables) -> list[Finding]:
    return list(rare_destination.DETECTOR.run(tables, CFG))


def _day(day: datetime, *, new_c2: bool) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """One day of an office: everyone browses three sites; INFECTED calls old-c2.example every
    day, and new-c2.example (HTTP) and tls-c2.example (its own TLS client) on the day `new_c2`."""
    t0 = day.timestamp() + 8 * 3600
    http, tls = [], []
    for n, host in enumerate(HOSTS):
        for i, site in enumerate(["www.news.example", "intranet-saas.example", "cdn.example"] * 10):
            http.append(get(t0 + n + i * 60, host, "198.51.100.5", site, CHROME))
            tls.append(hello(t0 + n + i * 60, host, "198.51.100.6", site, BROWSER_JA3))
    for i in range(REPEATS):
        http.append(get(t0 + 30 + i * 60, INFECTED, "203.0.113.50", "www.old-c2.example", CHROME))
        http.append(get(t0 + 31 + i * 60, APP_USER, "198.51.100.5", "www.news.example", APP))
        if new_c2:
            http.append(get(t0 + 32 + i * 60, INFECTED, "203.0.113.60", "new-c2.example", CHROME))
    if new_c2:
        for i in range(1000):
            tls.append(
                hello(t0 + 33 + i * 20, INFECTED, "203.0.113.61", "tls-c2.example", IMPLANT_JA3)
            )
    return http, tls


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("two-days")
    for day, new_c2 in ((DAY1, False), (DAY2, True)):
        http, tls = _day(day, new_c2=new_c2)
        folder = root / day.date().isoformat()
        write(folder, "http", http)
        write(folder, "ssl", tls)
    store = Store(root / "store")
    import_paths([root / DAY1.date().isoformat(), root / DAY2.date().isoformat()], store)
    return store


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


SECOND_DAY = Window(start_us=_us(DAY2), end_us=_us(DAY2 + timedelta(days=1)) - 1)


def _by_dst(found: list[Finding], kind: str) -> dict[str, Finding]:
    return {f.dst or "": f for f in found if f.evidence["kind"] == kind and f.src == INFECTED}


def test_a_domain_new_to_the_store_outranks_one_seen_the_day_before(two_days: Store) -> None:
    domains = _by_dst(_run(open_store(two_days, SECOND_DAY)), "domain")
    new, old = domains["new-c2.example"], domains["old-c2.example"]
    assert new.evidence["new_in_window"] is True
    assert new.evidence["first_seen_store"] == new.first_seen.isoformat().replace("+00:00", "Z")
    assert old.evidence["new_in_window"] is False
    assert old.evidence["first_seen_store"].startswith(DAY1.date().isoformat())
    assert old.evidence["seen_before_days"] == pytest.approx(1.0, abs=0.01)
    assert new.evidence["connections"] == old.evidence["connections"] == REPEATS
    assert new.score > old.score
    assert new.score <= CFG.max_score


def test_without_history_nothing_is_new(two_days: Store) -> None:
    domains = _by_dst(_run(open_store(two_days)), "domain")
    assert {"new-c2.example", "old-c2.example"} <= set(domains)
    assert not any(f.evidence["new_in_window"] for f in domains.values())
    assert (
        domains["old-c2.example"].evidence["first_seen_store"].startswith(DAY1.date().isoformat())
    )


def test_a_fingerprint_only_one_host_uses(two_days: Store) -> None:
    found = _run(open_store(two_days, SECOND_DAY))
    rare = [f for f in found if f.evidence["kind"] == "ja3"]
    assert [(f.src, f.evidence["ja3"]) for f in rare] == [(INFECTED, IMPLANT_JA3)]
    assert rare[0].dst == "tls-c2.example"
    assert rare[0].evidence["server_names"] == ["tls-c2.example"]
    assert (rare[0].evidence["fingerprint_hosts"], rare[0].evidence["tls_hosts"]) == (1, len(HOSTS))
    assert rare[0].evidence["new_in_window"] is True
    assert rare[0].score <= CFG.artifact_max_score


def test_an_agent_only_one_host_uses_is_a_low_artifact(two_days: Store) -> None:
    found = _run(open_store(two_days, SECOND_DAY))
    agents = [f for f in found if f.evidence["kind"] == "user_agent"]
    assert [(f.src, f.evidence["user_agent"]) for f in agents] == [(APP_USER, APP)]
    assert agents[0].dst == "www.news.example"
    assert agents[0].evidence["agent_hosts"] == 1
    assert agents[0].evidence["new_in_window"] is False  # the app ran the day before too
    assert agents[0].score <= CFG.artifact_max_score * familiarity(None, CFG)


def test_two_days_contract(two_days: Store) -> None:
    assert_contract(_run, two_days)


@pytest.mark.spark
def test_duckdb_and_spark_agree_with_history(two_days: Store, spark: object) -> None:
    on_duckdb = [f.to_dict() for f in _run(open_store(two_days, SECOND_DAY))]
    engine = connect("spark", session=spark)
    on_spark = [f.to_dict() for f in _run(open_store(two_days, SECOND_DAY, engine=engine))]
    assert on_spark == on_duckdb
    assert on_duckdb


def test_familiarity_lowers_with_age_and_never_hides() -> None:
    day = 86_400.0
    assert familiarity(None, CFG) == familiarity(0.0, CFG) == 1.0
    assert familiarity(day, CFG) > familiarity(30 * day, CFG) == 1.0 - CFG.seen_damping


# --- a proxy's own log ------------------------------------------------------------------


def _squid(ts: float, client: str, url: str, size: int) -> str:
    """A Squid native access.log line (time elapsed client code/status bytes method URL ident
    hierarchy/peer type)."""
    return f"{ts:.3f}    120 {client} TCP_MISS/200 {size} GET {url} - DIRECT/192.0.2.80 text/html"


def test_a_host_in_a_proxy_log_is_a_destination(tmp_path: Path) -> None:
    t0 = DAY1.timestamp()
    lines = [
        _squid(t0 + n + i * 30, host, f"http://{site}/", 5_000)
        for n, host in enumerate(HOSTS)
        for i, site in enumerate(["www.news.example", "cdn.example"] * 5)
    ]
    lines += [
        _squid(t0 + 7 + i * 60, INFECTED, "http://panel.rare-vendor.example/gate.php", 2_000)
        for i in range(REPEATS)
    ]
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "access.log").write_text("\n".join(sorted(lines)) + "\n")
    store = Store(tmp_path / "store")
    import_paths([tmp_path / "logs"], store)
    domains = _by_dst(_run(open_store(store)), "domain")
    assert list(domains) == ["rare-vendor.example"]
    logged = domains["rare-vendor.example"]
    assert logged.evidence["connections"] == REPEATS
    assert logged.evidence["total_bytes"] == REPEATS * 2_000  # the proxy's wire bytes
    assert logged.evidence["example_ip"] is None  # the proxy resolved the name, not the host
