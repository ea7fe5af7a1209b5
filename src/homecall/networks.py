"""Which addresses are internal: RFC 1918, RFC 6598 and IPv6 ULA, plus configured CIDRs."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["DEFAULT_INTERNAL", "InternalNetworks"]

DEFAULT_INTERNAL: tuple[str, ...] = (
    "10.0.0.0/8",  # RFC 1918
    "172.16.0.0/12",  # RFC 1918
    "192.168.0.0/16",  # RFC 1918
    "100.64.0.0/10",  # RFC 6598 carrier-grade NAT, used inside large enterprises too
    "fc00::/7",  # RFC 4193 unique local addresses
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class InternalNetworks:
    """The set of CIDRs whose hosts are ours; `src` of a finding is always inside it."""

    networks: tuple[Network, ...]

    @classmethod
    def from_cidrs(cls, extra: Iterable[str] = (), *, defaults: bool = True) -> InternalNetworks:
        """Build from the defaults plus `extra` CIDRs (ValueError on a malformed CIDR)."""
        cidrs = [*(DEFAULT_INTERNAL if defaults else ()), *extra]
        return cls(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs))

    def contains(self, ip: str) -> bool:
        """True when `ip` is an address inside one of the networks; False for junk."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr.version == n.version and addr in n for n in self.networks)

    def classify(self, ips: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
        """Vectorised `contains` over a string array: IPv4 in NumPy, the rare rest one by one."""
        ips = ips.combine_chunks() if isinstance(ips, pa.ChunkedArray) else ips
        ips = ips.cast(pa.string())
        n = len(ips)
        result = np.zeros(n, dtype=bool)
        is_v4 = pc.fill_null(pc.match_substring_regex(ips, r"^\d{1,3}(\.\d{1,3}){3}$"), False)
        v4_idx = np.flatnonzero(is_v4.to_numpy(zero_copy_only=False))
        if len(v4_idx):
            parts = pc.split_pattern(pc.take(ips, pa.array(v4_idx)), ".").flatten()
            octets = parts.cast(pa.int64()).to_numpy().reshape(-1, 4)
            valid = (octets <= 255).all(axis=1)
            value = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
            inside = np.zeros(len(v4_idx), dtype=bool)
            for net in self.networks:
                if net.version == 4:
                    lo, hi = int(net.network_address), int(net.broadcast_address)
                    inside |= (value >= lo) & (value <= hi)
            result[v4_idx] = inside & valid
        other = np.flatnonzero(~is_v4.to_numpy(zero_copy_only=False))
        for i in other:
            value_i = ips[int(i)].as_py()
            result[i] = value_i is not None and self.contains(value_i)
        return pa.array(result, type=pa.bool_())
