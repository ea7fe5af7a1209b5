"""Domain lists shipped with homecall, and the user's own lists loaded by path.

Shipped (files in `homecall/intel/data/`, sources and licences in their headers and in
docs/detection.md, "Lists shipped"): dynamic-DNS provider apexes (Maltrail, MIT), URL shorteners
(PeterDaveHello/url-shorteners, CC BY-SA 4.0, that file only), risky TLDs with a weight each,
tunnel and free-hosting suffixes, public DNS resolvers, sites by kind (social media, webmail,
chat, streaming, remote access, VPN, push, antivirus) and ports of non-web services (ours). Each
loads once, on first use.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path

from homecall.errors import ConfigError, MalformedInputError
from homecall.intel.domains import ascii_name, is_ip_literal, registered_domain

__all__ = [
    "DDNS_SOURCE",
    "SHORTENER_SOURCE",
    "WEIGHTS",
    "Category",
    "HostingService",
    "NewlyRegistered",
    "RiskyTld",
    "ServicePort",
    "Site",
    "categories",
    "ddns_apex",
    "ddns_apexes",
    "hosting_service",
    "hosting_services",
    "longest_suffix",
    "normalize",
    "public_resolver",
    "public_resolvers",
    "read_domain_file",
    "read_newly_registered",
    "read_tld_file",
    "registrable",
    "risky_tlds",
    "service_port",
    "service_ports",
    "site",
    "sites",
    "url_shorteners",
]

DATA = "homecall.intel.data"
DDNS_SOURCE = "maltrail dynamic_domain.txt"
SHORTENER_SOURCE = "PeterDaveHello/url-shorteners"
USER_SOURCE = "user list"
# Category weights (0..1): how much a category alone says about C2, before any behaviour.
# Tunnels publish any machine under a public name and are a favourite of intruders; a dynamic-DNS
# name is a classic commodity-RAT C2 address (njRAT, DarkComet and Remcos operators use no-ip and
# duckdns names); shorteners and free hosting are mostly benign use. Risky TLDs carry their own
# weight (data file).
WEIGHTS: Mapping[str, float] = {
    "tunnel": 1.0,
    "dynamic-dns": 0.8,
    "url-shortener": 0.4,
    "free-hosting": 0.4,
}
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


@dataclass(frozen=True, slots=True)
class RiskyTld:
    """A top-level domain with a high share of abuse: its weight 0..1 and where that comes from."""

    tld: str
    weight: float
    source: str


@dataclass(frozen=True, slots=True)
class HostingService:
    """A tunnel or free-hosting suffix: "tunnel" or "hosting", and who runs it."""

    suffix: str
    kind: str
    provider: str


@dataclass(frozen=True, slots=True)
class Site:
    """A site by kind: the suffix it is served from, its category and who runs it."""

    suffix: str
    category: str  # social-media, webmail, chat, video-conferencing, streaming, remote-access, ...
    provider: str


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A port of a non-web service that keeps connections open by design (IMAP, push, VPN...)."""

    port: int
    proto: str
    category: str
    service: str


@dataclass(frozen=True, slots=True)
class Category:
    """Why a name is on a list: category, the list entry it matched, the list, the weight."""

    name: str  # dynamic-dns, url-shortener, tunnel, free-hosting, risky-tld
    matched: str
    source: str
    weight: float


def normalize(name: str | None) -> str | None:
    """Lower case, no trailing dot, no port; None for empty names and IP literals."""
    if not name:
        return None
    host = ascii_name(name.strip().rstrip(".").lower())
    if host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if not host or is_ip_literal(host):
        return None
    return host


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("!"):
            yield number, line


def _entry(line: str) -> str:
    """A list entry in any common syntax: "x.com", ".x.com", "*.x.com", "||x.com^"."""
    entry = line.split()[0].lower().removeprefix("||").removesuffix("^")
    return entry.removeprefix("*.").strip(".")


def _parse_domains(text: str, where: Path | str) -> frozenset[str]:
    found = set()
    for number, line in _lines(text):
        entry = _entry(line)
        if not _NAME.match(entry):
            raise MalformedInputError(Path(where), number, f"not a domain name: {line!r}")
        found.add(entry)
    return frozenset(found)


def _data(name: str) -> str:
    return resources.files(DATA).joinpath(name).read_text(encoding="utf-8")


@functools.cache
def ddns_apexes() -> frozenset[str]:
    """The dynamic-DNS provider domains shipped with homecall (Maltrail, MIT)."""
    return _parse_domains(_data("dynamic_dns.txt"), "dynamic_dns.txt")


@functools.cache
def url_shorteners() -> frozenset[str]:
    """The URL-shortener domains shipped with homecall (CC BY-SA 4.0 data file)."""
    return _parse_domains(_data("url_shorteners.txt"), "url_shorteners.txt")


