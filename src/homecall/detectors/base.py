"""The contract every detector follows: settings dataclass in, tables in, findings out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from homecall.findings import Finding
from homecall.store.tables import Tables

__all__ = ["Detector"]


@dataclass(frozen=True, slots=True)
class Detector:
    """A technique: its kebab-case name, the tables it needs, its settings class and `run`."""

    name: str
    requires: tuple[str, ...]
    config: type[Any]
    run: Callable[[Tables, Any], Iterator[Finding]]
    description: str = ""
