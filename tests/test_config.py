from __future__ import annotations

from pathlib import Path

import pytest

from homecall.config import build_section, load_config
from homecall.detectors.beacon import BeaconConfig
from homecall.errors import ConfigError


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "homecall.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.path is None
    assert config.internal.contains("10.1.2.3")
    assert not config.internal.contains("8.8.8.8")


def test_internal_networks_extend_the_defaults(tmp_path: Path) -> None:
    config = load_config(
        _toml(tmp_path, '[network]\ninternal = ["198.51.100.0/24", "2001:db8::/32"]\n')
    )
    assert config.internal.contains("198.51.100.7")
    assert config.internal.contains("2001:db8::1")
    assert config.internal.contains("192.168.1.1")


def test_replace_defaults(tmp_path: Path) -> None:
    config = load_config(
        _toml(tmp_path, '[network]\ninternal = ["198.51.100.0/24"]\nreplace_defaults = true\n')
    )
    assert not config.internal.contains("10.0.0.1")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[netwerk]\n", "netwerk"),
        ('[network]\ninternal = "10.0.0.0/8"\n', "network.internal"),
        ('[network]\ninternal = ["10.0.0.300/8"]\n', "network.internal"),
        ("[network]\ncidrs = []\n", "network.cidrs"),
        ("[network\n", "-"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = _toml(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert (error.value.path, error.value.key) == (path, key)


def test_detector_section_is_validated() -> None:
    cfg = build_section(BeaconConfig, {"min-checkins": 6, "merge_gap_s": 2}, where="d", path=None)
    assert (cfg.min_checkins, cfg.merge_gap_s) == (6, 2.0)
    with pytest.raises(ConfigError, match="unknown key"):
        build_section(BeaconConfig, {"min_chekins": 6}, where="detectors.beacon", path=None)
    with pytest.raises(ConfigError, match="expected int"):
        build_section(BeaconConfig, {"min_checkins": "6"}, where="detectors.beacon", path=None)
