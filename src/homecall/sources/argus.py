"""Argus bidirectional flows as text (Stratosphere `binetflow` files, `ra -c ,` output) -> conn.

The first line names the fields (Stratosphere's `StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,
Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes[,SrcPkts][,Label]`, or any of ra's field labels
such as `LastTime`, `DstPkts`, `DstBytes`), separated by commas or TABs; fields are taken by
name. An Argus flow already covers both directions, so each record is one conn row: `SrcAddr`
is the originator, the responder's counts are the totals less the source's. TCP `State` lists
the flags each side sent (`FSPA_FSRPA`) and gives conn_state and history as for NetFlow
(sources/flows.py). Label columns are ground truth, not data, and are not stored. Records of
non-IP protocols (arp, llc, Argus' own `man` records) are skipped. Times are read in
`[import] timezone` (default UTC). A record's uid is `A` + 10 hex digits of the SHA-256 of the
path + `-` + its line number. See docs/schema.md ("Flow records").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from homecall.errors import MalformedInputError
from homecall.sources.duck import connect, lit
from homecall.sources.fileio import head_of
from homecall.sources.flows import conn_select, define_macros, flag_bits, protocol, split_lines
from homecall.sources.options import DEFAULT_OPTIONS, ReadOptions
from homecall.sources.problems import Problems
from homecall.sources.proxy_logs import head_lines
from homecall.store.schema import Query

__all__ = ["FORMAT", "read", "sniff"]

log = logging.getLogger(__name__)

FORMAT = "argus"
UID_LETTER = "A"
_DELIMITERS = ("\t", ",", ";", "|")
_REQUIRED = ("StartTime", "Proto", "SrcAddr", "DstAddr")
_READ = (
    "StartTime", "LastTime", "Dur", "Proto", "SrcAddr", "Sport", "DstAddr", "Dport", "State",
    "TotPkts", "SrcPkts", "DstPkts", "TotBytes", "SrcBytes", "DstBytes",
)  # fmt: skip
# Argus' names for flows that are not IP traffic: ARP, LLC and its own management records
_NOT_IP = ("arp", "rarp", "llc", "man", "lldp", "stp", "ipx")
_MAC = "[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}"
_IPV4 = "[0-9]{1,3}(?:\\.[0-9]{1,3}){3}"
_IPV6 = "[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*"
# Argus' TCP states that are words, not flags (argus without -Z), as Zeek's conn_state
_TCP_WORDS = {
    "REQ": "S0", "INT": "S0", "ACC": "S1", "CON": "S1", "EST": "S1", "CLO": "SF", "FIN": "SF",
}  # fmt: skip
# UDP states when the counts cannot say whether the responder answered
_UDP_WORDS = {"CON": "SF", "INT": "S0", "REQ": "S0"}


def sniff(head: bytes) -> bool:
    """True when the first line names Argus' StartTime, Proto, SrcAddr and DstAddr fields."""
    lines = head_lines(head, 1)
    return bool(lines) and _columns(lines[0]) is not None


def _columns(line: str) -> tuple[str, dict[str, int]] | None:
    """The delimiter and the 1-based position of each field, when `line` is an Argus header."""
    line = line.rstrip("\r")
    delimiter = max(_DELIMITERS, key=line.count)
    names = [name.strip() for name in line.split(delimiter)]
    found: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        found.setdefault(name, position)
    if all(name in found for name in _REQUIRED):
        return delimiter, found
    return None


def read(
    path: Path, problems: Problems, options: ReadOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[str, pa.RecordBatch | Query]]:
    """Yield ("conn", query) for one Argus text file; bad lines are reported with their number."""
    lines = head_lines(head_of(path), 1)
    if not lines:
        return
    found = _columns(lines[0])
    if found is None:
        raise MalformedInputError(path, 1, "no Argus header (StartTime, Proto, SrcAddr, DstAddr)")
    delimiter, columns = found
    con = connect()
    define_macros(con)
    try:
        wanted = {name: columns[name] for name in _READ if name in columns}
        con.execute(f"CREATE TEMP TABLE raw AS {split_lines(path, delimiter, wanted)}")
        con.execute(f"CREATE TEMP TABLE flows AS {_flows_sql(columns, options)}")
        con.execute("DROP TABLE raw")
        bad = con.sql(
            "SELECT record, problem FROM flows WHERE problem IS NOT NULL AND problem <> ''"
            " ORDER BY record"
        ).fetchall()
        skipped = con.sql("SELECT count(*) FROM flows WHERE problem = ''").fetchone()
    except duckdb.Error as exc:
        raise MalformedInputError(path, None, f"unreadable as Argus text: {exc}") from exc
    for line, reason in bad:
        problems.add(path, int(line), reason)
    if skipped and skipped[0]:
        log.debug("%s: %d records of non-IP protocols skipped", path, skipped[0])
    good = "(SELECT * EXCLUDE (problem) FROM flows WHERE problem IS NULL)"
    yield "conn", Query(con, conn_select(good, UID_LETTER, path))


