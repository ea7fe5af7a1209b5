"""What the flow-record readers (nfdump CSV, nfcapd, Argus) share: turning flows into Zeek-like
`conn` rows in DuckDB.

A reader builds a relation of *unidirectional* flows (one row per flow record, columns as in
`FLOW_COLUMNS`) or of already *bidirectional* sides (`SIDE_COLUMNS`), and this module turns it
into the conn table's columns: request and reply flows paired into one connection, the
originator chosen, and Zeek's conn_state and an approximate history derived from the TCP flags
each direction sent. The rules are in docs/schema.md ("Flow records").
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from homecall.sources.duck import compression, lit
from homecall.sources.proxy_logs import uid_prefix

__all__ = [
    "FLOW_COLUMNS",
    "PAIR_SLACK_S",
    "PAIR_START_S",
    "SIDE_COLUMNS",
    "conn_select",
    "define_macros",
    "flag_bits",
    "paired_sides",
    "protocol",
    "split_lines",
]

# The unidirectional flows a NetFlow reader provides (SQL types). `record` is the line or record
# number (for uids and problem reports), `ts`/`te` the first and last packet, `dp` carries
# ICMP type * 256 + code as NetFlow does, `flags` the OR of the TCP flags (null if unknown),
# `out_*` the reverse direction when the exporter counted it in the same record (else 0/null).
FLOW_COLUMNS = {
    "record": "BIGINT",
    "ts": "TIMESTAMPTZ",
    "te": "TIMESTAMPTZ",
    "sa": "VARCHAR",
    "da": "VARCHAR",
    "sp": "INTEGER",
    "dp": "INTEGER",
    "proto": "VARCHAR",
    "flags": "INTEGER",
    "pkts": "BIGINT",
    "bytes": "BIGINT",
    "out_pkts": "BIGINT",
    "out_bytes": "BIGINT",
}

# One connection each, orig already known (Argus; or paired NetFlow): what conn_select reads.
# `state_hint` is a conn_state the format states outright (null: derive it from the flags).
SIDE_COLUMNS = (
    "record", "ts", "te", "orig_ip", "orig_port", "resp_ip", "resp_port", "proto",
    "orig_flags", "resp_flags", "orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes",
    "state_hint",
)  # fmt: skip

# A reply flow belongs to a request flow when their times overlap or lie this close: covers a
# round trip and nfdump CSV's whole-second times, far below an ephemeral port's reuse time.
PAIR_SLACK_S = 5
# and when their first packets are less than this apart (up to twice this, by time bucket):
# a reply starts within a round trip of its request; the bound keeps pairing linear in time.
PAIR_START_S = 300

# IANA protocol numbers under the names homecall stores (Zeek's tcp/udp/icmp; ICMPv6 is icmp
# in Zeek too); other numbers keep nfdump's lower-case name or the number.
_PROTOCOLS = {
    1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp", 41: "ipv6", 46: "rsvp", 47: "gre",
    50: "esp", 51: "ah", 58: "icmp", 89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp",
}  # fmt: skip
_NAME_ALIASES = {"icmp6": "icmp", "ipv6-icmp": "icmp", "icmpv6": "icmp"}
# ICMP request types and their replies (echo, timestamp, information, address mask; ICMPv6 echo)
_ICMP_PARTNERS = {8: 0, 13: 14, 15: 16, 17: 18, 128: 129}
_ICMP_REQUESTS = tuple(_ICMP_PARTNERS)
_TCP_BITS = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32, "E": 64, "C": 128}

FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16


def split_lines(path: Path, delimiter: str, fields: dict[str, int]) -> str:
    """SQL: every line of a delimited text file as `n` (its 1-based line number), `text`,
    `width` (its number of fields) and each of `fields` (name: 1-based position) as written.

    Lines are read whole by DuckDB's CSV reader (so blank lines keep their numbers) and split
    in one projection: measured about 4x faster than splitting in a CTE the fields are taken
    from, which DuckDB inlines once per field.
    """
    lines = (
        f"SELECT row_number() OVER () AS n, rtrim(text, chr(13)) AS text FROM read_csv("
        f"{lit(str(path))}, columns={{'text': 'VARCHAR'}}, delim=chr(1), quote='', escape='',"
        " header=false, auto_detect=false, strict_mode=false, new_line='\\n',"
        f" compression={lit(compression(path))})"
    )
    split = f"string_split(text, {lit(delimiter)})"
    named = "".join(f", {split}[{position}] AS {_ident(name)}" for name, position in fields.items())
    return f"SELECT n, text, len({split}) AS width{named} FROM ({lines})"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def protocol(expr: str) -> str:
    """SQL: a protocol number or name (`6`, `TCP`, `ipv6-icmp`) as homecall stores it."""
    numbers = " ".join(f"WHEN {n} THEN {lit(name)}" for n, name in _PROTOCOLS.items())
    aliases = " ".join(f"WHEN {lit(a)} THEN {lit(name)}" for a, name in _NAME_ALIASES.items())
    clean = f"lower(trim({expr}))"
    return (
        f"CASE WHEN regexp_full_match(trim({expr}), '[0-9]+')"
        f" THEN coalesce(CASE CAST(trim({expr}) AS INTEGER) {numbers} END, trim({expr}))"
        f" ELSE coalesce(CASE {clean} {aliases} END, nullif({clean}, '')) END"
    )


def flag_bits(expr: str) -> str:
    """SQL: TCP flags written as letters (nfdump's `...AP.SF`, Argus' `FSPA`) as bits, FIN 1 ...
    CWR 128; a `0x..` number is read as it is. Null stays null."""
    terms = " + ".join(
        f"CASE WHEN contains({expr}, '{c}') THEN {b} ELSE 0 END" for c, b in _TCP_BITS.items()
    )
    return (
        f"CASE WHEN {expr} IS NULL THEN NULL"
        f" WHEN starts_with({expr}, '0x') THEN TRY_CAST({expr} AS INTEGER) ELSE {terms} END"
    )


def define_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the SQL macros the queries here use on `con` (once per connection)."""
    partners = " ".join(f"WHEN {a} THEN {b} WHEN {b} THEN {a}" for a, b in _ICMP_PARTNERS.items())
    con.execute(f"CREATE OR REPLACE MACRO hc_icmp_partner(t) AS CASE t {partners} ELSE -1 END")
    # A TCP endpoint's last state as Zeek names it, from the flags it sent (f), the flags the
    # other side sent (other), whether it sent anything, and whether it is the responder.
    con.execute(
        "CREATE OR REPLACE MACRO hc_endpoint(f, other, seen, is_resp) AS CASE"
        " WHEN NOT seen THEN 'INACTIVE'"
        f" WHEN f & {RST} <> 0 THEN 'RESET'"
        f" WHEN f & {FIN} <> 0 THEN 'CLOSED'"
        f" WHEN f & {SYN} <> 0 AND f & {ACK} <> 0"
        f"  AND (NOT is_resp OR other & {ACK} <> 0) THEN 'ESTABLISHED'"
        f" WHEN f & {SYN} <> 0 AND f & {ACK} <> 0 THEN 'SYN_ACK_SENT'"
        f" WHEN f & {SYN} <> 0 THEN 'SYN_SENT'"
        " ELSE 'PARTIAL' END"
    )
    # Zeek's conn_state (base/protocols/conn/main.zeek) over the two endpoint states.
    con.execute(
        "CREATE OR REPLACE MACRO hc_tcp_state(os, rs, of, rf) AS CASE"
        " WHEN rs = 'RESET' THEN CASE"
        "  WHEN os IN ('SYN_SENT', 'SYN_ACK_SENT')"
        f"   OR (os = 'RESET' AND (of | rf) & {PSH} = 0) THEN 'REJ'"
        "  WHEN os IN ('INACTIVE', 'PARTIAL') THEN 'RSTRH' ELSE 'RSTR' END"
        " WHEN os = 'RESET' THEN CASE WHEN rs NOT IN ('INACTIVE', 'PARTIAL') THEN 'RSTO'"
        f"  WHEN of & {SYN} <> 0 THEN 'RSTOS0' ELSE 'OTH' END"
        " WHEN os = 'CLOSED' AND rs = 'CLOSED' THEN 'SF'"
        " WHEN os = 'CLOSED' THEN CASE WHEN rs IN ('INACTIVE', 'PARTIAL') THEN 'SH' ELSE 'S2' END"
        " WHEN rs = 'CLOSED' THEN CASE WHEN os IN ('INACTIVE', 'PARTIAL') THEN 'SHR' ELSE 'S3' END"
        " WHEN os = 'SYN_SENT' AND rs = 'INACTIVE' THEN 'S0'"
        " WHEN os = 'ESTABLISHED' AND rs = 'ESTABLISHED' THEN 'S1'"
        " ELSE 'OTH' END"
    )
    # Zeek's history letters from the flags alone: orig upper case, resp lower case, in a fixed
    # order (the packet order is not in a flow record).
    con.execute(
        "CREATE OR REPLACE MACRO hc_tcp_history(of, rf) AS concat("
        f" CASE WHEN of & {SYN} <> 0 THEN 'S' ELSE '' END,"
        f" CASE WHEN rf & {SYN} <> 0 AND rf & {ACK} <> 0 THEN 'h'"
        f"  WHEN rf & {SYN} <> 0 THEN 's' ELSE '' END,"
        f" CASE WHEN of & {ACK} <> 0 THEN 'A' ELSE '' END,"
        f" CASE WHEN rf & {ACK} <> 0 AND rf & ({SYN} | {RST}) = 0 THEN 'a' ELSE '' END,"
        f" CASE WHEN of & {PSH} <> 0 THEN 'D' ELSE '' END,"
        f" CASE WHEN rf & {PSH} <> 0 THEN 'd' ELSE '' END,"
        f" CASE WHEN of & {FIN} <> 0 THEN 'F' ELSE '' END,"
        f" CASE WHEN rf & {FIN} <> 0 THEN 'f' ELSE '' END,"
        f" CASE WHEN of & {RST} <> 0 THEN 'R' ELSE '' END,"
        f" CASE WHEN rf & {RST} <> 0 THEN 'r' ELSE '' END)"
    )


