"""HTTP User-Agent strings: a rough parse (family, version, OS), the shipped list of tool and
benign application agents, and a small set of rules for agents no real client sends.

The parse is a handful of regular expressions, not a full user-agent database: it knows the
major browsers (Edge, Opera, Chrome, Firefox, Safari, Internet Explorer), the common operating
systems, and takes the first product token of anything else. Its limits: browsers that copy
another's tokens are reported as the one they copy (Brave and Vivaldi as Chrome), Darwin-only
agents have no OS, and an app that embeds a browser engine reads as that browser unless the
list names it. docs/detection.md#user-agent describes the rules.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

__all__ = [
    "BENIGN_CATEGORIES",
    "MALFORMATIONS",
    "NO_AGENT",
    "SHAPE_MASK",
    "SHAPE_PATTERN",
    "AgentInfo",
    "KnownAgent",
    "known_agent",
    "known_agents",
    "malformations",
    "parse",
    "shape",
]

DATA = "homecall.intel.data"
NO_AGENT = ""  # how the detectors write a request without an agent (absent, empty or "-")
BENIGN_CATEGORIES = frozenset({"os", "updater", "security", "collaboration", "package-manager"})

# Rules for agents no real client sends: name -> (weight 0..1, what it means). The weight is
# how much the rule alone says about C2: a misspelt product token or an impossible browser
# and Windows pairing is a hand-written fake (Simda's "MSIE 2.0 ... Trident/4.0", the
# "Modzilla/-2.0" of RITA's proxy-beacon lab); an unclosed parenthesis may be a truncation.
MALFORMATIONS: Mapping[str, tuple[float, str]] = {
    "misspelled_mozilla": (0.8, "the first product token is a misspelling of Mozilla"),
    "impossible_combination": (
        0.8,
        "an Internet Explorer version that never shipped with the claimed Trident engine or "
        "Windows version",
    ),
    "impossible_version": (
        0.7,
        "a negative product version, a Mozilla version other than 1-5, an MSIE version above 11 "
        "or a Windows NT version that does not exist",
    ),
    "unbalanced_parentheses": (0.5, "a comment opened and never closed, or closed unopened"),
    "too_short": (0.5, "one or two characters"),
    "incomplete": (0.35, "a bare Mozilla/x.y with no platform comment"),
}

_MOZILLA = "mozilla"
_WINDOWS_NT = frozenset(
    {"3.1", "3.5", "3.51", "4.0", "5.0", "5.01", "5.1", "5.2", "6.0", "6.1", "6.2", "6.3", "6.4"}
    | {"10.0"}
)
# The oldest Windows NT each Internet Explorer ran on (Microsoft's system requirements): IE7
# and IE8 need XP (5.1), IE9 Vista (6.0), IE10 and IE11 Windows 7 (6.1). IE 5.01 shipped with
# Windows 2000 (5.0), so an IE older than 5 never ran there or later.
_IE_MIN_NT = {7: 5.1, 8: 5.1, 9: 6.0, 10: 6.1, 11: 6.1}
_BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Edge", re.compile(r"\b(?:Edg|Edge|EdgA|EdgiOS)/(\d+(?:\.\d+)?)")),
    ("Opera", re.compile(r"\b(?:OPR|Opera)/(\d+(?:\.\d+)?)")),
    ("Chrome", re.compile(r"\b(?:Chrome|CriOS)/(\d+(?:\.\d+)?)")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/(\d+(?:\.\d+)?)")),
    ("Safari", re.compile(r"\bVersion/(\d+(?:\.\d+)?).*\bSafari/")),
    ("IE", re.compile(r"\bMSIE (\d+(?:\.\d+)?)|\bTrident/7\.0;.*\brv:(11\.0)")),
)
_SYSTEMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Windows Phone", re.compile(r"Windows Phone")),
    ("Windows", re.compile(r"Windows NT (\d+\.\d+)|(?!.*Windows NT \d)(?:Windows|Win64|Win32)")),
    ("Android", re.compile(r"Android(?:[ /](\d+(?:\.\d+)?))?")),
    ("iOS", re.compile(r"iPhone|iPad|iPod|CPU (?:iPhone )?OS (\d+)")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("macOS", re.compile(r"Macintosh|Mac OS X")),
    ("Linux", re.compile(r"Linux|X11|Ubuntu|Fedora")),
)
_PRODUCT = re.compile(r"^\s*([^/\s(;]+)(?:/(\S*))?")
# shape(): numbers (and hex runs of 8 or more: build ids, install ids) become "#". The pattern
# is plain RE2/Java/Python syntax, so detectors apply the same mask inside Ibis expressions.
SHAPE_PATTERN = r"[0-9a-fA-F]{8,}|[0-9]+"
SHAPE_MASK = "#"
_DIGITS = re.compile(SHAPE_PATTERN)


@dataclass(frozen=True, slots=True)
class KnownAgent:
    """A line of the shipped list: the pattern, its category and what the product is."""

    pattern: re.Pattern[str]
    category: str
    note: str


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What an agent claims to be, and what is wrong with it."""

    family: str | None  # a browser family, else the first product token; None without an agent
    version: str | None  # the family's version as written (major or major.minor)
    os: str | None  # Windows, macOS, Linux, Android, iOS, ChromeOS, Windows Phone
    os_version: str | None  # Windows NT or Android version, when written
    is_browser: bool  # a Mozilla/x.y agent with a known browser token and no listed product
    known: KnownAgent | None  # the first line of the shipped list it matches
    problems: tuple[str, ...]  # MALFORMATIONS it breaks, strongest first


