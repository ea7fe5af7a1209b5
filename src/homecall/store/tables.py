"""What detectors see: Ibis tables over the store for one window, on whichever engine.

The engine is chosen once, at the edge (`homecall.pipeline`); detectors receive a `Tables` and
never a connection or SQL text. Expressions execute in `batches` and, for results several
detectors share, in `materialize`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from homecall.errors import EngineError
from homecall.networks import InternalNetworks
from homecall.store.schema import SCHEMAS, TIMESTAMP
from homecall.store.store import WHOLE_STORE, Store, Window

__all__ = ["ENDPOINT_TABLES", "WHOLE_STORE", "Tables", "Window", "connect", "open_tables"]

log = logging.getLogger(__name__)

ENDPOINT_TABLES = ("conn", "dns", "http", "tls", "smtp", "firewall")
BATCH_ROWS = 65_536
_KEPT = itertools.count(1)  # materialized results, numbered across every Tables
_X509_COLUMNS = (
    "subject",
    "issuer",
    "serial",
    "not_valid_before",
    "not_valid_after",
    "key_type",
    "key_length",
    "sig_alg",
    "san_dns",
)


def connect(engine: str = "duckdb", **options: Any) -> ibis.BaseBackend:
    """An Ibis backend by name: the embedded DuckDB (default) or Spark (`homecall[spark]`)."""
    if engine == "duckdb":
        con = ibis.duckdb.connect(**options)
        con.raw_sql("SET TimeZone = 'UTC'")
        con.raw_sql("SET enable_progress_bar = false")  # the CLI draws its own
        return con
    if engine == "spark":
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise EngineError("the spark engine needs `pip install homecall[spark]`") from exc
        session = options.pop("session", None) or SparkSession.builder.getOrCreate()
        session.conf.set("spark.sql.session.timeZone", "UTC")
        # The store's Parquet (format 2) may hold BYTE_STREAM_SPLIT floating-point pages, which
        # Spark 4.0's vectorized reader rejects ("Unsupported encoding") and its row reader reads.
        session.conf.set("spark.sql.parquet.enableVectorizedReader", "false")
        return ibis.pyspark.connect(session, **options)
    raise EngineError(f"unknown engine {engine!r}; expected 'duckdb' or 'spark'")


class Tables:
    """The normalized tables of one window, plus the set of internal addresses seen in it."""

    def __init__(
        self,
        backend: ibis.BaseBackend,
        tables: dict[str, ir.Table],
        internal: pa.Table,
        window: Window,
        history: dict[str, ir.Table] | None = None,
    ) -> None:
        self.backend = backend
        self._tables = tables
        self._history = history if history is not None else _no_history()
        self._internal = internal
        self.internal = ibis.memtable(internal)  # column `ip`: internal addresses in the window
        self.fleet_size = internal.num_rows  # how many internal hosts were active
        self.window = window
        self._reused: dict[str, ir.Table] = {}
        self._scratch: Path | None = None
        self._past: Tables | None = None

    def __getitem__(self, name: str) -> ir.Table:
        return self._tables[name]

    def batches(self, expr: ir.Table, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """Execute `expr` and stream its rows as Arrow batches of the expression's own types.

        Engines widen some results (DuckDB sums int64 into a 128-bit decimal); casting back to
        the Ibis schema gives every detector the same types on every engine.
        """
        schema = expr.schema().to_pyarrow()
        try:
            reader = self.backend.to_pyarrow_batches(expr, chunk_size=batch_rows)
        except Exception as exc:  # Ibis raises backend-specific errors; name the engine
            raise EngineError(f"{self.backend.name}: {exc}") from exc
        for batch in reader:
            yield batch if batch.schema == schema else batch.cast(schema)

    def to_pyarrow(self, expr: ir.Table) -> pa.Table:
        """Execute a small expression (a summary, a lookup) into one Arrow table."""
        batches = list(self.batches(expr))
        schema = expr.schema().to_pyarrow()
        return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()

    def memtable(self, data: pa.Table) -> ir.Table:
        """A small Arrow table made available to expressions on this engine."""
        return ibis.memtable(data)

    def oriented(self, name: str) -> ir.Table:
        """`name` with `src` (internal side), `dst`, `dst_port` and `direction` added.

        direction: "outbound" (internal opened to external), "inbound" (external opened to
        internal), "internal" (both internal; src is the originator). Rows with no internal side
        are dropped.
        """
        return self._oriented(self._tables[name])

    def past(self) -> Tables:
        """The store's records before the window, behind the same interface (the window's
        internal hosts decide orientation): what the store already knew, for first-seen dates.
        Empty when the window starts at the store's beginning."""
        if self._past is None:  # kept: what it materializes lives as long as this window
            self._past = Tables(self.backend, self._history, self._internal, self.window)
        return self._past

    def history(self, name: str) -> ir.Table:
        """`name` oriented as by `oriented`, over the store's records before the window."""
        return self.past().oriented(name)

    def materialize(self, expr: ir.Table) -> ir.Table:
        """`expr` computed now and kept: a table that later queries read instead of recomputing
        it (see `reuse`); for intermediate results a detector reads several times."""
        number = next(_KEPT)  # table names are global to the connection
        name = f"homecall_kept_{number}"
        if self.backend.name == "pyspark":
            return self._cached_on_spark(expr, name)
        if self.backend.name != "duckdb":
            return expr  # another engine: recomputed in each query
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="homecall-"))
            weakref.finalize(self, shutil.rmtree, self._scratch, ignore_errors=True)
        path = self._scratch / f"{number}.parquet"
        try:
            self.backend.to_parquet(expr, path)
        except Exception as exc:  # Ibis raises backend-specific errors; name the engine
            raise EngineError(f"{self.backend.name}: {exc}") from exc
        kept = self.backend.read_parquet(path, table_name=name)
        return kept.cast(expr.schema())

    def _cached_on_spark(self, expr: ir.Table, name: str) -> ir.Table:
        """Spark's own cache under a temporary view, released with these tables. Not Ibis'
        cache(): it picks its backend from the expression (the default DuckDB one for
        in-memory tables alone) and its finalizers fail during garbage collection."""
        backend: Any = self.backend
        backend._run_pre_execute_hooks(expr)  # register the in-memory tables, as execution does
        frame = backend._session.sql(backend.compile(expr)).cache()
        frame.createOrReplaceTempView(name)
        weakref.finalize(self, _release, frame)
        return backend.table(name).cast(expr.schema())  # Spark reads its times back zone-less

    def reuse(self, key: str, build: Callable[[Tables], ir.Table]) -> ir.Table:
        """`build(self)`, computed once and kept for every detector that asks again for `key`.

        For views many detectors share (`web.requests`, `common.named_contacts`): the engine
        would otherwise recompute them, regular expressions and joins included, in every query
        that reads them. DuckDB writes the result to a Parquet file in a scratch folder kept as
        long as these tables (queries over Parquet run faster here than over DuckDB's own
        temporary tables); Spark caches it.
        """
        if key not in self._reused:
            self._reused[key] = self.materialize(build(self))
        return self._reused[key]

    def _oriented(self, t: ir.Table) -> ir.Table:
        orig_in = t.orig_ip.isin(self.internal.ip)
        resp_in = t.resp_ip.isin(self.internal.ip)
        t = t.mutate(_orig_in=orig_in, _resp_in=resp_in).filter(ibis._._orig_in | ibis._._resp_in)
        outbound_or_internal = t._orig_in
        return t.mutate(
            src=outbound_or_internal.ifelse(t.orig_ip, t.resp_ip),
            dst=outbound_or_internal.ifelse(t.resp_ip, t.orig_ip),
            dst_port=outbound_or_internal.ifelse(t.resp_port, t.orig_port),
            direction=ibis.cases(
                (t._orig_in & t._resp_in, "internal"),
                (t._orig_in, "outbound"),
                else_="inbound",
            ),
        ).drop("_orig_in", "_resp_in")


