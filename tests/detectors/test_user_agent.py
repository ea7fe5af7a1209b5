"""user-agent: malformed, tool, OS-mismatched and rare agents, on real captures and a
hand-built office (docs/detection.md#user-agent)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from homecall.detectors import user_agent
from homecall.detectors.user_agent import (
    Destination,
    HostProfile,
    UserAgentConfig,
    agent_score,
    fleet_weight,
    reasons_for,
)
from homecall.findings import Finding, severity_for
from homecall.intel import user_agents
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store
from tests.detectors.zeek_web import get, write

CFG = UserAgentConfig()
PROXY_BEACON = "zeek-tsv/rita-proxy-beacon"
SIMDA = "zeek-tsv/stratosphere-security-datasets/005-zeek-scenario-malicious"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
LINUX_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
T0 = 1_733_000_000.0  # 2024-11-30 20:53 UTC
WHEN = datetime(2024, 11, 30, tzinfo=UTC)


def _run(tables: Tables) -> list[Finding]:
    return list(user_agent.DETECTOR.run(tables, CFG))


def _sample(samples: Path, tmp_path: Path, sample: str) -> list[Finding]:
    store = Store(tmp_path / "store")
    import_paths([samples / sample], store)
    return _run(open_store(store))


def _http_rows(path: Path) -> list[dict[str, str]]:
    fields: list[str] = []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


# --- real captures ------------------------------------------------------------------------


def test_proxy_beacon_fake_agent_is_malformed(samples: Path, tmp_path: Path) -> None:
    # PROVENANCE: 10.136.0.18 beacons through Squid to www.honestimnotevil.com with the fake
    # agent "Modzilla/-2.0 (Atari 7800)"
    agent = "Modzilla/-2.0 (Atari 7800)"
    rows = _http_rows(samples / PROXY_BEACON / "http.log")
    asked = Counter(r["host"] for r in rows if r["user_agent"] == agent)
    assert asked.most_common(1)[0][0] == "www.honestimnotevil.com"
    found = _sample(samples, tmp_path, PROXY_BEACON)
    fake = [f for f in found if f.evidence["user_agent"] == agent]
    assert len(fake) == 1
    assert (fake[0].src, fake[0].dst) == ("10.136.0.18", "www.honestimnotevil.com")
    assert "misspelled_mozilla" in fake[0].evidence["reasons"]
    assert fake[0].evidence["requests"] == sum(asked.values())
    assert fake[0].severity in {"medium", "high"}
    assert found[0] == fake[0]  # its curl to www.google.com is not ranked above it


def test_simda_agent_is_an_impossible_combination(samples: Path, tmp_path: Path) -> None:
    # PROVENANCE: Simda, infected host 192.168.1.116; its agent claims MSIE 2.0 with the
    # Trident/4.0 engine (IE8) on Windows NT 5.0 (Windows 2000, which never ran IE8)
    rows = [
        r for r in _http_rows(samples / SIMDA / "http.log") if r["id.orig_h"] == "192.168.1.116"
    ]
    agents = {r["user_agent"] for r in rows}
    assert len(agents) == 1
    found = _sample(samples, tmp_path, SIMDA)
    simda = [f for f in found if f.src == "192.168.1.116"]
    assert len(simda) == 1
    assert simda[0].evidence["user_agent"] in agents
    assert "impossible_combination" in simda[0].evidence["reasons"]
    assert simda[0].dst in {r["host"] for r in rows}
    assert simda[0].score >= 0.5


def test_a_browsing_vm_raises_nothing(samples: Path, tmp_path: Path) -> None:
    # slips test 9: a Windows VM browsing with IE 7/8 agents (Compatibility View's "MSIE 7.0"
    # with Trident/4.0 is real), CryptoAPI, BITS and NCSI
    assert _sample(samples, tmp_path, "zeek-json/slips-test9-mixed") == []


# --- a hand-built office ------------------------------------------------------------------

WORKSTATIONS = [f"10.0.0.{i}" for i in range(10, 22)]
SCRIPTER = WORKSTATIONS[0]  # also runs python-requests against one outside API
TWO_SYSTEMS = WORKSTATIONS[1]  # also sends a Linux Firefox agent to one site
BUILD = "10.0.0.200"  # a Linux build server: curl is all it ever uses


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("office")
    rows = []
    common = ["www.news.example", "mail.corp-saas.example", "cdn.static.example"]
    for n, host in enumerate(WORKSTATIONS):
        sites = [*common, f"hobby{n}.example", f"shop{n}.example"]
        for i in range(40):
            rows.append(
                get(T0 + n * 7 + i * 90, host, f"198.51.100.{i % 5 + 1}", sites[i % 5], CHROME)
            )
    for i in range(30):
        rows.append(
            get(
                T0 + 60 + i * 300,
                SCRIPTER,
                "203.0.113.9",
                "api.dropzone.example",
                "python-requests/2.31.0",
            )
        )
        rows.append(
            get(T0 + 70 + i * 300, TWO_SYSTEMS, "203.0.113.10", "files.odd.example", LINUX_FIREFOX)
        )
    mirrors = ["pypi.example", "github.example", "deb.example", "registry.example"]
    for i in range(200):
        rows.append(get(T0 + i * 30, BUILD, "192.0.2.7", mirrors[i % 4], "curl/8.4.0"))
    write(root / "logs", "http", rows)
    store = Store(root / "store")
    import_paths([root / "logs"], store)
    return store


def test_workstation_tool_agent_is_flagged_and_build_server_is_not(office: Store) -> None:
    found = _run(open_store(office))
    tool = [f for f in found if f.src == SCRIPTER]
    assert [f.evidence["user_agent"] for f in tool] == ["python-requests/2.31.0"]
    assert tool[0].dst == "api.dropzone.example"
    assert {"tool_agent", "rare_destinations_only"} <= set(tool[0].evidence["reasons"])
    assert tool[0].evidence["host_usual_agent"] == CHROME
    assert tool[0].evidence["host_usual_os"] == "Windows"
    assert [f for f in found if f.src == BUILD] == []
    assert all(f.evidence["user_agent"] != CHROME for f in found)


def test_agent_of_another_os_is_flagged(office: Store) -> None:
    found = _run(open_store(office))
    other = [f for f in found if f.src == TWO_SYSTEMS]
    assert len(other) == 1
    assert other[0].evidence["user_agent"] == LINUX_FIREFOX
    assert "os_mismatch" in other[0].evidence["reasons"]
    assert (other[0].evidence["agent_os"], other[0].evidence["host_usual_os"]) == (
        "Linux",
        "Windows",
    )


def test_office_contract(office: Store) -> None:
    assert_contract(_run, office)


@pytest.mark.spark
def test_duckdb_and_spark_agree(office: Store, spark: object) -> None:
    assert_spark_agrees(_run, office, spark)


# --- the rules and the score --------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        ("Modzilla/-2.0 (Atari 7800)", {"misspelled_mozilla", "impossible_version"}),
        ("Mozila/5.0 (Windows NT 10.0; Win64; x64)", {"misspelled_mozilla"}),
        ("Mozilla5.0 (Windows NT 10.0)", {"misspelled_mozilla"}),
        # MSIE 2 cannot carry Trident/4 (IE8), nor IE8 run on Windows 2000 (NT 5.0)
        (
            "Mozilla/4.0 (compatible; MSIE 2.0; Windows NT 5.0; Trident/4.0)",
            {"impossible_combination"},
        ),
        ("Mozilla/4.0 (compatible; MSIE 9.0; Windows NT 5.1)", {"impossible_combination"}),
        (
            "Mozilla/5.0 (Windows NT 11.0; Win64; x64) Gecko/20100101 Firefox/133.0",
            {"impossible_version"},
        ),
        ("Mozilla/4.0 (compatible; MSIE 14.0; Windows NT 6.1)", {"impossible_version"}),
        ("Mozilla/7.0 (Windows NT 10.0)", {"impossible_version"}),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64", {"unbalanced_parentheses"}),
        ("x", {"too_short"}),
        ("Mozilla/5.0", {"incomplete"}),
        ("Mozilla/4.0 (compatible;)", {"incomplete"}),
        # real agents: Compatibility View, IE11, a Mac, tools, an OS component
        ("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.1; Trident/4.0; SLCC2)", set()),
        ("Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko", set()),
        ("Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; Trident/6.0)", set()),
        (CHROME, set()),
        (LINUX_FIREFOX, set()),
        ("python-requests/2.31.0", set()),
        ("Microsoft-CryptoAPI/10.0", set()),
        ("-", set()),
    ],
)
def test_malformation_rules(agent: str, expected: set[str]) -> None:
    assert set(user_agents.malformations(agent)) == expected


@pytest.mark.parametrize(
    ("agent", "family", "os", "os_version", "category"),
    [
        (CHROME, "Chrome", "Windows", "10.0", None),
        (CHROME + " Edg/131.0.0.0", "Edge", "Windows", "10.0", None),
        (LINUX_FIREFOX, "Firefox", "Linux", None, None),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/131.0.0.0 Mobile Safari/537.36", "Chrome", "Android", "14", None),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
         "Gecko) Version/18.1 Safari/605.1.15", "Safari", "macOS", None, None),
        ("Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.19041.1682",
         "WindowsPowerShell", "Windows", "10.0", "tool"),
        ("Nim httpclient/1.6.14", "Nim httpclient", None, None, "tool"),
        ("Microsoft-CryptoAPI/10.0", "Microsoft-CryptoAPI", None, None, "os"),
        ("Modzilla/-2.0 (Atari 7800)", "Modzilla", None, None, None),
    ],
)  # fmt: skip
def test_parse(
    agent: str, family: str, os: str | None, os_version: str | None, category: str | None
) -> None:
    info = user_agents.parse(agent)
    assert (info.family, info.os, info.os_version) == (family, os, os_version)
    assert (info.known.category if info.known else None) == category


def test_shape_masks_versions_and_build_ids() -> None:
    assert user_agents.shape("curl/8.4.0") == user_agents.shape("curl/7.58.0") == "curl/#.#.#"
    assert user_agents.shape("App/1.0 (id 0123abcd4567)") == "App/#.# (id #)"


def test_shipped_list_loads_with_known_categories() -> None:
    listed = user_agents.known_agents()
    assert len(listed) > 30
    assert {k.category for k in listed} == {"tool"} | user_agents.BENIGN_CATEGORIES


def _profile(**names: int) -> HostProfile:
    agents = {"chrome": CHROME, "linux": LINUX_FIREFOX, "curl": "curl/8.4.0"}
    counts = {agents.get(k, k): v for k, v in names.items()}
    return HostProfile(counts, dict(counts))


def _rare() -> Destination:
    """A name only this host requests."""
    return Destination("c2.example", 100, "203.0.113.1", 80, 1, WHEN, WHEN)


def _shared() -> Destination:
    """A name 40 internal hosts request."""
    return Destination("www.news.example", 100, "198.51.100.1", 80, 40, WHEN, WHEN)


def test_tool_agent_on_a_workstation_not_on_a_server() -> None:
    workstation = _profile(chrome=30, curl=1)
    server = _profile(curl=30)
    kwargs = {"agent_hosts": 40, "web_hosts": 200, "cfg": CFG}
    assert "tool_agent" in reasons_for("curl/8.4.0", workstation, [_rare()], **kwargs)
    assert reasons_for("curl/8.4.0", server, [_rare()], **kwargs) == {}


def test_corroboration_ranks_above_one_reason() -> None:
    workstation = _profile(chrome=30, curl=1)
    alone = reasons_for(
        "curl/8.4.0", workstation, [_shared()], agent_hosts=40, web_hosts=200, cfg=CFG
    )
    rare = reasons_for("curl/8.4.0", workstation, [_rare()], agent_hosts=1, web_hosts=200, cfg=CFG)
    assert set(rare) == {"tool_agent", "rare_agent", "rare_destinations_only"}
    scores = [agent_score(r, 100, benign=False, cfg=CFG) for r in (alone, rare)]
    assert scores[0] < scores[1]
    assert severity_for(scores[0]) in {"info", "low"}  # one weak reason stays low


def test_rarity_alone_is_left_to_rare_destination_and_stays_low_with_rare_names() -> None:
    profile = _profile(chrome=30, linux=0)
    agent = CHROME.replace("131", "99") + " Custom/1"
    assert reasons_for(agent, profile, [_shared()], agent_hosts=1, web_hosts=200, cfg=CFG) == {}
    both = reasons_for(agent, profile, [_rare()], agent_hosts=1, web_hosts=200, cfg=CFG)
    assert set(both) == {"rare_agent", "rare_destinations_only"}
    assert agent_score(both, 10_000, benign=False, cfg=CFG) < 0.5  # below "medium"


def test_rarity_means_nothing_in_a_small_fleet() -> None:
    assert fleet_weight(CFG.min_fleet, CFG) == 0.0
    assert fleet_weight(CFG.fleet_full, CFG) == 1.0
    assert 0.0 < fleet_weight(CFG.min_fleet * 2, CFG) < 1.0


def test_listed_applications_are_damped() -> None:
    reasons = {"os_mismatch": CFG.os_mismatch_weight}
    damped = agent_score(reasons, 50, benign=True, cfg=CFG)
    assert damped == pytest.approx(
        CFG.benign_damping * agent_score(reasons, 50, benign=False, cfg=CFG)
    )


def test_scores_stay_in_range() -> None:
    every = {r: w for r, (w, _) in user_agents.MALFORMATIONS.items()}
    assert agent_score(every, 10**9, benign=False, cfg=CFG) <= CFG.max_score
    assert agent_score({}, 10**9, benign=False, cfg=CFG) == 0.0


def test_no_agent_counts_from_a_workstation_towards_rare_names_only() -> None:
    workstation = _profile(chrome=30)
    server = _profile(curl=30)
    none = user_agents.NO_AGENT
    kwargs = {"agent_hosts": 150, "web_hosts": 200, "cfg": CFG}
    assert set(reasons_for(none, workstation, [_rare()], **kwargs)) == {"no_agent"}
    assert reasons_for(none, workstation, [], **kwargs) == {}  # only shared names: none left
    assert reasons_for(none, server, [_rare()], **kwargs) == {}
