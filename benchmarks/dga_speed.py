"""DGA classifier speed: names scored per second in batch by the shipped model, one process.

The names are real: the benign registered domains of ../shared/c2-samples/benign-domains (a
third of them with a `www.` or deeper host part, as DNS logs have them) and the UMUDGA families,
shuffled. Each run times everything `homecall dga score` does after start-up: label extraction
(Public Suffix List and dynamic-DNS providers; nothing is cached between runs), encoding and the
network.

    python benchmarks/dga_speed.py [--names 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from homecall.intel.dga import load_model

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "c2-samples"


def names(samples: Path, count: int, seed: int = 0) -> list[str]:
    """`count` names drawn from the benign lists and the DGA families, some with host parts."""
    benign = (samples / "benign-domains/benign_domains.txt").read_text().split()
    generated = [
        n
        for f in sorted((samples / "dga-domains/umudga-1000-per-family").glob("*.txt"))
        for n in f.read_text().split()
    ]
    rng = np.random.default_rng(seed)
    pool = benign + generated
    picked = [pool[i] for i in rng.integers(0, len(pool), count)]
    hosts = ("www.", "mail.", "cdn.static.", "")
    return [hosts[i % 6] + n if i % 6 < 3 else n for i, n in enumerate(picked)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    args = parser.parse_args()
    batch = names(args.samples, args.names)
    started = time.perf_counter()
    model = load_model()
    print(f"model loaded in {time.perf_counter() - started:.2f} s")
    for run in range(1, args.repeats + 1):
        started = time.perf_counter()
        scores = model.predict_proba(batch)
        elapsed = time.perf_counter() - started
        print(
            f"run {run}: {len(batch):,} names in {elapsed:.2f} s ="
            f" {len(batch) / elapsed:,.0f} names/s (mean score {scores.mean():.3f})"
        )


if __name__ == "__main__":
    main()
