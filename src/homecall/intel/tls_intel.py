"""Known-bad TLS certificates and fingerprints, and CDNs that allow domain fronting.

Shipped: `intel/data/tls_blocklist.tsv` (default certificates of C2 frameworks and RATs,
fingerprint pairs of C2 clients and servers; each row cites its source, docs/detection.md
"Lists shipped") and `intel/data/fronting_cdns.tsv`. A user's own list is read by path: the
shipped TSV layout, or abuse.ch SSLBL's `sslblacklist.csv` / `ja3_fingerprints.csv` as
downloaded. Values are compared in one normal form whatever wrote them (Zeek, Suricata).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from homecall.errors import ConfigError, MalformedInputError
from homecall.intel.lists import longest_suffix, normalize

__all__ = [
    "CERTIFICATE_KINDS",
    "CONFIDENCE_WEIGHTS",
    "FINGERPRINT_KINDS",
    "KINDS",
    "Blocklist",
    "ListEntry",
    "common_names",
    "fronting_cdn",
    "normalize_dn",
    "normalize_hash",
    "normalize_serial",
    "read_list_file",
    "shipped",
]

DATA = "homecall.intel.data"
# How much one list hit says on its own (0..1): a tool's own default certificate is near proof;
# a default name or a client/server fingerprint pair can be shared by other software; a weak
# default (Empire's "C=US") needs corroboration.
CONFIDENCE_WEIGHTS: Mapping[str, float] = {"high": 0.95, "medium": 0.75, "low": 0.45}
CERTIFICATE_KINDS = ("sha1", "sha256", "serial", "subject", "subject_cn", "issuer")
FINGERPRINT_KINDS = ("ja3", "ja3s", "ja4", "ja4s", "ja3+ja3s", "ja4+ja4s")
KINDS = CERTIFICATE_KINDS + FINGERPRINT_KINDS
_SSLBL_CERT_HEADER = "listingdate,sha1,listingreason"
_SSLBL_JA3_HEADER = "ja3_md5,firstseen,lastseen,listingreason"
_SSLBL_SOURCE = "https://sslbl.abuse.ch/blacklist/"
_HEX = re.compile(r"^[0-9a-f]+$")
_JA4 = re.compile(r"^[a-z0-9]+_[a-z0-9]+_[a-z0-9]+$")
_DN_SPLIT = re.compile(r"(?<!\\),")


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One known-bad value: its kind, the value as listed, what it is and where it comes from."""

    kind: str
    value: str
    label: str
    confidence: str
    source: str
    licence: str

    @property
    def weight(self) -> float:
        """The entry's strength 0..1 (CONFIDENCE_WEIGHTS)."""
        return CONFIDENCE_WEIGHTS[self.confidence]


def normalize_hash(value: str | None) -> str:
    """A certificate fingerprint or JA3 as lower-case hex without separators ("" for none)."""
    return (value or "").replace(":", "").replace(" ", "").strip().lower()


def normalize_serial(value: str | None) -> str:
    """A serial number as upper-case hex without separators or leading zeros (Zeek writes
    "08BB00EE", Suricata "08:BB:00:EE", Sigma "8BB00EE")."""
    return (value or "").replace(":", "").replace(" ", "").strip().upper().lstrip("0")


@functools.lru_cache(maxsize=1 << 16)
def _dn_parts(dn: str | None) -> tuple[tuple[str, str], ...]:
    """Cached: issuers repeat in almost every session, and subjects in every session of a site."""
    parts = []
    for raw in _DN_SPLIT.split(dn or ""):
        key, sep, value = raw.partition("=")
        if not sep:
            continue
        value = value.replace("\\\\", "\\").replace("\\,", ",").replace("\\", "").strip()
        parts.append((key.strip().upper(), value.lower()))
    return tuple(parts)


@functools.lru_cache(maxsize=1 << 16)
def normalize_dn(dn: str | None) -> str:
    """A distinguished name in one form: attributes sorted, keys upper case, values lower case,
    escapes removed ("CN=a, O=B\\, Inc" and "O=b\\, inc,CN=A" are equal); "" for none."""
    return ",".join(f"{k}={v}" for k, v in sorted(_dn_parts(dn)))


