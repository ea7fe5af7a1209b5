"""Squid's access.log in the native format, from columns.

One line per transaction, written when it completes (https://wiki.squid-cache.org/Features/LogFormat):
`time elapsed client code/status bytes method URL ident hierarchy/peer type`, printed with
`%9d.%03d %6d %s %s/%03d %d %s %s %s %s%s/%s %s` (the `%s` before the hierarchy is `TIMEOUT_` for
a timed-out peer selection, never the case here). Times are seconds with milliseconds, elapsed
is milliseconds, bytes are those sent to the client, a CONNECT's URL is `host:port`, and `-`
stands for an unknown value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import ip_texts

__all__ = ["ACCESS_LOG", "AccessLog", "write_access_log"]

ACCESS_LOG = Path("squid") / "access.log"  # inside each day folder
_STRINGS = ("code", "method", "url", "ident", "hierarchy", "peer", "mime")


@dataclass(frozen=True, slots=True)
class AccessLog:
    """access.log lines as columns; strings are pyarrow string arrays."""

    end_us: npt.NDArray[np.int64]  # when the transaction completed: the line's time
    elapsed_ms: npt.NDArray[np.int64]
    client: npt.NDArray[np.uint32]
    code: Any  # TCP_TUNNEL, TCP_MISS, TCP_DENIED, NONE_NONE, TAG_NONE
    status: npt.NDArray[np.int64]
    bytes: npt.NDArray[np.int64]
    method: Any
    url: Any
    ident: Any
    hierarchy: Any  # HIER_DIRECT or HIER_NONE
    peer: Any  # the server's address, "-" when no server was contacted
    mime: Any

    def __len__(self) -> int:
        return len(self.end_us)

    @staticmethod
    def stack(parts: Sequence[AccessLog]) -> AccessLog:
        """All parts' lines in one (unsorted)."""
        values = {
            f.name: (
                pa.concat_arrays([getattr(p, f.name).cast(pa.string()) for p in parts])
                if f.name in _STRINGS
                else np.concatenate([getattr(p, f.name) for p in parts])
            )
            for f in fields(AccessLog)
        }
        return AccessLog(**values)

    @staticmethod
    def empty() -> AccessLog:
        """No lines."""
        none = pa.array([], pa.string())
        ints = np.zeros(0, dtype=np.int64)
        return AccessLog(ints, ints, np.zeros(0, np.uint32), none, ints, ints, none, none, none,
                         none, none, none)  # fmt: skip


def write_access_log(path: Path, log: AccessLog) -> int:
    """Write the lines in time order (ties keep their order); returns the number of lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    index = np.argsort(log.end_us, kind="stable")
    order = pa.array(index)
    end = log.end_us[index]
    columns = [
        pc.binary_join_element_wise(
            _number(end // 1_000_000, 9), _number(end // 1000 % 1000, 3, "0"), "."
        ),
        _number(log.elapsed_ms[index], 6),
        ip_texts(np.asarray(log.client)[index]),
        pc.binary_join_element_wise(log.code.take(order), _number(log.status[index], 3, "0"), "/"),
        _number(log.bytes[index]),
        log.method.take(order),
        log.url.take(order),
        log.ident.take(order),
        pc.binary_join_element_wise(log.hierarchy.take(order), log.peer.take(order), "/"),
        log.mime.take(order),
    ]
    lines = pc.binary_join_element_wise(*columns, " ")
    with path.open("wb") as out:
        if len(lines):
            out.write(("\n".join(lines.to_pylist()) + "\n").encode())
    return len(lines)


def _number(values: npt.NDArray[np.int64], width: int = 0, fill: str = " ") -> Any:
    """Integers as text, right-aligned in `width` characters padded with `fill` (printf %Nd)."""
    text = pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())
    return pc.utf8_lpad(text, width, fill) if width else text