def open_tables(
    store: Store,
    internal: InternalNetworks,
    backend: ibis.BaseBackend,
    window: Window = WHOLE_STORE,
) -> Tables:
    """Ibis tables over the store's Parquet files for `window`, and the internal hosts in it."""
    listed = store.files_by_table(start_us=window.start_us, end_us=window.end_us)
    tables = _tables_over(backend, listed, "homecall", lambda t: _in_window(t, window))
    internal_ips = _internal_addresses(backend, tables, internal)
    return Tables(backend, tables, internal_ips, window, _history(store, backend, window))


def _tables_over(
    backend: ibis.BaseBackend | None,
    listed: dict[str, list[Path]],
    prefix: str,
    keep: Callable[[ir.Table], ir.Table],
) -> dict[str, ir.Table]:
    """Every table over its `listed` files (empty without any), rows chosen by `keep`, and tls
    with its leaf certificate's x509 fields joined in."""
    tables: dict[str, ir.Table] = {}
    for name, schema in SCHEMAS.items():
        files = listed.get(name, [])
        if files and backend is not None:
            t = _read_parquet(backend, files, f"{prefix}_{name}")
        else:
            t = ibis.memtable(schema.empty_table())
        tables[name] = keep(_utc_times(t, schema))
    tables["tls"] = _with_certificates(tables["tls"], tables.pop("x509"))
    return tables


