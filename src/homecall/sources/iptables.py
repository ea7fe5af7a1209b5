"""iptables/nftables LOG lines (netfilter's kernel log, Proxmox pve-firewall.log) -> the
firewall table.

A kernel line is ``[syslog header] kernel: [uptime] PREFIX IN=eth0 OUT= MAC=.. SRC=.. DST=..
LEN=.. TOS=.. TTL=.. ID=.. [DF] PROTO=TCP SPT=.. DPT=.. WINDOW=.. RES=.. SYN URGP=..`` (BSD or
RFC 3339 syslog stamps, journald's short formats, ``dmesg -T``'s ``[Mon Jun  8 14:34:33
2020]``); PREFIX is the rule's ``--log-prefix`` (``[UFW BLOCK]``, ``DROP:``, or none).
Proxmox's pvefw-logger writes ``VMID LEVEL CHAIN 20/Jun/2022:13:09:14 +0200 PREFIX: IN=..``.
One row per line: `action` is "deny" when the prefix has a deny word (block, drop, deny,
reject ...) and "allow" when it has an allow word (accept, allow, pass, permit ...); a prefix
with neither (or both, or none at all) gives null: logging alone says nothing about the verdict.
`reason` is the prefix, `rule` Proxmox's chain. Lines of other programs are skipped; a netfilter
line without its IN=, SRC=, DST= or PROTO= fields, or without a wall-clock time, is reported.
Parsing is line by line in Python: DuckDB string functions over the variable key=value layout
were measured no faster (docs/schema.md, "Firewall logs").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from homecall.sources.firewall_logs import (
    Row,
    Stamps,
    action_of,
    number_of,
    port_of,
    protocol_name,
    read_lines,
    syslog_parts,
)
from homecall.sources.options import DEFAULT_OPTIONS, ReadOptions
from homecall.sources.problems import Problems

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "iptables"
SNIFF_LINES = 50

_PROXMOX = re.compile(
    r"^\d+ \d+ (?P<chain>\S+)"
    r" (?P<stamp>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}) (?P<msg>.*)$"
)
_DMESG = re.compile(
    r"^\[(?P<stamp>[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} [\d:]{8} \d{4})\] (?P<msg>.*)$"
)
_UPTIME = re.compile(r"^\[\s*\d+\.\d+\] ?")
_FIELDS_START = re.compile(r"(?:^| )(?:IN|OUT)=")  # the kernel writes IN= first, Proxmox may not
_FIELD = re.compile(r"([A-Z][A-Z0-9]*)=(\S*)")
_TCP_FLAGS = re.compile(r"(?<= )(?:CWR|ECE|URG|ACK|PSH|RST|SYN|FIN)(?= |$)")
_NETFILTER = re.compile(r"(?:^| )(?:IN|OUT)=\S* .*\bSRC=\S+ DST=\S+")  # for sniffing


def sniff(head: bytes) -> bool:
    """True when one of the first lines is a netfilter LOG line (kernel syslog, journald, dmesg
    -T or Proxmox's firewall log)."""
    lines = [line for line in head.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines[:SNIFF_LINES]:
        if _NETFILTER.search(line) is None:
            continue
        syslog = syslog_parts(line)
        if syslog is not None and syslog.program == "kernel":
            return True
        if _PROXMOX.match(line) or _DMESG.match(line) or _UPTIME.match(line):
            return True
    return False


def read(
    path: Path, problems: Problems, options: ReadOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield ("firewall", batch) for one netfilter log; unusable netfilter lines go to
    `problems` with their line numbers."""
    return read_lines(path, problems, options, _parse)


def _parse(line: str, stamps: Stamps) -> Row | None:
    """The row of one line; None for a line of another kind; ValueError for a bad one."""
    if not line.strip():
        return None
    host: str | None = None
    chain: str | None = None
    stamp: str | None = None
    syslog = syslog_parts(line)
    if syslog is not None:
        if syslog.program != "kernel":
            return None  # sshd, cron ... sharing the file
        stamp, host, message = syslog.stamp, syslog.host, syslog.message
        if message.startswith("["):
            message = _UPTIME.sub("", message, count=1)
    elif (proxmox := _PROXMOX.match(line)) is not None:
        stamp, chain, message = proxmox["stamp"], proxmox["chain"], proxmox["msg"]
    elif (dmesg := _DMESG.match(line)) is not None:
        stamp, message = dmesg["stamp"], dmesg["msg"]
    elif _UPTIME.match(line):
        message = _UPTIME.sub("", line, count=1)  # plain dmesg: seconds since boot only
    elif "SRC=" in line:
        raise ValueError("netfilter line without a syslog header")
    else:
        raise ValueError("not a syslog line")
    start = _FIELDS_START.search(message)
    if start is None:
        if " SRC=" in message and " DST=" in message:
            raise ValueError("netfilter line without IN= and OUT= fields")
        return None  # another kernel or pvefw-logger message
    if stamp is None:
        raise ValueError("netfilter line without a wall-clock time (dmesg uptime only)")
    ts = stamps.micros(stamp)
    return _row(ts, host, chain, message[: start.start()], message[start.start() :])


def _row(ts: int, host: str | None, chain: str | None, prefix: str, text: str) -> Row:
    """A firewall row from the prefix and the ``KEY=value`` text of a netfilter line."""
    fields_text = text.split(" [", 1)[0]  # an ICMP error's quoted packet follows in brackets
    pairs = _FIELD.findall(fields_text)
    fields = dict(reversed(pairs))  # the first of a repeated key: the IP header's LEN and ID
    if chain is None and "IN" not in fields:
        raise ValueError("netfilter line without an IN= field")
    source, destination, proto_text = fields.get("SRC"), fields.get("DST"), fields.get("PROTO")
    if not source or not destination or not proto_text:
        raise ValueError("netfilter line without SRC=, DST= or PROTO=")
    proto = protocol_name(proto_text)
    in_interface = fields.get("PHYSIN") or fields.get("IN") or None
    out_interface = fields.get("PHYSOUT") or fields.get("OUT") or None
    reason = prefix.strip().rstrip(":").strip() or None
    flags = None
    if proto == "tcp":
        flags = " ".join(_TCP_FLAGS.findall(fields_text[fields_text.find(" PROTO=") :]))
    return (
        ts, None, source, port_of(fields.get("SPT")), destination, port_of(fields.get("DPT")),
        proto, action_of(reason), reason, chain, _direction(chain, fields), in_interface,
        out_interface, host, None, number_of(fields.get("LEN")),
        number_of(fields.get("TTL") or fields.get("HOPLIMIT")), flags or None, None, None,
    )  # fmt: skip


def _direction(chain: str | None, fields: dict[str, str]) -> str | None:
    """ "in" or "out": from a Proxmox chain's -IN/-OUT, else from which of IN= and OUT= is set;
    None for a forwarded packet (both set) that no chain name places."""
    if chain is not None:
        if chain.endswith("-IN"):
            return "in"
        if chain.endswith("-OUT"):
            return "out"
    has_in, has_out = bool(fields.get("IN")), bool(fields.get("OUT"))
    if has_in == has_out:
        return None
    return "in" if has_in else "out"
