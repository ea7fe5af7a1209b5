from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from homecall.simulator import C2Truth, SimulationResult, simulate
from homecall.simulator.zeeklog import FIELDS

from .conftest import ZeekLog

LOGS = ("conn", "dns", "http", "ssl")
INTERNAL = ipaddress.ip_network("10.0.0.0/8")
ReadLog = Callable[[Path], ZeekLog]
MEAN_SLEEP: dict[str, Callable[[float], float]] = {  # mean interval / sleep, per jitter kind
    "one-sided": lambda j: 1 - j / 2,
    "additive": lambda j: 1 + j / 2,
    "symmetric": lambda j: 1.0,
}


def _day_dirs(result: SimulationResult) -> list[Path]:
    return sorted(p for p in result.out.iterdir() if p.is_dir())


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    runs = {
        name: simulate(tmp_path / name, hosts=25, days=2, seed=seed)
        for name, seed in (("a", 11), ("b", 11), ("c", 12))
    }
    relative = [p.relative_to(runs["a"].out) for p in runs["a"].files]
    assert relative == [p.relative_to(runs["b"].out) for p in runs["b"].files]
    assert len(relative) == 2 * len(LOGS) + 1
    for path in relative:
        assert (runs["a"].out / path).read_bytes() == (runs["b"].out / path).read_bytes(), path
    for path in relative:
        assert (runs["a"].out / path).read_bytes() != (runs["c"].out / path).read_bytes(), path


def test_layout_and_result(default_run: SimulationResult) -> None:
    out = default_run.out
    assert [p.name for p in _day_dirs(default_run)] == ["2026-11-23"]
    expected = [out / "2026-11-23" / f"{log}.log" for log in LOGS] + [out / "truth.json"]
    assert list(default_run.files) == expected
    assert set(default_run.rows) == set(LOGS)
    truth = json.loads((out / "truth.json").read_text())
    assert (truth["seed"], truth["hosts"], truth["days"], truth["start"]) == (
        7, 200, 1, "2026-11-23",
    )  # fmt: skip
    assert truth["internal_networks"] == ["10.0.0.0/8"]
    assert [C2Truth(**item) for item in truth["c2"]] == list(default_run.c2)
    assert 6 <= len(default_run.c2) <= 8


def test_every_log_is_well_formed_zeek_tsv(
    default_run: SimulationResult, read_log: ReadLog
) -> None:
    for log in LOGS:
        parsed = read_log(default_run.out / "2026-11-23" / f"{log}.log")
        assert parsed.header[:6] == [
            "#separator \\x09",
            "#set_separator\t,",
            "#empty_field\t(empty)",
            "#unset_field\t-",
            f"#path\t{log}",
            "#open\t2026-11-23-00-00-00",
        ]
        assert parsed.fields == [name for name, _ in FIELDS[log]]
        assert parsed.header[7] == "#types\t" + "\t".join(kind for _, kind in FIELDS[log])
        assert parsed.footer == "#close\t2026-11-24-00-00-00"
        assert len(parsed.rows) == default_run.rows[log] > 0
        assert {len(row) for row in parsed.rows} == {len(parsed.fields)}, log
        assert all(value != "" for row in parsed.rows for value in row), log
        ts = [float(value) for value in parsed.column("ts")]
        assert ts == sorted(ts), log
        assert all(len(value.split(".")[1]) == 6 for value in parsed.column("ts")[:1000])


def test_every_app_row_points_at_a_conn_row(
    default_run: SimulationResult, read_log: ReadLog
) -> None:
    day = default_run.out / "2026-11-23"
    conn = read_log(day / "conn.log")
    uids = conn.column("uid")
    assert len(set(uids)) == len(uids)
    by_uid = dict(zip(uids, conn.rows, strict=True))
    for log in ("dns", "http", "ssl"):
        parsed = read_log(day / f"{log}.log")
        for row in parsed.rows:
            match = by_uid[row[1]]
            assert match[2:6] == row[2:6], (log, row[1])  # same 4-tuple
    resolver = {by_uid[uid][4] for uid in read_log(day / "dns.log").column("uid")}
    bypass = {b.resolver for b in default_run.dns_bypass if b.kind == "plain-dns"}
    assert resolver == {"10.0.0.53"} | bypass  # one implant asks a public resolver
    dns_conns = [row for row in conn.rows if row[7] == "dns"]
    assert {(row[5], row[6]) for row in dns_conns} == {("53", "udp")}


def _conn_pairs(conn: ZeekLog) -> Counter[tuple[str, str]]:
    return Counter(zip(conn.column("id.orig_h"), conn.column("id.resp_h"), strict=True))


