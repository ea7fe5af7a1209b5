from __future__ import annotations

import datetime as dt
import hashlib
import math
import string
from collections import Counter

import pytest

from homecall.simulator.dga import (
    FAMILIES,
    FIRST_WORDS,
    HASH_TLDS,
    LETTER_TLDS,
    SECOND_WORDS,
    _xorshift32,
    hash_names,
    letter_names,
    word_names,
)
from homecall.simulator.internet import C2_WORDS, RARE_WORDS

DAY = dt.date(2026, 11, 23)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        # x ^= x << 13; x ^= x >> 17; x ^= x << 5 (mod 2**32), worked by hand
        (1, 270_369),  # 1 -> 8193 -> 8193 -> 8193 ^ 262176
        (1 << 31, 0x80000000 ^ 0x4000 ^ 0x80000),  # << 13 drops out; >> 17 = 0x4000; then << 5
    ],
)
def test_xorshift_step(state: int, expected: int) -> None:
    assert _xorshift32(state) == expected


@pytest.mark.parametrize(
    ("generate", "repeats"),
    [(letter_names, 0), (hash_names, 0), (word_names, 5)],  # 50 of 1,521 word pairs a day
)
def test_names_depend_on_the_date_and_key_only(generate, repeats: int) -> None:
    today = generate(DAY, 7, 50)
    assert today == generate(DAY, 7, 50)  # every infected host computes the same list
    assert len(today) == len(set(today)) == 50
    assert len(set(today) & set(generate(DAY + dt.timedelta(days=1), 7, 50))) <= repeats
    assert today != generate(DAY, 8, 50)
    assert generate(DAY, 7, 10) == today[:10]  # the list is a sequence, not a sample


def test_letter_names_are_12_to_15_random_letters_under_cycling_tlds() -> None:
    names = letter_names(DAY, 0x2F1D3C4B, 1_000)
    labels = [name.split(".", 1)[0] for name in names]
    assert {len(label) for label in labels} == {12, 13, 14, 15}
    assert all(set(label) <= set(string.ascii_lowercase) for label in labels)
    assert [name.split(".", 1)[1] for name in names[:8]] == [*LETTER_TLDS, LETTER_TLDS[0]]
    letters = Counter("".join(labels))
    total = sum(letters.values())
    assert len(letters) == 26
    assert all(0.03 < count / total < 0.05 for count in letters.values())  # 1/26 = 0.038
    entropy = -sum(c / total * math.log2(c / total) for c in letters.values())
    assert entropy > 4.65  # log2(26) = 4.70: as random as letters get


def test_hash_names_are_a_letter_and_33_hex_digits_of_the_digest() -> None:
    names = hash_names(DAY, 99, 20)
    for i, name in enumerate(names):
        label, tld = name.split(".")
        digest = hashlib.sha256(f"99:2026-11-23:{i}".encode()).hexdigest()
        assert len(label) == 34
        assert label[0] in string.ascii_lowercase
        assert label[1:] == digest[2:35]
        assert tld in HASH_TLDS


def test_word_names_join_two_listed_words_under_net() -> None:
    names = word_names(DAY, 5, 90)
    for name in names:
        label, tld = name.split(".")
        assert tld == "net"
        assert any(label == a + b for a in FIRST_WORDS for b in SECOND_WORDS), name
    assert len(word_names(DAY, 5, 10**6)) == len(FIRST_WORDS) * len(SECOND_WORDS)


def test_word_lists_share_no_word_with_the_site_and_c2_vocabularies() -> None:
    assert not set(FIRST_WORDS + SECOND_WORDS) & set(RARE_WORDS + C2_WORDS)


def test_families_are_the_three_styles() -> None:
    assert [f.name for f in FAMILIES] == ["random-letters", "hex-hash", "wordlist"]
    for family in FAMILIES:
        assert family.registered_per_day <= family.names_per_burst <= family.names_per_day
        assert family.protocol in ("http", "https")
        names = family.generate(DAY, family.key, family.names_per_day)
        assert len(set(names)) == family.names_per_day