def paired_sides(flows: str) -> str:
    """SQL: the unidirectional `flows` (a relation with FLOW_COLUMNS) as one row per connection
    with SIDE_COLUMNS: each request paired with its reply, unpaired flows alone.

    A reply is a flow of the same protocol with the addresses and ports swapped (for ICMP: the
    request type's reply type) whose time span overlaps the request's or lies within
    PAIR_SLACK_S of it, and which starts less than PAIR_START_S from it; each flow pairs with
    its nearest such flow by first-packet time when that choice is mutual. Records that already
    count both directions are not paired.
    """
    steps = {
        "keyed": _keyed(flows),
        # the time bucket in the join key keeps it linear for 5-tuples with very many flows
        "near": "SELECT *, unnest([bucket - 1, bucket, bucket + 1]) AS near FROM keyed",
        "candidates": _candidates(),
        "nearest": "SELECT a, arg_min(b, (gap, b)) AS b FROM candidates GROUP BY a",
        "pairs": "SELECT x.a, x.b FROM nearest x JOIN nearest y ON x.b = y.a AND y.b = x.a"
        " WHERE x.a < x.b",
        "oriented": f"SELECT p.a AS record, p.b AS r_record, {_a_is_orig()} AS a_orig"
        " FROM pairs p JOIN keyed a ON a.record = p.a JOIN keyed b ON b.record = p.b",
    }
    joined = (
        " FROM oriented p JOIN keyed a ON a.record = p.record JOIN keyed b ON b.record = p.r_record"
    )
    paired = (
        f"{_side('a', 'b')}{joined} WHERE p.a_orig"
        f" UNION ALL {_side('b', 'a')}{joined} WHERE NOT p.a_orig"
    )
    alone = (
        "SELECT record, ts, te, sa, p_sp, da, p_dp, proto, flags,"
        " CASE WHEN one_way THEN NULL ELSE flags END, pkts, coalesce(out_pkts, 0),"
        " bytes, coalesce(out_bytes, 0), CAST(NULL AS VARCHAR) FROM keyed k"
        " ANTI JOIN (SELECT a AS record FROM pairs UNION ALL SELECT b FROM pairs) USING (record)"
    )
    ctes = ", ".join(f"{name} AS ({sql})" for name, sql in steps.items())
    return f"WITH {ctes} {paired} UNION ALL {alone}"


