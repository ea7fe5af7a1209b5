"""Commands inside URIs: web shells on internal servers and C2 tasking from internal hosts
(docs/detection.md#uri-command).

The engine keeps the few requests whose URI holds a command keyword, a command parameter
(`cmd=`, `exec=`) starting with a command, a run of percent-escaped ASCII, or the hex or base64
form of a command keyword (`command_text.prefilter_pattern`). Python then decodes each
candidate's path and parameters (percent, base64 in both alphabets, hex, UTF-16LE as PowerShell
`-enc` uses) and matches the decoded text against the command vocabulary; the decoded command
is the evidence. One finding per (internal host, remote side, script path).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ibis.expr.types as ir

from homecall.detectors import command_text, web
from homecall.detectors.base import Detector
from homecall.detectors.command_text import COMPLETE, SEARCH_PARAMETERS, Match
from homecall.detectors.common import prevalence_factor, scaled_log, utc, with_uids
from homecall.findings import MAX_UIDS, Finding, rank
from homecall.store.tables import Tables

__all__ = ["DETECTOR", "UriCommandConfig", "candidates", "command_score", "run"]

log = logging.getLogger(__name__)

# Server-side script types a web shell is written in (and CGI directories).
SCRIPT_SUFFIXES = (
    ".php", ".php3", ".php5", ".phtml", ".asp", ".aspx", ".ashx", ".asmx", ".jsp", ".jspx",
    ".cfm", ".cgi", ".pl", ".py", ".sh", ".do", ".action",
)  # fmt: skip
_EVIDENCE_CHARS = 200  # decoded commands are cut to this length in the evidence
_SUMMARY_CHARS = 60  # ...and to this in the summary


@dataclass(frozen=True, slots=True, kw_only=True)
class UriCommandConfig:
    """Settings under [detectors.uri-command] in homecall.toml."""

    max_score: float = 0.95  # an operator working a web shell is as sure as a detection gets
    min_score: float = 0.15  # below: a lone keyword once, or a look-alike in a search box
    encoded_bonus: float = 0.15  # a base64/hex blob that decodes to a command is deliberate
    answered_weight: float = 0.35  # share of the score that depends on 2xx answers
    repetition_weight: float = 0.3  # share that depends on several distinct commands
    distinct_full: int = 5  # this many distinct commands through one path: an operator at work
    not_script_factor: float = 0.85  # outbound, or inbound to a path that is no server script
    search_damping: float = 0.7  # found in a search parameter (q=, query=): someone's question
    prose_damping: float = 0.6  # a sentence about a command (words, no shell syntax)
    admin_damping: float = 0.5  # consoles that run commands by design, used from inside
    admin_paths: tuple[str, ...] = (  # lower-case path parts of such consoles
        "/shell/index.cgi",  # Webmin's shell module
        "/jenkins/script",  # Jenkins script console
        "/scripttext",  # Jenkins script console API
    )
    shared_ratio: float = 0.1  # a (remote side, path) 10 % of the fleet shows is background
    shared_damping: float = 0.9  # ...and its score is cut by up to 90 %
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this
    max_commands: int = 5  # decoded commands kept in the evidence


def command_score(
    strength: float, answered: float, distinct: int, *, script: bool, cfg: UriCommandConfig
) -> float:
    """max_score x strength x (base + answered x a + repetition x r) x script factor, before
    context: strength 0..1 of the best command, `answered` the share of 2xx replies (0.5 when
    unknown), `distinct` the distinct commands sent through the path."""
    repetition = scaled_log(distinct - 1, cfg.distinct_full - 1)
    base = 1.0 - cfg.answered_weight - cfg.repetition_weight
    weight = base + cfg.answered_weight * answered + cfg.repetition_weight * repetition
    return cfg.max_score * strength * weight * (1.0 if script else cfg.not_script_factor)


def candidates(tables: Tables) -> ir.Table:
    """Requests (internal clients', and outsiders' to internal servers) whose URI the cheap
    prefilter keeps; backend-neutral."""
    requests = web.requests(tables, inbound=True)
    kept = requests.filter(requests.uri.fill_null("").re_search(command_text.prefilter_pattern()))
    return kept.select(
        "ts", "uid", "src", "dst", "direction", "host", "port", "method", "uri", "path",
        "query", "status_code",
    )  # fmt: skip


# The matched requests of one (direction, src, dst, path): (row, match, strength).
_Series = list[tuple[dict[str, Any], Match, float]]


def _strength(match: Match, cfg: UriCommandConfig) -> tuple[float, list[str]]:
    """The match's strength after the encoding bonus and the look-alike damping, and why."""
    strength = match.strength
    if match.text.encoding not in ("plain", "percent"):
        strength = min(1.0, strength + cfg.encoded_bonus)
    reasons = []
    if match.text.where in SEARCH_PARAMETERS and match.text.encoding in ("plain", "percent"):
        strength *= 1.0 - cfg.search_damping
        reasons.append(f"found in the search parameter {match.text.where}=")
    if command_text.is_prose(match.text.text):
        strength *= 1.0 - cfg.prose_damping
        reasons.append("reads as a sentence about a command")
    return strength, reasons


