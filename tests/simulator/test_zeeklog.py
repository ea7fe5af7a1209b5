from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from homecall.simulator.addresses import ip_to_int
from homecall.simulator.flows import make_uids
from homecall.simulator.zeeklog import FIELDS, write_log

OPENED = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
CLOSED = OPENED + dt.timedelta(days=1)


def _ssl_columns() -> dict[str, object]:
    return {
        "ts": np.array([1795392001_500000, 1795392000_000001], dtype=np.int64),
        "uid": pa.array(["CbbbbbbbbbbbbbbbbB", "CaaaaaaaaaaaaaaaaA"]),
        "id.orig_h": np.array([ip_to_int("10.1.1.20"), ip_to_int("10.1.1.21")], dtype=np.uint32),
        "id.orig_p": np.array([50000, 50001]),
        "id.resp_h": np.array([ip_to_int("142.250.1.2"), ip_to_int("1.0.0.255")], dtype=np.uint32),
        "id.resp_p": np.array([443, 443]),
        "version": "TLSv13",
        "cipher": "TLS_AES_128_GCM_SHA256",
        "curve": "x25519",
        "server_name": pa.array(["www.google.com", None]),
        "resumed": np.array([1, 0], dtype=np.int8),
        "last_alert": "-",
        "next_protocol": "h2",
        "established": "T",
        "ssl_history": "CsiI",
        "cert_chain_fps": "-",
        "client_cert_chain_fps": "-",
        "sni_matches_cert": np.array([-1, 0], dtype=np.int8),
        "validation_status": "-",
    }


def test_writes_zeek_header_sorted_rows_and_close(tmp_path: Path) -> None:
    path = tmp_path / "ssl.log"
    assert write_log(path, "ssl", _ssl_columns(), OPENED, CLOSED) == 2
    lines = path.read_text().split("\n")
    assert lines[:6] == [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#path\tssl",
        "#open\t2026-11-23-00-00-00",
    ]
    assert lines[6] == "#fields\t" + "\t".join(name for name, _ in FIELDS["ssl"])
    assert lines[7].startswith("#types\ttime\tstring\taddr\tport\taddr\tport\tstring")
    assert lines[-2:] == ["#close\t2026-11-24-00-00-00", ""]
    # sorted by ts; microseconds zero-padded; unset bools and null strings become "-"
    assert lines[8].split("\t")[:10] == [
        "1795392000.000001", "CaaaaaaaaaaaaaaaaA", "10.1.1.21", "50001", "1.0.0.255", "443",
        "TLSv13", "TLS_AES_128_GCM_SHA256", "x25519", "-",
    ]  # fmt: skip
    assert lines[9].split("\t")[:6] == [
        "1795392001.500000", "CbbbbbbbbbbbbbbbbB", "10.1.1.20", "50000", "142.250.1.2", "443",
    ]  # fmt: skip
    assert lines[8].split("\t")[10] == "F"
    assert lines[9].split("\t")[10] == "T"
    assert [line.split("\t")[17] for line in lines[8:10]] == ["F", "-"]


def test_intervals_counts_and_unset_values(tmp_path: Path) -> None:
    columns: dict[str, object] = {name: "-" for name, _ in FIELDS["conn"]}
    columns.update(
        {
            "ts": np.array([0, 1], dtype=np.int64),
            "duration": np.array([-1, 1_234_567], dtype=np.int64),
            "orig_bytes": np.array([-1, 0], dtype=np.int64),
        }
    )
    path = tmp_path / "conn.log"
    write_log(path, "conn", columns, OPENED, CLOSED)
    rows = [line.split("\t") for line in path.read_text().splitlines()[8:-1]]
    assert [row[8] for row in rows] == ["-", "1.234567"]
    assert [row[9] for row in rows] == ["-", "0"]
    assert rows[0][0] == "0.000000"


def test_an_empty_log_still_has_its_header_and_close(tmp_path: Path) -> None:
    path = tmp_path / "http.log"
    assert write_log(path, "http", {}, OPENED, CLOSED) == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 9
    assert lines[4] == "#path\thttp"
    assert lines[-1] == "#close\t2026-11-24-00-00-00"


def test_missing_or_unknown_columns_are_refused(tmp_path: Path) -> None:
    columns = _ssl_columns()
    del columns["curve"]
    columns["ja3"] = "-"
    with pytest.raises(ValueError, match="curve"):
        write_log(tmp_path / "ssl.log", "ssl", columns, OPENED, CLOSED)


def test_uids_look_like_zeek_and_are_unique() -> None:
    uids = make_uids(np.random.default_rng(0), 50_000).to_pylist()
    assert len(set(uids)) == len(uids)
    assert all(len(uid) == 18 and uid[0] == "C" and uid[1:].isalnum() for uid in uids)
    assert make_uids(np.random.default_rng(0), 3).to_pylist() == uids[:3]
    assert make_uids(np.random.default_rng(0), 2, "F").to_pylist()[0].startswith("F")
