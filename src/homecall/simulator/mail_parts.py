"""What the simulated mail shares: the big mailbox providers and their MX servers, pools of small
mail domains, people's addresses, and smtp.log rows (Zeek 6 fields).

A session that switches to TLS (STARTTLS) shows Zeek only its greeting: smtp.log has the HELO,
`tls` T and the reply to STARTTLS, and no envelope; ssl.log has the handshake under the same uid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import draw_public_ips, int_to_ip
from homecall.simulator.certs import LETS_ENCRYPT, chain
from homecall.simulator.dns import Queries, cache_misses, query_flows
from homecall.simulator.flows import Columns, Flows, strings
from homecall.simulator.internet import HOSTING, RARE_TLDS, RARE_WORDS
from homecall.simulator.netrows import draw_addresses
from homecall.simulator.web import tls_rows

__all__ = [
    "COMPANY_DOMAIN",
    "PROVIDERS",
    "RELAY_NAME",
    "STARTTLS_REPLY",
    "MailDomains",
    "MailProvider",
    "addresses",
    "mail_domains",
    "mx_lookups",
    "provider_domains",
    "smtp_rows",
    "starttls_rows",
]

COMPANY_DOMAIN = "acmecorp.com"
RELAY_NAME = "mail.acmecorp.com"  # the relay's HELO and its certificate's name
STARTTLS_REPLY = "220 2.0.0 Ready to start TLS"
MX_TTL_S = 3_600
FIRST = (
    "anna", "james", "maria", "peter", "laura", "david", "sophie", "michael", "emma", "thomas",
    "julia", "daniel", "sarah", "paul", "lisa", "mark", "nina", "chris", "eva", "robert",
)  # fmt: skip
LAST = (
    "smith", "mueller", "garcia", "rossi", "novak", "jones", "martin", "schmidt", "dubois",
    "kowalski", "jensen", "brown", "fischer", "lopez", "weber", "taylor", "moreau", "silva",
)  # fmt: skip
ROLES = ("info", "sales", "office", "contact", "support", "admin", "billing", "hr")


@dataclass(frozen=True, slots=True)
class MailProvider:
    """A big mailbox provider: its domains, MX names, the blocks its MX servers are in, the CA
    of their certificates and how its servers word acceptance."""

    name: str
    domains: tuple[str, ...]
    mx: tuple[str, ...]
    blocks: tuple[str, ...]
    issuer: str
    accepted: str
    share: float  # of mailboxes a spam list or a company writes to


_DIGICERT = "DigiCert Global G2 TLS RSA SHA256 2020 CA1"
_AZURE_CA = "Microsoft Azure RSA TLS Issuing CA 03"
PROVIDERS = (
    MailProvider(
        "google", ("gmail.com", "googlemail.com"),
        ("gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com"),
        ("142.250.0.0/15", "209.85.128.0/17", "64.233.160.0/19"), "WR2",
        "250 2.0.0 OK - gsmtp", 0.35,
    ),
    MailProvider(
        "microsoft", ("outlook.com", "hotmail.com", "live.com"),
        ("outlook-com.olc.protection.outlook.com", "hotmail-com.olc.protection.outlook.com"),
        ("52.101.0.0/16", "104.47.0.0/17"), _AZURE_CA, "250 2.6.0 Queued mail for delivery", 0.28,
    ),
    MailProvider(
        "yahoo", ("yahoo.com", "aol.com", "ymail.com"),
        ("mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net", "mta7.am0.yahoodns.net"),
        ("67.195.204.0/24", "98.136.96.0/20"), _DIGICERT, "250 ok dirdel", 0.15,
    ),
    MailProvider(
        "gmx", ("gmx.de", "web.de", "gmx.net"), ("mx00.emig.gmx.net", "mx01.emig.gmx.net"),
        ("212.227.15.0/24", "212.227.17.0/24"), _DIGICERT,
        "250 Requested mail action okay, completed", 0.1,
    ),
    MailProvider(
        "mailru", ("mail.ru", "bk.ru", "inbox.ru"), ("mxs.mail.ru",),
        ("94.100.180.0/22", "217.69.139.0/24"), LETS_ENCRYPT, "250 OK id=1", 0.07,
    ),
    MailProvider(
        "icloud", ("icloud.com", "me.com"), ("mx01.mail.icloud.com", "mx02.mail.icloud.com"),
        ("17.57.152.0/22", "17.42.251.0/24"), _DIGICERT, "250 2.0.0 Ok", 0.05,
    ),
)  # fmt: skip
_M365_BLOCKS = ("52.101.0.0/16", "104.47.0.0/17")  # tenants' MX: <name>.mail.protection.outlook.com


@dataclass(frozen=True, slots=True)
class MailDomains:
    """Mail domains with their MX name and MX address, as parallel arrays; index = domain."""

    names: tuple[str, ...]
    mx: tuple[str, ...]
    ips: npt.NDArray[np.uint32]
    issuer: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)


def mail_domains(
    rng: np.random.Generator,
    *,
    small: int,
    taken: set[str],
    used_ips: set[int],
    m365_ratio: float = 0.3,
) -> MailDomains:
    """Every provider domain (its MX servers drawn from its blocks), then `small` word-made
    company domains: a share hosted by Microsoft 365, the rest on their own hosting address."""
    names: list[str] = []
    mx: list[str] = []
    ips: list[int] = []
    issuer: list[str] = []
    for p in PROVIDERS:
        servers = draw_public_ips(rng, p.blocks, 2 * len(p.mx), used_ips)
        for d, domain in enumerate(p.domains):
            names.append(domain)
            mx.append(p.mx[d % len(p.mx)])
            ips.append(servers[d % len(servers)])
            issuer.append(p.issuer)
    tlds = [tld for tld, _ in RARE_TLDS]
    weights = np.array([w for _, w in RARE_TLDS]) / sum(w for _, w in RARE_TLDS)
    hosting = draw_addresses(rng, HOSTING.blocks, max(4, small // 2), used_ips)
    tenants = draw_addresses(rng, _M365_BLOCKS, 24, used_ips)
    wanted = len(names) + small
    seen = set(names)
    while len(names) < wanted:
        k = wanted - len(names)
        a, b = rng.integers(0, len(RARE_WORDS), size=(2, k))
        tld = rng.choice(len(tlds), size=k, p=weights)
        for i in np.flatnonzero(a != b)[: wanted - len(names)]:
            name = f"{RARE_WORDS[a[i]]}{RARE_WORDS[b[i]]}.{tlds[tld[i]]}"
            if name in taken or name in seen:
                continue
            taken.add(name)
            seen.add(name)
            names.append(name)
    own = len(names) - small
    tenant = rng.random(small) < m365_ratio
    pick = rng.integers(0, 1 << 30, size=small)
    for i, name in enumerate(names[own:]):
        if tenant[i]:
            mx.append(name.replace(".", "-") + ".mail.protection.outlook.com")
            ips.append(int(tenants[pick[i] % tenants.size]))
            issuer.append(_AZURE_CA)
        else:
            mx.append(("mail." if pick[i] % 5 < 3 else "mx.") + name)
            ips.append(int(hosting[pick[i] % hosting.size]))
            issuer.append(LETS_ENCRYPT)
    return MailDomains(tuple(names), tuple(mx), np.array(ips, dtype=np.uint32), tuple(issuer))


def provider_domains(domains: MailDomains) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The providers' domains among `domains` and how likely a mailbox is at each."""
    index, weight = [], []
    for p in PROVIDERS:
        for domain in p.domains:
            index.append(domains.names.index(domain))
            weight.append(p.share / len(p.domains))
    w = np.array(weight)
    return np.array(index, dtype=np.int64), w / w.sum()


