"""Exceptions raised by homecall.

The tree::

    HomecallError                  anything homecall raises on purpose
    ├── InputError                 the user's input cannot be used
    │   ├── UnknownFormatError     no reader recognises a file
    │   ├── MalformedInputError    a file is unreadable as its format (path, line, reason)
    │   └── ConfigError            homecall.toml is wrong (path, key, reason)
    ├── StoreError                 the store is missing, locked or inconsistent
    └── EngineError                the analysis backend is missing or cannot run an operation

Bad records inside a readable file are not exceptions: readers report them through
`homecall.sources.Problems` and go on.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ConfigError",
    "EngineError",
    "HomecallError",
    "InputError",
    "MalformedInputError",
    "StoreError",
    "UnknownFormatError",
]


class HomecallError(Exception):
    """Base class of every error homecall raises on purpose."""


class InputError(HomecallError):
    """The user's input (a log file, a path, the configuration) cannot be used."""


class UnknownFormatError(InputError):
    """Raised when no reader recognises a file's content."""

    def __init__(self, path: Path, reason: str = "no reader recognises this file") -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class MalformedInputError(InputError):
    """Raised when a file cannot be read at all as the format it claims to be."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


class ConfigError(InputError):
    """Raised when homecall.toml has an unknown key or a value of the wrong kind."""

    def __init__(self, path: Path | None, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        super().__init__(f"{path or 'configuration'}: {key}: {reason}")


class StoreError(HomecallError):
    """Raised when the store is missing, locked by another import, or inconsistent."""


class EngineError(HomecallError):
    """Raised when the analysis backend is missing or cannot run an operation."""
