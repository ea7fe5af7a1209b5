"""nfdump `-o csv` text (nfdump 1.6 and 1.7) -> the conn table.

nfdump 1.6 and 1.7 up to 1.7.4 write a fixed header (`ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,
ipkt,ibyt,opkt,obyt,...`), 1.7.5 and later name their columns (`firstSeen,lastSeen,duration,
srcAddr,...`, also for `-o csv:%ts,%sa,...` user formats); columns are found by name, so either
works, and `-q` output without a header is read in the fixed layout. The `Summary` block nfdump
appends is skipped. NetFlow records are one-way: request and reply flows are paired into one
connection by sources/flows.py. Times are in the local time of the machine that ran nfdump, read
in `[import] timezone` (default UTC). A record's uid is `N` + 10 hex digits of the SHA-256 of the
path + `-` + its line number. See docs/schema.md ("Flow records").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from homecall.errors import MalformedInputError
from homecall.sources.duck import connect, lit
from homecall.sources.fileio import head_of
from homecall.sources.flows import (
    conn_select,
    define_macros,
    flag_bits,
    paired_sides,
    protocol,
    split_lines,
)
from homecall.sources.options import DEFAULT_OPTIONS, ReadOptions
from homecall.sources.problems import Problems
from homecall.sources.proxy_logs import head_lines
from homecall.store.schema import Query

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "nfdump"
UID_LETTER = "N"
SNIFF_LINES = 5  # a header, or records in the fixed layout (nfdump -q) among the first lines

# The fixed csv layout of nfdump 1.6 to 1.7.4 (its csv_prolog), also assumed without a header.
FIXED_HEADER = (
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,"
    "nh,nhb,svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,"
    "mpls9,mpls10,cl,sl,al,ra,eng,exid,tr"
)
# 1.7.5+ column names (the csvHeader of nfdump's output_csv.c) for the fields read here
_ALIASES = {
    "firstSeen": "ts", "lastSeen": "te", "duration": "td", "srcAddr": "sa", "dstAddr": "da",
    "srcPort": "sp", "dstPort": "dp", "proto": "pr", "flags": "flg", "packets": "ipkt",
    "inPackets": "ipkt", "bytes": "ibyt", "inBytes": "ibyt", "outPackets": "opkt",
    "outBytes": "obyt", "icmpType": "it", "icmpCode": "ic",
}  # fmt: skip
_REQUIRED = ("ts", "sa", "da", "pr")
_READ = (
    "ts", "te", "td", "sa", "da", "sp", "dp", "pr", "flg", "ipkt", "ibyt", "opkt", "obyt", "it",
    "ic",
)  # fmt: skip
_SUMMARY_NAMES = "flows,bytes,packets,avg_bps,avg_pps,avg_bpp"
_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
_ADDRESS = r"[0-9A-Fa-f:.]*[0-9A-Fa-f]"
# a record line of the fixed layout: ts, te, td, sa, da, sp, dp, pr, flg, ...
_FIXED_RECORD = re.compile(
    rf"{_TIME},{_TIME}, *[0-9.]+,{_ADDRESS},{_ADDRESS},[0-9]+,[0-9.]+,[A-Za-z0-9-]+,[^,]*,.*"
)


def sniff(head: bytes) -> bool:
    """True for an nfdump csv header (either naming), or records in the fixed csv layout."""
    lines = head_lines(head, SNIFF_LINES)
    if not lines:
        return False
    columns = _columns(lines[0])
    if columns is not None:
        return True
    return all(_FIXED_RECORD.fullmatch(line.rstrip("\r")) for line in lines)


def _columns(line: str) -> dict[str, int] | None:
    """The 1-based position of each field read here, when `line` is an nfdump csv header."""
    names = [name.strip() for name in line.rstrip("\r").split(",")]
    found: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        key = _ALIASES.get(name, name)
        found.setdefault(key, position)
    if all(key in found for key in _REQUIRED) and ("te" in found or "td" in found):
        return found
    return None


def read(
    path: Path, problems: Problems, options: ReadOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[str, pa.RecordBatch | Query]]:
    """Yield ("conn", query) for one nfdump csv file; bad lines are reported with their number."""
    lines = head_lines(head_of(path), 1)
    if not lines:
        return
    header = lines[0].rstrip("\r")
    columns = _columns(header)
    if columns is None:
        if not _FIXED_RECORD.fullmatch(header):
            raise MalformedInputError(path, 1, "neither an nfdump csv header nor a csv record")
        header = FIXED_HEADER
        columns = _columns(FIXED_HEADER)
        assert columns is not None
    con = connect()
    define_macros(con)
    try:
        wanted = {key: columns[key] for key in _READ if key in columns}
        con.execute(f"CREATE TEMP TABLE raw AS {split_lines(path, ',', wanted)}")
        con.execute(f"CREATE TEMP TABLE flows AS {_flows_sql(header, columns, options)}")
        con.execute("DROP TABLE raw")
        bad = con.sql(
            "SELECT record, problem FROM flows WHERE problem IS NOT NULL ORDER BY record"
        ).fetchall()
    except duckdb.Error as exc:
        raise MalformedInputError(path, None, f"unreadable as nfdump csv: {exc}") from exc
    for line, reason in bad:
        problems.add(path, int(line), reason)
    good = "(SELECT * EXCLUDE (problem) FROM flows WHERE problem IS NULL)"
    yield "conn", Query(con, conn_select(paired_sides(good), UID_LETTER, path))


def _flows_sql(header: str, columns: dict[str, int], options: ReadOptions) -> str:
    """SQL: one row per line of `raw` that is a record (FLOW_COLUMNS plus `problem`)."""
    # nfdump's own lines: the header (again, in concatenated files) and the Summary block
    records = (
        "SELECT * FROM raw WHERE text IS NOT NULL AND trim(text) <> ''"
        f" AND text NOT IN ({lit(header)}, 'Summary', {lit(_SUMMARY_NAMES)})"
        f" AND n - 1 NOT IN (SELECT n FROM raw WHERE text = {lit(_SUMMARY_NAMES)})"
    )

    def field(key: str) -> str:
        return f"nullif(trim({_ident(key)}), '')" if key in columns else "CAST(NULL AS VARCHAR)"

    zone = lit(options.timezone)
    ts = f"timezone({zone}, TRY_CAST({field('ts')} AS TIMESTAMP))"
    te = f"timezone({zone}, TRY_CAST({field('te')} AS TIMESTAMP))"
    td = f"TRY_CAST({field('td')} AS DOUBLE)"
    dp = field("dp")
    # ICMP as NetFlow writes it (type * 256 + code); 1.7.5+ may write `type.code`
    icmp_dp = (
        f"CASE WHEN contains({dp}, '.') THEN TRY_CAST(split_part({dp}, '.', 1) AS INTEGER) * 256"
        f" + TRY_CAST(split_part({dp}, '.', 2) AS INTEGER)"
        f" WHEN {field('it')} IS NOT NULL THEN TRY_CAST({field('it')} AS INTEGER) * 256"
        f" + coalesce(TRY_CAST({field('ic')} AS INTEGER), 0) ELSE TRY_CAST({dp} AS INTEGER) END"
    )
    address = f"'{_ADDRESS}'"
    width = max(columns[k] for k in _READ if k in columns)
    parsed = (
        f"SELECT n AS record, {ts} AS ts, {td} AS td, {te} AS te,"
        f" {field('sa')} AS sa, {field('da')} AS da, TRY_CAST({field('sp')} AS INTEGER) AS sp,"
        f" {icmp_dp} AS dp, {protocol(field('pr'))} AS proto, {flag_bits(field('flg'))} AS flags,"
        f" TRY_CAST({field('ipkt')} AS BIGINT) AS pkts,"
        f" TRY_CAST({field('ibyt')} AS BIGINT) AS bytes,"
        f" TRY_CAST({field('opkt')} AS BIGINT) AS out_pkts,"
        f" TRY_CAST({field('obyt')} AS BIGINT) AS out_bytes, width FROM ({records})"
    )
    problem = (
        "CASE"
        f" WHEN width < {width} THEN 'not an nfdump csv record: ' || width"
        f" || ' fields, {width} expected'"
        " WHEN ts IS NULL THEN 'unreadable first-seen time'"
        f" WHEN NOT regexp_full_match(sa, {address}) OR NOT regexp_full_match(da, {address})"
        " THEN 'unreadable address'"
        " WHEN proto IS NULL THEN 'no protocol'"
        " WHEN pkts IS NULL OR bytes IS NULL THEN 'unreadable packet or byte count' END"
    )
    last = "CASE WHEN td IS NULL THEN te ELSE ts + to_microseconds(CAST(td * 1e6 AS BIGINT)) END"
    return (
        f"WITH parsed AS MATERIALIZED ({parsed})"
        f" SELECT record, ts, coalesce({last}, ts) AS te, sa, da, sp, dp, proto, flags, pkts,"
        f" bytes, out_pkts, out_bytes, {problem} AS problem FROM parsed"
    )


def _ident(name: str) -> str:
    return '"' + name + '"'
