from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homecall.detectors import risky_tld
from homecall.detectors.risky_tld import RiskyTldConfig, risky_tld_score
from homecall.findings import Finding
from homecall.intel import lists
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store
from tests.detectors.zeek_tsv import at, conn, connect, request, store_of, tls, uid

CFG = RiskyTldConfig()
T0 = at("2024-03-05 09:00:00")
DAY = 86_400.0
MIDNIGHT = at("2024-03-05 00:00:00")


def _run(tables: Tables, cfg: RiskyTldConfig = CFG) -> list[Finding]:
    return list(risky_tld.DETECTOR.run(tables, cfg))


def _sessions(src: str, name: str, n: int, days: int = 1, ip: str = "203.0.113.7") -> list[dict]:
    """n TLS sessions to `name`, spread over `days` calendar days (UTC) from T0's."""
    step = days * DAY / n
    return [tls(MIDNIGHT + step * i, src, ip, name) for i in range(n)]


def _by(found: list[Finding]) -> dict[tuple[str, str], Finding]:
    return {(f.src, f.dst or ""): f for f in found}


# ---------------------------------------------------------------------------- the score


@pytest.mark.parametrize("tld", ["xyz", "top", "bond", "xin"])
def test_score_grows_with_use_and_weight_and_stays_medium_at_most(tld: str) -> None:
    weight = lists.risky_tlds()[tld].weight

    def score(connections: int, days: int, shared: float = 1.0, w: float = weight) -> float:
        return float(risky_tld_score(w, connections, days, shared, CFG))

    assert 0 < score(1, 1) < score(50, 1) < score(500, 1) < score(500, 5) <= CFG.max_score
    assert score(500, 5) < 0.75  # a TLD is a prior: never "high"
    assert score(50, 2, w=weight - 0.1) < score(50, 2)
    assert score(50, 2, shared=0.1) == pytest.approx(0.1 * score(50, 2))


# ---------------------------------------------------------------------------- hand-built logs


def test_a_top_site_used_often_outranks_a_single_visit(tmp_path: Path) -> None:
    store = store_of(
        tmp_path,
        {
            "ssl": [
                *_sessions("10.0.0.5", "api.static-cloud.top", 300, days=3),
                *_sessions("10.0.0.6", "www.shop-deals.top", 1),
                *_sessions("10.0.0.7", "cdn.widget-host.xyz", 300, days=3),
                *_sessions("10.0.0.8", "www.example.com", 300, days=3),
            ]
        },
    )
    found = _by(_run(open_store(store)))
    often = found[("10.0.0.5", "static-cloud.top")]
    assert often.evidence["connections"] == 300
    assert often.evidence["days_active"] == 3
    assert often.evidence["tld"] == "top"
    assert often.evidence["tld_weight"] == lists.risky_tlds()["top"].weight
    once = found.get(("10.0.0.6", "shop-deals.top"))
    assert once is None or once.score < often.score
    xyz = found[("10.0.0.7", "widget-host.xyz")]  # .xyz weighs less than .top
    assert 0 < xyz.score < often.score
    assert ("10.0.0.8", "example.com") not in found
    assert often.severity in {"low", "medium"}
    assert ".top" in often.summary
    assert "10.0.0.5" in often.summary
    assert len(often.evidence["uids"]) == 20


def test_names_of_one_registered_domain_are_one_finding(tmp_path: Path) -> None:
    sessions = [
        *_sessions("10.0.0.5", "a1.static-cloud.top", 20),
        *_sessions("10.0.0.5", "b2.static-cloud.top", 20),
    ]
    (finding,) = _run(open_store(store_of(tmp_path, {"ssl": sessions})))
    assert finding.dst == "static-cloud.top"
    assert finding.evidence["distinct_names"] == 2
    assert finding.evidence["example_names"] == ["a1.static-cloud.top", "b2.static-cloud.top"]


