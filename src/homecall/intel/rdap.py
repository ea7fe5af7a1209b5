"""Domain registration dates over RDAP (RFC 9083), opt-in: every lookup tells a registry which
domains your network uses, so homecall makes none unless `rdap = true` is set.

The registry for a TLD comes from IANA's bootstrap file (RFC 9224, fetched into the cache
directory only when opted in). Answers are cached per registered domain in one JSON file with
the lookup date, and requests are spaced to `per_second`. The network is an injected
`Transport` (one method, `get`), so tests pass recorded answers instead of patching; the real
one, `UrllibTransport`, uses the standard library.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

from publicsuffixlist import PublicSuffixList

from homecall.intel.lists import normalize

__all__ = [
    "BOOTSTRAP_URL",
    "CallableTransport",
    "RdapClient",
    "Registration",
    "Response",
    "Transport",
    "UrllibTransport",
    "default_cache_dir",
    "registration_date",
    "registry_domain",
]

log = logging.getLogger(__name__)

BOOTSTRAP_URL = "https://data.iana.org/rdap/dns.json"
CACHE_FILE = "registrations.json"
BOOTSTRAP_FILE = "dns.json"
MAX_BODY_BYTES = 1 << 20  # an RDAP domain answer is a few kB; refuse anything absurd
MAX_CONSECUTIVE_ERRORS = 3  # then the network is down or blocked: stop for this run


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer: status code and body."""

    status: int
    body: bytes


class Transport(Protocol):
    """The network: GET a URL. Raises OSError when there is no answer at all."""

    def get(self, url: str) -> Response:
        """Fetch `url`; any HTTP status is a Response, only a failed exchange raises."""
        ...


@dataclass(frozen=True, slots=True)
class CallableTransport:
    """A plain function `url -> Response` as a Transport (for tests and small adapters)."""

    function: Callable[[str], Response]

    def get(self, url: str) -> Response:
        """Call the function."""
        return self.function(url)


