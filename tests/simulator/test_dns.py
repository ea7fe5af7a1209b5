from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from homecall.simulator.dns import Queries, query_flows


def _queries(qtype: list[int]) -> Queries:
    n = len(qtype)
    return Queries(
        host_ip=np.full(n, 0x0A010114, dtype=np.uint32),
        ts_us=np.arange(n, dtype=np.int64) * 1_000_000,
        query=pa.array(["a.example", "b.example", "9.2.0.192.in-addr.arpa", "c.example"][:n]),
        qtype=np.array(qtype, dtype=np.int64),
        rcode=np.array([0, 0, 3, 0][:n], dtype=np.int64),
        answers=pa.array(["192.0.2.1,192.0.2.2", "TXT 3 abc", None, "<unknown type=10>"][:n]),
        ttl_s=np.array([60, 0, 0, 300][:n], dtype=np.int64),
        rtt_us=np.full(n, 20_000, dtype=np.int64),
    )


def test_query_rows_carry_type_names_and_a_ttl_per_answer_record() -> None:
    dns = query_flows(np.random.default_rng(0), _queries([1, 16, 12, 10])).dns
    assert dns["qtype"].to_pylist() == ["1", "16", "12", "10"]
    assert dns["qtype_name"].to_pylist() == ["A", "TXT", "PTR", "NULL"]
    assert dns["rcode_name"].to_pylist() == ["NOERROR", "NOERROR", "NXDOMAIN", "NOERROR"]
    assert dns["TTLs"].to_pylist() == ["60.000000,60.000000", "0.000000", None, "300.000000"]


def test_queries_are_cut_by_time_and_stacked() -> None:
    queries = _queries([1, 16, 12, 10])
    day = queries.between(1_000_000, 3_000_000)
    assert day.query.to_pylist() == ["b.example", "9.2.0.192.in-addr.arpa"]
    both = Queries.stack([day, queries.take(np.array([0]))])
    assert len(both) == 3
    assert both.answers.to_pylist()[2] == "192.0.2.1,192.0.2.2"
    assert len(Queries.stack([])) == 0


def test_an_unknown_query_type_is_refused() -> None:
    with pytest.raises(ValueError, match="qtypes"):
        query_flows(np.random.default_rng(0), _queries([1, 99]))
