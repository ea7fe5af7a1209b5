"""Domain generation algorithms: a day's list of rendezvous names for three styles of malware.

Written here from the published descriptions of each style, not from any malware's code:

- `letter_names`, Cryptolocker/Conficker style: a pseudo-random generator seeded by the date
  draws 12-15 lowercase letters per name and cycles through a few TLDs.
- `hash_names`, Bamital/Dyre style: a hash of the date, a key and a counter; the name is one
  letter and 33 hex digits of the digest, under a TLD the digest picks.
- `word_names`, Suppobox/Matsnu style: two words from short word lists, joined, under .net.

Every generator is a pure function of (day, key, count), so infected hosts of one family agree on
the day's names, and the operator can register one of them in advance.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "FAMILIES",
    "FIRST_WORDS",
    "SECOND_WORDS",
    "DgaFamily",
    "hash_names",
    "letter_names",
    "word_names",
]

_MASK32 = (1 << 32) - 1
LETTER_TLDS = ("com", "net", "biz", "ru", "org", "co.uk", "info")
HASH_TLDS = ("cc", "ws", "to", "in", "hk", "cn", "tk", "so")

# Two short lists of everyday words (ours); none is a word of internet.RARE_WORDS, so a joined
# pair never spells a long-tail site of the simulation.
_FIRST_WORDS = (
    "answer basket bottle button candle carpet castle chapter circle corner cotton dinner doctor "
    "engine family finger flower friend guitar hammer insect jacket kettle ladder letter little "
    "magnet middle mirror monkey morning number orange pencil person pillow planet pocket rabbit "
)
_SECOND_WORDS = (
    "account action advice battle belief border bridge camera cattle change chance colour custom "
    "damage degree dollar effect energy figure flight gather growth honour income length manner "
    "master member motion nation notice office option parent period player reason record season "
)
FIRST_WORDS = tuple(_FIRST_WORDS.split())
SECOND_WORDS = tuple(_SECOND_WORDS.split())


def _xorshift32(state: int) -> int:
    """One step of Marsaglia's 32-bit xorshift (shifts 13, 17, 5); never returns 0 from non-0."""
    state ^= (state << 13) & _MASK32
    state ^= state >> 17
    state ^= (state << 5) & _MASK32
    return state


def _day_state(day: dt.date, key: int) -> int:
    """A non-zero 32-bit seed from the date and the family's key (a linear congruential mix)."""
    state = key & _MASK32
    for part in (day.year, day.month, day.day):
        state = (state * 1_103_515_245 + 12_345 + part) & _MASK32
    return state or 0x9E3779B9


def letter_names(day: dt.date, key: int, count: int) -> list[str]:
    """count names of 12-15 letters, the TLD cycling through LETTER_TLDS."""
    state = _day_state(day, key)
    names = []
    for i in range(count):
        state = _xorshift32(state)
        letters = []
        for _ in range(12 + state % 4):
            state = _xorshift32(state)
            letters.append(chr(ord("a") + state % 26))
        names.append("".join(letters) + "." + LETTER_TLDS[i % len(LETTER_TLDS)])
    return names


def hash_names(day: dt.date, key: int, count: int) -> list[str]:
    """count names: a letter and 33 hex digits of SHA-256(key, date, i), a TLD from HASH_TLDS."""
    names = []
    for i in range(count):
        digest = hashlib.sha256(f"{key}:{day.isoformat()}:{i}".encode()).hexdigest()
        letter = chr(ord("a") + int(digest[:2], 16) % 26)
        tld = HASH_TLDS[int(digest[-2:], 16) % len(HASH_TLDS)]
        names.append(f"{letter}{digest[2:35]}.{tld}")
    return names


def word_names(day: dt.date, key: int, count: int) -> list[str]:
    """count distinct <first><second>.net names (at most the number of word pairs)."""
    state = _day_state(day, key)
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < min(count, len(FIRST_WORDS) * len(SECOND_WORDS)):
        state = _xorshift32(state)
        first = FIRST_WORDS[state % len(FIRST_WORDS)]
        state = _xorshift32(state)
        name = f"{first}{SECOND_WORDS[state % len(SECOND_WORDS)]}.net"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


@dataclass(frozen=True, slots=True)
class DgaFamily:
    """One malware family's DGA and how it uses it on the wire."""

    name: str  # random-letters, hex-hash, wordlist
    generate: Callable[[dt.date, int, int], list[str]]
    key: int  # the family's seed constant, shared by every infected host
    names_per_day: int
    names_per_burst: int  # the most names one burst tries before giving up
    is_sequential: bool  # walks the list from a random start; else draws names at random
    registered_per_day: int  # names the operator registers each day, pointing at the C2
    burst_gap_s: float  # median time between bursts while the machine is on
    query_gap_s: float  # mean time between two lookups of a burst
    protocol: str  # how the C2 is called once a name resolves: http or https
    uri: str  # HTTP request path ("" for https)
    method: str


FAMILIES = (
    # Cryptolocker generated 1,000 names a day and tried them in turn, calling home by HTTP POST.
    DgaFamily(
        "random-letters", letter_names, 0x2F1D3C4B, 1_000, 200, False, 2, 3_600.0, 0.8,
        "http", "/home/", "POST",
    ),
    # Dyre: 333 names a day, HTTPS to its C2 with a self-signed certificate.
    DgaFamily(
        "hex-hash", hash_names, 0x51E7A9, 333, 150, True, 1, 5_400.0, 1.2, "https", "", "GET",
    ),
    # Suppobox: under a hundred word-pair names per period, plain HTTP GETs.
    DgaFamily(
        "wordlist", word_names, 0x6B2D, 90, 90, False, 1, 4_800.0, 2.0, "http", "/index.php",
        "GET",
    ),
)  # fmt: skip
