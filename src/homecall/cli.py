"""The `homecall` command: import, hunt, findings, simulate, dga score, pcap index and search
(docs in README.md)."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, replace
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from homecall import __version__, pcap_search, pipeline
from homecall.config import Config, load_config
from homecall.errors import HomecallError, InputError
from homecall.findings import Finding
from homecall.report import findings_table, import_summary, write_jsonl
from homecall.sources import ReadOptions, head_of
from homecall.store import DEFAULT_STORE, Store, quick_fingerprint

__all__ = ["app"]

app = typer.Typer(
    name="homecall",
    help="Find malware calling home: C2 detection over network logs.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=False)
errors = Console(stderr=True)
log = logging.getLogger("homecall")

SensorOption = Annotated[
    str | None, typer.Option("--sensor", help="Name of the sensor the logs come from.")
]
StoreOption = Annotated[
    Path, typer.Option("--store", "-s", help="Store directory.", show_default=True)
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="homecall.toml (default: ./homecall.toml).")
]
TopOption = Annotated[int, typer.Option("--top", "-n", help="Rows to print.", min=1)]
TimezoneOption = Annotated[
    str | None,
    typer.Option(
        "--timezone",
        help="IANA zone of syslog-style logs written in local time (default: [import] in"
        " homecall.toml, else UTC).",
    ),
]
JsonOption = Annotated[
    Path | None, typer.Option("--json", help="Also write every finding as JSON Lines to FILE.")
]
SHOWN_PROBLEMS = 10


@app.callback()
def main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
) -> None:
    """homecall reads your logs and ranks the internal hosts that look like they call home."""
    level = (
        logging.ERROR
        if quiet
        else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=errors, show_path=False)]
    )


@app.command("version")
def version() -> None:
    """Print homecall's version."""
    console.print(f"homecall {__version__}")


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Log files or folders.")],
    store: StoreOption = DEFAULT_STORE,
    sensor: SensorOption = None,
    timezone: TimezoneOption = None,
    config: ConfigOption = None,
) -> None:
    """Import logs into the store (idempotent: a file already stored is skipped)."""
    with _handled():
        options = _read_options(load_config(config), timezone).read_options
        with _progress() as progress:
            result = pipeline.import_paths(
                paths, Store(store), sensor=sensor, progress=progress, options=options
            )
    _report_import(result)
    if result.errors:
        raise typer.Exit(2)


@app.command("hunt")
def hunt(
    paths: Annotated[list[Path], typer.Argument(help="Log files or folders.")],
    store: StoreOption = DEFAULT_STORE,
    json_out: JsonOption = None,
    top: TopOption = 20,
    detector: Annotated[
        list[str] | None,
        typer.Option("--detector", "-d", help="Run only this detector (repeatable)."),
    ] = None,
    config: ConfigOption = None,
    sensor: SensorOption = None,
    timezone: TimezoneOption = None,
) -> None:
    """Import PATHS, run every detector over the time span they cover, print the ranked findings."""
    with _handled():
        settings = _read_options(load_config(config), timezone)
        with _progress() as progress:
            result = pipeline.hunt(
                paths, Store(store), settings, detectors=detector, sensor=sensor, progress=progress
            )
    _report_import(result.imported)
    _print_findings(result.findings, top, json_out)
    if result.imported.errors:
        raise typer.Exit(2)


@app.command("findings")
def findings(
    store: StoreOption = DEFAULT_STORE,
    json_out: JsonOption = None,
    top: TopOption = 20,
) -> None:
    """Print the last hunt's findings again, without re-analysing."""
    with _handled():
        found = pipeline.load_findings(Store(store))
    _print_findings(found, top, json_out)


