from __future__ import annotations

import math
import os
from datetime import date
from importlib import resources
from pathlib import Path

import pytest

from homecall.errors import ConfigError, MalformedInputError
from homecall.intel import lists

DATA = resources.files("homecall.intel.data")
VERBATIM = "# ---- verbatim copy of the upstream file follows ----\n"


def _entries(text: str) -> list[str]:
    """Entry lines counted the plain way: not blank, not a # comment."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _shipped(name: str) -> str:
    return DATA.joinpath(name).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "upstream", "lines", "distinct"),
    [
        # PROVENANCE.txt: 2,496 dynamic-DNS apexes (461 lines repeat an apex listed earlier)
        ("dynamic_dns.txt", "maltrail_dynamic_domain.txt", 2496, 2035),
        ("url_shorteners.txt", "url_shorteners.txt", 1479, 1479),  # 1,479 shortener domains
    ],
)
def test_shipped_lists_are_the_upstream_files_verbatim(
    samples: Path, name: str, upstream: str, lines: int, distinct: int
) -> None:
    text = _shipped(name)
    body = text.split(VERBATIM, 1)[1]
    assert body == (samples.parent / "reference-lists" / upstream).read_text(encoding="utf-8")
    assert len(_entries(body)) == lines
    assert len(set(_entries(body))) == distinct
    loaded = lists.ddns_apexes() if name == "dynamic_dns.txt" else lists.url_shorteners()
    assert len(loaded) == distinct


def test_shipped_lists_carry_their_licences() -> None:
    ddns = _shipped("dynamic_dns.txt").split(VERBATIM, 1)[0]
    assert "The MIT License (MIT)" in ddns
    assert "Copyright (c) 2014-present Maltrail developers" in ddns
    assert "8adace159e1e9418ca4dd1a4b07f84917c3b6155" in ddns  # the commit copied
    shorteners = _shipped("url_shorteners.txt").split(VERBATIM, 1)[0]
    assert "https://creativecommons.org/licenses/by-sa/4.0/" in shorteners
    assert "69dd70bd6bcee90fc14a87d6ea113a0ef6e33e80" in shorteners


def test_our_lists_load() -> None:
    assert len(lists.risky_tlds()) == len(_entries(_shipped("risky_tlds.tsv")))
    assert len(lists.hosting_services()) == len(_entries(_shipped("hosting_services.tsv")))
    assert len(lists.public_resolvers()) == len(_entries(_shipped("public_dns.tsv")))
    assert {s.kind for s in lists.hosting_services().values()} == {"tunnel", "hosting"}


def test_risky_tld_weights_follow_the_documented_formula() -> None:
    # risky_tlds.tsv: weight = log10(S / 29.4) / log10(10810.2 / 29.4), S = Interisle's phishing
    # domain score (phishing domains per 10,000 domains, May 2024 - April 2025)
    for line in _entries(_shipped("risky_tlds.tsv")):
        tld, weight, source, score = line.split("\t")
        if source == "interisle":
            expected = math.log10(float(score) / 29.4) / math.log10(10810.2 / 29.4)
            assert float(weight) == pytest.approx(expected, abs=0.005), tld
            assert float(weight) >= 0.2, tld
        else:
            assert (source, weight, score) == ("maltrail", "0.25", "-"), tld
    assert lists.risky_tlds()["xin"].weight == 1.0
    assert lists.risky_tlds()["bond"].weight == 0.69  # S 1,759.0
    assert "com" not in lists.risky_tlds()


@pytest.mark.parametrize(
    ("name", "apex"),
    [
        ("x.mooo.com", "mooo.com"),
        ("a.b.duckdns.org", "duckdns.org"),
        ("foo.ddns.net", "ddns.net"),
        ("FOO.DDNS.NET.", "ddns.net"),  # case and the root dot do not matter
        ("ibbwnhgh.mooo.com", "mooo.com"),  # Kraken (dga-domains/kraken_v1.txt, first line)
        ("a.go.dyndns.org", "go.dyndns.org"),  # both listed: the longest match wins
        ("x.no-ip.co.uk", "no-ip.co.uk"),
        ("duckdns.org", None),  # the provider's own site is not a dynamic-DNS name
        ("www.google.com", None),
        ("10.0.0.1", None),
        ("", None),
        (None, None),
    ],
)
def test_ddns_apex(name: str | None, apex: str | None) -> None:
    assert lists.ddns_apex(name) == apex


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("x.ibbwnhgh.mooo.com", "ibbwnhgh.mooo.com"),  # mooo.com is not a PSL suffix
        ("a.b.duckdns.org", "b.duckdns.org"),  # duckdns.org is one (private section)
        ("host.3322.org", "host.3322.org"),
        ("www.example.co.uk", "example.co.uk"),
        ("abc.ngrok-free.app", "abc.ngrok-free.app"),
        ("1.2.3.4", None),
    ],
)
def test_registrable_is_the_label_the_customer_chose(name: str, unit: str | None) -> None:
    assert lists.registrable(name) == unit


def test_registrable_with_the_users_own_ddns_apexes() -> None:
    extra = frozenset({"dyn.example.net"})
    assert lists.registrable("a.b.dyn.example.net", extra) == "b.dyn.example.net"
    assert lists.registrable("a.b.dyn.example.net") == "example.net"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("abc.ngrok-free.app", [("tunnel", "ngrok-free.app", 1.0)]),
        ("random-words.trycloudflare.com", [("tunnel", "trycloudflare.com", 1.0)]),
        ("x.mooo.com", [("dynamic-dns", "mooo.com", 0.8)]),
        ("bit.ly", [("url-shortener", "bit.ly", 0.4)]),
        ("www.bit.ly", [("url-shortener", "bit.ly", 0.4)]),
        ("gateway.discord.gg", []),  # Discord's API, not a discord.gg invite link
        ("me.github.io", [("free-hosting", "github.io", 0.4)]),
        ("login.example.xin", [("risky-tld", "xin", 1.0)]),
        ("a.cloudns.info", [("dynamic-dns", "cloudns.info", 0.8), ("risky-tld", "info", 0.23)]),
        ("www.example.com", []),
        ("printer.local", []),
    ],
)
def test_categories(name: str, expected: list[tuple[str, str, float]]) -> None:
    assert [(c.name, c.matched, c.weight) for c in lists.categories(name)] == expected


def test_dga_families_under_dynamic_dns(samples: Path) -> None:
    folder = samples / "dga-domains/umudga-1000-per-family"

    def apexes(family: str) -> set[str | None]:
        names = (folder / f"{family}.txt").read_text(encoding="utf-8").split()
        assert len(names) == 1000
        return {lists.ddns_apex(n) for n in names}

    # Kraken registers its DGA names at dynamic-DNS providers; Corebot under ddns.net (notes/dns.md)
    assert apexes("kraken_v1") == {"mooo.com", "dyndns.org", "yi.org", "dynserv.com"}
    assert apexes("corebot") == {"ddns.net"}
    assert apexes("legit") == {None}


def test_public_resolvers() -> None:
    assert lists.public_resolver("8.8.8.8") == "Google Public DNS"
    assert lists.public_resolver("dns.google.") == "Google Public DNS"
    assert lists.public_resolver("mozilla.cloudflare-dns.com") == "Cloudflare 1.1.1.1 (Firefox)"
    assert lists.public_resolver("2620:fe::fe") == "Quad9"
    assert lists.public_resolver("192.0.2.1") is None
    assert lists.public_resolver(None) is None


def test_user_domain_file_syntaxes(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("# mine\n! adblock comment\nA.example\n||b.example^\n*.c.example\n.d.example\n")
    assert lists.read_domain_file(path, "k") == {"a.example", "b.example", "c.example", "d.example"}


def test_user_domain_file_errors_name_the_line_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("good.example\nbad/domain.example\n")
    with pytest.raises(MalformedInputError) as bad:
        lists.read_domain_file(path, "detectors.suspicious-domain.extra_ddns_file")
    assert (bad.value.path, bad.value.line) == (path, 2)
    with pytest.raises(ConfigError) as missing:
        lists.read_domain_file(tmp_path / "nope.txt", "detectors.x.extra_ddns_file")
    assert missing.value.key == "detectors.x.extra_ddns_file"


def test_hagezi_tld_file_reads_as_it_is(samples: Path) -> None:
    path = samples.parent / "reference-lists" / "hagezi_spam_tlds.txt"  # GPL-3.0: not shipped
    tlds = lists.read_tld_file(path, "k", default_weight=0.35)
    assert len(tlds) == 283  # PROVENANCE.txt: 283 latin TLD entries
    assert set(tlds.values()) == {0.35}
    assert {"africa", "us.kg"} <= set(tlds)  # 7 entries are suffixes under a TLD
    found = lists.categories("shop.us.kg", extra_tlds=tlds)
    assert [(c.name, c.matched, c.source, c.weight) for c in found] == [
        ("risky-tld", "us.kg", "user list", 0.35)
    ]


def test_tld_file_with_weights(tmp_path: Path) -> None:
    path = tmp_path / "tlds.txt"
    path.write_text("xyz\t0.5\n.top,0.7\nzip\n")
    assert lists.read_tld_file(path, "k", 0.3) == {"xyz": 0.5, "top": 0.7, "zip": 0.3}
    path.write_text("xyz\tmuch\n")
    with pytest.raises(MalformedInputError, match="weight is not a number"):
        lists.read_tld_file(path, "k", 0.3)
    path.write_text("xyz 1.5\n")
    with pytest.raises(MalformedInputError, match=r"0\.\.1"):
        lists.read_tld_file(path, "k", 0.3)


def test_newly_registered_feed_in_xruffkez_format(tmp_path: Path) -> None:
    path = tmp_path / "nrd-30day.txt"
    path.write_text(
        "# 30-day NRD List\n# Time of Compilation: 2026-11-27 05:10:02 UTC\n#\n"
        "evil-update.top\nnew-shop.com\nunrelated.net\n",
        encoding="utf-8",
    )
    feed = lists.read_newly_registered(path, frozenset({"evil-update.top", "new-shop.com"}))
    assert feed.feed_date == date(2026, 11, 27)
    assert feed.dates == {"evil-update.top": None, "new-shop.com": None}
    assert feed.entries == 3


def test_newly_registered_feed_with_dates_and_file_time(tmp_path: Path) -> None:
    path = tmp_path / "domain-names.txt"  # WhoisDS: no header, the file's date is the feed's
    path.write_text("a.example,2026-11-20\nb.example\t2026-11-21\nc.example\n", encoding="utf-8")
    stamp = 1_795_000_000  # 2026-11-18 UTC
    os.utime(path, (stamp, stamp))
    feed = lists.read_newly_registered(path, frozenset({"a.example", "b.example", "c.example"}))
    assert feed.feed_date == date(2026, 11, 18)
    assert feed.dates == {
        "a.example": date(2026, 11, 20),
        "b.example": date(2026, 11, 21),
        "c.example": None,
    }
    path.write_text("a.example,20-11-2026\n", encoding="utf-8")
    with pytest.raises(MalformedInputError) as bad:
        lists.read_newly_registered(path, frozenset({"a.example"}))
    assert bad.value.line == 1