def _keyed(flows: str) -> str:
    """SQL: the flows with Zeek's ports (ICMP type and code), the join keys of a request and
    of its reply, whether the record is one-way, and its time bucket."""
    icmp = "f.proto = 'icmp'"
    return (
        "SELECT *,"
        f" CASE WHEN {icmp} THEN dp // 256 ELSE sp END AS p_sp,"
        f" CASE WHEN {icmp} THEN dp % 256 ELSE dp END AS p_dp,"
        f" CASE WHEN {icmp} THEN hc_icmp_partner(dp // 256) ELSE coalesce(dp, -1) END AS k_rev,"
        f" CASE WHEN {icmp} THEN dp // 256 ELSE coalesce(sp, -1) END AS k_fwd,"
        " coalesce(out_pkts, 0) = 0 AND coalesce(out_bytes, 0) = 0 AS one_way,"
        f" CAST(floor(epoch(ts) / {PAIR_START_S}) AS BIGINT) AS bucket"
        f" FROM {flows} AS f"
    )


def _candidates() -> str:
    """SQL: every (a, b) where b could be a's reply, with the gap between their starts."""
    slack = f"INTERVAL {PAIR_SLACK_S} SECOND"
    return (
        "SELECT a.record AS a, b.record AS b,"
        " abs(epoch_us(a.ts) - epoch_us(b.ts)) AS gap FROM keyed a JOIN near b"
        " ON a.sa = b.da AND a.da = b.sa AND a.proto = b.proto"
        " AND a.k_fwd = b.k_rev AND a.k_rev = b.k_fwd AND a.bucket = b.near"
        " WHERE a.one_way AND b.one_way AND a.record <> b.record"
        f" AND a.ts <= b.te + {slack} AND b.ts <= a.te + {slack}"
    )