@functools.cache
def risky_tlds() -> Mapping[str, RiskyTld]:
    """TLD -> weight and source (Interisle phishing-domain scores, Maltrail's suspicious TLDs)."""
    found = {}
    for _, line in _lines(_data("risky_tlds.tsv")):
        tld, weight, source, _ = line.split("\t")
        found[tld] = RiskyTld(tld, float(weight), source)
    return found


@functools.cache
def hosting_services() -> Mapping[str, HostingService]:
    """Suffix -> tunnel or free-hosting service."""
    found = {}
    for _, line in _lines(_data("hosting_services.tsv")):
        suffix, kind, provider = line.split("\t")
        found[suffix] = HostingService(suffix, kind, provider)
    return found


@functools.cache
def public_resolvers() -> Mapping[str, str]:
    """DoH/DoT host names and anycast addresses of public resolvers -> provider."""
    found = {}
    for _, line in _lines(_data("public_dns.tsv")):
        entry, provider = line.split("\t")
        found[entry] = provider
    return found


@functools.cache
def sites() -> Mapping[str, Site]:
    """Suffix -> what the site is (social media, webmail, chat, streaming, push, antivirus...)."""
    found = {}
    for _, line in _lines(_data("site_categories.tsv")):
        suffix, category, provider = line.split("\t")
        found[suffix] = Site(suffix, category, provider)
    return found


@functools.cache
def service_ports() -> Mapping[tuple[int, str], ServicePort]:
    """(port, protocol) -> the non-web service usually behind it."""
    found = {}
    for _, line in _lines(_data("service_ports.tsv")):
        port, proto, category, service = line.split("\t")
        found[int(port), proto] = ServicePort(int(port), proto, category, service)
    return found


def site(name: str | None) -> Site | None:
    """What `name` is, by the longest listed suffix it equals or ends with; None if unlisted."""
    host = normalize(name)
    if host is None:
        return None
    suffix = longest_suffix(host, _site_suffixes())
    return sites()[suffix] if suffix else None


def service_port(port: int | None, proto: str | None = "tcp") -> ServicePort | None:
    """The non-web service usually on `port`/`proto` (tcp when unknown), or None."""
    if port is None:
        return None
    return service_ports().get((int(port), (proto or "tcp").lower()))


@functools.cache
def _site_suffixes() -> frozenset[str]:
    return frozenset(sites())


def longest_suffix(name: str, suffixes: Container[str]) -> str | None:
    """The longest entry of `suffixes` that `name` equals or ends with after a dot."""
    labels = name.split(".")
    for i in range(len(labels)):
        candidate = ".".join(labels[i:])
        if candidate in suffixes:
            return candidate
    return None


def ddns_apex(name: str | None, extra: frozenset[str] = frozenset()) -> str | None:
    """The dynamic-DNS provider apex `name` lives under (longest match), or None.

    "a.b.duckdns.org" -> "duckdns.org"; the apex itself ("duckdns.org", the provider's site)
    is not a dynamic-DNS name and gives None. `extra`: the user's own apexes.
    """
    host = normalize(name)
    if host is None:
        return None
    labels = host.split(".")
    for i in range(1, len(labels)):
        candidate = ".".join(labels[i:])
        if candidate in extra or candidate in ddns_apexes():
            return candidate
    return None


def registrable(name: str | None, extra_ddns: frozenset[str] = frozenset()) -> str | None:
    """The unit a customer registered: "<label>.<ddns apex>" under a dynamic-DNS provider
    ("x.ibbwnhgh.mooo.com" -> "ibbwnhgh.mooo.com"), else the registered domain (eTLD+1, PSL
    private suffixes included). None for IPs, bare suffixes and junk."""
    host = normalize(name)
    apex = ddns_apex(host, extra_ddns)
    if host is not None and apex is not None:
        return ".".join(host.split(".")[-apex.count(".") - 2 :])
    return registered_domain(host)


@functools.cache
def _hosting_suffixes() -> frozenset[str]:
    return frozenset(hosting_services())


def hosting_service(name: str | None) -> HostingService | None:
    """The tunnel or free-hosting service `name` belongs to (equal to or under its suffix)."""
    host = normalize(name)
    if host is None:
        return None
    suffix = longest_suffix(host, _hosting_suffixes())
    return hosting_services()[suffix] if suffix else None


def public_resolver(name_or_ip: str | None) -> str | None:
    """The provider of a public resolver's DoH/DoT host name or anycast address, or None."""
    if not name_or_ip:
        return None
    return public_resolvers().get(name_or_ip.strip().rstrip(".").lower())