def _flows_sql(columns: dict[str, int], options: ReadOptions) -> str:
    """SQL: one row per record line of `raw` with SIDE_COLUMNS and `problem` (null: good;
    '': a record knowingly skipped; else why the line was not used)."""
    records = "SELECT * FROM raw WHERE n > 1 AND text IS NOT NULL AND trim(text) <> ''"

    def field(name: str) -> str:
        return f"nullif(trim({_ident(name)}), '')" if name in columns else "NULL"

    def number(name: str, kind: str = "BIGINT") -> str:
        return f"TRY_CAST({field(name)} AS {kind})"

    zone = lit(options.timezone)
    start = field("StartTime")
    ts = (
        f"CASE WHEN regexp_full_match({start}, '[0-9]+(?:\\.[0-9]+)?')"
        f" THEN to_timestamp(CAST({start} AS DOUBLE))"
        f" ELSE timezone({zone}, TRY_CAST(replace({start}, '/', '-') AS TIMESTAMP)) END"
    )
    last = f"timezone({zone}, TRY_CAST(replace({field('LastTime')}, '/', '-') AS TIMESTAMP))"
    state = f"upper(coalesce({field('State')}, ''))"
    is_flags = f"regexp_full_match({state}, '[A-Z]*_[A-Z]*')"
    tcp_words = " ".join(f"WHEN {lit(w)} THEN {lit(s)}" for w, s in _TCP_WORDS.items())
    udp_words = " ".join(f"WHEN {lit(w)} THEN {lit(s)}" for w, s in _UDP_WORDS.items())
    src_pkts, src_bytes = number("SrcPkts"), number("SrcBytes")
    resp_pkts = f"coalesce({number('DstPkts')}, {number('TotPkts')} - {src_pkts})"
    resp_bytes = f"coalesce({number('DstBytes')}, {number('TotBytes')} - {src_bytes})"
    sport = number("Sport", "INTEGER")
    parsed = (
        f"SELECT n AS record, {ts} AS ts, {number('Dur', 'DOUBLE')} AS dur, {last} AS last,"
        f" {field('SrcAddr')} AS orig_ip, {field('DstAddr')} AS resp_ip,"
        f" {sport} AS sport, {number('Dport', 'INTEGER')} AS dport,"
        f" {protocol(field('Proto'))} AS proto, lower({field('Proto')}) AS raw_proto,"
        f" {state} AS state, {is_flags} AS is_flags, {src_pkts} AS orig_pkts,"
        f" {resp_pkts} AS resp_pkts, {src_bytes} AS orig_ip_bytes,"
        f" {resp_bytes} AS resp_ip_bytes, {field('StartTime')} AS start FROM ({records})"
    )
    hint = (
        "CASE WHEN proto = 'tcp' AND NOT is_flags THEN CASE state"
        f" {tcp_words} ELSE 'OTH' END"
        " WHEN proto = 'udp' AND resp_pkts IS NULL AND resp_ip_bytes IS NULL"
        f" THEN CASE state {udp_words} ELSE 'OTH' END END"
    )
    icmp = "proto = 'icmp'"  # Argus writes type | code << 8 in Sport; Zeek: type, code
    address = f"'{_IPV4}|{_IPV6}'"
    not_ip = ", ".join(lit(p) for p in _NOT_IP)
    problem = (
        f"CASE WHEN raw_proto IN ({not_ip}) OR regexp_full_match(orig_ip, '{_MAC}') THEN ''"
        " WHEN start IS NULL THEN 'no StartTime'"
        " WHEN ts IS NULL THEN 'unreadable StartTime (a time of day without a date, or not a"
        " time)'"
        f" WHEN NOT regexp_full_match(coalesce(orig_ip, ''), {address})"
        f" OR NOT regexp_full_match(coalesce(resp_ip, ''), {address}) THEN 'unreadable address'"
        " WHEN proto IS NULL THEN 'no protocol' END"
    )
    orig_flags = flag_bits("split_part(state, '_', 1)")
    resp_flags = flag_bits("split_part(state, '_', 2)")
    select = (
        "SELECT record, ts,"
        " coalesce(last, ts + to_microseconds(CAST(dur * 1e6 AS BIGINT))) AS te,"
        f" orig_ip, CASE WHEN {icmp} THEN sport & 255 ELSE sport END AS orig_port,"
        f" resp_ip, CASE WHEN {icmp} THEN sport >> 8 ELSE dport END AS resp_port, proto,"
        f" CASE WHEN is_flags THEN {orig_flags} END AS orig_flags,"
        f" CASE WHEN is_flags THEN {resp_flags} END AS resp_flags,"
        " orig_pkts, resp_pkts, orig_ip_bytes, resp_ip_bytes,"
        f" {hint} AS state_hint, {problem} AS problem FROM parsed"
    )
    return f"WITH parsed AS MATERIALIZED ({parsed}) {select}"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
