"""FANCI (Schueppen et al., USENIX Security 2018) re-implemented from the paper: the DGA baseline.

21 features, 44 values, of a domain name d, then a Gini random forest with max_features=18
(the paper's Table 21: 785 trees). `*` features ignore the dots, `†` features ignore the public
suffix; "dsf" is the dot-free, suffix-free string (../shared/notes/dns.md, section 1.1). The
paper's code has no licence, so where the paper leaves a detail open this module picks one and
says so here:

- public suffix: the Public Suffix List bundled with publicsuffixlist, private suffixes included
  (so `x.ddns.net` has the suffix `ddns.net`); a name that is itself a public suffix
  (`blogspot.com`) falls back to its ICANN suffix, then to its last label;
- #2 number of subdomains (labels left of the suffix) is one-hot in four bins: <= 1, 2, 3, >= 4;
- #5 valid TLD and #8 TLD as subdomain use the ICANN section of the same list;
- #7 exclusive prefix repetition: the labels of d are one label sequence repeated at least twice
  (`example.com.example.com`, a resolver search-list artefact);
- #12 IP address: an IPv4 address (dotted or dashed) or an IPv6 address (dashed) left of the suffix;
- #14 vowel ratio: vowels (a, e, i, o, u) over letters; other ratios are over the length of dsf;
- #17 repeated characters: distinct characters seen more than once over distinct characters;
- #18/#19: characters in runs of >= 2 consonants (letters that are not vowels) / digits over len;
- #20: for n = 1, 2, 3 the counts of each distinct n-gram of dsf; mean, population std, min,
  max, median, Q1 and Q3 (linear interpolation, as numpy.quantile); all 0 when dsf is shorter
  than n;
- #21: Shannon entropy of the characters of dsf, in bits.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from publicsuffixlist import PublicSuffixList
from sklearn.ensemble import RandomForestClassifier

__all__ = [
    "FEATURE_NAMES",
    "NGRAM_STATS",
    "PAPER_TREES",
    "Fanci",
    "extract",
    "features",
    "fit",
    "is_tld",
    "public_suffix",
]

PAPER_TREES = 785  # Table 21 of the paper
MAX_FEATURES = 18  # Table 21: features tried per split
VOWELS = frozenset("aeiou")
DIGITS = frozenset("0123456789")
HEX = frozenset("0123456789abcdef")
IPV4 = re.compile(
    r"(?<![0-9])(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])[.-]){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(?![0-9])"
)
NGRAM_STATS = ("mean", "std", "min", "max", "median", "q1", "q3")

FEATURE_NAMES: tuple[str, ...] = (
    "length",
    "subdomains_1",
    "subdomains_2",
    "subdomains_3",
    "subdomains_4_or_more",
    "subdomain_length_mean",
    "has_www_prefix",
    "has_valid_tld",
    "has_single_char_subdomain",
    "is_exclusive_prefix_repetition",
    "has_tld_as_subdomain",
    "digit_subdomain_ratio",
    "hex_subdomain_ratio",
    "underscore_ratio",
    "has_ip_address",
    "has_digits",
    "vowel_ratio",
    "digit_ratio",
    "alphabet_cardinality",
    "repeated_char_ratio",
    "consecutive_consonant_ratio",
    "consecutive_digit_ratio",
    *(f"{n}gram_{stat}" for n in (1, 2, 3) for stat in NGRAM_STATS),
    "entropy",
)


@functools.cache
def _psl(only_icann: bool) -> PublicSuffixList:
    return PublicSuffixList(only_icann=only_icann)  # bundled list: no network access


@functools.cache
def _icann_strict() -> PublicSuffixList:
    return PublicSuffixList(only_icann=True, accept_unknown=False)


def is_tld(label: str) -> bool:
    """Is this label an ICANN top-level domain ("com", "de", "app")?"""
    return bool(label) and _icann_strict().publicsuffix(label) is not None


def public_suffix(name: str) -> str:
    """The public suffix of a lower-case name, never the whole name (see the module docstring)."""
    for only_icann in (False, True):
        suffix: str | None = _psl(only_icann).publicsuffix(name)
        if suffix and suffix != name:
            return suffix
    return name.rsplit(".", 1)[-1] if "." in name else ""


def _quantile(ordered: Sequence[int], q: float) -> float:
    """numpy.quantile's default (linear) on an already sorted sequence."""
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _ngram_stats(dsf: str, n: int) -> list[float]:
    counts = sorted(Counter(dsf[i : i + n] for i in range(len(dsf) - n + 1)).values())
    if not counts:
        return [0.0] * len(NGRAM_STATS)
    mean = sum(counts) / len(counts)
    std = math.sqrt(sum((c - mean) ** 2 for c in counts) / len(counts))
    return [
        mean,
        std,
        float(counts[0]),
        float(counts[-1]),
        _quantile(counts, 0.5),
        _quantile(counts, 0.25),
        _quantile(counts, 0.75),
    ]


