"""Where the network runs go: which hosts carry the injected channels and the look-alikes.

Injected channels go to hosts running no other technique, desktops first (they stay on): the
direct C2 to a proxy-only host (so the gateway denies it), the IRC bots, the spam bot and their
look-alikes to hosts that reach the Internet directly, the denied applications and time client
to other proxy-only hosts. The P2P bot is an IoT device of its own;
the resolver, the scanner, the relay and the build server are the network's servers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from homecall.simulator.catalogue import Catalogue
from homecall.simulator.direct_attempts import plan_apps, plan_bypass, plan_ntp, plan_teams
from homecall.simulator.fanout import plan_heavy, plan_p2p, plan_resolver, plan_scanner
from homecall.simulator.hosts import Fleet, Presence
from homecall.simulator.irc_bots import IRC_PORT, OFF_PORT, plan_bot, plan_user
from homecall.simulator.mail import plan_relay, plan_spam, plan_submission
from homecall.simulator.network_c2 import NetRun, NetworkWorld
from homecall.simulator.truth import BenignWeb
from homecall.simulator.web_runs import WebContext
from homecall.simulator.web_world import WebWorld

__all__ = ["APP_SHARE", "DIRECT_ROLES", "plan_network"]

APP_SHARE = 0.06  # proxy-only workstations with an application that tries direct first
# Roles for hosts that reach the Internet directly, in the order hosts are handed out
DIRECT_ROLES = ("irc", "irc-off-port", "spam", "irc-tls", "cdn-heavy", "mail-submission")
Rng = Callable[[int], np.random.Generator]


def plan_network(
    rng: Rng,
    web: WebWorld | None,
    cat: Catalogue,
    fleet: Fleet,
    presence: Presence,
    *,
    start_us: int,
    days: int,
    busy: set[int],
    used_ips: set[int],
    taken: set[str],
) -> NetworkWorld | None:
    """Place every network run (None without the web world: no proxy, no gateway policy);
    `busy` are the hosts running a DNS technique or a C2 implant."""
    if web is None:
        return None
    proxied = frozenset(int(ip) for ip in web.proxied)
    ctx = WebContext(cat, fleet, presence, start_us, days, proxied, used_ips, taken, {})
    injected = {
        int(ip)
        for run in web.runs
        if not isinstance(run.truth, BenignWeb)
        for ip in np.unique(run.exchanges.src)
    }
    order = [int(h) for h in rng(0).permutation(fleet.size)]
    free = [h for h in order if h not in busy and int(fleet.ips[h]) not in injected]
    free.sort(key=lambda h: bool(fleet.is_laptop[h]))  # desktops first: they stay on
    behind = [h for h in free if int(fleet.ips[h]) in proxied]
    direct = [h for h in free if int(fleet.ips[h]) not in proxied]
    runs: list[NetRun] = []
    if behind:
        runs.append(plan_bypass(rng(1), ctx, behind[0]))
    roles = dict(zip(DIRECT_ROLES, direct, strict=False))
    planners: dict[str, Callable[[np.random.Generator, int], NetRun]] = {
        "irc": lambda g, h: plan_bot(g, ctx, h, IRC_PORT),
        "irc-off-port": lambda g, h: plan_bot(g, ctx, h, OFF_PORT),
        "spam": lambda g, h: plan_spam(g, ctx, h),
        "irc-tls": lambda g, h: plan_user(g, ctx, h),
        "cdn-heavy": lambda g, h: plan_heavy(g, ctx, h),
        "mail-submission": lambda g, h: plan_submission(g, ctx, h),
    }
    for k, role in enumerate(DIRECT_ROLES):
        if role in roles:
            runs.append(planners[role](rng(10 + k), roles[role]))
    runs.append(plan_p2p(rng(20), ctx))
    runs.append(plan_resolver(rng(21), ctx))
    runs.append(plan_scanner(rng(22), ctx))
    runs.append(plan_relay(rng(23), ctx))
    apps = behind[1 : 1 + max(1, round(APP_SHARE * len(web.proxied)))]
    runs += plan_apps(rng(24), ctx, apps)
    callers = [h for h in range(fleet.size) if int(fleet.ips[h]) in proxied and h not in behind[:1]]
    runs.append(plan_teams(rng(25), ctx, callers))
    if len(behind) > len(apps) + 1:
        runs.append(plan_ntp(rng(26), ctx, behind[len(apps) + 1]))
    return NetworkWorld.of(runs, ctx)
