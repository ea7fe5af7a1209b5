from __future__ import annotations

import random
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from homecall.detectors import mail_from_endpoint
from homecall.detectors.common import scaled_log
from homecall.detectors.mail_from_endpoint import MailFromEndpointConfig, mail_score
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store, store_of

CFG = MailFromEndpointConfig()
START = 1_709_625_600.0  # 2024-03-05 08:00 UTC
SPAMBOT, KEYLOGGER, MTA, RELAY = "10.0.0.66", "10.0.0.77", "10.0.0.25", "10.0.0.26"
READERS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
GMAIL = "142.250.27.108"
_uid = count()


def _conn(ts: float, src: str, dst: str, port: int, **fields: Any) -> dict[str, Any]:
    return {
        "ts": ts,
        "uid": fields.pop("uid", None) or f"C{next(_uid)}",
        "id.orig_h": src,
        "id.orig_p": 50000,
        "id.resp_h": dst,
        "id.resp_p": port,
        "proto": "tcp",
        "service": fields.pop("service", "smtp"),
        "duration": 3.0,
        "orig_bytes": 2500,
        "resp_bytes": 600,
        "conn_state": "SF",
        "orig_pkts": 12,
        "resp_pkts": 10,
        **fields,
    }


def _smtp(row: dict[str, Any], **fields: Any) -> dict[str, Any]:
    keys = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")
    return {**{k: row[k] for k in keys}, "trans_depth": 1, "tls": False, **fields}


def _logs() -> dict[str, list[dict[str, Any]]]:
    """A spam bot delivering 300 messages in an hour straight to 40 outside MX hosts with forged
    senders and a random HELO; a keylogger mailing a provider's submission port every 10 min
    for 8 h over TLS; the company's mail server, an MX that also delivers out all day; a relay
    five workstations hand their mail to; three people submitting a few messages to Gmail."""
    rng = random.Random(5)
    conn, smtp = [], []
    for k in range(300):
        row = _conn(START + 12 * k, SPAMBOT, f"203.0.113.{k % 40}", 25)
        conn.append(row)
        reply = "550 5.7.1 Message rejected as spam" if k % 3 == 0 else "250 2.0.0 OK queued"
        smtp.append(
            _smtp(
                row,
                helo="".join(rng.choices("abcdefghijklmnop", k=8)),
                mailfrom=f"offer{k % 150}@deals.example",
                rcptto=[f"user{k}@victim{j}.example" for j in range(2)],
                last_reply=reply,
            )
        )
    for k in range(48):  # every 600 s, TLS: the sensor sees no envelope
        conn.append(_conn(START + 600 * k + rng.uniform(-3, 3), KEYLOGGER, "198.51.100.25", 587))
    for k in range(60):
        hour = START + 600 * k
        conn.append(_conn(hour, "198.51.100.200", MTA, 25))  # mail from outside: an MX
        row = _conn(hour + 30, MTA, f"192.0.2.{k % 30}", 25)
        conn.append(row)
        smtp.append(
            _smtp(
                row,
                helo="mail.example.com",
                mailfrom=f"person{k % 12}@example.com",
                rcptto=[f"partner{k}@customer{k % 30}.example"],
                last_reply="250 2.0.0 OK",
            )
        )
    for n in range(5):
        conn.append(_conn(START + 100 * n, f"10.0.0.{10 + n}", RELAY, 25))
    conn += [_conn(START + 200 + 60 * k, RELAY, f"192.0.2.{100 + k}", 25) for k in range(12)]
    for n, host in enumerate(READERS):
        conn += [
            _conn(START + 3600 * k * (n + 1) + rng.uniform(0, 3000), host, GMAIL, 587)
            for k in range(3 + n)
        ]
    return {"conn": conn, "smtp": smtp}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return store_of(tmp_path_factory.mktemp("mail"), _logs())


@pytest.fixture(scope="module")
def found(store: Store) -> list[Finding]:
    return list(mail_from_endpoint.run(open_store(store), CFG))


@pytest.mark.parametrize(
    ("port_weight", "connections", "regularity", "spam", "expected"),
    [
        (1.0, 1, 0.0, 0.0, 0.9 * (0.45 + 0.1 * scaled_log(1, 200))),  # one message to an MX
        (0.3, 5, 0.0, 0.0, 0.9 * (0.31 + 0.1 * scaled_log(5, 200))),  # a mail client: dropped
        (0.3, 48, 1.0, 0.0, 0.9 * (0.51 + 0.1 * scaled_log(48, 200))),  # timed submissions
        (1.0, 300, 0.0, 1.0, 0.9),  # a spam bot: capped at max_score
    ],
)
def test_mail_score_hand_worked(
    port_weight: float, connections: int, regularity: float, spam: float, expected: float
) -> None:
    got = mail_score(port_weight, connections, regularity, spam, CFG)
    assert got == pytest.approx(expected)
    assert mail_score(0.3, 5, 0.0, 0.0, CFG) < CFG.min_score


