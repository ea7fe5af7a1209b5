from __future__ import annotations

import json
import logging
import math
from datetime import UTC, date, datetime
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from homecall.config import Config
from homecall.detectors import young_domain
from homecall.detectors.young_domain import YoungDomainConfig, age_weight
from homecall.findings import Finding
from homecall.intel import rdap
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, Tables, connect, open_tables
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store, store_of

CFG = YoungDomainConfig()
DAY = 86_400.0
NOW = datetime(2026, 11, 28, tzinfo=UTC).timestamp()
_uid = count()

# RDAP answers in the shape of RFC 9083 domain objects as Verisign's server returns them
# (objectClassName, ldhName, events). Written by hand: tests have no network to record from.
BOOTSTRAP = {
    "version": "1.0",
    "publication": "2026-11-20T18:00:01Z",
    "services": [
        [["com", "net"], ["https://rdap.verisign.com/com/v1/"]],
        [["top"], ["http://rdap.example-registry.top/", "https://rdap.example-registry.top/"]],
    ],
}


def _domain_object(name: str, registered: str) -> dict[str, Any]:
    return {
        "objectClassName": "domain",
        "ldhName": name.upper(),
        "status": ["client transfer prohibited"],
        "events": [
            {"eventAction": "registration", "eventDate": registered},
            {"eventAction": "expiration", "eventDate": "2027-11-25T10:00:00Z"},
            {"eventAction": "last update of RDAP database", "eventDate": "2026-11-28T09:00:00Z"},
        ],
        "rdapConformance": ["rdap_level_0", "icann_rdap_response_profile_0"],
    }


ANSWERS = {
    rdap.BOOTSTRAP_URL: (200, BOOTSTRAP),
    "https://rdap.verisign.com/com/v1/domain/fresh-c2.com": (
        200,
        _domain_object("fresh-c2.com", "2026-11-25T10:00:00Z"),
    ),
    "https://rdap.verisign.com/com/v1/domain/example.com": (
        200,
        _domain_object("example.com", "1995-08-14T04:00:00Z"),
    ),
    "https://rdap.example-registry.top/domain/gone.top": (
        404,
        {"errorCode": 404, "title": "Not Found"},
    ),
}


class Recorded:
    """A Transport that answers from ANSWERS and remembers what was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get(self, url: str) -> rdap.Response:
        self.asked.append(url)
        status, body = ANSWERS.get(url, (500, {"errorCode": 500}))
        return rdap.Response(status, json.dumps(body).encode())


def _dns(ts: float, src: str, query: str, **fields: Any) -> dict[str, Any]:
    return {
        "ts": ts,
        "uid": f"D{next(_uid)}",
        "id.orig_h": src,
        "id.orig_p": 40000,
        "id.resp_h": "10.0.0.53",
        "id.resp_p": 53,
        "proto": "udp",
        "query": query,
        "qtype_name": "A",
        "rcode": fields.pop("rcode", 0),
        "RD": True,
        "answers": ["203.0.113.9"],
        **fields,
    }


def scaled(activity: int) -> float:
    return math.log10(1 + activity) / math.log10(1 + CFG.activity_full)


def _run(
    tables: Tables, cfg: YoungDomainConfig, transport: Recorded | None = None
) -> list[Finding]:
    used = transport or Recorded()
    return list(young_domain.run_with(tables, cfg, transport=used, today=date(2026, 11, 28)))


@pytest.mark.parametrize(
    ("age_days", "weight"),
    [(0, 1.0), (6, 1.0), (7, 0.6), (29, 0.6), (30, 0.3), (90, 0.3), (91, 0.0), (4000, 0.0)],
)
def test_age_weight(age_days: int, weight: float) -> None:
    assert age_weight(age_days, CFG) == weight


@pytest.fixture(scope="module")
def traffic_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Hosts 10.0.0.1-4 each using one domain on 2026-11-28; example.com by everyone."""
    dns = [_dns(NOW + 60 * i, "10.0.0.1", "update.fresh-c2.com") for i in range(20)]
    dns += [_dns(NOW + i, "10.0.0.2", "cdn.month-old.net") for i in range(5)]
    dns += [_dns(NOW + i, "10.0.0.3", "gone.top", rcode=3, answers=[]) for i in range(9)]
    dns += [_dns(NOW + i, "10.0.0.4", "later.org") for i in range(3)]
    dns += [_dns(NOW + 5 + i, f"10.0.0.{i}", "www.example.com") for i in range(1, 5)]
    return store_of(tmp_path_factory.mktemp("traffic"), {"dns": dns})


