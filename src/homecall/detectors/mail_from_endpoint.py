"""Mail from endpoints: internal hosts that are not mail servers sending SMTP to outside servers,
spam bots and SMTP exfiltration (docs/detection.md#mail-from-endpoint).

A workstation has no business speaking SMTP to the Internet's mail exchangers: its mail goes
through the organisation's server or a provider's submission port. Spam bots (Cutwail, Necurs,
Emotet's spam module) deliver straight to many MX hosts with forged senders; keyloggers and
stealers (Agent Tesla, Snake) mail what they stole to an outside mailbox on a timer. SMTP is a
connection on port 25, 465, 587 or 2525, or one a sensor identified as SMTP, from conn and from
smtp records without a conn record. Per internal host: connections, outside servers, ports,
the regularity of the connections (`beacon_scoring.score_intervals`), and from smtp metadata
messages, distinct envelope senders, recipients, rejected transactions, display names that
carry another address, and the busiest hour against the fleet's senders. Mail servers are
left out (configured) or damped (inferred: hosts receiving SMTP from outside or from several
internal clients, and hosts delivering to many outside servers over many hours with few
rejections and a name for HELO, as an MTA does).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.beacon_scoring import BeaconConfig, score_intervals
from homecall.detectors.common import (
    centre,
    epoch_s,
    fleet_share,
    is_failed,
    log_ramp,
    lowered,
    prevalence_factor,
    ramp,
    sample_uids,
    scaled_log,
    utc,
    with_uids,
)
from homecall.findings import Finding, rank
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "MailFromEndpointConfig",
    "contacts",
    "mail_score",
    "mail_servers",
    "run",
    "spam_traits",
]

log = logging.getLogger(__name__)

_TIMING = BeaconConfig()  # sends are timed as beacons are (the calibrated defaults)
_DISPLAY_ADDRESS = r'^\s*"?([^"<]*@[^"<]*?)"?\s*<'  # "john@x.com" <other@y.com>
_ADDRESS = r"<([^>]*)>"
_BOGUS_HELO = r"^(\[?0\.0\.0\.0\]?|\[?127\.[0-9.]+\]?|localhost(\.localdomain)?)$"


@dataclass(frozen=True, slots=True, kw_only=True)
class MailFromEndpointConfig:
    """Settings under [detectors.mail-from-endpoint] in homecall.toml."""

    relay_ports: tuple[int, ...] = (25, 2525)  # MTA-to-MTA delivery (2525: hosting alternative)
    submission_ports: tuple[int, ...] = (465, 587)  # RFC 8314 / RFC 6409: mail clients use them
    submission_weight: float = 0.3  # a client submitting to its provider is ordinary
    mail_servers: tuple[str, ...] = ()  # the organisation's mail servers: never judged
    relay_min_clients: int = 2  # receiving SMTP from this many internal hosts: a mail relay
    mta_min_servers: int = 10  # delivering to this many outside servers...
    mta_min_hours: int = 6  # ...in this many distinct hours...
    mta_max_rejected_ratio: float = 0.3  # ...mostly accepted, with a name for HELO: an MTA
    server_damping: float = 0.8  # an inferred mail server keeps 20 % of its score
    max_score: float = 0.9  # a spam bot with every trait: "critical"
    connections_full: float = 200.0  # connections for the full volume weight
    servers_low: float = 2.0  # outside mail servers: from here a spread counts...
    servers_high: float = 20.0  # ...fully here
    recipients_low: float = 5.0  # distinct recipients: from here...
    recipients_high: float = 100.0  # ...fully here
    senders_low: float = 1.0  # distinct envelope senders: one is a person's...
    senders_high: float = 20.0  # ...twenty are forged
    rate_low: float = 20.0  # messages in the busiest hour (small fleet): from here...
    rate_high: float = 200.0  # ...fully here
    min_fleet: int = 10  # SMTP senders needed to compare the hourly rate with the fleet
    z_low: float = 3.5  # robust z of the busiest hour's log count against the fleet's...
    z_high: float = 10.0  # ...fully here
    spread_floor: float = 0.5  # log-count spread never below this
    shared_ratio: float = 0.1  # a destination 10 % of the fleet mails is the company's provider...
    shared_damping: float = 0.9  # ...and its score is cut by up to 90 %
    min_score: float = 0.35  # below: a person's mail client submitting a few messages


def mail_score(
    port_weight: float,
    connections: int,
    regularity: float,
    spam: float,
    cfg: MailFromEndpointConfig,
) -> float:
    """max_score x min(1, 0.25 + 0.2 port + 0.1 w(connections) + 0.2 regularity + 0.45 spam);
    port is 1 for delivery to port 25/2525 and submission_weight for 465/587."""
    weight = (
        0.25
        + 0.2 * port_weight
        + 0.1 * scaled_log(connections, cfg.connections_full)
        + 0.2 * min(max(regularity, 0.0), 1.0)
        + 0.45 * min(max(spam, 0.0), 1.0)
    )
    return cfg.max_score * min(1.0, weight)


def spam_traits(row: dict[str, Any], rate: float, cfg: MailFromEndpointConfig) -> dict[str, float]:
    """0..1 per spam trait: many outside servers, recipients and envelope senders, rejected
    transactions, display names carrying another address, a HELO no MTA sends (0.0.0.0,
    loopback, localhost), the busiest hour's rate."""
    messages = max(int(row["messages"] or 0), 1)
    return {
        "servers": log_ramp(int(row["servers"]), cfg.servers_low, cfg.servers_high),
        "recipients": log_ramp(
            int(row["recipients"] or 0), cfg.recipients_low, cfg.recipients_high
        ),
        "senders": log_ramp(int(row["senders"] or 0), cfg.senders_low, cfg.senders_high),
        "rejected": min(1.0, int(row["rejected"] or 0) / messages),
        "display_spoof": min(1.0, int(row["spoofed"] or 0) / messages),
        "bogus_helo": 1.0 if int(row["bogus_helo"] or 0) else 0.0,
        "rate": rate,
    }


