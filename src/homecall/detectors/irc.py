"""IRC: internal hosts talking to IRC servers, the oldest botnet C2 channel
(docs/detection.md#irc).

Connections count when they go to an IRC port (6660-6669, 6697, 194, 6679, 7000) or carry the
IRC protocol on any port (`service` contains "irc": Zeek's dynamic protocol detection,
Suricata's app_proto, the PCAP reader's payload detection). Per (internal host, server, port):
connections, how many were answered, the longest session, bytes, and the regularity of the
reconnections (`beacon_scoring.score_intervals`). IRC on a port that is not IRC's, long quiet
sessions (a bot idles in its channel answering PINGs), timed reconnects and several internal
hosts on one server (a botnet's channel) raise the score; a server of a well-known network
(Libera.Chat, OFTC, Twitch chat...: `known_networks`, by the TLS SNI or the names the fleet
resolved to the address) is damped into "low" but still reported.
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
    epoch_s,
    is_failed,
    lowered,
    named_contacts,
    ramp,
    sample_uids,
    utc,
    with_uids,
)
from homecall.findings import Finding, rank
from homecall.store.tables import Tables

__all__ = ["DETECTOR", "IrcConfig", "candidates", "irc_score", "known_network", "run"]

log = logging.getLogger(__name__)

KEYS = ["src", "dst", "dst_port"]
_TIMING = BeaconConfig()  # reconnects are timed as beacons are (the calibrated defaults)


@dataclass(frozen=True, slots=True, kw_only=True)
class IrcConfig:
    """Settings under [detectors.irc] in homecall.toml."""

    # IANA irc (194), ircu (6665-6669) and ircs-u (6697, RFC 7194), and the ports networks
    # publish besides them: 6660-6664, 6679 (TLS) and 7000.
    irc_ports: tuple[int, ...] = (194, *range(6660, 6670), 6679, 6697, 7000)
    shared_ports: tuple[int, ...] = (7000,)  # also AirPlay, Cassandra...: port alone counts half
    # Networks with public servers many people use; their names suffice (any subdomain counts).
    known_networks: tuple[str, ...] = (
        *("libera.chat", "oftc.net", "freenode.net", "efnet.org", "undernet.org"),
        *("quakenet.org", "rizon.net", "dal.net", "irchighway.net", "snoonet.org"),
        *("esper.net", "hackint.org", "geekshed.net", "swiftirc.net", "gimp.org", "twitch.tv"),
    )
    max_score: float = 0.9  # IRC off its port from several hosts, persistent: "critical"
    protocol_off_port: float = 0.6  # IRC spoken on a port that is not IRC's: hiding
    protocol_on_port: float = 0.45  # IRC confirmed on its own port
    port_only: float = 0.3  # an IRC port without protocol evidence (TLS, flow records)
    session_full_s: float = 3600.0  # a session of an hour gives the full persistence weight
    keepalive_bytes_per_hour: float = 20000.0  # quieter: PINGs and PONGs only, an idle bot
    botnet_hosts_full: int = 5  # internal hosts on one server for the full botnet weight
    unanswered_factor: float = 0.6  # no connection answered: a dead channel, lowered
    known_factor: float = 0.5  # a well-known network: halved...
    known_ceiling: float = 0.45  # ...and kept "low"...
    known_floor: float = 0.25  # ...but reported: an intruder can use a public network too
    min_score: float = 0.25  # below: a single unanswered try of an IRC port


def known_network(names: list[str], cfg: IrcConfig) -> str | None:
    """The well-known network one of `names` belongs to (suffix match), or None."""
    for name in names:
        host = name.lower().rstrip(".")
        for network in cfg.known_networks:
            if host == network or host.endswith("." + network):
                return network
    return None


def irc_score(
    base: float,
    longest_s: float,
    quiet: float,
    regularity: float,
    hosts: int,
    cfg: IrcConfig,
) -> float:
    """max_score x min(1, base + 0.15 persistence + 0.1 max(quiet, regularity) + 0.3 botnet),
    persistence = min(1, longest / session_full_s), botnet = 0 for one host to 1 at
    botnet_hosts_full."""
    persistence = min(1.0, max(longest_s, 0.0) / cfg.session_full_s)
    botnet = ramp(hosts, 1.0, float(cfg.botnet_hosts_full))
    weight = base + 0.15 * persistence + 0.1 * max(quiet, regularity) + 0.3 * botnet
    return cfg.max_score * min(1.0, weight)


def candidates(tables: Tables, cfg: IrcConfig) -> ir.Table:
    """Connections internal hosts opened to IRC ports or carrying IRC: (ts, uid, src, dst,
    dst_port, is_irc, answered, tls, duration_s, bytes). A connection on an IRC port whose
    service is some other protocol (HTTP, AirPlay...) is not IRC."""
    conn = tables.oriented("conn")
    service = conn.service.fill_null("").lower()
    is_irc = service.contains("irc")
    tls = service.contains("ssl") | service.contains("tls")
    unknown = (service == "") | tls
    on_port = conn.dst_port.isin(cfg.irc_ports)
    found = conn.filter(
        (conn.direction != "inbound") & (is_irc | (on_port & unknown)) & conn.dst.notnull()
    )
    return found.select(
        "ts",
        "uid",
        "src",
        "dst",
        "dst_port",
        is_irc=is_irc,
        answered=~is_failed(found),
        tls=tls,
        duration_s=found.duration_s.fill_null(0.0),
        bytes=found.orig_bytes.fill_null(0) + found.resp_bytes.fill_null(0),
        outbound=found.direction == "outbound",
    )


def _pairs(found: ir.Table) -> ir.Table:
    pairs = found.group_by(KEYS).aggregate(
        connections=found.count(),
        answered=found.answered.cast("int64").sum(),
        irc=found.is_irc.cast("int64").sum(),
        tls=found.tls.cast("int64").sum(),
        longest_s=found.duration_s.max(),
        total_s=found.duration_s.sum(),
        total_bytes=found.bytes.sum(),
        outbound=found.outbound.cast("int64").sum(),
        first_seen=found.ts.min(),
        last_seen=found.ts.max(),
        starts_us=(epoch_s(found.ts) * 1_000_000).collect(),
    )
    live = found.filter(found.answered)
    hosts = live.group_by("dst").aggregate(dst_hosts=live.src.nunique())
    return pairs.left_join(hosts, "dst").drop("dst_right")


def _names(tables: Tables, found: ir.Table) -> dict[str, list[str]]:
    """Names of the servers: the TLS SNI of their connections and the names DNS answers gave
    for their addresses, sorted, per address."""
    servers = found.select("dst").distinct()
    contacts = named_contacts(tables)
    sni = contacts.semi_join(found.select("uid"), "uid").select(ip=contacts.dst, name=contacts.name)
    dns = tables.oriented("dns")
    answers = dns.select(name=dns.query.lower(), ip=dns.answers.unnest())
    answers = answers.semi_join(servers, answers.ip == servers.dst)
    both = ibis.union(sni, answers.select("ip", "name"), distinct=True)
    names: dict[str, list[str]] = {}
    for row in tables.to_pyarrow(
        both.filter(both.name.notnull()).order_by(["ip", "name"])
    ).to_pylist():
        names.setdefault(str(row["ip"]), []).append(str(row["name"]))
    return names


def run(tables: Tables, cfg: IrcConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    found = candidates(tables, cfg)
    rows = [row for batch in tables.batches(_pairs(found)) for row in batch.to_pylist()]
    if not rows:
        return
    names = _names(tables, found)
    ranked = rank(f for row in rows if (f := _finding(row, names.get(row["dst"], []), cfg)))
    if not ranked:
        return
    wanted = pa.table(
        {
            "src": [f.src for f in ranked],
            "dst": [f.dst for f in ranked],
            "dst_port": pa.array([f.dst_port for f in ranked], pa.int32()),
        }
    )
    uids = sample_uids(tables, found, KEYS, wanted)
    for f in ranked:
        yield with_uids(f, uids.get((f.src, f.dst or "", str(f.dst_port)), []))


def _base(row: dict[str, Any], cfg: IrcConfig) -> float:
    port = int(row["dst_port"]) if row["dst_port"] is not None else -1
    if int(row["irc"]):
        return cfg.protocol_on_port if port in cfg.irc_ports else cfg.protocol_off_port
    return cfg.port_only * (0.5 if port in cfg.shared_ports else 1.0)


def _finding(row: dict[str, Any], names: list[str], cfg: IrcConfig) -> Finding | None:
    conns, answered = int(row["connections"]), int(row["answered"])
    longest, total = float(row["longest_s"]), float(row["total_s"])
    per_hour = float(row["total_bytes"]) / (total / 3600.0) if total > 0 else float("inf")
    quiet = 1.0 if longest >= 600 and per_hour < cfg.keepalive_bytes_per_hour else 0.0
    starts = np.sort(np.asarray(row["starts_us"], np.int64))
    timing = score_intervals(starts, _TIMING)  # None under min_checkins connections
    regularity = timing.regularity if timing is not None else 0.0
    network = known_network(names, cfg)
    hosts = int(row["dst_hosts"] or 0)
    base = _base(row, cfg)
    score = irc_score(base, longest, quiet, regularity, 1 if network else hosts, cfg)
    reasons = []
    if not answered:
        score *= cfg.unanswered_factor
        reasons.append("no connection was answered")
    if network is not None:
        score = max(min(score * cfg.known_factor, cfg.known_ceiling), cfg.known_floor)
        reasons.append(f"{network} is a well-known IRC network")
    if score < cfg.min_score:
        return None
    src, dst, port = str(row["src"]), str(row["dst"]), row["dst_port"]
    off_port = bool(int(row["irc"])) and base == cfg.protocol_off_port
    evidence: dict[str, Any] = {
        "kind": "protocol" if int(row["irc"]) else "port",
        "connections": conns,
        "answered_connections": answered,
        "irc_connections": int(row["irc"]),
        "tls_connections": int(row["tls"]),
        "off_irc_port": off_port,
        "longest_s": round(longest, 3),
        "total_duration_s": round(total, 3),
        "total_bytes": int(row["total_bytes"]),
        "keepalive_only": bool(quiet),
        "reconnect_period_s": round(timing.period_s, 3) if timing else None,
        "reconnect_regularity": round(regularity, 3),
        "server_names": names[:5],
        "known_network": network,
        "dst_hosts": hosts,
    }
    summary = _summary(src, dst, port, names, evidence)
    return Finding(
        detector="irc",
        src=src,
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=score,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=lowered(summary, evidence, reasons) + ".",
        evidence=evidence,
    )


def _summary(src: str, dst: str, port: Any, names: list[str], evidence: dict[str, Any]) -> str:
    conns = evidence["connections"]
    server = f"{dst}:{port}" + (f" ({names[0]})" if names else "")
    if evidence["kind"] == "protocol":
        text = f"{src} spoke IRC with {server} over {conns} connection{'s' if conns != 1 else ''}"
    else:
        times = "once" if conns == 1 else f"{conns} times"
        text = f"{src} connected {times} to {server}, an IRC port"
    if evidence["tls_connections"]:
        text += " (TLS)"
    notes = []
    if evidence["off_irc_port"]:
        notes.append(f"port {port} is not an IRC port")
    if evidence["longest_s"] >= 600:
        quiet = ", PING/PONG only" if evidence["keepalive_only"] else ""
        notes.append(f"its longest session lasted {evidence['longest_s'] / 3600:.1f} h{quiet}")
    if evidence["reconnect_regularity"] >= 0.5 and evidence["reconnect_period_s"]:
        notes.append(f"it reconnects every ~{evidence['reconnect_period_s']:,.0f} s")
    if evidence["dst_hosts"] > 1 and evidence["known_network"] is None:
        notes.append(f"{evidence['dst_hosts']} internal hosts use this server")
    return "; ".join([text, *notes])


DETECTOR = Detector(
    name="irc",
    requires=("conn",),
    config=IrcConfig,
    run=run,
    description="IRC to outside servers: off its port, idle sessions, many hosts on one server",
)