def categories(
    name: str | None,
    *,
    extra_ddns: frozenset[str] = frozenset(),
    extra_shorteners: frozenset[str] = frozenset(),
    extra_tlds: Mapping[str, float] | None = None,
) -> list[Category]:
    """Every list `name` is on, strongest first (empty for most names)."""
    host = normalize(name)
    if host is None or "." not in host:
        return []
    found = []
    service = hosting_service(host)
    if service is not None:
        kind = "tunnel" if service.kind == "tunnel" else "free-hosting"
        found.append(Category(kind, service.suffix, service.provider, WEIGHTS[kind]))
    apex = ddns_apex(host, extra_ddns)
    if apex is not None:
        source = DDNS_SOURCE if apex in ddns_apexes() else USER_SOURCE
        found.append(Category("dynamic-dns", apex, source, WEIGHTS["dynamic-dns"]))
    short = host.removeprefix("www.")  # a short link's host is the listed domain itself:
    for pool, source in ((url_shorteners(), SHORTENER_SOURCE), (extra_shorteners, USER_SOURCE)):
        if short in pool:  # gateway.discord.gg is Discord's API, not a discord.gg invite link
            found.append(Category("url-shortener", short, source, WEIGHTS["url-shortener"]))
            break
    tld = host.rsplit(".", 1)[1]
    risky = []
    if tld in risky_tlds():
        shipped = risky_tlds()[tld]
        risky.append(Category("risky-tld", tld, shipped.source, shipped.weight))
    if extra_tlds and (mine := longest_suffix(host, extra_tlds.keys())) is not None:
        risky.append(Category("risky-tld", mine, USER_SOURCE, extra_tlds[mine]))
    if risky:  # listed in both: the higher weight counts
        found.append(max(risky, key=lambda c: (c.weight, c.matched)))
    return sorted(found, key=lambda c: (-c.weight, c.name))


def _read_user_file(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(None, key, f"cannot read {path}: {exc.strerror or exc}") from exc


def read_domain_file(path: Path, key: str) -> frozenset[str]:
    """A user's domain list: one per line, '#' and '!' comments, hosts/adblock/wildcard syntax
    accepted. `key` names the setting in error messages."""
    return _parse_domains(_read_user_file(path, key), path)


def read_tld_file(path: Path, key: str, default_weight: float) -> dict[str, float]:
    """A user's TLD list: one TLD or suffix per line ("xyz", ".xyz", "us.kg"), optionally a
    weight after a tab, comma or space (else `default_weight`); hagezi's spam-tlds files read
    as they are."""
    found: dict[str, float] = {}
    for number, line in _lines(_read_user_file(path, key)):
        parts = re.split(r"[\s,]+", line)
        tld = _entry(parts[0])
        if not _NAME.match(tld):
            raise MalformedInputError(path, number, f"not a top-level domain: {line!r}")
        try:
            weight = float(parts[1]) if len(parts) > 1 else default_weight
        except ValueError:
            raise MalformedInputError(path, number, f"weight is not a number: {line!r}") from None
        if not 0.0 <= weight <= 1.0:
            raise MalformedInputError(path, number, f"weight must be in 0..1: {line!r}")
        found[tld] = weight
    return found


@dataclass(frozen=True, slots=True)
class NewlyRegistered:
    """Entries of a newly-registered-domain feed that matter: domain -> registration date, or
    None when the feed gives no date (then the domain was registered at most `span_days`
    before `feed_date`)."""

    dates: Mapping[str, date | None]
    feed_date: date
    entries: int  # lines read, matching or not


def read_newly_registered(
    path: Path, wanted: frozenset[str], *, key: str = "nrd_file"
) -> NewlyRegistered:
    """Stream a newly-registered-domain feed, keeping only the domains in `wanted`.

    Lines: "domain", or "domain<TAB or ,>YYYY-MM-DD" (adblock/wildcard syntax accepted). The
    feed's date is the first YYYY-MM-DD in its '#' header (xRuffKez/NRD's "Time of
    Compilation"), else the file's modification date (a WhoisDS daily domain-names.txt).
    Feeds hold millions of lines; streaming keeps memory to the matches.
    """
    try:
        stream = path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(None, key, f"cannot read {path}: {exc.strerror or exc}") from exc
    dates: dict[str, date | None] = {}
    feed_date: date | None = None
    entries = 0
    with stream:
        for number, raw in enumerate(stream, start=1):
            line = raw.strip()
            if not line or line.startswith("!"):
                continue
            if line.startswith("#"):
                found = _DATE.search(line)
                if feed_date is None and found and entries == 0:
                    feed_date = _date(found, path, number)
                continue
            entries += 1
            parts = re.split(r"[\t,]", line)
            domain = _entry(parts[0])
            if domain not in wanted:
                continue
            when = None
            if len(parts) > 1 and parts[1].strip():
                match = _DATE.fullmatch(parts[1].strip()[:10])
                if match is None:
                    raise MalformedInputError(path, number, f"not a YYYY-MM-DD date: {line!r}")
                when = _date(match, path, number)
            dates[domain] = when
    if feed_date is None:
        feed_date = datetime.fromtimestamp(path.stat().st_mtime, UTC).date()
    return NewlyRegistered(dates=dates, feed_date=feed_date, entries=entries)


def _date(match: re.Match[str], path: Path, line: int) -> date:
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise MalformedInputError(path, line, f"not a date: {match[0]!r}") from None
