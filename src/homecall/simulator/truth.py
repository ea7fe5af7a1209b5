"""Ground truth of a simulation: what was injected, which benign traffic is a decoy, truth.json.

truth.json keys: seed, hosts, days, start, internal_networks, c2 (C2Truth), benign_periodic
(BenignPeriodic), then the DNS techniques: dga (DgaTruth), dns_tunnel (TunnelTruth), fast_flux
(FluxTruth) and benign_dns (BenignDns, decoys for the DNS detectors), then dns_bypass (BypassTruth),
dns_volume (VolumeTruth) and young_domains (YoungTruth, the C2 domains listed in nrd.txt), then the
web: proxy (ProxyTruth, the explicit proxy and its hosts), web_c2 (WebC2Truth), user_agents
(AgentTruth), uri_commands (UriCommandTruth), domain_fronting (FrontingTruth), tls_certs
(CertTruth), http_anomalies (HttpAnomalyTruth) and benign_web (BenignWeb, their decoys), then
the network: firewall (FirewallTruth, the gateway and its log), network_c2 (NetworkC2Truth) and
benign_network (BenignNetwork, their look-alikes).
A web or network entry's `uids` are the conn uids of its first MAX_UIDS client connections, in
time order.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "MAX_UIDS",
    "NETWORK_KEYS",
    "WEB_KEYS",
    "AgentTruth",
    "BenignDns",
    "BenignNetwork",
    "BenignPeriodic",
    "BenignWeb",
    "BypassTruth",
    "C2Truth",
    "CertTruth",
    "DgaTruth",
    "FirewallTruth",
    "FluxTruth",
    "FrontingTruth",
    "HttpAnomalyTruth",
    "NetworkC2Truth",
    "ProxyTruth",
    "SimulationResult",
    "TunnelTruth",
    "UriCommand",
    "UriCommandTruth",
    "VolumeTruth",
    "WebC2Truth",
    "WebTruth",
    "YoungTruth",
    "iso_utc",
    "write_truth",
]

MAX_UIDS = 50  # uids listed per web truth entry
WEB_KEYS = (
    "web_c2", "user_agents", "uri_commands", "domain_fronting", "tls_certs", "http_anomalies",
    "benign_web",
)  # fmt: skip
NETWORK_KEYS = ("network_c2", "benign_network")


@dataclass(frozen=True, slots=True)
class C2Truth:
    """One injected C2 channel, as a detector should report it."""

    src: str  # the infected internal host
    dst: str  # the C2 server
    domain: str | None  # the name in DNS, SNI and Host; None when the implant calls the IP
    dst_port: int
    kind: str  # cobalt-strike, sliver, empire
    protocol: str  # https or http
    sleep_s: float
    jitter_ratio: float  # 0..1, meaning per jitter_kind
    jitter_kind: (
        str  # one-sided (sleep*(1-U*j)), additive (sleep*(1+U*j)), symmetric (sleep*(1+U(-j,j)))
    )
    missed_fraction: float  # share of check-ins dropped before reaching the wire
    conns_per_checkin: int
    first_seen: str  # ISO-8601 UTC of the first check-in connection
    last_seen: str
    checkins: int  # check-ins emitted over the whole simulation


@dataclass(frozen=True, slots=True)
class BenignPeriodic:
    """A benign service that many hosts call at a regular interval (a beacon detector's decoy)."""

    dst: str
    domain: str
    period_s: float
    hosts: int  # distinct hosts that called dst
    kind: str  # ntp, os-update, telemetry, antivirus, ocsp


@dataclass(frozen=True, slots=True)
class DgaTruth:
    """A DGA-infected host: bursts of generated names, nearly all NXDOMAIN, then its C2."""

    src: str
    family: str  # random-letters (Cryptolocker-style), hex-hash (Dyre-style), wordlist (Suppobox)
    c2: str  # the address the registered names resolve to
    c2_port: int
    protocol: str  # how the C2 is called: http or https
    bursts: int  # runs of the DGA (each tries names until one resolves)
    queries: int  # its DGA lookups in dns.log (all A queries), over all days
    domains_tried: int  # distinct names among them
    nxdomains: int  # lookups answered NXDOMAIN
    resolved_domains: tuple[str, ...]  # the names that answered with the C2's address
    c2_connections: int
    first_seen: str | None  # ISO-8601 UTC of the first lookup; None if the host never ran it
    last_seen: str | None


@dataclass(frozen=True, slots=True)
class TunnelTruth:
    """A DNS tunnel: a host exchanging data in query names and answers under one zone."""

    src: str
    kind: str  # dnscat2 (hex labels; TXT, CNAME, MX) or iodine (base32 labels; NULL)
    domain: str  # the attacker's registered domain
    zone: str  # every query is <encoded labels>.<zone>
    qtypes: tuple[str, ...]  # query types used; answers are of the same type
    queries: int  # over all days
    data_queries: int  # queries carrying data (the rest are idle polls)
    poll_s: float  # interval of the idle polls
    answer_ttl_s: int
    first_seen: str | None
    last_seen: str | None


@dataclass(frozen=True, slots=True)
class FluxTruth:
    """A fast-flux name: short TTL, each answer a few of many addresses over many /16s."""

    src: str  # the infected host that resolves it
    name: str
    ttl_s: int
    ips: tuple[str, ...]  # every address the name was answered with, sorted
    slash16s: int  # distinct /16 networks among ips
    lookups: int
    connections: int  # HTTP connections to answered addresses
    contacted: tuple[str, ...]  # the addresses connected to, sorted
    dst_port: int


@dataclass(frozen=True, slots=True)
class BenignDns:
    """Benign DNS that looks like a DNS technique at first sight (a DNS detector's decoy)."""

    kind: str  # cdn, ptr-sweep (a monitoring server), ptr, typo, search-suffix, dnsbl,
    # hash-reputation (dnsbl and hash-reputation: a mail gateway)
    domain: str | None  # the name, or the zone the queried names end with; None for typos
    src: str | None  # the one internal host that asked; None when several did
    hosts: int  # distinct internal hosts that asked
    queries: int
    nxdomains: int
    qtypes: tuple[str, ...]
    ips: int  # distinct addresses answered (A records), 0 for other answers
    slash16s: int  # distinct /16 networks among them
    max_ttl_s: int  # the longest TTL answered, 0 if none


@dataclass(frozen=True, slots=True)
class BypassTruth:
    """A host resolving names past the internal resolver, as a dns-bypass finding names it."""

    src: str
    kind: str  # plain-dns (UDP/53 to a public resolver) or doh (DNS over HTTPS); dot is unused
    resolver: str  # the address (plain-dns) or the DoH server's name, as in TLS SNI (doh)
    queries_or_connections: int  # plain-dns: lookups in dns.log; doh: TLS connections
    first_seen: str
    last_seen: str
    dst_port: int  # 53 or 443
    cause: str  # c2-implant (the implant asks a public resolver) or browser (secure DNS turned on)


@dataclass(frozen=True, slots=True)
class VolumeTruth:
    """A burst of lookups in one hour, far above the host's other hours and every other host's."""

    src: str
    hour_start: str  # ISO-8601 UTC of the hour the burst falls in
    queries: int  # the burst's lookups (the host's ordinary lookups in that hour not counted)
    domains: tuple[str, ...]  # registered domains the burst's names are under, sorted
    kind: str  # subdomain-scan (wordlist names, mostly NXDOMAIN) or exfiltration (encoded data)
    names: int  # distinct names among the queries


@dataclass(frozen=True, slots=True)
class YoungTruth:
    """A domain in nrd.txt, registered days before internal hosts looked it up."""

    domain: str  # a registered domain (eTLD+1)
    registered: str  # YYYY-MM-DD, as in nrd.txt
    hosts: tuple[str, ...]  # internal hosts whose lookups of names under it were answered, sorted
    role: str  # c2, dns-tunnel, fast-flux, dga or exfiltration


@dataclass(frozen=True, slots=True)
class ProxyTruth:
    """The explicit web proxy: the hosts that reach the web only through it, and its log."""

    address: str
    port: int
    hosts: tuple[str, ...]  # internal hosts configured to use it, sorted
    access_log: str  # its Squid access.log (native format), relative to each day folder
    requests: int  # lines in the access logs over all days
    denied: int  # of which TCP_DENIED/403 (blocked by its policy)


@dataclass(frozen=True, slots=True)
class WebC2Truth:
    """An injected web C2 channel beyond `c2`: a timing or duration pattern to find."""

    kind: str  # proxy-beacon, odd-port (CONNECT to an unusual port), off-hours, long-connection
    src: str
    host: str | None  # the requested name (CONNECT target, SNI, Host); None: the bare address
    server: str  # the C2 server's address (behind the proxy when via_proxy)
    port: int  # the requested port
    protocol: str  # https or http
    via_proxy: bool  # Zeek sees src -> PROXY:3128 (CONNECT), the proxy's access.log names it
    user_agent: str | None  # in Zeek's http.log (the request or the CONNECT); None: not seen
    sleep_s: float  # mean gap between its connections (0 for one connection)
    jitter_ratio: float
    jitter_kind: str  # as C2Truth; "-" when not a beacon
    hours_utc: tuple[int, ...]  # the only hours it connects in; () for any hour
    longest_s: float  # its longest connection
    requests: int  # connections (one request or TLS session each), all days
    first_seen: str
    last_seen: str
    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AgentTruth:
    """An implant whose User-Agent gives it away: a tool, a malformed agent, the wrong OS."""

    kind: str  # tool-agent, malformed-agent, os-mismatch
    src: str  # a Windows workstation whose browser is Chrome or Edge
    host: str | None  # the requested name; None: the bare address
    server: str
    port: int
    protocol: str
    via_proxy: bool  # the agent is in the CONNECT (https) or the absolute-URI request (http)
    user_agent: str
    usual_user_agent: str  # the workstation's browser
    tool: str  # python-requests, go, curl, powershell, msie2, atari, linux-chrome
    requests: int
    first_seen: str
    last_seen: str
    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UriCommand:
    """A command carried in a request URI, and how it was encoded there."""

    uri: str
    method: str
    parameter: str  # the query parameter holding it ("" when the command is in the body)
    encoding: str  # plain, url (percent-encoded), base64, hex, body (not in the URI)
    command: str  # the decoded command ("" when only the body carried it)


@dataclass(frozen=True, slots=True)
class UriCommandTruth:
    """Commands inside URIs: a web shell on an internal server, or C2 tasking of an implant."""

    kind: str  # web-shell (inbound) or tasking (outbound)
    src: str  # the internal side: the web server (web-shell) or the infected host (tasking)
    peer: str  # the outside side: the attacker's address or the C2 server
    host: str  # the Host header
    server: str
    port: int
    direction: str  # inbound or outbound
    path: str
    user_agent: str
    requests: int  # all requests of the channel (idle check-ins included)
    first_seen: str
    last_seen: str
    commands: tuple[UriCommand, ...]  # the requests that carried a command, in time order
    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FrontingTruth:
    """Domain fronting: TLS names an allowed CDN front, the HTTP Host inside a C2 back-end."""

    src: str
    sni: str
    http_host: str  # seen by the TLS-decrypting sensor (direct) or the bumping proxy (via_proxy)
    cdn: str  # the CDN both names are served by
    server: str  # the CDN edge address
    port: int
    via_proxy: bool  # Zeek: CONNECT to the front; the proxy's log: GET https://<http_host>/...
    user_agent: str
    requests: int
    first_seen: str
    last_seen: str
    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CertTruth:
    """A C2 server's certificate that gives it away (ssl.log chain, x509.log row)."""

    kind: str  # cert-mismatch (names do not cover the SNI), expired-cert, cs-default-cert
    src: str
    sni: str | None
    server: str
    port: int
    via_proxy: bool
    cert_id: str  # SHA-256 fingerprint: ssl.log cert_chain_fps[0], x509.log fingerprint
    subject: str
    issuer: str
    serial: str
    san_dns: tuple[str, ...]
    not_valid_before: str  # ISO-8601 UTC
    not_valid_after: str
    validation_status: str  # Zeek's, on a full TLS 1.2 handshake
    ja3: str | None  # the implant's TLS client fingerprint, when known; ssl.log has no ja3
    requests: int  # TLS sessions (the certificate shows in full handshakes only)
    first_seen: str
    last_seen: str
    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HttpAnomalyTruth:
    """An implant's HTTP that no browser sends: HTTP/1.0 without Host, one path on many hosts."""

    kind: str  # http-1.0 (version 1.0, no Host header) or same-path (one path, many domains)
    src: str
    hosts: tuple[str, ...]  # the Host names asked, sorted; () when none is sent
    servers: tuple[str, ...]  # their addresses, sorted
    port: int
    version: str
    path: str
    user_agent: str
    requests: int
    first_seen: str
    last_seen: str
    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BenignWeb:
    """Benign web traffic that looks like a web technique (a web detector's decoy)."""

    kind: str  # see docs (proxy-denied, app-agent, server-tool, cdn-same-name, wildcard-cert...)
    src: str | None  # the one internal host, None when several
    hosts: int  # distinct internal hosts
    name: str | None  # the requested name (or the SNI), None when several
    port: int
    via_proxy: bool | None  # None: some hosts direct, some through the proxy
    requests: int
    detail: str  # what makes it look suspicious: the agent, SNI -> Host, a sample URI...


@dataclass(frozen=True, slots=True)
class FirewallTruth:
    """The gateway firewall: its policy, where the sensor sits, and its netfilter log."""

    device: str  # the syslog host name on every line
    log: str  # its kernel log (iptables LOG lines), relative to each day folder
    public_address: str  # the gateway's outside address (inbound scans hit it)
    inside_interface: str
    outside_interface: str
    proxy_only: tuple[str, ...]  # hosts whose direct outbound traffic is denied (= proxy.hosts)
    allowed_direct: tuple[str, ...]  # what they may still send directly: "udp/123 <server>"
    inbound_open: tuple[str, ...]  # forwarded from the outside: "10.0.2.80 tcp/80"
    sensor: str  # "inside": Zeek sees the denied attempts (S0), not the inbound drops
    lines: int  # over all days
    denied_outbound: int  # lines of internal hosts' packets
    denied_inbound: int  # lines of the Internet's packets to the public address


@dataclass(frozen=True, slots=True)
class NetworkC2Truth:
    """An injected channel that network records show: a direct C2 the firewall denies, an IRC
    bot, a P2P bot, a spam bot."""

    kind: str  # proxy-bypass, irc, p2p, mail-from-endpoint
    src: str  # the infected internal host
    dst: str | None  # the C2 or IRC server; None when it talks to many (p2p, mail-from-endpoint)
    port: int | None  # the server's port; None for many
    proto: str  # tcp, udp or tcp+udp
    service: str | None  # Zeek's service on its answered connections (irc, smtp); None: none
    family: str  # what it imitates (docs/simulator.md)
    connections: int  # its conn rows (attempts included), all days
    failed: int  # of which unanswered or refused (S0, REJ)
    peers: int  # distinct outside addresses it sent to
    firewall_lines: int  # its lines in the firewall log (denied packets)
    period_s: float  # mean gap between its attempts (proxy-bypass); 0 when not timed
    jitter_ratio: float  # symmetric jitter of that gap
    longest_s: float  # its longest connection
    messages: int  # smtp.log rows (mail-from-endpoint; 0 otherwise)
    senders: int  # distinct mail_from among them
    recipients: int  # distinct rcpt_to among them
    first_seen: str
    last_seen: str
    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BenignNetwork:
    """Benign traffic that looks like a network technique (a network detector's decoy)."""

    kind: str  # app-direct, teams-media, ntp-direct, internet-scan, irc-tls, resolver,
    # vuln-scanner, cdn-heavy, mail-relay, mail-submission
    detector: str  # the detector it imitates: proxy-bypass, irc, p2p-fanout, mail-from-endpoint
    expected: str  # "below-medium", or "scan" (reported as a scan: docs/simulator.md)
    src: str | None  # the one internal host, None when several (or none: internet-scan)
    hosts: int  # distinct internal hosts
    dst: str | None  # the one outside address or name, None when several
    port: int | None  # the one port, None when several
    proto: str
    connections: int  # conn rows, all days (0: not seen by the sensor)
    firewall_lines: int
    peers: int  # distinct outside addresses (for internet-scan: distinct scanners)
    detail: str  # what makes it look suspicious


WebTruth = WebC2Truth | AgentTruth | UriCommandTruth | FrontingTruth | CertTruth | HttpAnomalyTruth


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What simulate() wrote."""

    out: Path
    files: tuple[Path, ...]  # the day logs, then truth.json
    rows: dict[str, int]  # rows written per log type, over all days
    c2: tuple[C2Truth, ...]
    dga: tuple[DgaTruth, ...] = ()
    dns_tunnel: tuple[TunnelTruth, ...] = ()
    fast_flux: tuple[FluxTruth, ...] = ()
    benign_dns: tuple[BenignDns, ...] = ()
    dns_bypass: tuple[BypassTruth, ...] = ()
    dns_volume: tuple[VolumeTruth, ...] = ()
    young_domains: tuple[YoungTruth, ...] = ()
    nrd_file: Path | None = None  # the newly-registered-domain feed (not in files: not a log)
    proxy: ProxyTruth | None = None
    web_c2: tuple[WebC2Truth, ...] = ()
    user_agents: tuple[AgentTruth, ...] = ()
    uri_commands: tuple[UriCommandTruth, ...] = ()
    domain_fronting: tuple[FrontingTruth, ...] = ()
    tls_certs: tuple[CertTruth, ...] = ()
    http_anomalies: tuple[HttpAnomalyTruth, ...] = ()
    benign_web: tuple[BenignWeb, ...] = ()
    web_logs: tuple[Path, ...] = ()  # per day: x509.log and squid/access.log (not in files)
    web_rows: dict[str, int] = field(default_factory=dict)  # rows of x509 and squid, all days
    firewall: FirewallTruth | None = None
    network_c2: tuple[NetworkC2Truth, ...] = ()
    benign_network: tuple[BenignNetwork, ...] = ()
    network_logs: tuple[Path, ...] = ()  # per day: smtp.log and firewall/kern.log
    network_rows: dict[str, int] = field(default_factory=dict)  # smtp rows, firewall lines


def iso_utc(ts_us: int) -> str:
    """Microseconds since the epoch -> ISO-8601 UTC, e.g. 2026-11-23T00:00:41.123456Z."""
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(ts_us))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_truth(
    path: Path,
    *,
    seed: int,
    hosts: int,
    days: int,
    start: dt.date,
    internal_networks: tuple[str, ...],
    c2: tuple[C2Truth, ...],
    benign_periodic: tuple[BenignPeriodic, ...],
    dga: tuple[DgaTruth, ...] = (),
    dns_tunnel: tuple[TunnelTruth, ...] = (),
    fast_flux: tuple[FluxTruth, ...] = (),
    benign_dns: tuple[BenignDns, ...] = (),
    dns_bypass: tuple[BypassTruth, ...] = (),
    dns_volume: tuple[VolumeTruth, ...] = (),
    young_domains: tuple[YoungTruth, ...] = (),
    web: SimulationResult | None = None,
) -> None:
    """Write truth.json (stable key order, so equal runs give equal bytes); the web and network
    entries come from `web`."""
    document = {
        "seed": seed,
        "hosts": hosts,
        "days": days,
        "start": start.isoformat(),
        "internal_networks": list(internal_networks),
        "c2": [asdict(item) for item in c2],
        "benign_periodic": [asdict(item) for item in benign_periodic],
        "dga": [asdict(item) for item in dga],
        "dns_tunnel": [asdict(item) for item in dns_tunnel],
        "fast_flux": [asdict(item) for item in fast_flux],
        "benign_dns": [asdict(item) for item in benign_dns],
        "dns_bypass": [asdict(item) for item in dns_bypass],
        "dns_volume": [asdict(item) for item in dns_volume],
        "young_domains": [asdict(item) for item in young_domains],
    }
    if web is not None:
        document["proxy"] = asdict(web.proxy) if web.proxy else None
        for key in WEB_KEYS:
            document[key] = [asdict(item) for item in getattr(web, key)]
        document["firewall"] = asdict(web.firewall) if web.firewall else None
        for key in NETWORK_KEYS:
            document[key] = [asdict(item) for item in getattr(web, key)]
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