@app.command("simulate")
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the Zeek logs.")],
    hosts: Annotated[int, typer.Option(help="Internal hosts.", min=1)] = 200,
    days: Annotated[int, typer.Option(help="Days to simulate.", min=1)] = 1,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same logs).")] = 0,
    start: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD (UTC).")] = None,
    grid: Annotated[
        bool, typer.Option("--grid", help="Write the beacon benchmark grid instead (30 days).")
    ] = False,
    replicates: Annotated[int, typer.Option(help="With --grid: series per grid cell.", min=1)] = 1,
) -> None:
    """Write realistic Zeek logs of an enterprise with injected C2, and truth.json."""
    from homecall.simulator import simulate as run_simulation
    from homecall.simulator.grid_logs import write_grid

    if grid:
        with _handled():
            days_written = write_grid(out, replicates=replicates, seed=seed)
        total = sum(days_written.values())
        console.print(
            f"Wrote the beacon grid: {total:,} conn rows over {len(days_written)} days to"
            f" {escape(str(out))}; every series in {escape(str(out / 'truth.json'))}.",
            soft_wrap=True,
        )
        return
    with _handled():
        first = date.fromisoformat(start) if start else None
        result = run_simulation(out, hosts=hosts, days=days, seed=seed, start=first)
    every_row = {**result.rows, **result.web_rows, **result.network_rows}
    rows = ", ".join(f"{k} {v:,}" for k, v in sorted(every_row.items()))
    logs = [
        f for f in (*result.files, *result.web_logs, *result.network_logs) if f.name != "truth.json"
    ]
    console.print(f"Wrote {len(logs)} logs to {escape(str(out))} ({rows}).", soft_wrap=True)
    truth = escape(str(out / "truth.json"))
    injected = f"Injected {len(result.c2)} C2 channels; ground truth in {truth}:"
    console.print(injected, soft_wrap=True)
    for c2 in result.c2:
        record = asdict(c2)
        console.print(
            f"  {record['src']} -> {record['dst']}:{record['dst_port']} {record['kind']}"
            f" sleep {record['sleep_s']} s,"
            f" jitter {record['jitter_ratio']:.0%} ({record['jitter_kind']})",
            highlight=False,
            soft_wrap=True,
        )
    techniques = (
        f"{len(result.dga)} DGA hosts, {len(result.dns_tunnel)} DNS tunnels,"
        f" {len(result.fast_flux)} fast-flux names, {len(result.dns_bypass)} DNS bypasses,"
        f" {len(result.dns_volume)} DNS volume bursts; web: {len(result.web_c2)} C2 channels,"
        f" {len(result.user_agents)} implant"
        f" agents, {len(result.uri_commands)} URI command channels (web shell, tasking),"
        f" {len(result.domain_fronting)} fronted channels, {len(result.tls_certs)} bad"
        f" certificates, {len(result.http_anomalies)} HTTP anomalies; network:"
        f" {_network_summary(c.kind for c in result.network_c2)}"
    )
    console.print(f"  and {techniques} (see truth.json).", highlight=False, soft_wrap=True)
    if result.nrd_file is not None:
        feed = escape(str(result.nrd_file))
        console.print(f"Newly-registered-domain feed for young-domain: {feed}.", soft_wrap=True)


def _network_summary(kinds: Iterable[str]) -> str:
    """How many network channels of each kind, e.g. "1 proxy-bypass, 2 irc channels"."""
    counts = Counter(kinds)
    if not counts:
        return "no channels"
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) + " channels"


dga_app = typer.Typer(help="The DGA classifier shipped with homecall.", no_args_is_help=True)
app.add_typer(dga_app, name="dga")


@dga_app.command("score")
def dga_score(
    domains: Annotated[
        list[str] | None,
        typer.Argument(help="Domain names; '-' or none reads one name per line from stdin."),
    ] = None,
) -> None:
    """Print domain<TAB>probability that a generation algorithm made the name, per line."""
    import sys

    from homecall.intel.dga import load_model

    names = list(domains or ["-"])
    if names == ["-"]:
        names = [line.strip() for line in sys.stdin if line.strip()]
    elif "-" in names:
        raise typer.BadParameter("'-' (stdin) cannot be mixed with names")
    model = load_model()
    out = sys.stdout
    for start in range(0, len(names), 65536):
        part = names[start : start + 65536]
        probs = model.predict_proba(part)
        out.write("".join(f"{n}\t{p:.4f}\n" for n, p in zip(part, probs, strict=True)))


