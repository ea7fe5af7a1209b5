"""Train the shipped DGA classifier: writes src/homecall/intel/data/dga-model.npz.

Data (read their PROVENANCE files): ../shared/c2-samples/benign-domains and
../shared/c2-samples/dga-domains/umudga-1000-per-family. Half of the OpenDNS random sample is
held out (split by a SHA-256 of the name; benchmarks/dga_eval.py draws its own split, since it
trains its own models) and never trained on, and so is a tenth of every DGA family. On those
the output is calibrated (Platt scaling, classes weighted equally), and the model's operating
thresholds, stored with it, are its calibrated scores' quantiles on the benign half at FPR 1e-3
and 1e-2. Everything else trains the network. Fixed seed: same data, same model.

    python scripts/train_dga.py [--samples ../shared/c2-samples]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from homecall.intel.dga import MODEL_FILE, fit

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src/homecall/intel/data" / MODEL_FILE
SEED = 20261128
FPRS = (1e-3, 1e-2)
DICTIONARY_GROUPS = frozenset({"gozi", "nymaim", "suppobox", "rovnix"})


@dataclass(frozen=True, slots=True)
class Dataset:
    """Families of generated names, benign training names and the held-out benign names."""

    families: dict[str, list[str]]  # file stem -> names
    benign_train: list[str]
    benign_test: list[str]


def family_group(family: str) -> str:
    """The algorithm behind a family file; variants of one algorithm are held out together."""
    group = re.sub(r"_(v\d+|\d+|noise|gpl|luther|nasa|rfc4343)$", "", family)
    return "suppobox" if group == "pizd" else group


def _names(path: Path) -> list[str]:
    return [line.strip().lower() for line in path.read_text().splitlines() if line.strip()]


def held_out(name: str) -> bool:
    """Half of the OpenDNS random sample, chosen by a hash of the name (stable across runs)."""
    return bool(hashlib.sha256(name.encode()).digest()[0] & 1)


def held_out_dga(name: str) -> bool:
    """A tenth of the generated names, kept out of training to calibrate the output."""
    return hashlib.sha256(b"calibration:" + name.encode()).digest()[0] < 26


def load_dataset(samples: Path) -> Dataset:
    """The training and test data of the DGA model, deduplicated and disjoint."""
    folder = samples / "dga-domains/umudga-1000-per-family"
    families = {f.stem: _names(f) for f in sorted(folder.glob("*.txt")) if f.stem != "legit"}
    generated = {n for names in families.values() for n in names}
    benign_dir = samples / "benign-domains"
    test = {n for n in _names(benign_dir / "sources/opendns_random_2014.txt") if held_out(n)}
    train = set(_names(benign_dir / "benign_domains.txt")) | set(_names(folder / "legit.txt"))
    return Dataset(
        families=families,
        benign_train=sorted(train - test - generated),
        benign_test=sorted(test - generated),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=ROOT.parent / "shared" / "c2-samples")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    started = time.perf_counter()
    data = load_dataset(args.samples)
    generated = [n for names in data.families.values() for n in names if not held_out_dga(n)]
    calibration = [n for names in data.families.values() for n in names if held_out_dga(n)]
    names = data.benign_train + generated
    labels = np.r_[np.zeros(len(data.benign_train)), np.ones(len(generated))]
    print(f"training on {len(data.benign_train):,} benign and {len(generated):,} generated names")
    model = fit(names, labels, seed=SEED).calibrated(data.benign_test, calibration)
    scores = model.predict_proba(data.benign_test)
    low, high = (float(np.quantile(scores, 1.0 - fpr)) for fpr in FPRS)
    thresholds = (low, high)
    model = replace(model, thresholds=thresholds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(args.out))
    for fpr, threshold in zip(FPRS, thresholds, strict=True):
        print(f"threshold at FPR {fpr:g} on {len(scores):,} held-out benign names: {threshold:.4f}")
    size = args.out.stat().st_size / 1e6
    print(f"calibration a={model.calibration[0]:.4f} b={model.calibration[1]:.4f}")
    print(f"wrote {args.out} ({size:.1f} MB) in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