def _data(name: str) -> str:
    return resources.files(DATA).joinpath(name).read_text(encoding="utf-8")


@functools.cache
def known_agents() -> tuple[KnownAgent, ...]:
    """The shipped list (intel/data/user_agents.tsv, CC0), in file order."""
    found = []
    for raw in _data("user_agents.tsv").splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        pattern, category, note = raw.split("\t")
        found.append(KnownAgent(re.compile(pattern, re.IGNORECASE), category, note))
    return tuple(found)


def known_agent(agent: str) -> KnownAgent | None:
    """The first listed product `agent` matches, or None."""
    return next((k for k in known_agents() if k.pattern.search(agent)), None)


def shape(agent: str) -> str:
    """The agent with its numbers masked ("curl/8.4.0" -> "curl/#.#.#"): one key for a fleet
    in mid-update, and for apps that put a build number or install id in their agent."""
    return _DIGITS.sub(SHAPE_MASK, agent)


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _balanced(agent: str) -> bool:
    depth = 0
    for char in agent:
        depth += (char == "(") - (char == ")")
        if depth < 0:
            return False
    return depth == 0


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _ie_problems(agent: str, nt: float | None) -> list[str]:
    """impossible_version / impossible_combination of Internet Explorer's tokens."""
    found = []
    msie = re.search(r"\bMSIE (\d+)", agent)
    trident = re.search(r"\bTrident/(\d+)", agent)
    claimed = int(msie.group(1)) if msie else None
    if claimed is not None and not 1 <= claimed <= 11:
        found.append("impossible_version")
    engine = int(trident.group(1)) + 4 if trident else None  # Trident/4.0 is IE8 ... 7.0 IE11
    # Compatibility View sends "MSIE 7.0" with the real engine's Trident token.
    if claimed is not None and engine is not None and claimed not in (7, engine):
        found.append("impossible_combination")
    version = engine or claimed
    if version is not None and nt is not None:
        too_old = version < 5 and nt >= 5.0
        if too_old or nt < _IE_MIN_NT.get(version, 0.0):
            found.append("impossible_combination")
    return found


def malformations(agent: str) -> tuple[str, ...]:
    """The MALFORMATIONS `agent` breaks, strongest first (empty for a plausible agent)."""
    text = agent.strip()
    if not text or text == "-":
        return ()
    found: list[str] = []
    if len(text) <= 2:
        found.append("too_short")
    product = _PRODUCT.match(text)
    token, version = (product.group(1), product.group(2)) if product else ("", None)
    lead = re.match(r"[A-Za-z]+", token)
    letters = lead.group(0).lower() if lead else ""
    mozilla_like = 0 < _edit_distance(letters, _MOZILLA) <= 2 and 5 <= len(letters) <= 9
    if mozilla_like or (letters == _MOZILLA and token.lower() != _MOZILLA):
        found.append("misspelled_mozilla")
    if re.search(r"/-\d", text):
        found.append("impossible_version")
    if letters == _MOZILLA and version is not None and not re.match(r"[1-5]\.\d", version):
        found.append("impossible_version")
    nt = re.search(r"Windows NT (\d+\.\d+)", text)
    if nt and nt.group(1) not in _WINDOWS_NT:
        found.append("impossible_version")
    found += _ie_problems(text, _number(nt.group(1)) if nt else None)
    if not _balanced(text):
        found.append("unbalanced_parentheses")
    bare = re.fullmatch(r"Mozilla/[\d.]+\s*(\(\s*(compatible)?\s*;?\s*\))?", text, re.IGNORECASE)
    if bare:
        found.append("incomplete")
    return tuple(sorted(set(found), key=lambda r: (-MALFORMATIONS[r][0], r)))


def _system(agent: str) -> tuple[str | None, str | None]:
    for name, pattern in _SYSTEMS:
        match = pattern.search(agent)
        if match:
            version = next((g for g in match.groups() if g), None)
            return name, version
    return None, None


@functools.lru_cache(maxsize=65_536)
def parse(agent: str) -> AgentInfo:
    """Family, version and OS of `agent` (NO_AGENT: all None), its list entry and problems."""
    text = agent.strip()
    if not text or text == "-":
        return AgentInfo(None, None, None, None, False, None, ())
    known = known_agent(text)
    os, os_version = _system(text)
    family: str | None = None
    version: str | None = None
    if text.lower().startswith("mozilla/") and known is None:
        for name, pattern in _BROWSERS:
            match = pattern.search(text)
            if match:
                family, version = name, next(g for g in match.groups() if g)
                break
    is_browser = family is not None
    if known is not None:
        match = known.pattern.search(text)
        family = match.group(0).strip(" /") if match else None
        tail = re.match(r"[/ ]?(\d[\d.]*)", text[match.end() :]) if match else None
        version = tail.group(1).rstrip(".") if tail else None
    if family is None:
        product = _PRODUCT.match(text)
        family = product.group(1) if product else text[:32]
        version = (product.group(2) or None) if product else None
    return AgentInfo(family, version, os, os_version, is_browser, known, malformations(text))
