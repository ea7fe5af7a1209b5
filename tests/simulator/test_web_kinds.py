"""The web techniques and their decoys: what truth.json lists is in the written logs (Zeek TSV,
x509.log, the proxy's Squid access.log), read back independently and through the readers."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from homecall.config import Config
from homecall.pipeline import import_paths
from homecall.simulator import SimulationResult, simulate
from homecall.simulator.truth import (
    MAX_UIDS,
    WEB_KEYS,
    AgentTruth,
    BenignWeb,
    CertTruth,
    FrontingTruth,
    HttpAnomalyTruth,
    ProxyTruth,
    UriCommand,
    UriCommandTruth,
    WebC2Truth,
)
from homecall.store import Store
from homecall.store.tables import connect, open_tables

from .conftest import ZeekLog

ReadLog = Callable[[Path], ZeekLog]
DAY = "2026-11-23"
PROXY = "10.0.1.30"
INTERNAL = ipaddress.ip_network("10.0.0.0/8")
# Squid native format: %9d.%03d %6d %s %s/%03d %d %s %s %s %s%s/%s %s
SQUID = re.compile(
    r"(?P<time>\d{9,}\.\d{3}) (?P<elapsed> *\d+) (?P<client>\S+) (?P<code>[A-Z_]+)/"
    r"(?P<status>\d{3}) (?P<bytes>\d+) (?P<method>\S+) (?P<url>\S+) (?P<ident>\S+) "
    r"(?P<hierarchy>[A-Z_]+)/(?P<peer>\S+) (?P<type>\S+)"
)
TRUTH_TYPES = {
    "web_c2": WebC2Truth,
    "user_agents": AgentTruth,
    "uri_commands": UriCommandTruth,
    "domain_fronting": FrontingTruth,
    "tls_certs": CertTruth,
    "http_anomalies": HttpAnomalyTruth,
    "benign_web": BenignWeb,
}


def _rows(log: ZeekLog) -> list[dict[str, str]]:
    return [dict(zip(log.fields, row, strict=True)) for row in log.rows]


@dataclass(frozen=True)
class Day:
    """The default run's day, parsed: rows by log, conn and ssl rows by uid, squid lines."""

    conn: list[dict[str, str]]
    http: list[dict[str, str]]
    ssl: list[dict[str, str]]
    dns: list[dict[str, str]]
    x509: dict[str, dict[str, str]]  # by fingerprint
    squid: list[dict[str, str]]
    squid_text: list[str]

    def conn_of(self, uid: str) -> dict[str, str]:
        return _by_uid(self.conn)[uid]

    def http_from(self, src: str) -> list[dict[str, str]]:
        return [r for r in self.http if r["id.orig_h"] == src]


_INDEX: dict[int, dict[str, dict[str, str]]] = {}