pcap_app = typer.Typer(
    help="Packet captures: index them, then copy out the packets behind a finding.",
    no_args_is_help=True,
)
app.add_typer(pcap_app, name="pcap")
HostOption = Annotated[
    list[str] | None, typer.Option("--host", help="IP address at either end (repeatable).")
]
PortOption = Annotated[
    list[int] | None,
    typer.Option("--port", help="Port at either end (repeatable).", min=0, max=65535),
]
TIME_HELP = "ISO 8601 (without a zone: UTC) or epoch seconds"


@pcap_app.command("index")
def pcap_index(
    paths: Annotated[list[Path], typer.Argument(help="Captures (pcap, pcapng) or folders.")],
    store: StoreOption = DEFAULT_STORE,
    sensor: SensorOption = None,
) -> None:
    """Index captures for `pcap search`: import them, one packets row per IP packet."""
    with _handled():
        captures = _captures(paths)
        target = Store(store)
        with _progress() as progress:
            result = pipeline.import_paths(captures, target, sensor=sensor, progress=progress)
        _report_index(result, target, captures)
    if result.errors:
        raise typer.Exit(2)


@pcap_app.command("search")
def pcap_search_(
    out: Annotated[Path, typer.Option("--out", "-o", help="The capture to write (pcap).")],
    store: StoreOption = DEFAULT_STORE,
    host: HostOption = None,
    port: PortOption = None,
    start: Annotated[str | None, typer.Option(help=f"From this time: {TIME_HELP}.")] = None,
    end: Annotated[str | None, typer.Option(help=f"Up to this time: {TIME_HELP}.")] = None,
    uid: Annotated[list[str] | None, typer.Option("--uid", help="Flow uid (repeatable).")] = None,
    finding: Annotated[
        str | None,
        typer.Option(
            "--finding",
            "-f",
            help=escape(
                "All packets of a finding of the last hunt: its # in `homecall findings`, or"
                " DETECTOR/SRC[/DST[/PORT]]."
            ),
        ),
    ] = None,
    capture_dir: Annotated[
        Path | None,
        typer.Option(
            "--capture-dir", help="Look for the captures in DIR (they moved since indexing)."
        ),
    ] = None,
) -> None:
    """Copy the indexed packets that match every option given into one capture, in order."""
    with _handled():
        target = Store(store)
        query = _packet_query(target, host, port, start, end, uid, finding)
        with _progress() as progress:
            result = pcap_search.search(
                target, query, out, capture_dir=capture_dir, progress=progress
            )
    if result is None:
        errors.print("No packet matches; nothing written.")
        raise typer.Exit(1)
    resolution = "nanosecond" if result.is_nanosecond else "microsecond"
    console.print(
        f"Wrote {result.total:,} packets from {len(result.packets)} capture(s) to"
        f" {escape(str(out))} ({result.format}, {resolution} timestamps):",
        soft_wrap=True,
    )
    for path, count in result.packets.items():
        console.print(f"  {count:>10,}  {escape(str(path))}", highlight=False, soft_wrap=True)


def _captures(paths: list[Path]) -> list[Path]:
    """The captures among `paths`: a named file that is none is an error, and other files found
    in named folders are left out."""
    chosen: list[Path] = []
    refused: list[str] = []
    for path in paths:
        for file in pipeline.discover([path]):
            if pcap_search.capture_format(head_of(file, 64)) is not None:
                chosen.append(file)
            elif file == path:
                refused.append(f"{file}: not a pcap or pcapng capture")
            else:
                log.info("left out %s: not a capture", file)
    if refused:
        raise InputError("; ".join(refused) + " (`pcap index` takes packet captures only)")
    if not chosen:
        raise InputError("no pcap or pcapng capture under " + ", ".join(map(str, paths)))
    return chosen


