"""Mail leaving the network: a spam bot on a workstation (truth kind mail-from-endpoint) and the
benign senders, the company's mail relay (to the world, from it, and from internal servers) and a
user submitting mail to Gmail on port 587.

The bot sends in campaigns: plain SMTP to the MX of each recipient domain (its own MX lookups
through the internal resolver), a forged sender per message and a few harvested recipients at
that domain. Big providers throttle and, once the company's address is on Spamhaus's lists (two
hours into the spam), refuse it; small domains greylist. The relay uses STARTTLS where the
other side offers it, so Zeek sees most of its envelopes only as `tls` T.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import (
    LINUX_SERVERS,
    MAIL_GATEWAY,
    MONITORING_SERVER,
    draw_public_ips,
    int_to_ip,
)
from homecall.simulator.certs import LETS_ENCRYPT
from homecall.simulator.dns import named_lookups
from homecall.simulator.firewall_log import PUBLIC_ADDRESS
from homecall.simulator.flows import Flows, concat, constant, strings, tcp_conns
from homecall.simulator.hosts import is_on_at
from homecall.simulator.mail_parts import (
    COMPANY_DOMAIN,
    PROVIDERS,
    RELAY_NAME,
    STARTTLS_REPLY,
    MailDomains,
    addresses,
    mail_domains,
    mx_lookups,
    provider_domains,
    smtp_rows,
    starttls_rows,
)
from homecall.simulator.netrows import REJ, S0, SF
from homecall.simulator.network_c2 import NetDay, NetRun, benign_entry, c2_entry, join_days
from homecall.simulator.web_runs import WebContext

__all__ = ["plan_relay", "plan_spam", "plan_submission"]

DAY_US = 86_400_000_000
SPAM_PER_MINUTE = 2.0  # sessions a minute during a campaign
LISTED_AFTER_US = 2 * 3_600_000_000  # the public address is on Spamhaus's lists by then
_SPAMHAUS = (
    f"554 5.7.1 Service unavailable; Client host [{int_to_ip(PUBLIC_ADDRESS)}] blocked using "
    "zen.spamhaus.org"
)
_GREYLISTED = "450 4.2.0 Recipient address rejected: Greylisted, please try again later"
_THROTTLED = "421 4.7.0 Too many connections from your host, try again later"
_QUEUED = "250 2.0.0 Ok: queued"
_SUBJECTS = (
    "Your parcel could not be delivered", "Invoice overdue - action required",
    "Re: your order", "Limited offer: 80% off today", "Verify your account now",
    "You have (1) new voice message", "Payment confirmation", "Congratulations, you won",
)  # fmt: skip
_MAILERS = ("Microsoft Outlook Express 6.00.2900.5512", "Microsoft Office Outlook 12.0")
_RELAY_OUT_PER_USER = 2.5  # messages a user in the office sends outside a day
_RELAY_IN_PER_USER = 3.0  # messages from outside per user a day
# Where mail from outside comes from: (HELO suffix, sender blocks)
_INBOUND = (
    ("outbound.protection.outlook.com", ("40.107.0.0/16", "52.100.0.0/14")),
    ("google.com", ("209.85.128.0/17",)),
    ("smtp-out.amazonses.com", ("54.240.0.0/18",)),
    ("sendgrid.net", ("167.89.0.0/17",)),
)
_GMAIL_SUBMISSION = "smtp.gmail.com"


def plan_spam(rng: np.random.Generator, ctx: WebContext, host: int) -> NetRun:
    """A spam bot on `host`: two or three campaigns a day of plain SMTP to recipients' MX."""
    domains = mail_domains(rng, small=1_500, taken=ctx.taken, used_ips=ctx.used_ips)
    src = ctx.host_ip(host)
    start_s = ctx.start_us / 1e6

    def draw(g: np.random.Generator, day_start_us: int) -> NetDay:
        windows = 2 + int(g.integers(2))
        begin = g.uniform(6 * 3_600, 20 * 3_600, size=windows)
        length = g.uniform(1.5 * 3_600, 3 * 3_600, size=windows)
        counts = g.poisson(SPAM_PER_MINUTE * length / 60)
        t_s = np.repeat(begin, counts) + g.random(int(counts.sum())) * np.repeat(length, counts)
        ts = np.sort(day_start_us + (np.minimum(t_s, 86_399.9) * 1e6).astype(np.int64))
        ts = ts[is_on_at(ctx.fleet, ctx.presence, host, ts / 1e6, start_s)]
        return _spam_day(g, ts, src, domains, day_start_us)

    entry = c2_entry(
        "mail-from-endpoint", src, None, 25, proto="tcp", service="smtp", family="spam-bot"
    )
    return NetRun(entry, draw)


