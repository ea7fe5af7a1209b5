"""homecall: find malware calling home in network logs."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