def run(tables: Tables, cfg: UriCommandConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    series: dict[tuple[str, str, str, str], _Series] = {}
    seen = 0
    for batch in tables.batches(candidates(tables)):
        for row in batch.to_pylist():
            seen += 1
            path = row["path"] or "/"
            match = command_text.best_match(command_text.decoded_texts(path, row["query"]))
            if match is None:
                continue
            strength, _ = _strength(match, cfg)
            if match.text.where == "path":
                path = command_text.command_path(path)
            inbound = row["direction"] == "inbound"
            dst = str(row["dst"]) if inbound else str(row["host"] or row["dst"])
            key = (str(row["direction"]), str(row["src"]), dst, path)
            series.setdefault(key, []).append((row, match, strength))
    log.info("uri-command: %d candidate requests, %d series with commands", seen, len(series))
    hosts: dict[tuple[str, str], set[str]] = {}
    for _, src, dst, path in series:
        hosts.setdefault((dst, path), set()).add(src)
    fleet = tables.fleet_size
    found = rank(
        f
        for key, s in series.items()
        if (f := _finding(key, s, len(hosts[(key[2], key[3])]), fleet, cfg)) is not None
    )
    yield from found


def _finding(
    key: tuple[str, str, str, str], series: _Series, hosts: int, fleet: int, cfg: UriCommandConfig
) -> Finding | None:
    direction, src, dst, path = key
    rows = sorted(series, key=lambda r: (r[0]["ts"], r[0]["uid"] or "", r[0]["uri"] or ""))
    best_row, best, strength = max(rows, key=lambda r: r[2])  # first of the strongest
    _, reasons = _strength(best, cfg)
    commands: list[str] = []
    for _, match, s in sorted(rows, key=lambda r: -r[2]):
        text = _clean(match.text.text)
        if text not in commands and (s >= COMPLETE or not commands):
            commands.append(text)
    statuses = [r[0]["status_code"] for r in rows if r[0]["status_code"] is not None]
    answered = sum(1 for c in statuses if 200 <= c < 300) / len(statuses) if statuses else 0.5
    inbound = direction == "inbound"
    script = inbound and _is_script(path)
    score = command_score(strength, answered, len(commands), script=script, cfg=cfg)
    lowered = path.lower()
    context = 1.0
    if not inbound and any(part in lowered for part in cfg.admin_paths):
        context *= 1.0 - cfg.admin_damping
        reasons.append("a console that runs commands by design")
    shared = prevalence_factor(
        hosts, fleet, ratio=cfg.shared_ratio, damping=cfg.shared_damping, min_fleet=cfg.min_fleet
    )
    if shared < 1.0:
        reasons.append(f"{hosts} of {fleet} internal hosts show the same requests")
    if score * context * shared < cfg.min_score:
        return None
    example = commands[0][:_SUMMARY_CHARS]
    how = best.text.encoding
    shown = f"'{example}'" + ("" if how in ("plain", "percent") else f" (decoded from {how})")
    n, k = len(rows), len(commands)
    if inbound:
        working = k > 1 and bool(statuses) and answered >= 0.5
        what = "an operator working a web shell" if working else "command injection or a web shell"
        summary = (
            f"{src} is an internal web server that got {n} requests from {dst} to {path} "
            f"carrying commands ({k} distinct, e.g. {shown}): {what}"
        )
    else:
        summary = (
            f"{src} sent {n} requests to {dst} ({path}) carrying commands in the URI "
            f"({k} distinct, e.g. {shown}): C2 tasking or a remote web shell"
        )
    if reasons:
        summary += "; " + "; ".join(reasons) + " (score lowered)"
    methods = sorted({str(r[0]["method"]) for r in rows if r[0]["method"]})
    evidence: dict[str, Any] = {
        "direction": direction,
        "path": path[:_EVIDENCE_CHARS],
        "requests": n,
        "distinct_commands": k,
        "commands": commands[: cfg.max_commands],
        "pattern": best.pattern,
        "command_strength": round(strength, 3),
        "encodings": sorted({m.text.encoding for _, m, _ in rows}),
        "parameters": sorted({m.text.where for _, m, _ in rows}),
        "methods": methods,
        "answered_ratio": round(answered, 3) if statuses else None,
        "status_codes": sorted(set(statuses))[:5],
        "is_server_script": script,
        "example_uri": _clean(str(best_row["uri"] or ""))[:300],
        "dst_hosts": hosts,
        "fleet_hosts": fleet,
    }
    if inbound:
        evidence["server_host"] = best_row["host"]
    if context * shared < 1.0:
        evidence["score_before_context"] = round(score, 4)
        evidence["context"] = "; ".join(reasons)
    uids = [r[0]["uid"] for r in rows if r[0]["uid"]][:MAX_UIDS]
    finding = Finding(
        detector="uri-command",
        src=src,
        dst=dst,
        dst_port=None if inbound or best_row["port"] is None else int(best_row["port"]),
        score=score * context * shared,
        first_seen=utc(rows[0][0]["ts"]),
        last_seen=max(utc(r[0]["ts"]) for r in rows),
        summary=summary + ".",
        evidence=evidence,
    )
    return with_uids(finding, uids)


def _is_script(path: str) -> bool:
    """A server-side script or CGI path (the part before `{command}`)."""
    prefix = path.split("{command}", 1)[0].lower().rstrip("/")
    return prefix.endswith(SCRIPT_SUFFIXES) or "/cgi-bin" in prefix


def _clean(text: str) -> str:
    """Hostile decoded text made safe to show: control characters out, whitespace folded."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


DETECTOR = Detector(
    name="uri-command",
    requires=("http",),
    config=UriCommandConfig,
    run=run,
    description="shell and PowerShell commands in URIs: web shells and C2 tasking",
)