@dataclass(frozen=True, slots=True)
class UrllibTransport:
    """The real network through urllib (standard library, no extra dependency)."""

    timeout_s: float = 10.0
    user_agent: str = "homecall (opt-in domain-age lookups)"

    def get(self, url: str) -> Response:
        """GET `url` with an RDAP Accept header; HTTP errors come back as their status."""
        request = urllib.request.Request(
            url,
            headers={
                "Accept": "application/rdap+json, application/json",
                "User-Agent": self.user_agent,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return Response(int(answer.status), answer.read(MAX_BODY_BYTES))
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read(MAX_BODY_BYTES) if exc.fp else b"")


@dataclass(frozen=True, slots=True)
class Registration:
    """What RDAP said about a domain on `looked_up`.

    status: "found" (registered date known), "no-date" (answer without a registration event),
    "not-found" (404: not registered), "no-server" (no RDAP service for its TLD).
    """

    domain: str
    registered: date | None
    status: str
    looked_up: date


@functools.cache
def _icann_psl() -> PublicSuffixList:
    return PublicSuffixList(only_icann=True, accept_unknown=False)


def registry_domain(name: str | None) -> str | None:
    """The domain a registry knows: eTLD+1 over the ICANN section of the Public Suffix List
    ("a.b.duckdns.org" -> "duckdns.org", "x.co.uk" -> "x.co.uk"); None for IPs and unknown TLDs."""
    host = normalize(name)
    if host is None or "." not in host:
        return None
    found: str | None = _icann_psl().privatesuffix(host)
    return found


def registration_date(answer: Mapping[str, Any]) -> date | None:
    """The date of the "registration" event of an RDAP domain object, or None."""
    for event in answer.get("events") or []:
        if not isinstance(event, Mapping) or event.get("eventAction") != "registration":
            continue
        when = event.get("eventDate")
        if isinstance(when, str) and len(when) >= 10:
            try:
                return date.fromisoformat(when[:10])
            except ValueError:
                return None
    return None


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/homecall/rdap, else ~/.cache/homecall/rdap."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "homecall" / "rdap"


class RdapClient:
    """Registration dates for domains: cache first, then rate-limited RDAP queries."""

    def __init__(
        self,
        transport: Transport,
        cache_dir: Path,
        *,
        per_second: float = 1.0,
        max_age_days: int = 30,
        today: date | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_second <= 0:
            raise ValueError(f"per_second must be positive, got {per_second!r}")
        self.transport = transport
        self.cache_dir = cache_dir
        self.interval_s = 1.0 / per_second
        self.max_age = timedelta(days=max_age_days)
        self.today = today or date.today()
        self._sleep = sleep
        self._clock = clock
        self._last_request: float | None = None

    def lookup(self, domains: Iterable[str], limit: int) -> dict[str, Registration]:
        """Registrations of `domains` (registry domains, in priority order): every fresh cache
        entry, and at most `limit` new lookups; a domain not looked up is absent."""
        cache = self._read_cache()
        found: dict[str, Registration] = {}
        missing = []
        for domain in dict.fromkeys(domains):
            entry = cache.get(domain)
            if entry is not None and self.today - entry.looked_up <= self.max_age:
                found[domain] = entry
            else:
                missing.append(domain)
        if missing and limit > 0:
            try:
                services = self._services()
            except (OSError, ValueError) as exc:
                log.warning(
                    "rdap: no bootstrap from %s (%s); no lookups this run", BOOTSTRAP_URL, exc
                )
                return found
            errors = 0
            for domain in missing[:limit]:
                try:
                    entry = self._query(domain, services)
                except (OSError, ValueError) as exc:
                    errors += 1
                    log.debug("rdap: %s: %s", domain, exc)
                    if errors >= MAX_CONSECUTIVE_ERRORS:
                        log.warning("rdap: %d lookups failed in a row; no more this run", errors)
                        break
                    continue
                errors = 0
                cache[domain] = found[domain] = entry
            self._write_cache(cache)
        if len(missing) > limit:
            log.info("rdap: %d domains left for later runs (limit %d)", len(missing) - limit, limit)
        return found

    def _services(self) -> dict[str, str]:
        """TLD -> RDAP base URL, from IANA's bootstrap file (cached, refreshed after max_age)."""
        path = self.cache_dir / BOOTSTRAP_FILE
        text = None
        if path.is_file():
            age = time.time() - path.stat().st_mtime
            if age <= self.max_age.total_seconds():
                text = path.read_text(encoding="utf-8")
        if text is None:
            answer = self._get(BOOTSTRAP_URL)
            if answer.status != 200:
                raise OSError(f"IANA RDAP bootstrap: HTTP {answer.status}")
            text = answer.body.decode("utf-8")
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, text)
        services: dict[str, str] = {}
        for tlds, urls in json.loads(text).get("services", []):
            https = [u for u in urls if u.startswith("https://")] or urls
            for tld in tlds:
                services[tld.lower()] = https[0] if https[0].endswith("/") else https[0] + "/"
        return services

    def _query(self, domain: str, services: Mapping[str, str]) -> Registration:
        labels = domain.split(".")
        base = next(
            (services[s] for i in range(1, len(labels)) if (s := ".".join(labels[i:])) in services),
            None,
        )
        if base is None:
            return Registration(domain, None, "no-server", self.today)
        answer = self._get(f"{base}domain/{domain}")
        if answer.status == 404:
            return Registration(domain, None, "not-found", self.today)
        if answer.status != 200:
            raise OSError(f"HTTP {answer.status}")
        registered = registration_date(json.loads(answer.body.decode("utf-8")))
        status = "found" if registered else "no-date"
        return Registration(domain, registered, status, self.today)

    def _get(self, url: str) -> Response:
        if self._last_request is not None:
            wait = self._last_request + self.interval_s - self._clock()
            if wait > 0:
                self._sleep(wait)
        self._last_request = self._clock()
        return self.transport.get(url)

    def _read_cache(self) -> dict[str, Registration]:
        path = self.cache_dir / CACHE_FILE
        if not path.is_file():
            return {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return {
                domain: Registration(
                    domain,
                    date.fromisoformat(e["registered"]) if e.get("registered") else None,
                    str(e["status"]),
                    date.fromisoformat(e["looked_up"]),
                )
                for domain, e in raw.get("domains", {}).items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("rdap: ignoring unreadable cache %s (%s)", path, exc)
            return {}

    def _write_cache(self, cache: Mapping[str, Registration]) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        entries = {
            d: {
                "registered": r.registered.isoformat() if r.registered else None,
                "status": r.status,
                "looked_up": r.looked_up.isoformat(),
            }
            for d, r in sorted(cache.items())
        }
        text = json.dumps({"version": 1, "domains": entries}, indent=1)
        _write_atomic(self.cache_dir / CACHE_FILE, text)


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