def _spam_day(
    g: np.random.Generator,
    ts: npt.NDArray[np.int64],
    src: int,
    domains: MailDomains,
    day_start_us: int,
) -> NetDay:
    n = ts.size
    big, weight = provider_domains(domains)
    small = np.setdiff1d(np.arange(len(domains)), big)
    is_big = g.random(n) < 0.45
    domain = np.where(
        is_big, big[g.choice(big.size, size=n, p=weight)], small[g.integers(0, small.size, size=n)]
    )
    listed = ts >= (ts[0] + LISTED_AFTER_US if n else 0)
    u, v = g.random(n), g.random(n)
    state = np.where(~is_big & (u < 0.12), S0, np.where(~is_big & (u < 0.16), REJ, SF))
    state = np.where(is_big & (u < 0.01), S0, state)
    throttled = v < 0.05
    refused = ~throttled & listed & (v < np.where(is_big, 0.75, 0.3))
    grey = ~throttled & ~refused & ~is_big & (v < 0.25)
    delivered = (state == SF) & ~throttled & ~refused & ~grey
    rcpts = 1 + np.minimum(g.poisson(1.2, size=n), 5)
    rcptto = _recipients(g, domains, domain, rcpts, roles=0.3)
    forged = addresses(g, [domains.names[d] for d in small[g.integers(0, small.size, size=n)]], 0)
    message = g.lognormal(np.log(6_000), 0.6, size=n).astype(np.int64)
    conn = tcp_conns(
        g, ts_us=ts, orig_h=np.full(n, src, np.uint32), resp_h=domains.ips[domain], resp_p=25,
        service="smtp", orig_bytes=np.where(delivered, message, 0) + 180 + 40 * rcpts,
        resp_bytes=g.integers(420, 900, size=n),
        duration_us=(g.lognormal(np.log(1.2), 0.5, n) * 1e6).astype(np.int64) + message * 20,
        state=state,
    )  # fmt: skip
    rows = np.flatnonzero((state == SF) & ~throttled)
    accepted = _accepted_replies(domains, domain[rows])
    reply = np.where(refused[rows], _SPAMHAUS, np.where(grey[rows], _GREYLISTED, accepted))
    sender = [forged[r] for r in rows]
    helo = strings(["mail." + f.split("@")[1] for f in sender])  # the forged sender's domain
    smtp = smtp_rows(
        conn=rows, ts_us=ts[rows] + 300_000, helo=helo,
        mailfrom=strings(sender), rcptto=rcptto.take(pa.array(rows)),
        last_reply=strings(reply.tolist()),
        path=_path(domains.ips[domain[rows]], np.full(rows.size, src, np.uint32)),
        tls=np.zeros(rows.size, dtype=np.bool_), delivered=delivered[rows],
        subject=strings([_SUBJECTS[i] for i in g.integers(0, len(_SUBJECTS), size=rows.size)]),
        user_agent=strings([_MAILERS[i] for i in g.integers(0, len(_MAILERS), size=rows.size)]),
    )  # fmt: skip
    lookups = mx_lookups(g, src, ts, domain, domains, day_start_us)
    return NetDay(concat([Flows(conn=conn), lookups]), smtp)


def _recipients(
    g: np.random.Generator,
    domains: MailDomains,
    domain: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    roles: float,
) -> pa.Array:
    """`counts` mailboxes at each message's domain, as Zeek's rcptto set ("a,b")."""
    names = [domains.names[d] for d in np.repeat(domain, counts).tolist()]
    boxes = addresses(g, names, roles=roles)
    ends = np.cumsum(counts).tolist()
    return strings([",".join(boxes[e - c : e]) for e, c in zip(ends, counts.tolist(), strict=True)])