@pytest.fixture(scope="module")
def traffic(traffic_store: Store) -> Tables:
    return open_store(traffic_store)


def test_nothing_without_a_source_and_the_log_says_why(
    traffic: Tables, caplog: pytest.LogCaptureFixture
) -> None:
    transport = Recorded()
    with caplog.at_level(logging.INFO, logger="homecall.detectors.young_domain"):
        assert _run(traffic, CFG, transport) == []
    assert "nrd_file" in caplog.text
    assert "rdap = true" in caplog.text
    assert transport.asked == []  # RDAP is opt-in: no network at all by default


def test_dated_feed_entries(traffic: Tables, tmp_path: Path) -> None:
    feed = tmp_path / "nrd.csv"
    feed.write_text(
        "fresh-c2.com,2026-11-25\n"  # 3 days before use
        "month-old.net,2026-11-08\n"  # 20 days
        "gone.top,2026-11-27\n"  # only NXDOMAIN answers: never used
        "later.org,2026-12-01\n",  # registered after the traffic: a later owner, skipped
        encoding="utf-8",
    )
    found = _run(traffic, YoungDomainConfig(nrd_file=str(feed)))
    assert [(f.src, f.dst, f.evidence["age_days"]) for f in found] == [
        ("10.0.0.1", "fresh-c2.com", 3),
        ("10.0.0.2", "month-old.net", 20),
    ]
    fresh, month = found
    use = 0.5 + 0.5 * scaled(20)
    assert fresh.score == pytest.approx(0.7 * 1.0 * use)
    assert month.score == pytest.approx(0.7 * 0.6 * (0.5 + 0.5 * scaled(5)))
    assert fresh.evidence["registered"] == "2026-11-25"
    assert fresh.evidence["source"] == "nrd-file"
    assert fresh.evidence["age_is_upper_bound"] is False
    assert "10.0.0.1" in fresh.summary
    assert "3 days" in fresh.summary


def test_rdap_lookups_are_cached_and_rate_limited(traffic: Tables, tmp_path: Path) -> None:
    cfg = YoungDomainConfig(rdap=True, rdap_cache=str(tmp_path / "rdap"), rdap_per_second=1e3)
    transport = Recorded()
    found = _run(traffic, cfg, transport)
    assert [(f.src, f.dst, f.evidence["age_days"], f.evidence["source"]) for f in found] == [
        ("10.0.0.1", "fresh-c2.com", 3, "rdap")
    ]
    assert transport.asked[0] == rdap.BOOTSTRAP_URL
    assert "https://rdap.verisign.com/com/v1/domain/example.com" in transport.asked
    assert not any("gone.top" in url for url in transport.asked)  # NXDOMAIN only: not asked
    cache = json.loads((tmp_path / "rdap" / "registrations.json").read_text(encoding="utf-8"))
    assert cache["domains"]["fresh-c2.com"] == {
        "registered": "2026-11-25",
        "status": "found",
        "looked_up": "2026-11-28",
    }
    assert cache["domains"]["example.com"]["registered"] == "1995-08-14"
    assert "month-old.net" not in cache["domains"]  # HTTP 500 (no recording): tried next run
    assert cache["domains"]["later.org"]["status"] == "no-server"  # .org: not in the bootstrap
    again = Recorded()
    assert _run(traffic, cfg, again) == found
    # the bootstrap file is cached too; only the answer that failed is asked again
    assert again.asked == ["https://rdap.verisign.com/com/v1/domain/month-old.net"]


