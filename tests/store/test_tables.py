from __future__ import annotations

from pathlib import Path

import pytest

from homecall.config import Config
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables, connect, open_tables


@pytest.fixture(scope="module")
def tables(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Tables:
    store = Store(tmp_path_factory.mktemp("tables") / "store")
    import_paths([samples / "zeek-json/slips-test9-mixed"], store)
    return open_tables(store, Config().internal, connect())


def test_leaf_certificate_fields_are_joined_into_tls(tables: Tables) -> None:
    tls = tables.to_pyarrow(tables["tls"].filter(tables["tls"].uid == "CmjEJ14q2fMkVjIrjh"))
    row = tls.to_pylist()[0]
    # ssl.log: cert_chain_fuids [FKMTO94tQEsBTFbPgc, ...]; x509.log id FKMTO94tQEsBTFbPgc is
    # "CN=www.bing.com" issued by Microsoft IT TLS CA 5, RSA 2048
    assert row["server_name"] == "ieonline.microsoft.com"
    assert row["cert_subject"] == "CN=www.bing.com"
    assert row["cert_issuer"].startswith("CN=Microsoft IT TLS CA 5")
    assert row["cert_key_length"] == 2048
    assert "www.bing.com" in row["cert_san_dns"]


def test_src_is_the_internal_side_whoever_opened(tables: Tables) -> None:
    conn = tables.oriented("conn")
    rows = tables.to_pyarrow(conn.select("orig_ip", "resp_ip", "src", "dst", "direction"))
    internal = set(tables.to_pyarrow(tables.internal).column("ip").to_pylist())
    assert rows.num_rows > 0
    for row in rows.to_pylist():
        assert row["src"] in internal
        if row["direction"] == "inbound":
            assert (row["src"], row["dst"]) == (row["resp_ip"], row["orig_ip"])
        else:
            assert (row["src"], row["dst"]) == (row["orig_ip"], row["resp_ip"])
    assert "10.0.2.15" in internal  # PROVENANCE.txt: the Windows VM 10.0.2.15