def _accepted_replies(domains: MailDomains, domain: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """How each domain's server accepts a message: the provider's words, else Postfix's."""
    words = {d: p.accepted for p in PROVIDERS for d in p.domains}
    return np.array([words.get(domains.names[d], _QUEUED) for d in domain], dtype=object)


def _path(server: npt.NDArray[np.uint32], client: npt.NDArray[np.uint32]) -> pa.Array:
    """Zeek's `path`: the server, then the client that handed the message over."""
    return pc.binary_join_element_wise(_texts(server), _texts(client), ",")


def _texts(ips: npt.NDArray[np.uint32]) -> pa.Array:
    return strings([int_to_ip(int(ip)) for ip in ips])


def plan_relay(rng: np.random.Generator, ctx: WebContext) -> NetRun:
    """The relay: employees' mail out to partners and mailbox providers (a message each, mostly
    over STARTTLS), mail in from the Internet, and notifications from the build and monitoring
    servers."""
    domains = mail_domains(rng, small=150, taken=ctx.taken, used_ips=ctx.used_ips, m365_ratio=0.5)
    staff = addresses(rng, [COMPANY_DOMAIN] * ctx.fleet.size, roles=0.0)
    senders = [
        (suffix, np.array(draw_public_ips(rng, blocks, 12, ctx.used_ips), dtype=np.uint32))
        for suffix, blocks in _INBOUND
    ]

    def draw(g: np.random.Generator, day_start_us: int) -> NetDay:
        day = (day_start_us - ctx.start_us) // DAY_US
        who, out_ts = _office_times(g, ctx, day, day_start_us, _RELAY_OUT_PER_USER)
        out_ts += g.integers(2_000_000, 60_000_000, size=out_ts.size)  # the relay's queue
        _, in_ts = _office_times(g, ctx, day, day_start_us, _RELAY_IN_PER_USER)
        return join_days(
            [
                _relay_out(
                    g,
                    ctx,
                    domains,
                    staff,
                    who,
                    np.minimum(out_ts, day_start_us + DAY_US - 1),
                    day_start_us,
                ),
                _relay_in(g, domains, staff, senders, in_ts),
                _notifications(g, ctx, day, day_start_us),
            ]
        )

    entry = benign_entry(
        "mail-relay", "mail-from-endpoint", dst=None, port=25, proto="tcp", src=MAIL_GATEWAY,
        detail="the company's mail relay: out to many mail servers, in from the Internet",
    )  # fmt: skip
    return NetRun(entry, draw)


def _office_times(
    g: np.random.Generator, ctx: WebContext, day: int, day_start_us: int, per_user: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Poisson(per_user) moments for each user in the office that day: (host, time), sorted."""
    arrive, leave = ctx.presence.arrive_s[day], ctx.presence.leave_s[day]
    present = np.flatnonzero(~np.isnan(arrive))
    who = np.repeat(present, g.poisson(per_user, size=present.size))
    t_s = arrive[who] + g.random(who.size) * (leave[who] - arrive[who])
    order = np.argsort(t_s)
    return who[order], day_start_us + (t_s[order] * 1e6).astype(np.int64)


def _relay_out(
    g: np.random.Generator,
    ctx: WebContext,
    domains: MailDomains,
    staff: list[str],
    who: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    day_start_us: int,
) -> NetDay:
    n = ts.size
    big, weight = provider_domains(domains)
    partners = np.setdiff1d(np.arange(len(domains)), big)
    to_big = g.random(n) < 0.35
    domain = np.where(
        to_big,
        big[g.choice(big.size, size=n, p=weight)],
        partners[g.integers(0, partners.size, size=n)],
    )
    tls = g.random(n) < 0.92
    message = g.lognormal(np.log(40_000), 1.1, size=n).astype(np.int64)
    conn = tcp_conns(
        g, ts_us=ts, orig_h=np.full(n, MAIL_GATEWAY, np.uint32), resp_h=domains.ips[domain],
        resp_p=25, service=pc.if_else(pa.array(tls), "smtp,ssl", "smtp"),
        orig_bytes=message + 600, resp_bytes=np.where(tls, 4_800, 700) + g.integers(0, 400, n),
        duration_us=(g.lognormal(np.log(1.5), 0.5, n) * 1e6).astype(np.int64) + message * 8,
        state=np.full(n, SF, dtype=np.int64),
    )  # fmt: skip
    rcpts = _recipients(g, domains, domain, 1 + g.poisson(0.5, size=n), roles=0.1)
    sender = strings([staff[h] for h in who])
    plain = pa.array(~tls)
    none = pa.nulls(n, pa.string())
    smtp = smtp_rows(
        conn=np.arange(n, dtype=np.int64), ts_us=ts + 200_000, helo=constant(RELAY_NAME, n),
        mailfrom=pc.if_else(plain, sender, none),
        rcptto=pc.if_else(plain, rcpts, none),
        last_reply=pc.if_else(plain, _QUEUED, STARTTLS_REPLY),
        path=_path(domains.ips[domain], np.full(n, MAIL_GATEWAY, np.uint32)), tls=tls,
        delivered=~tls, subject=constant("Re: quotation", n), user_agent="Microsoft Outlook 16.0",
    )  # fmt: skip
    secure = np.flatnonzero(tls)
    ssl = starttls_rows(
        g, conn=secure, ts_us=ts[secure], duration_us=conn["duration"][secure],
        server_name=strings([domains.mx[d] for d in domain[secure]]),
        server=domains.ips[domain[secure]], issuer=[domains.issuer[d] for d in domain[secure]],
    )  # fmt: skip
    lookups = mx_lookups(g, MAIL_GATEWAY, ts, domain, domains, day_start_us)
    return NetDay(concat([Flows(conn=conn, ssl=ssl), lookups]), smtp)


def _relay_in(
    g: np.random.Generator,
    domains: MailDomains,
    staff: list[str],
    senders: list[tuple[str, npt.NDArray[np.uint32]]],
    ts: npt.NDArray[np.int64],
) -> NetDay:
    n = ts.size
    kind = g.integers(0, len(senders) + 1, size=n)  # the last: a partner's own server
    partners = np.setdiff1d(np.arange(len(domains)), provider_domains(domains)[0])
    partner = partners[g.integers(0, partners.size, size=n)]
    pick = g.integers(0, 12, size=n)
    src = np.array(
        [
            senders[k][1][j] if k < len(senders) else domains.ips[d]
            for k, j, d in zip(kind, pick, partner, strict=True)
        ],
        dtype=np.uint32,
    )
    helo = strings(
        [
            f"mail-{j}.{senders[k][0]}" if k < len(senders) else domains.mx[d]
            for k, j, d in zip(kind, pick, partner, strict=True)
        ]
    )
    tls = g.random(n) < 0.85
    message = g.lognormal(np.log(30_000), 1.2, size=n).astype(np.int64)
    conn = tcp_conns(
        g, ts_us=ts, orig_h=src, resp_h=np.full(n, MAIL_GATEWAY, np.uint32), resp_p=25,
        service=pc.if_else(pa.array(tls), "smtp,ssl", "smtp"), orig_bytes=message + 500,
        resp_bytes=np.where(tls, 4_600, 650) + g.integers(0, 300, n),
        duration_us=(g.lognormal(np.log(1.0), 0.5, n) * 1e6).astype(np.int64) + message * 8,
        state=np.full(n, SF, dtype=np.int64),
    )  # fmt: skip
    plain = pa.array(~tls)
    none = pa.nulls(n, pa.string())
    sender = strings(addresses(g, [domains.names[d] for d in partner], roles=0.4))
    rcpt = strings([staff[i] for i in g.integers(0, len(staff), size=n)])
    smtp = smtp_rows(
        conn=np.arange(n, dtype=np.int64), ts_us=ts + 150_000, helo=helo,
        mailfrom=pc.if_else(plain, sender, none), rcptto=pc.if_else(plain, rcpt, none),
        last_reply=pc.if_else(plain, _QUEUED, STARTTLS_REPLY),
        path=_path(np.full(n, MAIL_GATEWAY, np.uint32), src), tls=tls, delivered=~tls,
        subject=constant("Meeting notes", n),
    )  # fmt: skip
    secure = np.flatnonzero(tls)
    ssl = starttls_rows(
        g, conn=secure, ts_us=ts[secure], duration_us=conn["duration"][secure],
        server_name=constant(RELAY_NAME, secure.size),
        server=np.full(secure.size, MAIL_GATEWAY, np.uint32), issuer=[LETS_ENCRYPT] * secure.size,
    )  # fmt: skip
    return NetDay(Flows(conn=conn, ssl=ssl), smtp)


def _notifications(g: np.random.Generator, ctx: WebContext, day: int, day_start_us: int) -> NetDay:
    """Build results from the CI server in working hours and alerts from the monitoring server
    at any time, handed to the relay in plain SMTP."""
    _, build_ts = _office_times(g, ctx, day, day_start_us, 15.0 / ctx.fleet.size)
    alert_ts = np.sort(day_start_us + (g.random(g.poisson(10.0)) * DAY_US).astype(np.int64))
    ts = np.concatenate([build_ts, alert_ts])
    src = np.concatenate(
        [np.full(build_ts.size, LINUX_SERVERS[0]), np.full(alert_ts.size, MONITORING_SERVER)]
    ).astype(np.uint32)
    n = ts.size
    build = pa.array(np.arange(n) < build_ts.size)
    conn = tcp_conns(
        g, ts_us=ts, orig_h=src, resp_h=np.full(n, MAIL_GATEWAY, np.uint32), resp_p=25,
        service="smtp", orig_bytes=g.integers(1_500, 9_000, size=n),
        resp_bytes=g.integers(500, 700, size=n), duration_us=g.integers(20_000, 200_000, size=n),
        state=np.full(n, SF, dtype=np.int64),
    )  # fmt: skip
    smtp = smtp_rows(
        conn=np.arange(n, dtype=np.int64), ts_us=ts + 10_000,
        helo=pc.if_else(build, "ci.acme.internal", "monitor.acme.internal"),
        mailfrom=pc.if_else(build, f"jenkins@{COMPANY_DOMAIN}", f"nagios@{COMPANY_DOMAIN}"),
        rcptto=pc.if_else(build, f"dev-team@{COMPANY_DOMAIN}", f"it-ops@{COMPANY_DOMAIN}"),
        last_reply=constant(_QUEUED, n), path=_path(np.full(n, MAIL_GATEWAY, np.uint32), src),
        tls=np.zeros(n, dtype=np.bool_), delivered=np.ones(n, dtype=np.bool_),
        subject=pc.if_else(build, "Build finished: SUCCESS", "PROBLEM: disk usage"),
    )  # fmt: skip
    return NetDay(Flows(conn=conn), smtp)


def plan_submission(rng: np.random.Generator, ctx: WebContext, host: int) -> NetRun:
    """A user on `host` sending a few messages a day through Gmail's submission port (587,
    STARTTLS, then authentication): one sender, few recipients, none of it visible."""
    google = next(p for p in PROVIDERS if p.name == "google")
    servers = np.array(draw_public_ips(rng, google.blocks, 2, ctx.used_ips), dtype=np.uint32)
    src = ctx.host_ip(host)
    answer = ",".join(int_to_ip(int(ip)) for ip in servers)

    def draw(g: np.random.Generator, day_start_us: int) -> NetDay:
        day = (day_start_us - ctx.start_us) // DAY_US
        arrive, leave = ctx.presence.arrive_s[day, host], ctx.presence.leave_s[day, host]
        if np.isnan(arrive):
            return NetDay(Flows())
        n = int(g.poisson(4.0))
        ts = np.sort(day_start_us + (g.uniform(arrive, leave, size=n) * 1e6).astype(np.int64))
        dst = servers[g.integers(0, 2, size=n)]
        conn = tcp_conns(
            g, ts_us=ts, orig_h=np.full(n, src, np.uint32), resp_h=dst, resp_p=587,
            service="smtp,ssl", orig_bytes=g.lognormal(np.log(25_000), 1.0, n).astype(np.int64),
            resp_bytes=g.integers(4_500, 5_500, size=n),
            duration_us=(g.lognormal(np.log(1.8), 0.4, n) * 1e6).astype(np.int64),
            state=np.full(n, SF, dtype=np.int64),
        )  # fmt: skip
        smtp = smtp_rows(
            conn=np.arange(n, dtype=np.int64), ts_us=ts + 120_000,
            helo=constant(f"[{int_to_ip(src)}]", n), mailfrom=pa.nulls(n, pa.string()),
            rcptto=pa.nulls(n, pa.string()), last_reply=constant(STARTTLS_REPLY, n),
            path=_path(dst, np.full(n, src, np.uint32)), tls=np.ones(n, dtype=np.bool_),
        )  # fmt: skip
        ssl = starttls_rows(
            g, conn=np.arange(n, dtype=np.int64), ts_us=ts, duration_us=conn["duration"],
            server_name=constant(_GMAIL_SUBMISSION, n), server=dst, issuer=[google.issuer] * n,
        )  # fmt: skip
        dns = named_lookups(
            g, np.full(n, src, np.uint32), ts, query=_GMAIL_SUBMISSION, answers=answer,
            ttl_s=300, answered_by=day_start_us,
        )  # fmt: skip
        return NetDay(concat([Flows(conn=conn, ssl=ssl), dns]), smtp)

    entry = benign_entry(
        "mail-submission", "mail-from-endpoint", dst=_GMAIL_SUBMISSION, port=587, proto="tcp",
        detail="a mail client submitting to Gmail on 587 with STARTTLS: one sender, few recipients",
    )  # fmt: skip
    return NetRun(entry, draw)