def spam_strength(traits: dict[str, float]) -> float:
    """The mean of the three strongest traits: one trait alone is at most a third."""
    top = sorted(traits.values(), reverse=True)[:3]
    return sum(top) / 3.0


def contacts(tables: Tables, cfg: MailFromEndpointConfig) -> ir.Table:
    """SMTP connections of internal hosts to outside servers, one row each: (ts, uid, src, dst,
    dst_port, answered) from conn, and from smtp records whose connection is not in conn."""
    ports = sorted({*cfg.relay_ports, *cfg.submission_ports})
    conn = tables.oriented("conn")
    smtp_conn = conn.filter(
        (conn.direction == "outbound")
        & (conn.dst_port.isin(ports) | conn.service.fill_null("").lower().contains("smtp"))
    )
    flows = smtp_conn.select("ts", "uid", "src", "dst", "dst_port", answered=~is_failed(smtp_conn))
    smtp = tables.oriented("smtp")
    alone = smtp.filter(smtp.direction == "outbound").anti_join(flows.select("uid"), "uid")
    alone = alone.group_by(["uid", "src", "dst", "dst_port"]).aggregate(ts=alone.ts.min())
    alone = alone.select("ts", "uid", "src", "dst", "dst_port", answered=ibis.literal(True))
    return ibis.union(flows, alone)


def mail_servers(tables: Tables, cfg: MailFromEndpointConfig) -> ir.Table:
    """(src, how): internal hosts receiving SMTP from outside (an MX) or from relay_min_clients
    internal hosts (a relay); configured ones are left out before."""
    ports = sorted({*cfg.relay_ports, *cfg.submission_ports})
    parts = []
    for name in ("conn", "smtp"):
        t = tables.oriented(name)
        t = t.filter(t.resp_port.isin(ports) & (t.direction != "outbound"))  # the server's port
        parts.append(t.select("src", "dst", "direction"))
    both = ibis.union(*parts)
    inbound = both.filter(both.direction == "inbound").select("src").distinct()
    inside = both.filter(both.direction == "internal")
    relays = inside.group_by("dst").aggregate(clients=inside.src.nunique())
    relays = relays.filter(relays.clients >= cfg.relay_min_clients).select(src=relays.dst)
    return ibis.union(
        inbound.mutate(how=ibis.literal("receives SMTP from outside")),
        relays.mutate(how=ibis.literal("relays mail for internal hosts")),
        distinct=True,
    )


