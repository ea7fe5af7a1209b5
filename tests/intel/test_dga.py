"""The DGA classifier: label extraction, the shipped model, training, and `homecall dga score`."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from homecall.cli import app
from homecall.intel import dga
from homecall.intel.dga import TrainSettings, dga_domain, dga_label, fit, load_model

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import train_dga  # noqa: E402

runner = CliRunner()
MODEL = ROOT / "src/homecall/intel/data" / dga.MODEL_FILE


@pytest.mark.parametrize(
    ("name", "domain", "label"),
    [
        ("www.qkdchxxxzn.com", "qkdchxxxzn.com", "qkdchxxxzn"),
        ("QKDCHXXXZN.COM.", "qkdchxxxzn.com", "qkdchxxxzn"),
        ("a.b.example.co.uk", "example.co.uk", "example"),
        # dynamic DNS: the customer's label is what a DGA generates (PSL private or not)
        ("x.ibbwnhgh.mooo.com", "ibbwnhgh.mooo.com", "ibbwnhgh"),
        ("f3x1n345petw4wp30uhu.ddns.net", "f3x1n345petw4wp30uhu.ddns.net", "f3x1n345petw4wp30uhu"),
        # hosting platforms name customers randomly; malware cannot generate those names
        ("d2wy8f7a9ursnm.cloudfront.net", "cloudfront.net", "cloudfront"),
        ("s4spujqaty.us-east-1.elasticbeanstalk.com", "elasticbeanstalk.com", "elasticbeanstalk"),
        # internationalized names are scored in their DNS form (A-labels), as logs mostly write
        ("www.пример.рф", "xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd"),
        ("10.1.2.3", None, ""),
        ("wpad", None, "wpad"),
    ],
)
def test_the_scored_unit_is_the_label_a_registrant_chose(
    name: str, domain: str | None, label: str
) -> None:
    assert dga_domain(name) == domain
    assert dga_label(name) == label


def test_shipped_model_is_small_and_carries_ordered_thresholds() -> None:
    assert MODEL.stat().st_size <= 20 * 1024 * 1024
    strict, loose = load_model().thresholds
    assert 0.0 < loose < strict < 1.0


def test_shipped_thresholds_belong_to_the_shipped_model(samples: Path) -> None:
    """The thresholds are the model's own quantiles on the held-out half (a stale file fails)."""
    held_out = train_dga.load_dataset(samples).benign_test
    scores = load_model().predict_proba(held_out)
    strict, loose = load_model().thresholds
    assert (scores >= strict).mean() == pytest.approx(1e-3, abs=2e-4)
    assert (scores >= loose).mean() == pytest.approx(1e-2, abs=1e-3)


def test_unicode_and_punycode_spellings_score_the_same() -> None:
    model = load_model()
    assert model.predict_proba(["www.bücher.de"])[0] == model.predict_proba(["xn--bcher-kva.de"])[0]


def test_ips_and_empty_names_score_zero() -> None:
    assert load_model().predict_proba(["10.0.0.1", "", "::1"]).tolist() == [0.0, 0.0, 0.0]


def test_training_is_reproducible_and_learns_unseen_names(samples: Path) -> None:
    data = train_dga.load_dataset(samples)
    benign = data.benign_train[::60]
    generated = data.families["cryptolocker"][:800] + data.families["dyre"][:800]
    names = benign + generated
    labels = np.r_[np.zeros(len(benign)), np.ones(len(generated))]
    settings = TrainSettings(epochs=2, buckets=1 << 17)
    first = fit(names, labels, seed=3, settings=settings)
    second = fit(names, labels, seed=3, settings=settings)
    held_out = data.families["cryptolocker"][800:] + data.families["dyre"][800:]
    probe = data.benign_test[:2000] + held_out
    assert np.array_equal(first.predict_proba(probe), second.predict_proba(probe))
    unseen_benign = first.predict_proba(data.benign_test[:2000])
    unseen_generated = first.predict_proba(held_out)
    # names held out of training: most generated ones above the benign 99th percentile
    assert (unseen_generated > np.quantile(unseen_benign, 0.99)).mean() > 0.8


def test_model_round_trips_through_its_file(tmp_path: Path) -> None:
    model = load_model()
    path = tmp_path / "model.npz"
    model.save(str(path))
    again = dga.DgaModel.from_bytes(path.read_bytes())
    names = ["qkdchxxxzn.com", "google.com", "x.ibbwnhgh.mooo.com"]
    assert np.array_equal(model.predict_proba(names), again.predict_proba(names))


def test_cli_scores_names_from_arguments_and_stdin() -> None:
    names = ["qkdchxxxzn.com", "google.com"]
    result = runner.invoke(app, ["dga", "score", *names])
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.output.splitlines()]
    assert [r[0] for r in rows] == names
    expected = load_model().predict_proba(names)
    assert [float(r[1]) for r in rows] == pytest.approx(expected, abs=1e-4)
    piped = runner.invoke(app, ["dga", "score", "-"], input="qkdchxxxzn.com\n\ngoogle.com\n")
    assert piped.exit_code == 0
    assert piped.output == result.output
