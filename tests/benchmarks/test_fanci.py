"""The FANCI baseline's features on hand-worked names, and the evaluation's data split."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import dga_eval, fanci


def named(name: str) -> dict[str, float]:
    return dict(zip(fanci.FEATURE_NAMES, fanci.features(name), strict=True))


def test_feature_vector_has_the_papers_44_values() -> None:
    assert len(fanci.FEATURE_NAMES) == 44
    assert fanci.extract(["a.com", "b.net"]).shape == (2, 44)


def test_random_label() -> None:
    # dsf "qkdchxxxzn": 10 chars, 8 distinct, x three times, no vowel
    f = named("qkdchxxxzn.com")
    assert f["length"] == 14
    assert (f["subdomains_1"], f["subdomain_length_mean"]) == (1, 10)
    assert (f["has_www_prefix"], f["has_valid_tld"], f["has_digits"]) == (0, 1, 0)
    assert (f["alphabet_cardinality"], f["repeated_char_ratio"]) == (8, 1 / 8)
    assert (f["vowel_ratio"], f["consecutive_consonant_ratio"]) == (0, 1)
    # 1-grams: seven seen once, x three times
    assert f["1gram_mean"] == 10 / 8
    assert f["1gram_std"] == pytest.approx(math.sqrt((7 * 0.25**2 + 1.75**2) / 8))
    assert (f["1gram_min"], f["1gram_max"], f["1gram_median"], f["1gram_q3"]) == (1, 3, 1, 1)
    # 2-grams: 9, "xx" twice; 3-grams: 8 distinct
    assert (f["2gram_mean"], f["2gram_max"], f["3gram_mean"], f["3gram_std"]) == (9 / 8, 2, 1, 0)
    assert f["entropy"] == pytest.approx(-(7 * 0.1 * math.log2(0.1) + 0.3 * math.log2(0.3)))


def test_structure_and_digits() -> None:
    # suffix "de"; labels www, 0, 123, fe; dsf "www0123fe" (9 chars)
    f = named("WWW.0.123.fe.de.")
    assert f["length"] == 15
    assert (f["subdomains_4_or_more"], f["subdomains_1"]) == (1, 0)
    assert f["subdomain_length_mean"] == 9 / 4
    assert (f["has_www_prefix"], f["has_single_char_subdomain"], f["has_tld_as_subdomain"]) == (
        1,
        1,
        0,
    )
    assert (f["digit_subdomain_ratio"], f["hex_subdomain_ratio"]) == (2 / 4, 3 / 4)
    assert (f["digit_ratio"], f["vowel_ratio"]) == (4 / 9, 1 / 5)  # vowels over letters
    assert (f["alphabet_cardinality"], f["repeated_char_ratio"]) == (7, 1 / 7)
    assert (f["consecutive_consonant_ratio"], f["consecutive_digit_ratio"]) == (3 / 9, 4 / 9)
    assert f["entropy"] == pytest.approx(-(1 / 3 * math.log2(1 / 3) + 6 / 9 * math.log2(1 / 9)))


@pytest.mark.parametrize(
    ("name", "key", "expected"),
    [
        ("example.com.example.com", "is_exclusive_prefix_repetition", 1),
        ("example.com.example.net", "is_exclusive_prefix_repetition", 0),
        ("com.evil.net", "has_tld_as_subdomain", 1),
        ("evil.net", "has_tld_as_subdomain", 0),
        ("10.0.0.1.example.com", "has_ip_address", 1),
        ("host-10-1-2-3.example.com", "has_ip_address", 1),
        ("2001-db8--1.example.org", "has_ip_address", 1),
        ("1234.example.com", "has_ip_address", 0),
        ("a_b.example.com", "underscore_ratio", 1 / 10),
        ("example.notatld", "has_valid_tld", 0),
        ("", "length", 0),
    ],
)
def test_binary_and_ratio_features(name: str, key: str, expected: float) -> None:
    assert named(name)[key] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("x7q.ddns.net", "ddns.net"),  # private section: the DDNS label is the domain
        ("example.co.uk", "co.uk"),
        ("blogspot.com", "com"),  # itself a private suffix: fall back to the ICANN one
        ("a.lan", "lan"),
    ],
)
def test_public_suffix(name: str, suffix: str) -> None:
    assert fanci.public_suffix(name) == suffix


@pytest.mark.parametrize("dsf", ["aaabbc", "abcabcabcd", "xy", "mississippi"])
def test_ngram_statistics_match_numpy(dsf: str) -> None:
    f = named(dsf + ".com")
    for n in (1, 2, 3):
        grams = [dsf[i : i + n] for i in range(len(dsf) - n + 1)]
        counts = np.array([grams.count(g) for g in sorted(set(grams))], dtype=float)
        expected = [0.0] * 7  # fewer characters than n: no n-grams
        if counts.size:
            quartiles = np.quantile(counts, [0.5, 0.25, 0.75])
            expected = [counts.mean(), counts.std(), counts.min(), counts.max(), *quartiles]
        got = [f[f"{n}gram_{s}"] for s in fanci.NGRAM_STATS]
        assert got == pytest.approx(expected)


def test_ties_at_the_threshold_count_pro_rata() -> None:
    # 10 benign, two tied at 0.5: FPR 0.1 takes half of the tie; the DGA name at 0.5 counts half
    benign = np.array([0.0] * 8 + [0.5, 0.5])
    tpr, fpr = dga_eval.detection_rate(benign, np.array([0.5, 1.0]), 0.1)
    assert (tpr, fpr) == (pytest.approx(0.75), pytest.approx(0.1))
    assert dga_eval.detection_rate(np.arange(1000.0), np.array([999.5, 5.0]), 1e-3) == (0.5, 0.001)


def test_evaluation_sets_are_disjoint(samples: Path) -> None:
    data = dga_eval.load(samples)
    test, train = set(data.benign_test), set(data.benign_train)
    malicious = {n for names in data.dga.values() for n in names}
    assert not test & train
    assert not (test | train) & malicious
    random_sample = (samples / dga_eval.BENIGN_DIR / "sources/opendns_random_2014.txt").read_text()
    assert 0.45 < len(test) / len(random_sample.split()) < 0.55  # half of the random sample
    assert dga_eval.group_of("pizd") == dga_eval.group_of("suppobox_1") == "suppobox"
