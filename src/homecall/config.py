"""homecall.toml: internal networks and detector settings, validated at load.

See docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from homecall.errors import ConfigError
from homecall.networks import InternalNetworks
from homecall.sources.options import ReadOptions

__all__ = ["DEFAULT_CONFIG_NAME", "Config", "build_section", "load_config"]

DEFAULT_CONFIG_NAME = "homecall.toml"
_TOP_KEYS = {"network", "detectors", "import"}
_IMPORT_KEYS = {"timezone"}
_NETWORK_KEYS = {"internal", "replace_defaults"}

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Config:
    """The loaded configuration; detector sections stay raw until their dataclass takes them."""

    path: Path | None = None
    internal: InternalNetworks = field(default_factory=InternalNetworks.from_cidrs)
    detectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    read_options: ReadOptions = field(default_factory=ReadOptions)


def load_config(path: Path | None = None) -> Config:
    """Read `path`, or ./homecall.toml when it exists, or return the defaults."""
    if path is None:
        candidate = Path(DEFAULT_CONFIG_NAME)
        if not candidate.is_file():
            return Config()
        path = candidate
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(path, "-", "file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "-", f"not valid TOML: {exc}") from exc
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(path, key, f"unknown section; expected one of {sorted(_TOP_KEYS)}")
    network = raw.get("network", {})
    _require_table(path, "network", network)
    for key in network:
        if key not in _NETWORK_KEYS:
            raise ConfigError(path, f"network.{key}", "unknown key")
    extra = network.get("internal", [])
    if not isinstance(extra, list) or not all(isinstance(c, str) for c in extra):
        raise ConfigError(path, "network.internal", "must be a list of CIDR strings")
    replace = network.get("replace_defaults", False)
    if not isinstance(replace, bool):
        raise ConfigError(path, "network.replace_defaults", "must be true or false")
    try:
        internal = InternalNetworks.from_cidrs(extra, defaults=not replace)
    except ValueError as exc:
        raise ConfigError(path, "network.internal", str(exc)) from exc
    detectors = raw.get("detectors", {})
    _require_table(path, "detectors", detectors)
    for name, section in detectors.items():
        _require_table(path, f"detectors.{name}", section)
    return Config(
        path=path,
        internal=internal,
        detectors=detectors,
        read_options=_read_options(path, raw.get("import", {})),
    )


def _read_options(path: Path, section: object) -> ReadOptions:
    _require_table(path, "import", section)
    assert isinstance(section, dict)
    for key in section:
        if key not in _IMPORT_KEYS:
            raise ConfigError(path, f"import.{key}", "unknown key")
    timezone = section.get("timezone", "UTC")
    if not isinstance(timezone, str):
        raise ConfigError(path, "import.timezone", "must be a string such as 'Europe/Berlin'")
    try:
        return ReadOptions(timezone=timezone)
    except ValueError as exc:
        raise ConfigError(path, "import.timezone", str(exc)) from exc


def build_section(cls: type[T], values: Mapping[str, Any], *, where: str, path: Path | None) -> T:
    """Build the settings dataclass `cls` from a TOML table; unknown or mistyped keys raise."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise ConfigError(
                path, f"{where}.{key}", f"unknown key; expected one of {sorted(fields)}"
            )
        kwargs[name] = _coerce(value, hints[name], path, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(path, where, str(exc)) from exc


def _coerce(value: Any, hint: Any, path: Path | None, key: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin in (typing.Union, types.UnionType) and value is None:
        return value
    raise ConfigError(path, key, f"expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _require_table(path: Path, key: str, value: object) -> None:
    if not isinstance(value, dict):
        raise ConfigError(path, key, "must be a table")
