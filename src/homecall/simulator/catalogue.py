"""Destinations of a simulation: every domain with its addresses, DNS answers and certificate."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from homecall.simulator.addresses import (
    DOMAIN_CONTROLLERS,
    FILE_SERVER,
    INTRANET_SERVERS,
    draw_public_ips,
    int_to_ip,
)
from homecall.simulator.internet import (
    ADDRESS_COUNTS,
    HOSTING,
    INTERNAL_DOMAIN,
    PROVIDERS,
    RARE_TLDS,
    RARE_WORDS,
    Provider,
    popular_domains,
)

__all__ = ["INTERNAL_NAMES", "Catalogue", "build_catalogue"]

INTERNAL_NAMES = {  # name -> address, served by the domain controllers' DNS
    f"dc01.{INTERNAL_DOMAIN}": DOMAIN_CONTROLLERS[0],
    f"dc02.{INTERNAL_DOMAIN}": DOMAIN_CONTROLLERS[1],
    f"fs01.{INTERNAL_DOMAIN}": FILE_SERVER,
    f"intranet.{INTERNAL_DOMAIN}": INTRANET_SERVERS[0],
    f"wiki.{INTERNAL_DOMAIN}": INTRANET_SERVERS[1],
    f"jira.{INTERNAL_DOMAIN}": INTRANET_SERVERS[2],
}
_INTERNAL_TTL_S = 1200  # Active Directory-integrated zones default to 20 minutes
_CNAME_TTL_S = 3600
_SHARED_HOSTING_RATIO = 0.3  # long-tail sites on a shared-hosting address (many sites, one IP)
_PLAIN_HTTP_RARE_RATIO = 0.1  # small sites still without HTTPS
_RARE_PATTERNS = (("{a}{b}", 0.35), ("www.{a}{b}", 0.3), ("{a}-{b}", 0.15), ("{a}{b}{c}", 0.1))


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Domains by id (parallel arrays), grouped by how they are visited."""

    names: tuple[str, ...]
    name_text: Any  # the names as a pyarrow string array, for take()
    # the addresses of domain d are ips[ip_start[d] : ip_start[d] + ip_count[d]]
    ips: npt.NDArray[np.uint32]
    ip_start: npt.NDArray[np.int64]
    ip_count: npt.NDArray[np.int64]
    ttl_s: npt.NDArray[np.int64]
    is_http: npt.NDArray[np.bool_]  # served over plain HTTP on port 80
    is_tls13: npt.NDArray[np.bool_]
    a_answers: Any  # pyarrow strings: CNAME chain then A records, as Zeek's answers vector
    cname_ttls: Any  # pyarrow strings: the CNAMEs' TTLs, "3600.000000," each, "" without CNAMEs
    aaaa_answers: Any  # pyarrow strings, null when the domain has no IPv6 address
    cert_fps: Any  # pyarrow strings: SHA-256 fingerprints of leaf and intermediate
    sites: npt.NDArray[np.int64]  # pages people open, most popular first
    third_party: npt.NDArray[np.int64]  # resources embedded in pages, most popular first
    rare: npt.NDArray[np.int64]  # the long tail, each visited by a host or two
    background: npt.NDArray[np.int64]  # contacted by installed software on its own
    plain_http: npt.NDArray[np.int64]  # software endpoints on port 80: OCSP, CRLs, NCSI
    ids: dict[str, int]

    def pick_ips(
        self, rng: np.random.Generator, ids: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.uint32]:
        """One of each domain's addresses, as a client picks from a round-robin answer."""
        offset = (rng.random(len(ids)) * self.ip_count[ids]).astype(np.int64)
        picked: npt.NDArray[np.uint32] = self.ips[self.ip_start[ids] + offset]
        return picked

    def used_ips(self) -> set[int]:
        """Every address given to a domain (new destinations must avoid them)."""
        return {int(ip) for ip in self.ips}