def test_truth_matches_the_c2_connections(default_run: SimulationResult, read_log: ReadLog) -> None:
    conn = read_log(default_run.out / "2026-11-23" / "conn.log")
    pairs = _conn_pairs(conn)
    for c2 in default_run.c2:
        assert pairs[(c2.src, c2.dst)] == c2.checkins * c2.conns_per_checkin, c2
        times = sorted(float(row[0]) for row in conn.rows if (row[2], row[4]) == (c2.src, c2.dst))
        first = dt.datetime.fromtimestamp(times[0], dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert first == c2.first_seen
        mean_sleep_s = c2.sleep_s * MEAN_SLEEP[c2.jitter_kind](c2.jitter_ratio)
        expected = 86_400 / mean_sleep_s * (1 - c2.missed_fraction)
        assert c2.checkins == pytest.approx(expected, rel=0.05), c2


def test_c2_mix_of_the_default_run(default_run: SimulationResult) -> None:
    c2 = default_run.c2
    assert {item.kind for item in c2} == {"cobalt-strike", "sliver", "empire"}
    assert {item.jitter_ratio for item in c2 if item.kind == "cobalt-strike"} >= {0.0, 0.2, 0.5}
    assert any(item.missed_fraction > 0 for item in c2)
    assert any(item.conns_per_checkin > 1 for item in c2)
    assert len({item.src for item in c2}) == len(c2)  # one infected host per instance
    assert len({item.dst for item in c2}) == len(c2)
    for item in c2:
        assert ipaddress.ip_address(item.src) in INTERNAL
        assert ipaddress.ip_address(item.dst).is_global


def test_c2_domains_are_resolved_and_used_in_sni_and_host(
    default_run: SimulationResult, read_log: ReadLog
) -> None:
    day = default_run.out / "2026-11-23"
    dns = read_log(day / "dns.log")
    sni = set(zip(read_log(day / "ssl.log").column("server_name"), strict=False))
    hosts = set(read_log(day / "http.log").column("host"))
    answered = set(zip(dns.column("query"), dns.column("answers"), strict=True))
    for c2 in default_run.c2:
        if c2.domain is None:
            assert c2.dst in hosts  # an implant calling its server's IP puts the IP in Host
            continue
        assert (c2.domain, c2.dst) in answered
        lookups = dns.column("query").count(c2.domain)
        assert 1 <= lookups < c2.checkins / 3  # on start and when the TTL ran out, not each time
        assert ((c2.domain,) in sni) if c2.protocol == "https" else (c2.domain in hosts)


def test_no_internal_destination_outside_and_no_c2_address_in_benign_traffic(
    default_run: SimulationResult, read_log: ReadLog
) -> None:
    day = default_run.out / "2026-11-23"
    conn = read_log(day / "conn.log")
    c2_pairs = {(c2.src, c2.dst) for c2 in default_run.c2}
    c2_dsts = {c2.dst for c2 in default_run.c2}
    portal = {u.src for u in default_run.uri_commands if u.direction == "inbound"}
    for orig, resp, local_resp in zip(
        conn.column("id.orig_h"), conn.column("id.resp_h"), conn.column("local_resp"), strict=True
    ):
        if ipaddress.ip_address(orig) not in INTERNAL:  # the portal's visitors and its web shell
            # the portal's visitors and web shell, and the mail relay's inbound mail
            assert (resp, local_resp) in {(server, "T") for server in portal} | {
                ("10.0.1.25", "T")
            }, orig
            continue
        address = ipaddress.ip_address(resp)
        assert (address in INTERNAL) == (local_resp == "T")
        if address not in INTERNAL:
            assert address.is_global, resp
            assert not address.is_multicast, resp
        if resp in c2_dsts:
            assert (orig, resp) in c2_pairs
    dns = read_log(day / "dns.log")
    c2_domains = {c2.domain for c2 in default_run.c2 if c2.domain}
    for query, answers in zip(dns.column("query"), dns.column("answers"), strict=True):
        assert query in c2_domains or not c2_dsts & set(answers.split(",")), query


def test_benign_periodic_services_are_listed_and_shared(default_run: SimulationResult) -> None:
    truth = json.loads((default_run.out / "truth.json").read_text())
    periodic = truth["benign_periodic"]
    kinds = {item["kind"] for item in periodic}
    assert kinds == {"ntp", "os-update", "ocsp", "telemetry", "antivirus"}
    assert {item["period_s"] for item in periodic if item["kind"] == "ntp"} == {1024.0}
    ntp_hosts = sum(item["hosts"] for item in periodic if item["kind"] == "ntp")
    assert 190 <= ntp_hosts <= 200  # every machine that was switched on (laptops of absentees not)
    assert all(item["hosts"] >= 20 for item in periodic if item["kind"] != "ntp")
    assert not {item["dst"] for item in periodic} & {c2.dst for c2 in default_run.c2}


def test_days_continue_the_same_hosts_and_c2(week_run: SimulationResult, read_log: ReadLog) -> None:
    days = _day_dirs(week_run)
    assert [d.name for d in days] == ["2026-11-28", "2026-11-29", "2026-11-30"]
    per_day = [_conn_pairs(read_log(d / "conn.log")) for d in days]
    for c2 in week_run.c2:
        counts = [pairs[(c2.src, c2.dst)] for pairs in per_day]
        assert all(count > 0 for count in counts), c2
        assert sum(counts) == c2.checkins * c2.conns_per_checkin
        assert c2.first_seen.startswith("2026-11-28T")
        assert c2.last_seen.startswith("2026-11-30T")
    for d, day in enumerate(days):
        parsed = read_log(day / "conn.log")
        start = dt.datetime(2026, 11, 28 + d, tzinfo=dt.UTC).timestamp()
        ts = [float(value) for value in parsed.column("ts")]
        assert start <= ts[0]
        assert ts[-1] < start + 86_400
        assert parsed.header[5] == f"#open\t2026-11-{28 + d}-00-00-00"
    weekend = sum(per_day[0].values())
    monday = sum(per_day[2].values())
    assert monday > 2 * weekend  # offices are quiet at weekends


def test_browsing_follows_office_hours_and_has_rare_destinations(
    default_run: SimulationResult, read_log: ReadLog
) -> None:
    conn = read_log(default_run.out / "2026-11-23" / "conn.log")
    hours = Counter(int(float(ts) // 3600 % 24) for ts in conn.column("ts"))
    assert hours[10] > 3 * hours[3]  # working hours against the middle of the night
    assert hours[12] < hours[10]  # lunch dip
    assert hours[3] > 0  # desktops, NTP, telemetry and implants never sleep
    external = Counter(
        (orig, resp)
        for orig, resp in zip(conn.column("id.orig_h"), conn.column("id.resp_h"), strict=True)
        if not resp.startswith("10.")
    )
    visitors = Counter(resp for _, resp in external)
    rare = [resp for resp, count in visitors.items() if count <= 2]
    assert len(rare) > 200  # one-or-two-host destinations exist in benign browsing too
    states = Counter(conn.column("conn_state"))
    assert states["SF"] / len(conn.rows) > 0.9
    assert {"S0", "REJ", "RSTO"} <= set(states)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"hosts": 0}, "hosts"), ({"days": 0}, "days"), ({"seed": -1}, "seed")],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate(tmp_path, **kwargs)  # type: ignore[arg-type]