def _metadata(tables: Tables) -> ir.Table:
    """Per sending host, from outbound smtp records: messages, envelope senders, recipients,
    rejected transactions, spoofed display names, HELO names and the busiest hour."""
    smtp = tables.oriented("smtp")
    smtp = smtp.filter(smtp.direction == "outbound")
    sender = smtp.mail_from.lower().nullif("")
    display = smtp.from_header.re_extract(_DISPLAY_ADDRESS, 1).strip().lower().nullif("")
    actual = smtp.from_header.re_extract(_ADDRESS, 1).strip().lower().nullif("")
    is_message = sender.notnull() | (smtp.rcpt_to.length().fill_null(0) > 0)
    helo = smtp.helo.lower()
    marked = smtp.mutate(
        _message=is_message,
        _sender=sender,
        _rejected=is_message & smtp.last_reply.fill_null("").re_search(r"^[45]"),
        _spoofed=display.notnull() & actual.notnull() & (display != actual),
        _bogus=helo.fill_null("").re_search(_BOGUS_HELO),
        _hour=epoch_s(smtp.ts) // 3600,
    )
    per_host = marked.group_by("src").aggregate(
        messages=marked._message.cast("int64").sum(),
        senders=marked._sender.nunique(),
        rejected=marked._rejected.cast("int64").sum(),
        spoofed=marked._spoofed.cast("int64").sum(),
        helos=marked.helo.nunique(),
        bogus_helo=marked._bogus.cast("int64").sum(),
        example_helo=marked.helo.max(),
    )
    rcpt = marked.select("src", rcpt=marked.rcpt_to.unnest())  # Spark: no lower(explode(...))
    recipients = rcpt.group_by("src").aggregate(recipients=rcpt.rcpt.lower().nunique())
    hours = marked.filter(marked._message).group_by(["src", "_hour"]).aggregate(n=ibis._.count())
    peak = hours.group_by("src").aggregate(peak_hour_messages=hours.n.max())
    return (
        per_host.left_join(recipients, "src")
        .drop("src_right")
        .left_join(peak, "src")
        .drop("src_right")
    )