def build_catalogue(rng: np.random.Generator, rare_domains: int) -> Catalogue:
    """Popular, background, internal and rare_domains long-tail domains with their addresses."""
    builder = _Builder(rng)
    groups: dict[str, list[int]] = {"site": [], "third": [], "rare": []}
    for kind, provider, name in popular_domains():
        count = int(rng.integers(1, 5))
        if kind in ("http", "background"):
            count = ADDRESS_COUNTS.get(name, 1)
        ident = builder.add(name, PROVIDERS[provider], provider, count, is_http=kind == "http")
        groups.setdefault(kind, []).append(ident)
    for name, ip in INTERNAL_NAMES.items():
        builder.add_internal(name, ip)
    shared = draw_public_ips(rng, HOSTING.blocks, max(10, rare_domains // 40), builder.used)
    for name in _rare_names(rng, rare_domains, set(builder.ids)):
        on_shared = rng.random() < _SHARED_HOSTING_RATIO
        shared_ip = shared[int(rng.integers(len(shared)))] if on_shared else None
        is_http = rng.random() < _PLAIN_HTTP_RARE_RATIO
        groups["rare"].append(
            builder.add(name, HOSTING, "hosting", 1, is_http=is_http, ip=shared_ip)
        )
    return builder.build(groups)


@dataclass(frozen=True, slots=True)
class _Domain:
    """One catalogue row while the catalogue is being built."""

    name: str
    ips: list[int]
    ttl_s: int
    is_http: bool
    is_tls13: bool
    cnames: list[str]
    aaaa: str | None  # the AAAA answers vector, None without IPv6
    cert_fps: str


class _Builder:
    """Accumulates domains while drawing their addresses (no address is given twice)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.used: set[int] = set()
        self.ids: dict[str, int] = {}
        self.rows: list[_Domain] = []

    def add(
        self,
        name: str,
        provider: Provider,
        provider_name: str,
        count: int,
        *,
        is_http: bool,
        ip: int | None = None,
    ) -> int:
        rng = self.rng
        ips = [ip] if ip is not None else draw_public_ips(rng, provider.blocks, count, self.used)
        cnames = _cname_chain(rng, name, provider.cname)
        aaaa = None
        if provider.ipv6_prefix and rng.random() < 0.6:
            low = rng.integers(1, 0xFFFF, size=2)
            aaaa = ",".join([*cnames, f"{provider.ipv6_prefix}{low[0]:x}:{low[1]:x}"])
        hosting = provider is HOSTING
        issuer = "Let's Encrypt R11" if hosting else f"{provider_name} CA"
        return self._append(
            _Domain(
                name=name,
                ips=ips,
                ttl_s=int(rng.choice([300, 3600, 14400])) if hosting else provider.ttl_s,
                is_http=is_http,
                is_tls13=bool(rng.random() < provider.tls13_ratio),
                cnames=cnames,
                aaaa=aaaa,
                cert_fps=f"{_fingerprint('leaf:' + name)},{_fingerprint('ca:' + issuer)}",
            )
        )

    def add_internal(self, name: str, ip: int) -> int:
        fps = f"{_fingerprint('leaf:' + name)},{_fingerprint('ca:ACME Issuing CA')}"
        return self._append(_Domain(name, [ip], _INTERNAL_TTL_S, False, False, [], None, fps))

    def _append(self, domain: _Domain) -> int:
        ident = len(self.rows)
        self.ids[domain.name] = ident
        self.rows.append(domain)
        return ident

    def build(self, groups: dict[str, list[int]]) -> Catalogue:
        rows = self.rows
        counts = np.array([len(row.ips) for row in rows], dtype=np.int64)
        answers = [",".join([*row.cnames, *(int_to_ip(ip) for ip in row.ips)]) for row in rows]
        return Catalogue(
            names=tuple(self.ids),
            name_text=pa.array(list(self.ids), type=pa.string()),
            ips=np.array([ip for row in rows for ip in row.ips], dtype=np.uint32),
            ip_start=(np.cumsum(counts) - counts).astype(np.int64),
            ip_count=counts,
            ttl_s=np.array([row.ttl_s for row in rows], dtype=np.int64),
            is_http=np.array([row.is_http for row in rows], dtype=np.bool_),
            is_tls13=np.array([row.is_tls13 for row in rows], dtype=np.bool_),
            a_answers=pa.array(answers, type=pa.string()),
            cname_ttls=pa.array(
                [f"{_CNAME_TTL_S}.000000," * len(row.cnames) for row in rows], type=pa.string()
            ),
            aaaa_answers=pa.array([row.aaaa for row in rows], type=pa.string()),
            cert_fps=pa.array([row.cert_fps for row in rows], type=pa.string()),
            sites=np.array(groups["site"], dtype=np.int64),
            third_party=np.array(groups["third"], dtype=np.int64),
            rare=np.array(groups["rare"], dtype=np.int64),
            background=np.array(groups["background"], dtype=np.int64),
            plain_http=np.array(groups["http"], dtype=np.int64),
            ids=dict(self.ids),
        )


def _cname_chain(rng: np.random.Generator, name: str, template: str) -> list[str]:
    if not template:
        return []
    parts = name.split(".")
    label = parts[-3] if len(parts) > 2 and parts[-2] in ("co", "com") else parts[-2]
    values = {
        "name": name,
        "label": label,
        "num": str(int(rng.integers(1000, 99999))),
        "hex": _fingerprint(name)[:13],
    }
    return [link.format(**values) for link in template.split("|")]


def _rare_names(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    """n distinct made-up small-site domain names."""
    tlds = [tld for tld, _ in RARE_TLDS]
    p_tld = np.array([weight for _, weight in RARE_TLDS])
    patterns = [pattern for pattern, _ in _RARE_PATTERNS]
    p_pattern = np.array([weight for _, weight in _RARE_PATTERNS])
    names: list[str] = []
    seen = set(taken)
    while len(names) < n:
        batch = 2 * (n - len(names)) + 16
        words = rng.integers(len(RARE_WORDS), size=(batch, 3))
        tld = rng.choice(len(tlds), size=batch, p=p_tld / p_tld.sum())
        shape = rng.choice(len(patterns), size=batch, p=p_pattern / p_pattern.sum())
        number = np.where(rng.random(batch) < 0.08, rng.integers(1, 100, size=batch), 0)
        for (a, b, c), t, s, k in zip(words, tld, shape, number, strict=True):
            label = patterns[s].format(a=RARE_WORDS[a], b=RARE_WORDS[b], c=RARE_WORDS[c])
            name = f"{label}{k or ''}.{tlds[t]}"
            if a != b and name not in seen and len(names) < n:
                seen.add(name)
                names.append(name)
    return names


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
