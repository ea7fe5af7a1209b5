"""Readers: one module per input format, each turning its files into normalized tables.

The registry is an explicit tuple; `detect` picks the reader whose `sniff` accepts a file's
first bytes (decompressed), so formats are recognised by content, not by file name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from homecall.errors import UnknownFormatError
from homecall.sources import (
    argus,
    bind,
    cisco_asa,
    dnsmasq,
    iptables,
    nfcapd,
    nfdump,
    pcap,
    pfsense,
    squid,
    suricata,
    w3c,
    zeek,
)
from homecall.sources.fileio import head_of
from homecall.sources.options import DEFAULT_OPTIONS, ReadOptions
from homecall.sources.problems import Problem, Problems
from homecall.store.schema import Query

__all__ = [
    "DEFAULT_OPTIONS",
    "READERS",
    "Problem",
    "Problems",
    "ReadOptions",
    "Reader",
    "detect",
    "head_of",
]


@dataclass(frozen=True, slots=True)
class Reader:
    """A format: its name, its content test and its reader."""

    format: str
    sniff: Callable[[bytes], bool]
    read: Callable[[Path, Problems, ReadOptions], Iterator[tuple[str, pa.RecordBatch | Query]]]


READERS: tuple[Reader, ...] = (
    Reader(zeek.FORMAT, zeek.sniff, zeek.read),
    Reader(suricata.FORMAT, suricata.sniff, suricata.read),
    Reader(dnsmasq.FORMAT, dnsmasq.sniff, dnsmasq.read),
    Reader(bind.FORMAT, bind.sniff, bind.read),
    Reader(iptables.FORMAT, iptables.sniff, iptables.read),
    Reader(pfsense.FORMAT, pfsense.sniff, pfsense.read),
    Reader(cisco_asa.FORMAT, cisco_asa.sniff, cisco_asa.read),
    Reader(squid.FORMAT, squid.sniff, squid.read),
    Reader(w3c.FORMAT, w3c.sniff, w3c.read),
    Reader(nfcapd.FORMAT, nfcapd.sniff, nfcapd.read),
    Reader(nfdump.FORMAT, nfdump.sniff, nfdump.read),
    Reader(argus.FORMAT, argus.sniff, argus.read),
    Reader(pcap.FORMAT, pcap.sniff, pcap.read),
)


def detect(path: Path) -> Reader:
    """The reader for `path`, from its content; UnknownFormatError when none fits."""
    head = head_of(path)
    for reader in READERS:
        if reader.sniff(head):
            return reader
    raise UnknownFormatError(path)