def _a_is_orig() -> str:
    """SQL: whether flow `a` of a pair (a, b) is the originator's; the first rule that decides
    wins (docs/schema.md, "Flow records")."""
    syn_a, syn_b = f"(a.flags & {SYN} <> 0)", f"(b.flags & {SYN} <> 0)"
    ack_a, ack_b = f"(a.flags & {ACK} <> 0)", f"(b.flags & {ACK} <> 0)"
    requests = ", ".join(str(t) for t in _ICMP_REQUESTS)
    return (
        "CASE"
        f" WHEN a.proto = 'tcp' AND {syn_a} <> {syn_b} THEN {syn_a}"
        f" WHEN a.proto = 'tcp' AND {syn_a} AND {syn_b} AND {ack_a} <> {ack_b} THEN NOT {ack_a}"
        f" WHEN a.proto = 'icmp' THEN a.p_sp IN ({requests})"
        " WHEN a.ts <> b.ts THEN a.ts < b.ts"
        " WHEN a.sp <> b.sp THEN a.sp > b.sp"  # the client's ephemeral port is the higher one
        " ELSE a.record < b.record END"
    )


def _side(o: str, r: str) -> str:
    """SQL: the SIDE_COLUMNS of a pair whose originator's flow is `o` and responder's `r`."""
    return (
        f"SELECT {o}.record, least({o}.ts, {r}.ts) AS ts, greatest({o}.te, {r}.te) AS te,"
        f" {o}.sa AS orig_ip, {o}.p_sp AS orig_port, {o}.da AS resp_ip,"
        f" {o}.p_dp AS resp_port, {o}.proto, {o}.flags AS orig_flags,"
        f" {r}.flags AS resp_flags, {o}.pkts AS orig_pkts, {r}.pkts AS resp_pkts,"
        f" {o}.bytes AS orig_ip_bytes, {r}.bytes AS resp_ip_bytes,"
        " CAST(NULL AS VARCHAR) AS state_hint"
    )