def _hosts(found: ir.Table, tables: Tables, cfg: MailFromEndpointConfig) -> ir.Table:
    relay = found.dst_port.isin(cfg.relay_ports)
    per_host = found.group_by("src").aggregate(
        connections=found.uid.nunique() + found.uid.isnull().cast("int64").sum(),
        answered=found.answered.cast("int64").sum(),
        servers=found.dst.nunique(),
        relay_connections=relay.cast("int64").sum(),
        ports=found.dst_port.nunique(),
        hours=(epoch_s(found.ts) // 3600).nunique(),
        first_seen=found.ts.min(),
        last_seen=found.ts.max(),
        starts_us=(epoch_s(found.ts) * 1_000_000).collect(),
    )
    pairs = found.group_by(["src", "dst"]).aggregate(n=found.count())
    key = pairs.n.cast("string").lpad(12, "0").concat(pairs.dst)
    main = pairs.group_by("src").aggregate(dst=pairs.dst.argmax(key))
    ports = found.group_by(["src", "dst", "dst_port"]).aggregate(n=found.count())
    port_key = ports.n * 65536 + ports.dst_port.fill_null(0).cast("int64")
    main_port = ports.group_by(["src", "dst"]).aggregate(dst_port=ports.dst_port.argmax(port_key))
    prevalence = found.group_by("dst").aggregate(dst_hosts=found.src.nunique())
    main = main.join(main_port, ["src", "dst"]).join(prevalence, "dst")
    servers = mail_servers(tables, cfg)
    servers = servers.group_by("src").aggregate(server_how=servers.how.max())
    return (
        per_host.join(main, "src")
        .left_join(_metadata(tables), "src")
        .drop("src_right")
        .left_join(servers, "src")
        .drop("src_right")
    )


def run(tables: Tables, cfg: MailFromEndpointConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    found = contacts(tables, cfg)
    found = found.filter(~found.src.isin(list(cfg.mail_servers))) if cfg.mail_servers else found
    rows = [r for batch in tables.batches(_hosts(found, tables, cfg)) for r in batch.to_pylist()]
    if not rows:
        return
    peaks = np.array([int(r["peak_hour_messages"] or 0) for r in rows], dtype=np.int64)
    senders = peaks[peaks > 0]
    fleet = (
        centre(np.log1p(senders.astype(np.float64)), cfg.spread_floor)
        if len(senders) >= cfg.min_fleet
        else None
    )
    ranked = rank(f for row in rows if (f := _finding(row, fleet, tables.fleet_size, cfg)))
    if not ranked:
        return
    wanted = pa.table({"src": [f.src for f in ranked]})
    uids = sample_uids(tables, found, ("src",), wanted)
    for f in ranked:
        yield with_uids(f, uids.get((f.src,), []))


def _rate(peak: int, fleet: tuple[float, float] | None, cfg: MailFromEndpointConfig) -> float:
    if fleet is None:
        return log_ramp(peak, cfg.rate_low, cfg.rate_high)
    median, spread = fleet
    return ramp((float(np.log1p(peak)) - median) / spread, cfg.z_low, cfg.z_high)


def _acts_as_mta(row: dict[str, Any], cfg: MailFromEndpointConfig) -> bool:
    """Delivers to many outside servers over many hours, mostly accepted, under one name."""
    messages = int(row["messages"] or 0)
    rejected = int(row["rejected"] or 0) / messages if messages else 0.0
    return (
        int(row["servers"]) >= cfg.mta_min_servers
        and int(row["hours"]) >= cfg.mta_min_hours
        and rejected <= cfg.mta_max_rejected_ratio
        and not int(row["bogus_helo"] or 0)
        and int(row["helos"] or 0) <= 1
    )


def _finding(
    row: dict[str, Any],
    fleet: tuple[float, float] | None,
    fleet_hosts: int,
    cfg: MailFromEndpointConfig,
) -> Finding | None:
    connections, relay = int(row["connections"]), int(row["relay_connections"])
    port_weight = 1.0 if relay else cfg.submission_weight
    starts = np.sort(np.asarray(row["starts_us"], np.int64))
    timing = score_intervals(starts, _TIMING)  # None under min_checkins connections
    regularity = timing.regularity if timing is not None else 0.0
    peak = int(row["peak_hour_messages"] or 0)
    traits = spam_traits(row, _rate(peak, fleet, cfg), cfg)
    spam = spam_strength(traits)
    score = mail_score(port_weight, connections, regularity, spam, cfg)
    reasons: list[str] = []
    evidence: dict[str, Any] = {
        "kind": "direct-mx" if relay else "submission",
        "connections": connections,
        "answered_connections": int(row["answered"]),
        "relay_connections": relay,
        "servers": int(row["servers"]),
        "dst_ports": int(row["ports"]),
        "messages": int(row["messages"] or 0),
        "senders": int(row["senders"] or 0),
        "recipients": int(row["recipients"] or 0),
        "rejected_messages": int(row["rejected"] or 0),
        "display_spoofed_messages": int(row["spoofed"] or 0),
        "bogus_helo": bool(int(row["bogus_helo"] or 0)),
        "example_helo": row["example_helo"],
        "peak_hour_messages": peak,
        "rate_baseline": "absolute" if fleet is None else "fleet",
        "send_period_s": round(timing.period_s, 3) if timing else None,
        "send_regularity": round(regularity, 3),
        "spam_traits": [k for k, v in traits.items() if v >= 0.5],
        "spam_strength": round(spam, 3),
        "dst_hosts": int(row["dst_hosts"]),
        "fleet_hosts": fleet_hosts,
    }
    server = row["server_how"] or ("delivers mail like an MTA" if _acts_as_mta(row, cfg) else None)
    if server is not None:
        score *= 1.0 - cfg.server_damping
        evidence["mail_server"] = server
        reasons.append(f"{row['src']} {server}, probably a mail server")
    shared = prevalence_factor(
        int(row["dst_hosts"]),
        fleet_hosts,
        ratio=cfg.shared_ratio,
        damping=cfg.shared_damping,
        min_fleet=cfg.min_fleet,
    )
    score *= shared
    reasons += fleet_share(evidence, shared, int(row["dst_hosts"]), fleet_hosts, "send mail to it")
    if score < cfg.min_score:
        return None
    src, dst, port = str(row["src"]), str(row["dst"]), row["dst_port"]
    summary = lowered(_summary(src, dst, port, evidence), evidence, reasons)
    return Finding(
        detector="mail-from-endpoint",
        src=src,
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=score,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=summary + ".",
        evidence=evidence,
    )


def _summary(src: str, dst: str, port: Any, evidence: dict[str, Any]) -> str:
    conns, servers = evidence["connections"], evidence["servers"]
    how = "delivered mail straight to" if evidence["kind"] == "direct-mx" else "submitted mail to"
    plural = "s" if servers != 1 else ""
    who = "" if "mail_server" in evidence else ", not a known mail server,"
    text = (
        f"{src}{who} {how} {servers} outside SMTP server{plural} "
        f"over {conns} connection{'s' if conns != 1 else ''} (mostly {dst}:{port})"
    )
    notes = []
    if evidence["messages"]:
        notes.append(
            f"{evidence['messages']} messages from {evidence['senders']} envelope sender"
            f"{'s' if evidence['senders'] != 1 else ''} to {evidence['recipients']} recipients"
        )
    if evidence["rejected_messages"]:
        notes.append(f"{evidence['rejected_messages']} rejected")
    if evidence["bogus_helo"]:
        notes.append(f"HELO {evidence['example_helo']}")
    if evidence["display_spoofed_messages"]:
        notes.append(f"{evidence['display_spoofed_messages']} with another address as display name")
    if evidence["send_regularity"] >= 0.5 and evidence["send_period_s"]:
        notes.append(f"sending every ~{evidence['send_period_s']:,.0f} s")
    return "; ".join([text, *notes])


DETECTOR = Detector(
    name="mail-from-endpoint",
    requires=("conn", "smtp"),
    config=MailFromEndpointConfig,
    run=run,
    description="SMTP to outside servers from hosts that are not mail servers; spam bots",
)