def addresses(rng: np.random.Generator, domains: list[str], roles: float = 0.2) -> list[str]:
    """A mailbox at each domain: first.last, firstlast with digits, or a role address."""
    n = len(domains)
    u = rng.random(n)
    first = rng.integers(0, len(FIRST), size=n)
    last = rng.integers(0, len(LAST), size=n)
    role = rng.integers(0, len(ROLES), size=n)
    digits = rng.integers(1, 99, size=n)
    return [
        f"{ROLES[r]}@{d}" if x < roles else f"{FIRST[a]}.{LAST[b]}@{d}" if x < 0.7
        else f"{FIRST[a]}{LAST[b]}{k}@{d}"
        for d, x, a, b, r, k in zip(
            domains, u.tolist(), first.tolist(), last.tolist(), role.tolist(), digits.tolist(),
            strict=True,
        )
    ]  # fmt: skip


def smtp_rows(
    *,
    conn: npt.NDArray[np.int64],
    ts_us: npt.NDArray[np.int64],
    helo: Any,
    mailfrom: Any,
    rcptto: Any,
    last_reply: Any,
    path: Any,
    tls: npt.NDArray[np.bool_],
    delivered: npt.NDArray[np.bool_] | None = None,
    subject: Any = None,
    user_agent: Any = "-",
) -> Columns:
    """smtp.log rows (one transaction each, `conn` indexing their conn rows); the headers
    (date, from, to, subject, message id) only where the message was `delivered`."""
    n = conn.size
    shown = np.zeros(n, dtype=np.bool_) if delivered is None else delivered
    shows = pa.array(shown)
    none = pa.nulls(n, pa.string())
    stamp = pa.array(ts_us // 1_000_000, pa.timestamp("s", tz="UTC"))
    date = pc.strftime(stamp, format="%a, %d %b %Y %H:%M:%S +0000")
    ids = pc.binary_join_element_wise(
        "<", pc.cast(pa.array(ts_us * 7 + conn * 104_729), pa.string()), ".", mailfrom, ">", ""
    )
    return {
        "conn": conn,
        "ts": ts_us,
        "trans_depth": np.ones(n, dtype=np.int64),
        "helo": helo,
        "mailfrom": mailfrom,
        "rcptto": rcptto,
        "date": pc.if_else(shows, date, none),
        "from": pc.if_else(shows, mailfrom, none),
        "to": pc.if_else(shows, rcptto, none),
        "cc": "-",
        "reply_to": "-",
        "msg_id": pc.if_else(shows, ids, none),
        "in_reply_to": "-",
        "subject": pc.if_else(shows, subject if subject is not None else none, none),
        "x_originating_ip": "-",
        "first_received": "-",
        "second_received": "-",
        "last_reply": last_reply,
        "path": path,
        "user_agent": pc.if_else(shows, user_agent, none) if not isinstance(user_agent, str)
        else pc.if_else(shows, pa.scalar(user_agent), none),
        "tls": tls.astype(np.int8),
        "fuids": pc.if_else(shows, "(empty)", none),
    }  # fmt: skip


def starttls_rows(
    rng: np.random.Generator,
    *,
    conn: npt.NDArray[np.int64],
    ts_us: npt.NDArray[np.int64],
    duration_us: npt.NDArray[np.int64],
    server_name: Any,
    server: npt.NDArray[np.uint32],
    issuer: list[str],
) -> Columns:
    """ssl.log rows of STARTTLS sessions (the server's certificate names server_name)."""
    n = conn.size
    names = server_name.to_pylist()
    fps = strings([chain(name, ca) for name, ca in zip(names, issuer, strict=True)])
    return tls_rows(
        rng, conn=conn, ts_us=ts_us + 40_000, duration_us=duration_us, server_name=server_name,
        server=server.astype(np.int64), tls13=rng.random(n) < 0.6,
        resumed=np.zeros(n, dtype=np.bool_), cert_fps=fps, alpn="-",
    )  # fmt: skip


def mx_lookups(
    rng: np.random.Generator,
    host_ip: int,
    ts_us: npt.NDArray[np.int64],
    domain: npt.NDArray[np.int64],
    domains: MailDomains,
    day_start_us: int,
) -> Flows:
    """A mail sender's lookups through the internal resolver: the MX of each domain it sends
    to (again once the TTL ran out), then the address of that MX host."""
    n = ts_us.size
    fresh = cache_misses(np.zeros(n, np.int64), domain, ts_us, np.full(n, MX_TTL_S, np.int64))
    rows = np.flatnonzero(fresh)
    k = rows.size
    rtt = rng.lognormal(np.log(9_000), 0.8, 2 * k).astype(np.int64)
    sent = np.maximum(np.repeat(ts_us[rows], 2) - rtt - np.tile([60_000, 30_000], k), day_start_us)
    mx = [domains.mx[d] for d in domain[rows]]
    query = [v for d, m in zip(domain[rows], mx, strict=True) for v in (domains.names[d], m)]
    ip = [int_to_ip(int(domains.ips[d])) for d in domain[rows]]
    answers = [v for m, a in zip(mx, ip, strict=True) for v in (m, a)]
    queries = Queries(
        host_ip=np.full(2 * k, host_ip, dtype=np.uint32),
        ts_us=sent.astype(np.int64),
        query=strings(query),
        qtype=np.tile(np.array([15, 1], dtype=np.int64), k),
        rcode=np.zeros(2 * k, dtype=np.int64),
        answers=strings(answers),
        ttl_s=np.full(2 * k, MX_TTL_S, dtype=np.int64),
        rtt_us=rtt,
    )
    return query_flows(rng, queries)