def test_the_default_size_completes(tmp_path: Path) -> None:
    result = simulate(tmp_path, hosts=200, days=1)
    assert result.rows["conn"] > 100_000
    assert len(result.c2) == 7


def test_app_rows_fall_inside_their_connection(
    default_run: SimulationResult, read_log: ReadLog
) -> None:
    day = default_run.out / "2026-11-23"
    conn = read_log(day / "conn.log")
    span = {
        uid: (float(ts), float(ts) + (float(duration) if duration != "-" else 0.0))
        for uid, ts, duration in zip(
            conn.column("uid"), conn.column("ts"), conn.column("duration"), strict=True
        )
    }
    for log in ("dns", "http", "ssl"):
        parsed = read_log(day / f"{log}.log")
        for uid, ts in zip(parsed.column("uid"), parsed.column("ts"), strict=True):
            opened, closed = span[uid]
            assert opened <= float(ts) <= closed + 1e-6, (log, uid)


def test_c2_checkins_are_complete_tcp_connections(
    default_run: SimulationResult, read_log: ReadLog
) -> None:
    conn = read_log(default_run.out / "2026-11-23" / "conn.log")
    for c2 in default_run.c2:
        rows = [row for row in conn.rows if (row[2], row[4]) == (c2.src, c2.dst)]
        assert {(row[5], row[6], row[7], row[11]) for row in rows} == {
            (str(c2.dst_port), "tcp", "ssl" if c2.protocol == "https" else "http", "SF")
        }
        orig_bytes = sorted(int(row[9]) for row in rows)
        assert 150 <= orig_bytes[len(orig_bytes) // 2] <= 1_600  # small requests...
        assert orig_bytes[-1] > 2 * orig_bytes[len(orig_bytes) // 2]  # ...until a task's output


def test_a_tiny_weekend_run_writes_header_only_logs(tmp_path: Path, read_log: ReadLog) -> None:
    result = simulate(tmp_path, hosts=1, days=1, seed=1, start=dt.date(2026, 11, 29))
    assert len(result.c2) == 1
    empty = [log for log in LOGS if result.rows[log] == 0]
    assert empty  # a lone machine on a Sunday: nobody browses plain HTTP
    for log in empty:
        parsed = read_log(tmp_path / "2026-11-29" / f"{log}.log")
        assert parsed.rows == []
        assert parsed.fields == [name for name, _ in FIELDS[log]]
        assert parsed.footer == "#close\t2026-11-30-00-00-00"