def common_names(dn: str | None) -> list[str]:
    """The CN values of a distinguished name, lower case."""
    return [value for key, value in _dn_parts(dn) if key == "CN" and value]


def _normal(kind: str, value: str) -> str:
    """A list value in the form observed values are compared in."""
    if kind in ("sha1", "sha256", "ja3", "ja3s"):
        return normalize_hash(value)
    if kind == "serial":
        return normalize_serial(value)
    if kind in ("subject", "issuer"):
        return normalize_dn(value)
    if kind == "subject_cn":
        return value.strip().lower()
    if kind in ("ja3+ja3s", "ja4+ja4s"):
        return ",".join(part.strip().lower() for part in value.split(","))
    return value.strip().lower()  # ja4, ja4s


def _problem(kind: str, value: str) -> str | None:
    """Why `value` (normal form) is not a valid `kind`, or None."""
    sizes = {"sha1": 40, "sha256": 64, "ja3": 32, "ja3s": 32}
    if kind in sizes and (len(value) != sizes[kind] or not _HEX.match(value)):
        return f"a {kind} is {sizes[kind]} hex digits"
    if kind == "serial" and not _HEX.match(value.lower()):
        return "a serial is hex digits"
    if kind in ("ja4", "ja4s") and not _JA4.match(value):
        return f"not a {kind}: three parts joined by '_'"
    if kind in ("ja3+ja3s", "ja4+ja4s"):
        parts = value.split(",")
        if len(parts) != 2:
            return f"a {kind} pair is 'client,server'"
        client, server = kind.split("+")
        return _problem(client, parts[0]) or _problem(server, parts[1])
    if not value:
        return "empty value"
    return None


class Blocklist:
    """Entries by (kind, normalized value); looks up certificates and fingerprints."""

    def __init__(self, entries: Iterable[ListEntry] = ()) -> None:
        self._by_key: dict[tuple[str, str], ListEntry] = {}
        for entry in entries:
            self._by_key.setdefault((entry.kind, _normal(entry.kind, entry.value)), entry)

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[ListEntry]:
        return iter(self._by_key.values())

    def __or__(self, other: Blocklist) -> Blocklist:
        return Blocklist([*self, *other])

    def _get(self, kind: str, value: str) -> ListEntry | None:
        return self._by_key.get((kind, value)) if value else None

    def match_certificate(
        self, fingerprint: str | None, serial: str | None, subject: str | None, issuer: str | None
    ) -> list[ListEntry]:
        """Entries that match a leaf certificate, strongest first. `fingerprint` is whatever
        the sensor logs as the certificate's id: SHA-256 (Zeek >= 5), SHA-1 (Suricata), or a
        file id (older Zeek) that matches nothing."""
        digest = normalize_hash(fingerprint)
        kind = {40: "sha1", 64: "sha256"}.get(len(digest), "")
        found = [
            self._get(kind, digest),
            self._get("serial", normalize_serial(serial)),
            self._get("subject", normalize_dn(subject)),
            self._get("issuer", normalize_dn(issuer)),
            *(self._get("subject_cn", cn) for cn in common_names(subject)),
        ]
        return _strongest(found)

    def match_fingerprints(
        self, ja3: str | None, ja3s: str | None, ja4: str | None, ja4s: str | None
    ) -> list[ListEntry]:
        """Entries that match a session's client/server fingerprints, strongest first."""
        j3, j3s = normalize_hash(ja3), normalize_hash(ja3s)
        j4, j4s = (ja4 or "").strip().lower(), (ja4s or "").strip().lower()
        found = [
            self._get("ja3", j3),
            self._get("ja3s", j3s),
            self._get("ja4", j4),
            self._get("ja4s", j4s),
            self._get("ja3+ja3s", f"{j3},{j3s}") if j3 and j3s else None,
            self._get("ja4+ja4s", f"{j4},{j4s}") if j4 and j4s else None,
        ]
        return _strongest(found)