def test_rdap_client_spaces_requests_and_respects_the_limit(tmp_path: Path) -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    recorded = Recorded()

    def slow(url: str) -> rdap.Response:  # every answer takes 0.1 s
        now[0] += 0.1
        return recorded.get(url)

    client = rdap.RdapClient(
        rdap.CallableTransport(slow),
        tmp_path,
        per_second=2.0,
        today=date(2026, 11, 28),
        sleep=sleep,
        clock=lambda: now[0],
    )
    found = client.lookup(["fresh-c2.com", "gone.top", "example.com"], limit=2)
    assert set(found) == {"fresh-c2.com", "gone.top"}  # the limit: the third waits a run
    assert found["gone.top"].status == "not-found"
    # requests start 0.5 s apart at 2 per second; each answer took 0.1 s of that
    assert sleeps == [pytest.approx(0.4), pytest.approx(0.4)]
    assert recorded.asked == [
        rdap.BOOTSTRAP_URL,
        "https://rdap.verisign.com/com/v1/domain/fresh-c2.com",
        "https://rdap.example-registry.top/domain/gone.top",  # the https URL is preferred
    ]


def test_rdap_stops_when_the_network_is_down(tmp_path: Path) -> None:
    def down(url: str) -> rdap.Response:
        raise OSError("network unreachable")

    client = rdap.RdapClient(rdap.CallableTransport(down), tmp_path, today=date(2026, 11, 28))
    assert client.lookup(["a.com", "b.com"], limit=10) == {}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([{"eventAction": "registration", "eventDate": "1997-09-15T04:00:00Z"}], date(1997, 9, 15)),
        ([{"eventAction": "registration", "eventDate": "2026-04-10"}], date(2026, 4, 10)),
        ([{"eventAction": "transfer", "eventDate": "2024-01-01T00:00:00Z"}], None),
        ([{"eventAction": "registration", "eventDate": "not a date"}], None),
        ([], None),
    ],
)
def test_registration_date(events: list[dict[str, str]], expected: date | None) -> None:
    assert rdap.registration_date({"events": events}) == expected


def test_registry_domain_is_what_the_registry_knows() -> None:
    assert rdap.registry_domain("a.b.duckdns.org") == "duckdns.org"
    assert rdap.registry_domain("www.example.co.uk") == "example.co.uk"
    assert rdap.registry_domain("printer.local") is None
    assert rdap.registry_domain("192.0.2.1") is None


@pytest.fixture(scope="module")
def wrccdc(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Tables:
    store = Store(tmp_path_factory.mktemp("wrccdc") / "store")
    import_paths([samples / "zeek-tsv/wrccdc2018-zed-sample"], store)
    return open_tables(store, Config().internal, connect(), WHOLE_STORE)


def test_undated_feed_on_wrccdc(wrccdc: Tables, tmp_path: Path) -> None:
    # The samples carry no registration dates; this feed is written for the test in
    # xRuffKez/NRD's format, dated the day after the capture (2018-03-24). What is tested is
    # the join with real traffic: cortanaupdate.stream, reached by 10.47.8.10 only, 41 TLS
    # connections (docs/detection.md, beacon on WRCCDC) and never looked up in the window.
    feed = tmp_path / "nrd-30day.txt"
    feed.write_text(
        "# 30-day NRD List\n# Time of Compilation: 2018-03-25 05:10:02 UTC\n"
        "cortanaupdate.stream\nnot-in-the-capture.example\n",
        encoding="utf-8",
    )
    found = _run(wrccdc, YoungDomainConfig(nrd_file=str(feed)))
    assert [(f.src, f.dst) for f in found] == [("10.47.8.10", "cortanaupdate.stream")]
    only = found[0]
    assert only.evidence["connections"] == 41
    assert only.evidence["lookups"] == 0
    # registered at most 30 days before 2018-03-25, used on 2018-03-24: at most 29 days old
    assert (only.evidence["age_days"], only.evidence["age_is_upper_bound"]) == (29, True)
    assert only.evidence["registered"] is None


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> YoungDomainConfig:
    path = tmp_path_factory.mktemp("feed") / "nrd.csv"
    path.write_text("fresh-c2.com,2026-11-25\nmonth-old.net,2026-11-08\n", encoding="utf-8")
    return YoungDomainConfig(nrd_file=str(path))


def test_contract(traffic_store: Store, feed: YoungDomainConfig) -> None:
    assert_contract(lambda tables: _run(tables, feed), traffic_store)


@pytest.mark.spark
def test_duckdb_and_spark_agree(
    traffic_store: Store, feed: YoungDomainConfig, request: pytest.FixtureRequest
) -> None:
    session = request.getfixturevalue("spark")  # skips without pyspark or Java
    assert_spark_agrees(lambda tables: _run(tables, feed), traffic_store, session)
