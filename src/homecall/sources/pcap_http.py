"""HTTP/1.x in a capture -> http rows, one per request, as Zeek's http.log.

Each direction's reassembled stream is parsed as it arrives: header blocks are buffered (up to
`MAX_HEAD` bytes), bodies are skipped by Content-Length or chunk sizes without being kept, so a
keep-alive connection of any length costs little memory. Responses are matched to requests in
order (pipelining). A request's row is written once its response is complete, or when the flow
ends. Not dpkt.http: its Request and Response parse a whole message from one buffer and raise
NeedData for a head whose body is not all there (a body in later segments, or lost; a
Content-Length answering a HEAD), refuse methods outside a fixed list (PATCH, custom verbs)
and drop non-ASCII bytes from the request line and headers (tests/sources/test_pcap_apps.py).
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from typing import Any

from homecall.sources.pcap_tables import Collector

__all__ = ["HttpSession", "is_http_request"]

MAX_HEAD = 1 << 16
HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, TRAILER, CLOSE, LOST = range(7)
# Zeek's HTTP::proxy_headers, logged in `proxied` as "NAME -> value".
_PROXY_HEADERS = frozenset(
    ("FORWARDED", "X-FORWARDED-FOR", "X-FORWARDED-FROM", "CLIENT-IP", "VIA", "XROXY-CONNECTION",
     "PROXY-CONNECTION")
)  # fmt: skip
_METHOD_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ-_")


def is_http_request(payload: bytes) -> bool:
    """True when `payload` starts with an HTTP/1.x request line."""
    end = payload.find(b"\n", 0, 8192)
    line = payload[:end].rstrip(b"\r") if end >= 0 else b""
    parts = line.split(b" ")
    return (
        len(parts) == 3
        and 0 < len(parts[0]) <= 20
        and all(c in _METHOD_CHARS for c in parts[0])
        and parts[2][:7] in (b"HTTP/1.", b"HTTP/0.", b"HTTP/2.")
    )


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


def _headers(lines: list[bytes]) -> dict[str, str]:
    """Header fields by upper-case name; the first of repeated fields is kept."""
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if sep:
            out.setdefault(_text(name.strip()).upper(), _text(value.strip()))
    return out


def _host(value: str) -> str:
    """The Host header without its port, as Zeek logs it."""
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    name, _, port = value.rpartition(":")
    return name if name and port.isdigit() else value


def _username(value: str) -> str | None:
    if value[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return "<problem-decoding>"
    user, sep, _ = decoded.partition(":")
    return user if sep else "<problem-decoding>"


class _Side:
    """The parse state of one direction."""

    __slots__ = ("buf", "left", "mode", "row", "size", "start_ts")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.mode = HEAD
        self.left = 0
        self.size = 0
        self.row: dict[str, Any] | None = None
        self.start_ts = 0


class HttpSession:
    """The HTTP requests and responses of one TCP flow."""

    def __init__(self, base: dict[str, Any], out: Collector) -> None:
        self.base = base
        self.out = out
        self.sides = (_Side(), _Side())  # requests, responses
        self.waiting: deque[dict[str, Any]] = deque()
        self.depth = 0
        self.done = False

    def gap(self, from_orig: bool, missing: int) -> None:
        """`missing` bytes of one direction were not captured: a body of known length or one
        that runs to the end of the connection absorbs them, headers cannot."""
        side = self.sides[0 if from_orig else 1]
        if side.mode == CLOSE:
            side.size += missing
        elif side.mode in (BODY, CHUNK_DATA) and missing <= side.left:
            side.size += missing
            side.left -= missing
            if not side.left:
                if side.mode == BODY:
                    self._body_done(from_orig, side)
                else:
                    side.mode = CHUNK_SIZE
        else:
            side.mode = LOST

    def deliver(self, from_orig: bool, data: bytes, ts_us: int) -> None:
        """Bytes of one direction's stream, in order."""
        side = self.sides[0 if from_orig else 1]
        while data and side.mode != LOST:
            mode = side.mode
            if mode == HEAD:
                data = self._head_bytes(from_orig, side, data, ts_us)
            elif mode in (BODY, CHUNK_DATA):
                n = min(side.left, len(data))
                side.left -= n
                side.size += n
                data = data[n:]
                if not side.left:
                    if mode == BODY:
                        self._body_done(from_orig, side)
                    else:
                        side.mode = CHUNK_SIZE
            elif mode == CLOSE:
                side.size += len(data)
                data = b""
            else:
                data = self._chunk_line(from_orig, side, data)

    def _head_bytes(self, from_orig: bool, side: _Side, data: bytes, ts_us: int) -> bytes:
        if not side.buf:
            data = data.lstrip(b"\r\n")
            if not data:
                return b""
            side.start_ts = ts_us
        before = len(side.buf)
        side.buf += data
        end = side.buf.find(b"\r\n\r\n", max(0, before - 3))
        skip = 4
        if end < 0:
            end, skip = side.buf.find(b"\n\n", max(0, before - 1)), 2
        if end < 0:
            if len(side.buf) > MAX_HEAD:
                side.mode = LOST
            return b""
        head = bytes(side.buf[:end])
        rest = data[len(data) - (len(side.buf) - end - skip) :]
        side.buf.clear()
        lines = [line.rstrip(b"\r") for line in head.split(b"\n")]
        if from_orig:
            self._request(side, lines)
        else:
            self._response(side, lines)
        return rest

    def _chunk_line(self, from_orig: bool, side: _Side, data: bytes) -> bytes:
        end = data.find(b"\n")
        if end < 0:
            side.buf += data
            if len(side.buf) > MAX_HEAD:
                side.mode = LOST
            return b""
        line = bytes(side.buf + data[:end]).strip()
        side.buf.clear()
        data = data[end + 1 :]
        if side.mode == TRAILER:
            if not line:
                self._body_done(from_orig, side)
            return data
        if not line:  # the CRLF that ends a chunk's data
            return data
        try:
            size = int(line.split(b";")[0], 16)
        except ValueError:
            side.mode = LOST
            return b""
        side.mode, side.left = (CHUNK_DATA, size) if size else (TRAILER, 0)
        return data

    def _body_start(self, side: _Side, fields: dict[str, str], has_body: bool) -> None:
        side.size = 0
        side.mode = HEAD
        if not has_body:
            return
        if "chunked" in fields.get("TRANSFER-ENCODING", "").lower():
            side.mode = CHUNK_SIZE
            return
        length = fields.get("CONTENT-LENGTH", "")
        if length.isdigit():
            side.left = int(length)
            side.mode = BODY if side.left else HEAD
        elif side is self.sides[1]:
            side.mode = CLOSE  # a response without length ends with the connection

    def _request(self, side: _Side, lines: list[bytes]) -> None:
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            side.mode = LOST
            return
        fields = _headers(lines[1:])
        self.depth += 1
        row: dict[str, Any] = {
            **self.base,
            "ts": side.start_ts,
            "trans_depth": self.depth,
            "method": _text(parts[0]),
            "uri": _text(parts[1]),
            "version": _text(parts[2][5:]),
            "host": _host(fields["HOST"]) if "HOST" in fields else None,
            "user_agent": fields.get("USER-AGENT"),
            "referrer": fields.get("REFERER"),
            "origin": fields.get("ORIGIN"),
            "username": _username(fields.get("AUTHORIZATION", "")),
            "proxied": [f"{n} -> {v}" for n, v in fields.items() if n in _PROXY_HEADERS] or None,
            "request_body_len": 0,
            "response_body_len": 0,
        }
        side.row = row
        self.waiting.append(row)
        self._body_start(side, fields, True)
        if side.mode == HEAD:
            self._body_done(True, side)

    def _response(self, side: _Side, lines: list[bytes]) -> None:
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            side.mode = LOST
            return
        code = int(parts[1])
        if 100 <= code < 200 and code != 101:
            return  # an interim response; the final one follows
        fields = _headers(lines[1:])
        if self.waiting:
            row = self.waiting.popleft()
        else:
            self.depth += 1
            row = {**self.base, "ts": side.start_ts, "trans_depth": self.depth,
                   "request_body_len": 0, "response_body_len": 0}  # fmt: skip
        row.update(status_code=code, status_msg=_text(parts[2]) if len(parts) > 2 else "")
        row["version"] = _text(parts[0][5:])
        side.row = row
        method = row.get("method")
        if code == 101 or (method == "CONNECT" and 200 <= code < 300):
            self.out.rows["http"].append(row)
            side.row = None
            self.sides[0].mode = side.mode = LOST  # the connection now carries something else
            self.done = True
            return
        self._body_start(side, fields, method != "HEAD" and code not in (204, 304))
        if side.mode == HEAD:
            self._body_done(False, side)

    def _body_done(self, from_orig: bool, side: _Side) -> None:
        row = side.row
        side.mode = HEAD
        side.row = None
        if row is None:
            return
        if from_orig:
            row["request_body_len"] = side.size
        else:
            row["response_body_len"] = side.size
            self.out.rows["http"].append(row)

    def finish(self) -> None:
        """Write the requests still open: no response, or a body that ran to the end."""
        response = self.sides[1]
        if response.row is not None:
            response.row["response_body_len"] = response.size
            self.out.rows["http"].append(response.row)
        request = self.sides[0]
        if request.row is not None:
            request.row["request_body_len"] = request.size
        self.out.rows["http"].extend(self.waiting)
        self.waiting.clear()
