"""Web detectors' speed: 2M http rows and 1M tls rows (issue 5's budget: <= 15 s on 2 cores).

A synthetic enterprise day, built straight into a store from Arrow batches: 5,000 hosts,
Zipf-popular domains under many TLDs, browser and tool agents, URIs from path templates with
random tokens, a third of the requests logged by a proxy (Squid-style rows, CONNECTs
included), TLS sessions with a few dozen JA3s and certificates (some self-signed or expired),
and the conn rows of those connections. Every web detector then runs once in a child process
(`homecall.pipeline.analyse`), and its wall time and peak RSS are reported, per detector and in
total (docs/performance.md).

    python benchmarks/web_speed.py [--http 2000000] [--tls 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.synthetic import ips
from homecall.store import Store, schema_of

CHUNK = 500_000
T0_US = 1_764_201_600 * 1_000_000  # 2025-11-27 00:00 UTC
HOSTS = 5_000
DOMAINS = 60_000
WEB_DETECTORS = (
    "rare-destination",
    "risky-tld",
    "odd-port",
    "off-hours",
    "uri-command",
    "user-agent",
    "http-anomaly",
    "long-connection",
    "domain-fronting",
    "tls-anomaly",
)
_TLDS = ["com", "net", "org", "de", "co.uk", "io", "top", "xyz", "info", "ru", "cn", "fr", "biz"]
_WORDS = [
    "news",
    "shop",
    "cloud",
    "data",
    "mail",
    "app",
    "static",
    "cdn",
    "api",
    "media",
    "img",
    "portal",
    "secure",
    "web",
    "login",
]
_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Microsoft-Delivery-Optimization/10.0",
    "Windows-Update-Agent/10.0.10011.16384 Client-Protocol/2.71",
    "curl/8.4.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
]
_AGENT_P = [0.45, 0.2, 0.12, 0.08, 0.05, 0.04, 0.03, 0.02, 0.01]
_PATHS = [
    "/",
    "/favicon.ico",
    "/index.html",
    "/api/v1/items/{n}",
    "/static/js/app.{h}.js",
    "/img/{h}.png",
    "/search?q={w}+{w}",
    "/track?id={t}&ev=view",
    "/login.php",
    "/news/{n}/{w}-{w}.html",
    "/cmd?exec={w}",
]


def _domains(rng: np.random.Generator) -> np.ndarray:
    words = np.array(_WORDS)
    first = words[rng.integers(0, len(words), DOMAINS)]
    number = rng.integers(0, 100_000, DOMAINS).astype(str)
    tld = np.array(_TLDS)[rng.integers(0, len(_TLDS), DOMAINS)]
    sub = np.where(rng.random(DOMAINS) < 0.6, "www.", "")
    return np.char.add(np.char.add(np.char.add(sub, first), number), np.char.add(".", tld))


def _uris(rng: np.random.Generator, n: int) -> np.ndarray:
    kinds = rng.integers(0, len(_PATHS), n)
    out = np.empty(n, dtype=object)
    words = np.array(_WORDS)
    for k, template in enumerate(_PATHS):
        idx = np.flatnonzero(kinds == k)
        if not len(idx):
            continue
        parts = template
        values = np.full(len(idx), parts, dtype=object)
        for mark, make in (
            ("{n}", lambda m: rng.integers(0, 10**6, m).astype(str)),
            ("{h}", lambda m: np.char.mod("%016x", rng.integers(0, 2**62, m))),
            ("{t}", lambda m: np.char.mod("%024x", rng.integers(0, 2**62, m))),
            ("{w}", lambda m: words[rng.integers(0, len(words), m)]),
        ):
            while mark in parts:
                fill = make(len(idx))
                values = np.array(
                    [v.replace(mark, f, 1) for v, f in zip(values, fill, strict=True)],
                    dtype=object,
                )
                parts = parts.replace(mark, "", 1)
        out[idx] = values
    return out


def _base(schema: pa.Schema, n: int) -> dict[str, pa.Array]:
    return {field.name: pa.nulls(n, field.type) for field in schema}


def build(store: Store, http_rows: int, tls_rows: int, seed: int = 0) -> None:
    """One synthetic day: `http_rows` requests, `tls_rows` TLS sessions, their conn rows."""
    rng = np.random.default_rng(seed)
    domains = _domains(rng)
    popularity = 1.0 / np.arange(1, DOMAINS + 1) ** 1.1
    popularity /= popularity.sum()
    domain_ip = rng.integers(0, 2_000_000, DOMAINS)
    host_agent = rng.choice(len(_AGENTS), size=HOSTS, p=_AGENT_P)
    http_schema, tls_schema, conn_schema = (schema_of(t) for t in ("http", "tls", "conn"))

    def batches():  # type: ignore[no-untyped-def]
        made = 0
        for start in range(0, http_rows, CHUNK):
            n = min(CHUNK, http_rows - start)
            src = rng.integers(0, HOSTS, n)
            dom = rng.choice(DOMAINS, size=n, p=popularity)
            c = _base(http_schema, n)
            ts = T0_US + np.sort(rng.integers(0, 86_400_000_000, n))
            c["ts"] = pa.array(ts, pa.int64()).cast(http_schema.field("ts").type)
            uids = np.char.add("H", (start + np.arange(n) // 2).astype(str))  # 2 per connection
            c["uid"] = pa.array(uids)
            c["orig_ip"] = ips("10", src)
            c["orig_port"] = pa.array(rng.integers(1024, 65535, n), pa.int32())
            proxied = rng.random(n) < 0.33
            connect = proxied & (rng.random(n) < 0.5)
            host = domains[dom]
            ip = np.asarray(ips("93", domain_ip[dom]).to_pylist(), dtype=object)
            c["resp_ip"] = pa.array(np.where(proxied, host, ip))
            port = np.where(connect, 443, 80)
            odd = rng.random(n) < 0.002
            port = np.where(odd, rng.choice([4444, 8088, 5288, 8443, 8080], n), port)
            c["resp_port"] = pa.array(port, pa.int32())
            c["method"] = pa.array(
                np.where(connect, "CONNECT", np.where(rng.random(n) < 0.15, "POST", "GET"))
            )
            c["host"] = pa.array(host)
            uri = _uris(rng, n)
            c["uri"] = pa.array(np.where(connect, np.char.add(host.astype(str), ":443"), uri))
            c["version"] = pa.array(np.where(rng.random(n) < 0.01, "1.0", "1.1"))
            agent = np.where(rng.random(n) < 0.97, host_agent[src], rng.integers(0, 9, n))
            c["user_agent"] = pa.array(np.array(_AGENTS, dtype=object)[agent])
            c["request_body_len"] = pa.array(
                np.where(rng.random(n) < 0.15, rng.lognormal(6, 1.5, n), 0).astype(np.int64)
            )
            c["response_body_len"] = pa.array(rng.lognormal(8, 2, n).astype(np.int64))
            c["status_code"] = pa.array(rng.choice([200, 204, 301, 304, 404], n), pa.int32())
            c["proxy"] = pa.array(np.where(proxied, "squid", None))
            c["proxy_action"] = pa.array(np.where(proxied, "TCP_MISS", None))
            c["denied"] = pa.array(np.where(proxied, rng.random(n) < 0.01, None))
            c["duration_s"] = pa.array(rng.exponential(0.5, n), mask=~proxied)
            c["response_bytes"] = pa.array(rng.lognormal(8, 2, n).astype(np.int64), mask=~proxied)
            yield "http", pa.RecordBatch.from_arrays(list(c.values()), schema=http_schema)
            # the conn row of each direct connection (proxy-logged requests have none)
            first = (np.arange(n) % 2 == 0) & ~proxied
            yield "conn", _conn(conn_schema, rng, ts[first], uids[first], src[first], ip[first])
            made += n
        for start in range(0, tls_rows, CHUNK):
            n = min(CHUNK, tls_rows - start)
            src = rng.integers(0, HOSTS, n)
            dom = rng.choice(DOMAINS, size=n, p=popularity)
            c = _base(tls_schema, n)
            ts = T0_US + np.sort(rng.integers(0, 86_400_000_000, n))
            c["ts"] = pa.array(ts, pa.int64()).cast(tls_schema.field("ts").type)
            uids = np.char.add("T", (start + np.arange(n)).astype(str))
            c["uid"] = pa.array(uids)
            c["orig_ip"] = ips("10", src)
            c["orig_port"] = pa.array(rng.integers(1024, 65535, n), pa.int32())
            ip = np.asarray(ips("93", domain_ip[dom]).to_pylist(), dtype=object)
            c["resp_ip"] = pa.array(ip)
            c["resp_port"] = pa.array(np.full(n, 443), pa.int32())
            c["version"] = pa.array(np.where(rng.random(n) < 0.7, "TLSv13", "TLSv12"))
            c["server_name"] = pa.array(np.where(rng.random(n) < 0.98, domains[dom], None))
            c["established"] = pa.array(rng.random(n) < 0.98)
            ja3 = rng.zipf(1.5, n) % 60
            c["ja3"] = pa.array(np.char.mod("%032x", ja3 * 7919 + 12345))
            c["ja3s"] = pa.array(np.char.mod("%032x", rng.zipf(1.5, n) % 40 * 104729 + 7))
            c["ja4"] = pa.array(np.char.add("t13d1516h2_8daaf6152771_", ja3.astype(str)))
            selfsigned = rng.random(n) < 0.003
            c["subject"] = pa.array(np.char.add("CN=", domains[dom].astype(str)))
            c["issuer"] = pa.array(
                np.where(selfsigned, np.char.add("CN=", domains[dom].astype(str)), "CN=R11,O=LE")
            )
            c["validation_status"] = pa.array(np.where(selfsigned, "self signed certificate", "ok"))
            yield "tls", pa.RecordBatch.from_arrays(list(c.values()), schema=tls_schema)
            yield "conn", _conn(conn_schema, rng, ts, uids, src, ip)

    with store.importing() as job:
        job.add(
            Path("synthetic-web"), lambda: f"web-{http_rows}-{tls_rows}-{seed}", "arrow", batches()
        )


def _conn(
    schema: pa.Schema,
    rng: np.random.Generator,
    ts: np.ndarray,
    uids: np.ndarray,
    src: np.ndarray,
    ip: np.ndarray,
) -> pa.RecordBatch:
    n = len(ts)
    c = _base(schema, n)
    c["ts"] = pa.array(ts, pa.int64()).cast(schema.field("ts").type)
    c["uid"] = pa.array(uids)
    c["orig_ip"] = ips("10", src)
    c["orig_port"] = pa.array(rng.integers(1024, 65535, n), pa.int32())
    c["resp_ip"] = pa.array(ip)
    c["resp_port"] = pa.array(np.full(n, 443), pa.int32())
    c["proto"] = pa.array(np.full(n, "tcp"))
    c["duration_s"] = pa.array(rng.lognormal(1, 2, n))
    c["orig_bytes"] = pa.array(rng.lognormal(6, 1, n).astype(np.int64))
    c["resp_bytes"] = pa.array(rng.lognormal(8, 2, n).astype(np.int64))
    c["conn_state"] = pa.array(np.full(n, "SF"))
    return pa.RecordBatch.from_arrays(list(c.values()), schema=schema)


CHILD = """
import json, resource, sys, time
from pathlib import Path
from homecall.config import Config
from homecall.detectors import by_name
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, connect, open_tables
store = Store(Path(sys.argv[1]))
names = sys.argv[2].split(",")
started = time.perf_counter()
tables = open_tables(store, Config().internal, connect(), WHOLE_STORE)
times = {"open_tables": time.perf_counter() - started}
found = {}
for detector in by_name(names):
    t0 = time.perf_counter()
    found[detector.name] = len(list(detector.run(tables, detector.config())))
    times[detector.name] = time.perf_counter() - t0
total = time.perf_counter() - started
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"total_s": total, "times_s": times, "findings": found, "peak_rss_mb": rss}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http", type=int, default=2_000_000)
    parser.add_argument("--tls", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build the store here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "store"
        store = Store(root)
        if not store.row_counts():
            build(store, args.http, args.tls)
        print("rows:", store.row_counts(), flush=True)
        from homecall.detectors import DETECTORS

        known = {d.name for d in DETECTORS}
        names = [n for n in WEB_DETECTORS if n in known]
        missing = sorted(set(WEB_DETECTORS) - known)
        if missing:
            print("not registered yet:", missing, flush=True)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(root), ",".join(names)],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        for name, seconds in result["times_s"].items():
            print(f"{name:18s} {seconds:6.1f} s  {result['findings'].get(name, '')}")
        print(f"total {result['total_s']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