def _strongest(found: Iterable[ListEntry | None]) -> list[ListEntry]:
    hits = {e for e in found if e is not None}
    return sorted(hits, key=lambda e: (-e.weight, e.kind, e.value))


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, raw.rstrip("\r\n")


def _parse_tsv(text: str, where: Path, default_source: str) -> list[ListEntry]:
    """The shipped layout: kind, value, label[, confidence[, source[, licence]]], tab-separated."""
    entries = []
    for number, line in _lines(text):
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) < 3:
            raise MalformedInputError(where, number, "expected kind<TAB>value<TAB>label")
        kind, value, label = fields[0].lower(), fields[1], fields[2]
        confidence = (fields[3] if len(fields) > 3 else "") or "medium"
        source = (fields[4] if len(fields) > 4 else "") or default_source
        licence = fields[5] if len(fields) > 5 else ""
        if kind not in KINDS:
            raise MalformedInputError(where, number, f"unknown kind {kind!r}; expected {KINDS}")
        if confidence not in CONFIDENCE_WEIGHTS:
            raise MalformedInputError(where, number, "confidence must be high, medium or low")
        problem = _problem(kind, _normal(kind, value))
        if problem:
            raise MalformedInputError(where, number, f"{problem}: {value!r}")
        entries.append(ListEntry(kind, value, label, confidence, source, licence))
    return entries


def _parse_sslbl(text: str, where: Path, kind: str) -> list[ListEntry]:
    """abuse.ch SSLBL CSV exports: `Listingdate,SHA1,Listingreason` (certificates) or
    `ja3_md5,Firstseen,Lastseen,Listingreason` (JA3, which abuse.ch warns is prone to false
    positives: confidence low)."""
    entries = []
    for number, line in _lines(text):
        fields = [f.strip() for f in line.split(",")]
        value, reason = (fields[1], fields[-1]) if kind == "sha1" else (fields[0], fields[-1])
        if len(fields) < 3 or _problem(kind, normalize_hash(value)):
            raise MalformedInputError(where, number, f"not an SSLBL {kind} row: {line!r}")
        confidence = "high" if kind == "sha1" else "low"
        label = f"{reason} (abuse.ch SSLBL)"
        entries.append(ListEntry(kind, value, label, confidence, _SSLBL_SOURCE, "CC0-1.0"))
    return entries


def _parse(text: str, where: Path, default_source: str) -> list[ListEntry]:
    head = text[:2000].lower()
    if _SSLBL_CERT_HEADER in head:
        return _parse_sslbl(text, where, "sha1")
    if _SSLBL_JA3_HEADER in head:
        return _parse_sslbl(text, where, "ja3")
    return _parse_tsv(text, where, default_source)


@functools.cache
def shipped() -> Blocklist:
    """The list shipped with homecall (intel/data/tls_blocklist.tsv)."""
    text = resources.files(DATA).joinpath("tls_blocklist.tsv").read_text(encoding="utf-8")
    return Blocklist(_parse_tsv(text, Path("tls_blocklist.tsv"), ""))


def read_list_file(path: Path, key: str) -> Blocklist:
    """A user's list: the shipped TSV layout (confidence, source and licence optional), or an
    SSLBL CSV export as downloaded. `key` names the setting in error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(None, key, f"cannot read {path}: {exc.strerror or exc}") from exc
    return Blocklist(_parse(text, path, "user list"))


@functools.cache
def _fronting_cdns() -> Mapping[str, str]:
    text = resources.files(DATA).joinpath("fronting_cdns.tsv").read_text(encoding="utf-8")
    found = {}
    for _, line in _lines(text):
        suffix, provider = line.split("\t")
        found[suffix.strip()] = provider.strip()
    return found


def fronting_cdn(name: str | None) -> str | None:
    """The CDN whose shared edge serves `name` (equal to or under a listed suffix), or None."""
    host = normalize(name)
    if host is None:
        return None
    suffix = longest_suffix(host, _fronting_cdns())
    return _fronting_cdns()[suffix] if suffix else None