def test_the_spam_bot_ranks_first(found: list[Finding]) -> None:
    top = found[0]
    assert top.src == SPAMBOT
    assert top.evidence["kind"] == "direct-mx"
    assert top.evidence["servers"] == 40
    assert (top.evidence["messages"], top.evidence["senders"]) == (300, 150)
    assert top.evidence["recipients"] == 600
    assert top.evidence["rejected_messages"] == 100
    assert top.evidence["peak_hour_messages"] == 300
    assert set(top.evidence["spam_traits"]) >= {"servers", "recipients", "senders", "rate"}
    assert top.severity == "critical"
    assert len(top.evidence["uids"]) == 20


def test_timed_submissions_are_reported(found: list[Finding]) -> None:
    keylogger = next(f for f in found if f.src == KEYLOGGER)
    assert (keylogger.dst, keylogger.dst_port) == ("198.51.100.25", 587)
    assert keylogger.evidence["kind"] == "submission"
    assert keylogger.evidence["send_period_s"] == pytest.approx(600.0, rel=0.02)
    assert keylogger.evidence["send_regularity"] > 0.8
    assert keylogger.severity == "medium"
    assert "every ~600 s" in keylogger.summary


def test_mail_servers_and_mail_clients_are_not_flagged(store: Store, found: list[Finding]) -> None:
    assert {f.src for f in found} == {SPAMBOT, KEYLOGGER}
    every = list(mail_from_endpoint.run(open_store(store), MailFromEndpointConfig(min_score=0.0)))
    by_src = {f.src: f for f in every}
    assert by_src[MTA].evidence["mail_server"] == "receives SMTP from outside"
    assert by_src[RELAY].evidence["mail_server"] == "relays mail for internal hosts"
    for host in (MTA, RELAY):
        assert by_src[host].score < 0.25 * CFG.max_score
        assert "probably a mail server" in by_src[host].summary
    for host in READERS:  # a few submissions to Gmail by a person's mail client
        assert by_src[host].evidence["kind"] == "submission"
        assert by_src[host].score < CFG.min_score
    configured = MailFromEndpointConfig(mail_servers=(SPAMBOT,))
    assert SPAMBOT not in {f.src for f in mail_from_endpoint.run(open_store(store), configured)}


def test_a_server_delivering_like_an_mta_is_damped(tmp_path: Path) -> None:
    conn, smtp = [], []
    for k in range(60):  # 30 outside servers over 10 hours, accepted, one HELO name
        row = _conn(START + 600 * k, MTA, f"192.0.2.{k % 30}", 25)
        conn.append(row)
        smtp.append(_smtp(row, helo="mail.example.com", mailfrom="a@example.com",
                          rcptto=[f"b{k}@c.example"], last_reply="250 OK"))  # fmt: skip
    found = list(
        mail_from_endpoint.run(
            open_store(store_of(tmp_path, {"conn": conn, "smtp": smtp})),
            MailFromEndpointConfig(min_score=0.0),
        )
    )
    assert [f.evidence["mail_server"] for f in found] == ["delivers mail like an MTA"]


def test_contract(store: Store) -> None:
    assert_contract(lambda t: mail_from_endpoint.run(t, CFG), store)


def test_slips_spam_sender(samples: Path, tmp_path: Path) -> None:
    # PROVENANCE: "an smtp.log with spam-like mail from 10.1.11.101": four messages to
    # 80.75.42.226:25 under HELO [0.0.0.0], each with a gmail address as the display name of
    # an aon.at sender, all refused ("554 5.7.1 bad smtp-auth user"), and one session with
    # 213.165.67.124:587. The sensor's conn.log does not hold these connections.
    store = Store(tmp_path / "store")
    import_paths([samples / "zeek-json/slips-test9-mixed"], store)
    (spam,) = mail_from_endpoint.run(open_store(store), CFG)
    assert (spam.src, spam.dst, spam.dst_port) == ("10.1.11.101", "80.75.42.226", 25)
    assert spam.evidence["servers"] == 2
    assert spam.evidence["connections"] == 2
    assert spam.evidence["rejected_messages"] == spam.evidence["messages"] == 4
    assert spam.evidence["display_spoofed_messages"] == 4
    assert spam.evidence["bogus_helo"] is True
    assert spam.score >= 0.75


@pytest.mark.parametrize("folder", ["zeek-json", "zeek-tsv"])
def test_wrccdc_mail_stays_inside(samples: Path, tmp_path: Path, folder: str) -> None:
    # WRCCDC 2018: 1,188 SMTP transactions, all from 10.164.94.120 and 10.128.0.241 to the
    # teams' mail servers 10.47.8.208 and 10.47.1.208: none leaves the internal networks, and
    # 10.47.1.208, which both hosts hand mail to, is inferred as a relay.
    name = "smtp.log.gz" if folder == "zeek-tsv" else "smtp.json.gz"
    store = Store(tmp_path / "store")
    import_paths([samples / folder / "wrccdc2018-zed-sample" / name], store)
    tables = open_store(store)
    assert list(mail_from_endpoint.run(tables, CFG)) == []
    servers = tables.to_pyarrow(mail_from_endpoint.mail_servers(tables, CFG))
    assert servers.column("src").to_pylist() == ["10.47.1.208"]


@pytest.mark.spark
def test_duckdb_and_spark_agree(store: Store, spark: object) -> None:
    assert_spark_agrees(lambda t: mail_from_endpoint.run(t, CFG), store, spark)