def conn_select(sides: str, letter: str, path: Path) -> str:
    """SQL: the conn table's columns, in order, from `sides` (a relation with SIDE_COLUMNS).

    The uid is `letter` + 10 hex digits of the SHA-256 of the path + `-` + the record number.
    """
    seen_o = "(coalesce(orig_pkts, orig_ip_bytes, 0) > 0 OR coalesce(orig_flags, 0) <> 0)"
    seen_r = "(coalesce(resp_pkts, resp_ip_bytes, 0) > 0 OR coalesce(resp_flags, 0) <> 0)"
    of, rf = "coalesce(orig_flags, 0)", "coalesce(resp_flags, 0)"
    os_ = f"hc_endpoint({of}, {rf}, {seen_o}, false)"
    rs_ = f"hc_endpoint({rf}, {of}, {seen_r}, true)"
    state = (
        "coalesce(state_hint, CASE"
        f" WHEN proto = 'tcp' THEN hc_tcp_state({os_}, {rs_}, {of}, {rf})"
        f" WHEN proto = 'udp' THEN CASE WHEN {seen_o} THEN CASE WHEN {seen_r} THEN 'SF'"
        f"  ELSE 'S0' END WHEN {seen_r} THEN 'SHR' ELSE 'OTH' END ELSE 'OTH' END)"
    )
    history = (
        f"CASE WHEN proto = 'tcp' THEN nullif(hc_tcp_history({of}, {rf}), '')"
        f" WHEN proto = 'udp' THEN nullif(concat(CASE WHEN {seen_o} THEN 'D' ELSE '' END,"
        f" CASE WHEN {seen_r} THEN 'd' ELSE '' END), '') END"
    )
    duration = "CAST(greatest(epoch_us(te) - epoch_us(ts), 0) AS DOUBLE) / 1e6"
    prefix = uid_prefix(letter, path)
    return (
        "SELECT ts, "
        f"{lit(prefix)} || CAST(record AS VARCHAR) AS uid,"
        " orig_ip, CAST(orig_port AS INTEGER) AS orig_port,"
        " resp_ip, CAST(resp_port AS INTEGER) AS resp_port, proto,"
        " CAST(NULL AS VARCHAR) AS service,"
        f" CASE WHEN te IS NULL THEN NULL ELSE {duration} END AS duration_s,"
        " CAST(NULL AS BIGINT) AS orig_bytes, CAST(NULL AS BIGINT) AS resp_bytes,"
        f" {state} AS conn_state, {history} AS history,"
        " CAST(orig_pkts AS BIGINT) AS orig_pkts, CAST(resp_pkts AS BIGINT) AS resp_pkts,"
        " CAST(orig_ip_bytes AS BIGINT) AS orig_ip_bytes,"
        " CAST(resp_ip_bytes AS BIGINT) AS resp_ip_bytes,"
        " CAST(NULL AS BIGINT) AS missed_bytes,"
        " CAST(NULL AS BOOLEAN) AS local_orig, CAST(NULL AS BOOLEAN) AS local_resp,"
        f" CAST(NULL AS VARCHAR) AS sensor, {lit(str(path))} AS source_file"
        f" FROM ({sides}) AS sides WHERE ts IS NOT NULL"
    )