def _history(store: Store, backend: ibis.BaseBackend, window: Window) -> dict[str, ir.Table]:
    """The tables before the window's start (empty for a window open at the start)."""
    if window.start_us is None:
        return _no_history()
    start = _timestamp(window.start_us)
    listed = store.files_by_table(start_us=None, end_us=window.start_us - 1)
    return _tables_over(backend, listed, "homecall_history", lambda t: t.filter(t.ts < start))


def _release(frame: Any) -> None:
    with contextlib.suppress(Exception):  # the session may be gone already
        frame.unpersist()


def _no_history() -> dict[str, ir.Table]:
    return _tables_over(None, {}, "", lambda t: t)


def _read_parquet(backend: ibis.BaseBackend, files: list[Path], name: str) -> ir.Table:
    """The one engine-specific piece: Ibis' PySpark `read_parquet` takes one path, not a list."""
    paths = [str(f) for f in files]
    if backend.name == "pyspark":
        frame = backend._session.read.parquet(*paths)
        frame.createOrReplaceTempView(name)
        return backend.table(name)
    return backend.read_parquet(paths, table_name=name)


def _utc_times(t: ir.Table, schema: pa.Schema) -> ir.Table:
    """Spark reads the store's UTC timestamps as zone-less; give every engine the same type."""
    times = {f.name: "timestamp('UTC', 6)" for f in schema if pa.types.is_timestamp(f.type)}
    return t.cast(times)


def _in_window(t: ir.Table, window: Window) -> ir.Table:
    if window.start_us is not None:
        t = t.filter(t.ts >= _timestamp(window.start_us))
    if window.end_us is not None:
        t = t.filter(t.ts <= _timestamp(window.end_us))
    return t


def _timestamp(us: int) -> ir.TimestampScalar:
    return ibis.literal(pa.scalar(us, TIMESTAMP).as_py(), type="timestamp('UTC', 6)")


def _with_certificates(tls: ir.Table, x509: ir.Table) -> ir.Table:
    """Join the leaf certificate's x509 fields into tls as `cert_*` columns (left join)."""
    certs = x509.group_by("cert_id").aggregate(
        **{f"cert_{c}": x509[c].arbitrary() for c in _X509_COLUMNS}
    )
    leaf = tls.mutate(_leaf=tls.cert_chain[0])
    joined = leaf.left_join(certs, leaf._leaf == certs.cert_id)
    return joined.drop("_leaf", "cert_id")


def _internal_addresses(
    backend: ibis.BaseBackend, tables: dict[str, ir.Table], internal: InternalNetworks
) -> pa.Table:
    parts = []
    for name in ENDPOINT_TABLES:
        t = tables[name]
        parts.append(t.select(ip=t.orig_ip))
        parts.append(t.select(ip=t.resp_ip))
    distinct = ibis.union(*parts, distinct=True).filter(ibis._.ip.notnull())
    ips = backend.to_pyarrow(distinct).column("ip")
    inside = internal.classify(ips)
    return pa.table({"ip": ips.filter(inside) if len(ips) else ips})