def _packet_query(
    store: Store,
    hosts: list[str] | None,
    ports: list[int] | None,
    start: str | None,
    end: str | None,
    uids: list[str] | None,
    finding: str | None,
) -> pcap_search.PacketQuery:
    """The query the options describe; BadParameter for a wrong value, none at all included."""
    bounds: dict[str, int | None] = {}
    for name, text in (("start", start), ("end", end)):
        try:
            bounds[name] = None if text is None else pcap_search.parse_time(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=f"--{name}") from exc
    flows = None
    if finding is not None:
        chosen = pcap_search.pick_finding(pipeline.load_findings(store), finding)
        flows = pcap_search.FlowScope.of(chosen)
    try:
        query = pcap_search.PacketQuery(
            hosts=tuple(hosts or ()),
            ports=tuple(ports or ()),
            start_us=bounds["start"],
            end_us=bounds["end"],
            uids=tuple(uids or ()),
            flows=flows,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if query.is_empty:
        raise typer.BadParameter(
            "say which packets: --host, --port, --start, --end, --uid or --finding"
        )
    return query


def _report_index(result: pipeline.ImportResult, store: Store, captures: list[Path]) -> None:
    """Packets indexed per capture, captures already indexed, then problems and errors."""
    stored = {record.quick: record for record in store.sources().values()}
    duplicates = set(result.duplicates)
    for path in captures:
        count, note = result.imported.get(path, {}).get("packets", 0), ""
        if path in duplicates:
            record = stored.get(quick_fingerprint(path))
            count, note = (record.rows.get("packets", 0) if record else 0), " (already indexed)"
        console.print(f"  {count:>10,} packets  {escape(str(path))}{note}", soft_wrap=True)
    packets = sum(rows.get("packets", 0) for rows in result.imported.values())
    console.print(
        f"Indexed {len(result.imported)} capture(s), {packets:,} packets;"
        f" {len(duplicates)} already indexed.",
        soft_wrap=True,
    )
    _report_problems(result)


def _read_options(settings: Config, timezone: str | None) -> Config:
    """`settings` with --timezone, when given, in place of [import] timezone."""
    if timezone is None:
        return settings
    try:
        options = ReadOptions(timezone=timezone)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--timezone") from exc
    return replace(settings, read_options=options)


def _print_findings(found: list[Finding], top: int, json_out: Path | None) -> None:
    if json_out is not None:
        count = write_jsonl(found, json_out)
        console.print(f"Wrote {count} findings to {escape(str(json_out))}.", soft_wrap=True)
    if not found:
        console.print("No findings.")
        return
    title = f"Top {min(top, len(found))} of {len(found)} findings"
    console.print(findings_table(found, top=top, title=title, width=console.width))


def _report_import(result: pipeline.ImportResult) -> None:
    problems = result.problems
    summary = import_summary(result.imported, len(result.duplicates), len(problems.skipped))
    console.print(summary, soft_wrap=True)
    _report_problems(result)


def _report_problems(result: pipeline.ImportResult) -> None:
    problems = result.problems
    for skipped in problems.skipped:
        log.info("skipped %s", skipped)
    if problems.bad_records:
        errors.print(f"[yellow]{problems.bad_records} bad record(s) were left out:[/yellow]")
        for problem in problems.records[:SHOWN_PROBLEMS]:
            errors.print("  " + escape(str(problem)), highlight=False, soft_wrap=True)
    for error in result.errors:
        errors.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _progress() -> Iterator[pipeline.Progress]:
    bars = Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def update(phase: str, done: float, total: float | None) -> None:
        key = phase.split(" ")[0]
        if key not in tasks:
            tasks[key] = bars.add_task(phase, total=total)
        bars.update(tasks[key], completed=done, total=total, description=phase)

    with bars:
        yield update


@contextlib.contextmanager
def _handled() -> Iterator[None]:
    try:
        yield
    except InputError as exc:
        errors.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    except HomecallError as exc:
        errors.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
