"""User agents besides the browsers: installed software and desktop apps (what a proxied host's
CONNECTs carry), Linux servers' tools, and the agents implants send."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.flows import strings
from homecall.simulator.hosts import Fleet
from homecall.simulator.internet import BROWSERS

__all__ = [
    "APP_AGENTS",
    "LINUX_CHROME",
    "MALFORMED_AGENTS",
    "SERVER_AGENTS",
    "SOFTWARE_AGENTS",
    "TOOL_AGENTS",
    "fleet_agents",
    "is_windows_chromium",
]

# Installed software's own clients, by the name they call (others use the host's browser agent).
SOFTWARE_AGENTS = {
    "fe3cr.delivery.mp.microsoft.com": "Windows-Update-Agent/10.0.10011.16384 Client-Protocol/2.50",
    "v10.events.data.microsoft.com": "MSDW",
    "browser.events.data.microsoft.com": "MSDW",
    "settings-win.data.microsoft.com": "MSDW",
    "definitionupdates.microsoft.com": "MpCommunication",
    "dl.delivery.mp.microsoft.com": "Microsoft-Delivery-Optimization/10.0",
    "wns.windows.com": "Microsoft-WNS/10.0",
    "officeclient.microsoft.com": (
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.18129; Pro)"
    ),
    "update.googleapis.com": "Google Update/1.3.36.372;winhttp;cup-ecdsa",
    "clients2.google.com": "Google Update/1.3.36.372;winhttp;cup-ecdsa",
    "client.dropbox.com": "DropboxDesktopClient/211.4.6008 (Windows; 10; PC; en_US)",
    "wss-primary.slack.com": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Slack/4.41.105 Chrome/131.0.6778.85 Electron/33.2.1 Safari/537.36 Sonic Slack_SSB/4.41.105"
    ),
}
# Desktop apps (Electron/WebView2 shells): their own agent, not the browser's.
APP_AGENTS = {
    "teams": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0 Teams/24335.208.3315.1951/49"
    ),
    "slack": SOFTWARE_AGENTS["wss-primary.slack.com"],
    "zoom": "Mozilla/5.0 (ZOOM.Win 10.0 x64) ZoomWebKit/537.36 (KHTML, like Gecko) ZoomApps/1.0",
}
# Scripting and tool agents an implant or a stager sends from a workstation.
TOOL_AGENTS = {
    "python-requests": "python-requests/2.31.0",
    "go": "Go-http-client/1.1",
    "curl": "curl/8.4.0",
    "powershell": (
        "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.19041.3570"
    ),
}
MALFORMED_AGENTS = {
    "msie2": "Mozilla/4.0 (compatible; MSIE 2.0; Windows NT 5.0; Trident/4.0; SV1)",
    "atari": "Modzilla/-2.0 (Atari 7800)",
}
# A Linux desktop browser: a Windows workstation sending it claims the wrong OS.
LINUX_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
# What Linux build servers and package managers send (tools are their normal clients).
SERVER_AGENTS = {
    "curl": "curl/8.5.0",
    "python-requests": "python-requests/2.31.0",
    "go": "Go-http-client/1.1",
    "pip": 'pip/24.0 {"ci":true,"implementation":{"name":"CPython","version":"3.11.2"}}',
    "git": "git/2.43.0",
    "apt": "Debian APT-HTTP/1.3 (2.6.1)",
}


def is_windows_chromium(browser: int) -> bool:
    """Whether BROWSERS[browser] is Chrome or Edge on Windows."""
    agent = BROWSERS[browser][0]
    return "Windows NT" in agent and "Chrome/" in agent


def fleet_agents(fleet: Fleet, servers: Mapping[int, str]) -> Any:
    """A function (rows, client addresses, requested names) -> the User-Agent of each CONNECT:
    the software's own agent for SOFTWARE_AGENTS names, else the client's browser (a server's
    tool agent from `servers`)."""
    order = np.argsort(fleet.ips)
    sorted_ips = fleet.ips[order]
    software_names = strings(list(SOFTWARE_AGENTS))
    software_agents = strings(list(SOFTWARE_AGENTS.values()))
    browsers = strings([agent for agent, _ in BROWSERS])

    def agents(rows: npt.NDArray[np.int64], clients: npt.NDArray[np.uint32], names: Any) -> Any:
        del rows
        at = np.minimum(np.searchsorted(sorted_ips, clients), sorted_ips.size - 1)
        is_fleet = sorted_ips[at] == clients
        browser = browsers.take(pa.array(fleet.browser[order[at]]))
        other = strings([servers.get(int(ip), "-") for ip in clients[~is_fleet]])
        own = pc.replace_with_mask(browser, pa.array(~is_fleet), other) if len(other) else browser
        software = software_agents.take(pc.index_in(names, value_set=software_names))
        return pc.coalesce(software, own)

    return agents