def _by_uid(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    if id(rows) not in _INDEX:
        _INDEX[id(rows)] = {r["uid"]: r for r in rows}
    return _INDEX[id(rows)]


def _squid(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    parsed = []
    for line in lines:
        match = SQUID.fullmatch(line)
        assert match, line
        parsed.append(match.groupdict())
    return parsed, lines


@pytest.fixture(scope="module")
def day(default_run: SimulationResult, read_log: ReadLog) -> Day:
    folder = default_run.out / DAY
    squid, text = _squid(folder / "squid" / "access.log")
    return Day(
        conn=_rows(read_log(folder / "conn.log")),
        http=_rows(read_log(folder / "http.log")),
        ssl=_rows(read_log(folder / "ssl.log")),
        dns=_rows(read_log(folder / "dns.log")),
        x509={r["fingerprint"]: r for r in _rows(read_log(folder / "x509.log"))},
        squid=squid,
        squid_text=text,
    )


def _one(items: tuple[Any, ...], kind: str) -> Any:
    (found,) = [item for item in items if item.kind == kind]
    return found


def _as_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    return value


def _iso(ts: str) -> str:
    moment = dt.datetime.fromtimestamp(float(ts), dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- truth.json ---------------------------------------------------------------------------


def _read(kind: type, item: dict[str, Any]) -> Any:
    """A truth dataclass back from its JSON (lists as tuples, commands as UriCommand)."""
    values = {k: _as_tuples(v) for k, v in item.items()}
    if kind is UriCommandTruth:
        values["commands"] = tuple(UriCommand(**c) for c in item["commands"])
    return kind(**values)


def test_truth_json_lists_every_web_kind(default_run: SimulationResult) -> None:
    truth = json.loads((default_run.out / "truth.json").read_text())
    assert _read(ProxyTruth, truth["proxy"]) == default_run.proxy
    for key in WEB_KEYS:
        read = [_read(TRUTH_TYPES[key], item) for item in truth[key]]
        assert read == list(getattr(default_run, key)), key
    kinds = {key: {getattr(e, "kind", "-") for e in getattr(default_run, key)} for key in WEB_KEYS}
    assert kinds["web_c2"] == {"proxy-beacon", "odd-port", "off-hours", "long-connection"}
    assert kinds["user_agents"] == {"tool-agent", "malformed-agent", "os-mismatch"}
    assert kinds["uri_commands"] == {"web-shell", "tasking"}
    assert kinds["tls_certs"] == {"cert-mismatch", "expired-cert", "cs-default-cert"}
    assert kinds["http_anomalies"] == {"http-1.0", "same-path"}
    assert {a.tool for a in default_run.user_agents} == {
        "python-requests", "go", "curl", "powershell", "msie2", "atari", "linux-chrome",
    }  # fmt: skip
    assert {f.via_proxy for f in default_run.domain_fronting} == {True, False}
    assert kinds["benign_web"] >= {
        "proxy-denied", "app-agent", "long-connection", "server-tool", "package-manager",
        "odd-port", "off-hours", "same-path", "http-1.0", "cdn-same-name", "wildcard-cert",
        "cdn-same-domain", "www-bare", "expired-cert", "search-words", "jwt", "long-token",
        "image-hash", "portal-admin-action", "portal-search-words",
    }  # fmt: skip
    for key in WEB_KEYS[:-1]:
        for item in getattr(default_run, key):
            assert len(item.uids) == min(MAX_UIDS, item.requests) > 0, item
            assert ipaddress.ip_address(item.src) in INTERNAL
    assert all(b.requests > 0 for b in default_run.benign_web)


def test_every_listed_uid_is_a_client_connection_in_conn_log(
    default_run: SimulationResult, day: Day
) -> None:
    for key in WEB_KEYS[:-1]:
        for item in getattr(default_run, key):
            rows = [day.conn_of(uid) for uid in item.uids]
            stamps = [float(r["ts"]) for r in rows]
            assert stamps == sorted(stamps), item
            assert _iso(rows[0]["ts"]) == item.first_seen, item
            assert {r["id.orig_h"] for r in rows} == {
                item.peer if getattr(item, "direction", "") == "inbound" else item.src
            }, item


# --- proxy mode ---------------------------------------------------------------------------


def test_proxied_hosts_reach_the_web_only_through_the_proxy(
    default_run: SimulationResult, day: Day
) -> None:
    proxy = default_run.proxy
    assert proxy is not None
    assert (proxy.address, proxy.port, proxy.access_log) == (PROXY, 3128, "squid/access.log")
    hosts = set(proxy.hosts)
    assert 45 <= len(hosts) <= 55  # a quarter of the 200 workstations, and a build server
    assert "10.0.3.10" in hosts
    assert not hosts & ({c.src for c in default_run.c2} | {d.src for d in default_run.dga})
    outside = [
        r for r in day.conn
        if r["id.orig_h"] in hosts and r["proto"] == "tcp"
        and ipaddress.ip_address(r["id.resp_h"]) not in INTERNAL
    ]  # fmt: skip
    # proxied hosts' web connections all go to the proxy; direct attempts die at the firewall
    assert {r["conn_state"] for r in outside} == {"S0"}
    # ...(the vulnerability scanner 10.0.1.50 probes the proxy host too, as a scan)
    to_proxy = [r for r in day.conn if r["id.resp_h"] == PROXY and r["id.orig_h"] != "10.0.1.50"]
    clients = {r["id.orig_h"] for r in to_proxy}
    assert clients <= hosts
    assert len(clients) > 0.9 * len(hosts)  # all but the laptops of absent users
    assert {r["id.resp_p"] for r in to_proxy} == {"3128"}
    own = [r for r in day.conn if r["id.orig_h"] == PROXY]  # ...which opens its own
    assert len(own) > 0.9 * len(to_proxy)
    assert all(ipaddress.ip_address(r["id.resp_h"]).is_global for r in own)
    assert not [r for r in day.http + day.ssl if r["id.orig_h"] == PROXY]  # conn.log only
    asked = {(r["id.orig_h"], r["host"]) for r in day.http if r["id.orig_h"] in hosts}
    looked_up = {(r["id.orig_h"], r["query"]) for r in day.dns}
    decoys = {d.domain for d in default_run.benign_dns if d.kind == "cdn"}  # drawn as lookups
    assert asked
    assert not {
        (src, name) for src, name in asked & looked_up
        if name not in decoys and not name.endswith(".acme.internal")
    }  # fmt: skip


def test_the_access_log_is_squid_native_and_matches_zeek(
    default_run: SimulationResult, day: Day
) -> None:
    proxy = default_run.proxy
    assert proxy is not None
    assert len(day.squid) == proxy.requests == default_run.web_rows["squid"]
    for line, text in zip(day.squid[:2_000], day.squid_text[:2_000], strict=True):
        assert len(line["elapsed"]) >= 6  # %6d
        assert line["ident"] == "-"
        assert line["client"] in proxy.hosts
        if line["method"] == "CONNECT":
            assert re.fullmatch(r"[a-z0-9.-]+:\d+", line["url"]), text
        else:
            assert re.match(r"https?://", line["url"]), text
        if line["hierarchy"] == "HIER_DIRECT":
            assert ipaddress.ip_address(line["peer"]).is_global, text
        else:
            assert (line["hierarchy"], line["peer"]) == ("HIER_NONE", "-"), text
    codes = Counter(f"{line['code']}/{line['status']}" for line in day.squid)
    assert codes["TCP_DENIED/403"] == proxy.denied > 0
    assert codes["TCP_TUNNEL/200"] > codes["TCP_MISS/200"] > codes["NONE_NONE/200"] > 0
    stamps = [float(line["time"]) for line in day.squid]
    assert stamps == sorted(stamps)
    connects = Counter((r["id.orig_h"], r["uri"]) for r in day.http if r["method"] == "CONNECT")
    squid_connects = Counter(
        (line["client"], line["url"]) for line in day.squid if line["method"] == "CONNECT"
    )
    assert connects == squid_connects  # every tunnel in both views


def test_the_proxy_beacon_is_in_zeek_and_in_the_squid_log(
    default_run: SimulationResult, day: Day
) -> None:
    beacon = _one(default_run.web_c2, "proxy-beacon")
    assert beacon.via_proxy
    target = f"{beacon.host}:443"
    connects = [r for r in day.http_from(beacon.src) if r["uri"] == target]
    assert len(connects) == beacon.requests
    seen = {(r["method"], r["host"], r["id.resp_h"], r["id.resp_p"]) for r in connects}
    assert seen == {("CONNECT", beacon.host, PROXY, "3128")}
    assert {r["user_agent"] for r in connects} == {beacon.user_agent}
    ssl = {r["uid"]: r for r in day.ssl if r["id.orig_h"] == beacon.src}
    assert {ssl[r["uid"]]["server_name"] for r in connects} == {beacon.host}  # TLS in the tunnel
    for uid in beacon.uids:
        assert day.conn_of(uid)["service"] == "http,ssl"
    lines = [x for x in day.squid if x["client"] == beacon.src and x["url"] == target]
    assert len(lines) == beacon.requests
    assert {(x["code"], x["status"], x["hierarchy"], x["peer"]) for x in lines} == {
        ("TCP_TUNNEL", "200", "HIER_DIRECT", beacon.server)
    }
    own = [r for r in day.conn if (r["id.orig_h"], r["id.resp_h"]) == (PROXY, beacon.server)]
    assert len(own) == beacon.requests
    starts = sorted(float(r["ts"]) for r in connects)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    low = beacon.sleep_s * (1 - beacon.jitter_ratio)
    assert low - 1 < min(gaps)  # one-sided jitter: sleep * (1 - U * j)
    assert sorted(gaps)[len(gaps) // 2] < beacon.sleep_s + 1
    assert max(gaps) - min(gaps) > 0.8 * beacon.sleep_s * beacon.jitter_ratio


def test_an_odd_port_tunnel_and_the_ordinary_ones(default_run: SimulationResult, day: Day) -> None:
    odd = _one(default_run.web_c2, "odd-port")
    assert (odd.port, odd.via_proxy) == (4444, True)
    lines = [x for x in day.squid if x["client"] == odd.src and x["url"] == f"{odd.host}:4444"]
    assert len(lines) == odd.requests
    assert {r["uri"] for r in day.http_from(odd.src) if r["method"] == "CONNECT"} >= {
        f"{odd.host}:4444"
    }
    decoys = {(b.name, b.port) for b in default_run.benign_web if b.kind == "odd-port"}
    assert {port for _, port in decoys} == {8443, 8080}
    urls = {x["url"] for x in day.squid}
    assert any(url.endswith(":8443") for url in urls)
    assert any(url.startswith("http://crm.vendor-apps.com:8080/") for url in urls)


def test_blocked_requests_are_denied_by_the_proxy(default_run: SimulationResult, day: Day) -> None:
    denied = _one(default_run.benign_web, "proxy-denied")
    assert denied.via_proxy
    lines = [x for x in day.squid if x["code"] == "TCP_DENIED"]
    assert len(lines) == denied.requests
    assert {(x["status"], x["hierarchy"], x["peer"]) for x in lines} == {("403", "HIER_NONE", "-")}
    zeek = [r for r in day.http if r["status_code"] == "403" and r["id.resp_h"] == PROXY]
    assert len(zeek) == denied.requests
    refused = {r["uid"] for r in zeek}
    assert not [r for r in day.ssl if r["uid"] in refused]  # no TLS after a refused CONNECT


# --- web shell and URI tasking ------------------------------------------------------------


def _decoded(command: UriCommand) -> str:
    """Decode the command from its URI independently of the simulator."""
    if command.encoding == "body":
        return ""
    value = parse_qs(urlsplit(command.uri).query, keep_blank_values=True)[command.parameter][0]
    if command.encoding in ("plain", "url"):
        return value
    if command.encoding == "hex":
        return binascii.unhexlify(value).decode()
    padded = value + "=" * (-len(value) % 4)
    return base64.b64decode(
        padded, altchars=b"-_" if "-" in value or "_" in value else None
    ).decode()


def test_the_web_shell_is_inbound_with_decodable_commands(
    default_run: SimulationResult, day: Day
) -> None:
    shell = _one(default_run.uri_commands, "web-shell")
    assert (shell.direction, shell.src, shell.port) == ("inbound", "10.0.2.80", 80)
    assert ipaddress.ip_address(shell.peer).is_global
    rows = [r for r in day.http if r["id.orig_h"] == shell.peer]
    assert len(rows) == shell.requests
    assert {(r["id.resp_h"], r["host"], r["user_agent"]) for r in rows} == {
        (shell.src, shell.host, shell.user_agent)
    }
    assert {day.conn_of(r["uid"])["local_orig"] for r in rows} == {"F"}
    uris = Counter((r["method"], r["uri"]) for r in rows)
    encodings = Counter(c.encoding for c in shell.commands)
    assert set(encodings) >= {"plain", "url", "base64", "hex"}
    for command in shell.commands:
        assert uris[(command.method, command.uri)] >= 1, command
        assert command.uri.startswith(shell.path)
        assert _decoded(command) == command.command, command
    decoded = {c.command.split(" ")[0] for c in shell.commands}
    assert decoded >= {"whoami", "ipconfig", "cat"}
    cradles = [c for c in shell.commands if c.command.startswith("powershell -nop -enc ")]
    assert cradles or all(c.encoding == "body" for c in shell.commands[-1:])
    for cradle in cradles:  # -enc takes UTF-16LE base64: a second layer to decode
        script = base64.b64decode(cradle.command.split()[-1]).decode("utf-16-le")
        assert script.startswith("IEX (New-Object Net.WebClient).DownloadString(")
    assert any(r["method"] == "POST" for r in rows)


def test_c2_tasking_rides_in_the_implants_uris(default_run: SimulationResult, day: Day) -> None:
    task = _one(default_run.uri_commands, "tasking")
    assert task.direction == "outbound"
    rows = [r for r in day.http_from(task.src) if r["host"] == task.host]
    assert len(rows) == task.requests
    assert all(urlsplit(r["uri"]).path == task.path for r in rows)
    carrying = [r for r in rows if "&d=" in r["uri"]]
    assert len(carrying) == len(task.commands) > 5
    for command in task.commands:
        assert command.parameter == "d"
        assert _decoded(command) == command.command


def test_uri_decoys_look_like_commands_but_are_benign(
    default_run: SimulationResult, day: Day
) -> None:
    benign = {b.kind: b for b in default_run.benign_web}
    uris = [r["uri"] for r in day.http]
    searches = [u for u in uris if "search?q=" in u]
    words = {w for u in searches for w in unquote(u.split("q=")[1]).replace("+", " ").split()}
    assert words & {"exec", "cmd", "powershell", "shell"}
    tokens = [u for u in uris if "token=eyJ" in u]
    assert len(tokens) >= benign["jwt"].requests
    header = tokens[0].split("token=")[1].split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    assert [u for u in uris if "/admin/index.php?action=" in u]
    assert [u for u in uris if re.search(r"/r/\?u=[A-Za-z0-9_-]{80,}&sig=[0-9a-f]{40}", u)]
    assert [u for u in uris if re.search(r"\.[0-9a-f]{12}\.jpg$", u)]


# --- domain fronting and certificates -----------------------------------------------------


def test_domain_fronting_direct_and_through_the_bumping_proxy(
    default_run: SimulationResult, day: Day
) -> None:
    direct, proxied = sorted(default_run.domain_fronting, key=lambda f: f.via_proxy)
    ssl = _by_uid(day.ssl)
    http = {r["uid"]: r for r in day.http if r["method"] != "CONNECT"}
    for uid in direct.uids:  # one uid: the SNI names the front, the Host the back-end
        assert ssl[uid]["server_name"] == direct.sni
        assert http[uid]["host"] == direct.http_host
        assert day.conn_of(uid)["id.resp_h"] == direct.server
    assert direct.http_host.endswith("." + direct.cdn)
    pairs = Counter((ssl[uid]["server_name"], http[uid]["host"]) for uid in http if uid in ssl)
    assert pairs[(direct.sni, direct.http_host)] == direct.requests
    assert pairs[(direct.sni, direct.sni)] > 0  # the same CDN used plainly
    assert pairs[("fonts.acmecorp-cdn.net", "img.acmecorp-cdn.net")] > 0
    assert pairs[("acmecorp-cdn.net", "www.acmecorp-cdn.net")] > 0
    front = next(r for r in day.x509.values() if r["certificate.subject"] == "CN=*.aspnetcdn.com")
    assert front["san.dns"].split(",") == ["*.aspnetcdn.com", "aspnetcdn.com"]
    chains = {ssl[u]["cert_chain_fps"].split(",")[0] for u in direct.uids} - {"-"}
    assert chains == {front["fingerprint"]}  # it covers the front, not the back-end
    # through the proxy: Zeek sees a CONNECT to the front; the proxy logs the bumped request
    connects = [r for r in day.http_from(proxied.src) if r["uri"] == f"{proxied.sni}:443"]
    assert len(connects) == proxied.requests
    assert not [r for r in day.http if r["host"] == proxied.http_host]
    lines = [x for x in day.squid if x["client"] == proxied.src]
    bumped = [x for x in lines if x["url"].startswith(f"https://{proxied.http_host}/")]
    assert len(bumped) == proxied.requests
    assert {x["peer"] for x in bumped} == {proxied.server}
    assert sum(x["code"] == "NONE_NONE" and x["url"] == f"{proxied.sni}:443" for x in lines) == (
        proxied.requests
    )


def test_certificates_in_ssl_and_x509(default_run: SimulationResult, day: Day) -> None:
    ssl = _by_uid(day.ssl)
    for cert in default_run.tls_certs:
        x509 = day.x509[cert.cert_id]
        assert (x509["certificate.subject"], x509["certificate.issuer"]) == (
            cert.subject, cert.issuer,
        )  # fmt: skip
        assert x509["certificate.serial"] == cert.serial
        assert x509["san.dns"] == (",".join(cert.san_dns) or "-")
        shown = [ssl[u] for u in cert.uids if ssl[u]["cert_chain_fps"] != "-"]
        assert shown, cert
        for row in shown:
            assert row["server_name"] == cert.sni
            assert row["cert_chain_fps"].split(",")[0] == cert.cert_id
            assert row["validation_status"] == cert.validation_status
    mismatch = _one(default_run.tls_certs, "cert-mismatch")
    assert mismatch.sni not in mismatch.san_dns
    assert {ssl[u]["sni_matches_cert"] for u in mismatch.uids} == {"F"}
    expired = _one(default_run.tls_certs, "expired-cert")
    assert expired.not_valid_after < expired.first_seen
    cs = _one(default_run.tls_certs, "cs-default-cert")
    assert cs.cert_id == "87f2085c32b6a2cc709b365f55873e207a9caa10bffecf2fd16d3cf9d94d390c"
    assert (cs.serial, cs.subject == cs.issuer) == ("8BB00EE", True)
    assert int(cs.serial, 16) == 146473198
    assert cs.ja3
    assert (cs.src, cs.sni) in {(c.src, c.domain) for c in default_run.c2}
    wildcard = _one(default_run.benign_web, "wildcard-cert")
    cert = next(r for r in day.x509.values() if r["certificate.subject"] == "CN=*.azureedge.net")
    assert wildcard.name is not None
    assert wildcard.name.split(".", 1)[1] == cert["san.dns"].removeprefix("*.")
    lapsed = _one(default_run.benign_web, "expired-cert")
    assert [r for r in day.ssl if r["server_name"] == lapsed.name]
    assert default_run.web_rows["x509"] == len(day.x509)


# --- user agents --------------------------------------------------------------------------


def test_implants_agents_and_the_hosts_usual_one(default_run: SimulationResult, day: Day) -> None:
    http = _by_uid(day.http)
    for agent in default_run.user_agents:
        assert "Windows NT 10.0" in agent.usual_user_agent
        assert agent.user_agent != agent.usual_user_agent
        rows = [http[uid] for uid in agent.uids]
        assert {r["user_agent"] for r in rows} == {agent.user_agent}, agent
        expected = "CONNECT" if agent.protocol == "https" else "GET"
        assert Counter(r["method"] for r in rows).most_common(1)[0][0] == expected
        requested = {r["host"] for r in rows}
        assert requested == {agent.host or agent.server}
        if agent.via_proxy:  # the host's own requests carry its usual agent
            own = Counter(r["user_agent"] for r in day.http_from(agent.src))
            assert own[agent.usual_user_agent] > 20, agent
    malformed = {a.user_agent for a in default_run.user_agents if a.kind == "malformed-agent"}
    assert "Modzilla/-2.0 (Atari 7800)" in malformed
    linux = _one(default_run.user_agents, "os-mismatch")
    assert "X11; Linux" in linux.user_agent


def test_tool_agents_are_normal_for_servers_and_apps(
    default_run: SimulationResult, day: Day
) -> None:
    build = _one(default_run.benign_web, "server-tool")
    agents = {r["user_agent"] for r in day.http_from(build.src or "")}
    assert {"curl/8.5.0", "Go-http-client/1.1", "python-requests/2.31.0", "git/2.43.0"} <= agents
    apt = _one(default_run.benign_web, "package-manager")
    assert {r["user_agent"] for r in day.http_from(apt.src or "")} == {
        "Debian APT-HTTP/1.3 (2.6.1)"
    }
    everyone = Counter(r["user_agent"] for r in day.http if r["method"] == "CONNECT")
    for app in (b for b in default_run.benign_web if b.kind == "app-agent"):
        assert everyone[app.detail] > 10, app  # proxied hosts' apps show their agent
    assert sum("Microsoft-Delivery-Optimization" in r["user_agent"] for r in day.http) > 50
    assert everyone["MSDW"] > 50  # Windows telemetry through the proxy


# --- HTTP anomalies, long connections, off hours ------------------------------------------


def test_http_anomalies(default_run: SimulationResult, day: Day) -> None:
    http = _by_uid(day.http)
    old = _one(default_run.http_anomalies, "http-1.0")
    rows = [http[u] for u in old.uids]
    assert {(r["version"], r["host"], r["id.resp_h"]) for r in rows} == {
        ("1.0", "-", old.servers[0])
    }
    same = _one(default_run.http_anomalies, "same-path")
    rows = [r for r in day.http_from(same.src) if r["uri"] == same.path]
    assert len(rows) == same.requests
    assert {r["host"] for r in rows} == set(same.hosts)
    assert len(same.hosts) >= 30
    assert {r["id.resp_h"] for r in rows} == set(same.servers)
    monitor = _one(default_run.benign_web, "same-path")
    status = {r["host"] for r in day.http_from(monitor.src or "") if r["uri"] == "/status"}
    assert len(status) == 12
    device = _one(default_run.benign_web, "http-1.0")
    assert {r["version"] for r in day.http_from(device.src or "")} == {"1.0"}


def test_a_long_connection_and_an_off_hours_burst(default_run: SimulationResult, day: Day) -> None:
    long = _one(default_run.web_c2, "long-connection")
    (uid,) = long.uids
    row = day.conn_of(uid)
    assert float(row["duration"]) == pytest.approx(long.longest_s, abs=1e-3)
    assert long.longest_s > 5 * 3_600
    pairs = Counter((r["id.orig_h"], r["id.resp_h"]) for r in day.conn)
    assert pairs[(long.src, long.server)] == 1
    slack = _one(default_run.benign_web, "long-connection")
    tunnels = [r for r in day.http if r["uri"] == f"{slack.name}:443" and r["method"] == "CONNECT"]
    assert tunnels
    assert max(float(day.conn_of(r["uid"])["duration"]) for r in tunnels) > 3 * 3_600
    burst = _one(default_run.web_c2, "off-hours")
    hours = {
        dt.datetime.fromtimestamp(float(day.conn_of(u)["ts"]), dt.UTC).hour for u in burst.uids
    }
    assert hours == set(burst.hours_utc) == {3}
    from_host = [
        r for r in day.conn if r["id.orig_h"] == burst.src and r["id.resp_h"] == burst.server
    ]
    assert len(from_host) == burst.requests
    nightly = _one(default_run.benign_web, "off-hours")
    assert nightly.hosts > 50  # the whole fleet's maintenance window, not one host


# --- the readers, and determinism ---------------------------------------------------------


@pytest.fixture(scope="module")
def store(default_run: SimulationResult, tmp_path_factory: pytest.TempPathFactory) -> Store:
    found = Store(tmp_path_factory.mktemp("web-store"))
    imported = import_paths([default_run.out], found)
    assert not imported.errors
    assert imported.problems.bad_records == 0
    return found


def test_the_readers_take_the_web_records(default_run: SimulationResult, store: Store) -> None:
    assert store.row_counts()["x509"] == default_run.web_rows["x509"]
    tables = open_tables(store, Config().internal, connect())
    tls = tables["tls"]
    mismatch = _one(default_run.tls_certs, "cert-mismatch")
    rows = tables.to_pyarrow(
        tls.filter(tls.uid.isin(list(mismatch.uids)) & tls.cert_subject.notnull()).select(
            "server_name", "cert_subject", "cert_san_dns"
        )
    ).to_pylist()
    assert rows
    assert {(r["server_name"], r["cert_subject"], tuple(r["cert_san_dns"])) for r in rows} == {
        (mismatch.sni, mismatch.subject, mismatch.san_dns)
    }
    http = tables["http"]
    beacon = _one(default_run.web_c2, "proxy-beacon")
    mine = http.filter((http.orig_ip == beacon.src) & (http.host == beacon.host))
    seen = tables.to_pyarrow(mine.select("method", "proxy", "resp_ip", "resp_port")).to_pylist()
    zeek = Counter((r["method"], r["resp_ip"], r["resp_port"]) for r in seen if not r["proxy"])
    assert zeek == {("CONNECT", PROXY, 3128): beacon.requests}
    logged = Counter((r["proxy"], r["resp_ip"], r["resp_port"]) for r in seen if r["proxy"])
    if logged:  # once the Squid reader is registered: the proxy's lines of the same tunnels
        assert logged == {("squid", beacon.host, 443): beacon.requests}


def test_same_seed_same_web_logs_and_small_fleets_get_none(tmp_path: Path) -> None:
    first = simulate(tmp_path / "a", hosts=30, days=1, seed=4)
    again = simulate(tmp_path / "b", hosts=30, days=1, seed=4)
    assert [p.relative_to(first.out).as_posix() for p in first.web_logs] == [
        "2026-11-23/x509.log", "2026-11-23/squid/access.log",
    ]  # fmt: skip
    for path in [*first.web_logs, first.out / "truth.json"]:
        twin = again.out / path.relative_to(first.out)
        assert path.read_bytes() == twin.read_bytes(), path
    assert first.proxy is not None
    assert first.user_agents
    assert first.domain_fronting
    tiny = simulate(tmp_path / "c", hosts=10, days=1, seed=4)
    assert tiny.proxy is None
    assert (tiny.web_c2, tiny.user_agents, tiny.benign_web) == ((), (), ())
    assert not (tmp_path / "c" / "2026-11-23" / "squid").exists()
    assert [p.name for p in tiny.web_logs] == ["x509.log"]


def test_web_techniques_span_the_days(week_run: SimulationResult) -> None:
    assert week_run.proxy is not None
    days = sorted(p.name for p in week_run.out.iterdir() if p.is_dir())
    for folder in days:
        assert (week_run.out / folder / "squid" / "access.log").stat().st_size > 0
    beacon = _one(week_run.web_c2, "proxy-beacon")
    assert (beacon.first_seen[:10], beacon.last_seen[:10]) == (days[0], days[-1])
    shell = _one(week_run.uri_commands, "web-shell")
    assert {c.uri.split("?")[0] for c in shell.commands} == {shell.path}