def _run_ratio(dsf: str, members: frozenset[str] | None) -> float:
    """Share of dsf's characters in runs of >= 2 members (None: consonants)."""
    in_runs = run = 0
    for char in dsf:
        is_member = (char.isalpha() and char not in VOWELS) if members is None else char in members
        if is_member:
            run += 1
            continue
        in_runs += run if run >= 2 else 0
        run = 0
    in_runs += run if run >= 2 else 0
    return in_runs / len(dsf) if dsf else 0.0


def _has_ip(rest: str) -> bool:
    if IPV4.search(rest):
        return True
    for label in rest.split("."):
        if label.count("-") >= 2:
            try:
                ipaddress.IPv6Address(label.replace("-", ":"))
            except ValueError:
                continue
            return True
    return False


def _is_prefix_repetition(labels: list[str]) -> bool:
    for size in range(1, len(labels) // 2 + 1):
        if len(labels) % size == 0 and labels == labels[:size] * (len(labels) // size):
            return True
    return False


def features(name: str) -> list[float]:
    """FANCI's 44 feature values of one domain name (order: FEATURE_NAMES)."""
    d = name.strip().rstrip(".").lower()
    suffix = public_suffix(d)
    rest = d[: -len(suffix) - 1] if suffix and d.endswith("." + suffix) else d
    subdomains = rest.split(".") if rest else []
    dsf = rest.replace(".", "")
    length = len(dsf)
    counts = Counter(dsf)
    letters = sum(c.isalpha() for c in dsf)
    digits = sum(counts[c] for c in DIGITS)
    n_sub = len(subdomains)
    entropy = -sum(c / length * math.log2(c / length) for c in counts.values()) if dsf else 0.0
    values: list[float] = [
        len(d),
        n_sub <= 1,
        n_sub == 2,
        n_sub == 3,
        n_sub >= 4,
        sum(map(len, subdomains)) / n_sub if n_sub else 0.0,
        d.startswith("www."),
        is_tld(d.rsplit(".", 1)[-1]),
        any(len(s) == 1 for s in subdomains),
        _is_prefix_repetition(d.split(".")),
        any(is_tld(s) for s in subdomains),
        sum(s.isascii() and s.isdigit() for s in subdomains) / n_sub if n_sub else 0.0,
        sum(bool(s) and set(s) <= HEX for s in subdomains) / n_sub if n_sub else 0.0,
        counts["_"] / length if length else 0.0,
        _has_ip(rest),
        digits > 0,
        sum(counts[v] for v in VOWELS) / letters if letters else 0.0,
        digits / length if length else 0.0,
        len(counts),
        sum(c > 1 for c in counts.values()) / len(counts) if counts else 0.0,
        _run_ratio(dsf, None),
        _run_ratio(dsf, DIGITS),
    ]
    for n in (1, 2, 3):
        values += _ngram_stats(dsf, n)
    values.append(entropy)
    return [float(v) for v in values]


def extract(names: Sequence[str]) -> npt.NDArray[np.float64]:
    """Feature matrix, one row of 44 values per name."""
    matrix = np.empty((len(names), len(FEATURE_NAMES)), dtype=np.float64)
    for i, name in enumerate(names):
        matrix[i] = features(name)
    return matrix


@dataclass(frozen=True, slots=True)
class Fanci:
    """A trained FANCI classifier."""

    forest: RandomForestClassifier

    def predict_proba(self, names: Sequence[str]) -> npt.NDArray[np.float64]:
        """Probability of DGA per name, feature extraction included."""
        return self.proba_of(extract(names))

    def proba_of(self, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Probability of DGA per row of an `extract` matrix."""
        return np.asarray(self.forest.predict_proba(matrix)[:, 1], dtype=np.float64)


def fit(
    matrix: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    *,
    trees: int = PAPER_TREES,
    seed: int = 0,
    jobs: int = -1,
) -> Fanci:
    """The paper's forest (Gini, max_features=18) on an `extract` matrix; labels 1 = DGA."""
    forest = RandomForestClassifier(
        n_estimators=trees,
        criterion="gini",
        max_features=MAX_FEATURES,
        random_state=seed,
        n_jobs=jobs,
    )
    forest.fit(matrix, labels)
    return Fanci(forest)