def test_proxied_and_plain_http_count_like_tls(tmp_path: Path) -> None:
    proxy = "10.0.0.1"
    http = [connect(T0 + 60 * i, "10.0.0.5", proxy, "api.static-cloud.top:443") for i in range(30)]
    http += [
        request(T0 + 60 * i, "10.0.0.6", "203.0.113.7", "api.static-cloud.top") for i in range(30)
    ]
    sessions = _sessions("10.0.0.7", "api.static-cloud.top", 30)
    found = _by(_run(open_store(store_of(tmp_path, {"http": http, "ssl": sessions}))))
    scores = {src: found[(src, "static-cloud.top")].score for src in ("10.0.0.5", "10.0.0.6")}
    assert scores["10.0.0.5"] == pytest.approx(found[("10.0.0.7", "static-cloud.top")].score)
    assert scores["10.0.0.6"] == pytest.approx(scores["10.0.0.5"])


def test_a_tunnelled_session_and_its_connect_are_one_connection(tmp_path: Path) -> None:
    proxy, rows, sessions, tunnels = "10.0.0.1", [], [], []
    for i in range(10):
        c = uid()
        rows.append(connect(T0 + 60 * i, "10.0.0.5", proxy, "api.static-cloud.top:443", uid=c))
        sessions.append(tls(T0 + 60 * i + 0.1, "10.0.0.5", proxy, "api.static-cloud.top", uid=c))
        tunnels.append(conn(T0 + 60 * i, "10.0.0.5", proxy, 3128, uid=c))
    logs = {"http": rows, "ssl": sessions, "conn": tunnels}
    (finding,) = _run(open_store(store_of(tmp_path, logs)))
    assert finding.evidence["connections"] == 10
    assert finding.evidence["records"] == 20


def test_a_domain_much_of_the_fleet_uses_is_damped(tmp_path: Path) -> None:
    fleet = [f"10.0.1.{i}" for i in range(1, 13)]
    sessions = [s for src in fleet for s in _sessions(src, "portal.vendor-app.top", 100)]
    sessions += _sessions("10.0.0.5", "api.static-cloud.top", 100)
    found = _by(_run(open_store(store_of(tmp_path, {"ssl": sessions}))))
    alone = found[("10.0.0.5", "static-cloud.top")]
    shared = [f for (_, dst), f in found.items() if dst == "vendor-app.top"]
    assert all(f.evidence["shared_destination_factor"] < 0.5 for f in shared)
    assert all(f.score < alone.score for f in shared)


def test_the_users_own_tld_list_adds_tlds(tmp_path: Path) -> None:
    listed = tmp_path / "tlds.txt"
    listed.write_text("# mine\nexample\t0.9\n", encoding="utf-8")
    store = store_of(tmp_path / "logs", {"ssl": _sessions("10.0.0.5", "c2.corp.example", 50)})
    assert _run(open_store(store)) == []
    (finding,) = _run(open_store(store), RiskyTldConfig(extra_risky_tlds_file=str(listed)))
    assert (finding.dst, finding.evidence["tld"], finding.evidence["list_source"]) == (
        "corp.example",
        "example",
        "user list",
    )


def test_contract_and_empty_window(tmp_path: Path) -> None:
    store = store_of(tmp_path, {"ssl": _sessions("10.0.0.5", "api.static-cloud.top", 50)})
    assert_contract(lambda t: _run(t), store)


@pytest.mark.spark
def test_duckdb_and_spark_agree(tmp_path: Path, spark: object) -> None:
    http: list[dict[str, Any]] = [
        connect(T0 + 60 * i, "10.0.0.5", "10.0.0.1", "x.static-cloud.top:443") for i in range(9)
    ]
    sessions = [
        *_sessions("10.0.0.6", "a.widget-host.xyz", 40, days=2),
        *_sessions("10.0.0.7", "b.shop.bond", 3),
    ]
    assert_spark_agrees(
        lambda t: _run(t), store_of(tmp_path, {"http": http, "ssl": sessions}), spark
    )


# ---------------------------------------------------------------------------- real captures


@pytest.mark.parametrize(
    "sample",
    [
        "zeek-json/wrccdc2018-zed-sample",
        "zeek-json/slips-test9-mixed",
        "zeek-tsv/rita-proxy-beacon",
    ],
)
def test_benign_heavy_captures_give_nothing_above_low(
    samples: Path, tmp_path: Path, sample: str
) -> None:
    store = Store(tmp_path / "store")
    import_paths([samples / sample], store)
    found = _run(open_store(store))
    assert all(f.score < 0.5 for f in found)
    assert all(lists.risky_tlds().get(f.evidence["tld"]) for f in found)
