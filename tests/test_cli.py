from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from homecall.cli import app
from tests.findings_contract import check_record

runner = CliRunner()
NJRAT = "zeek-tsv/stratosphere-security-datasets/001-zeek-scenario-malicious"


def test_hunt_prints_ranked_findings_and_writes_json_lines(samples: Path, tmp_path: Path) -> None:
    out = tmp_path / "findings.jsonl"
    store = tmp_path / "store"
    result = runner.invoke(
        app, ["hunt", str(samples / NJRAT), "--store", str(store), "--json", str(out), "--top", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "Imported 1 file(s): conn 992" in result.output
    first_row = result.output.split("│ 1 │", 1)[1].split("│ 2 │", 1)[0]
    assert "beacon" in first_row
    assert "41.108.179.197" in first_row
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for record in records:
        check_record(record)
    assert records[0]["detector"] == "beacon"
    again_out = tmp_path / "b.jsonl"
    again = runner.invoke(app, ["findings", "--store", str(store), "--json", str(again_out)])
    assert again.exit_code == 0
    assert again_out.read_text() == out.read_text()


def test_bad_file_is_named_with_its_line_and_the_rest_imported(
    samples: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "logs" / "conn.log"
    broken.parent.mkdir()
    broken.write_text("#separator \\x09\n#path\tconn\n1.0\tCa\n")
    good = samples / "zeek-tsv/stratosphere-security-datasets/003-zeek-scenario-malicious"
    result = runner.invoke(
        app, ["import", str(broken.parent), str(good), "--store", str(tmp_path / "s")]
    )
    assert result.exit_code == 2
    assert f"{broken}:3: Zeek TSV log without a #fields header line" in result.output
    assert "conn 361" in result.output


def test_missing_path_and_missing_store_are_errors(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    missing = runner.invoke(app, ["import", str(tmp_path / "nope"), "--store", store])
    assert missing.exit_code == 2
    assert "no such file or directory" in missing.output
    empty = runner.invoke(app, ["findings", "--store", store])
    assert empty.exit_code == 1
    assert "no findings yet" in empty.output


def test_damaged_findings_file_is_named_with_its_line(samples: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    runner.invoke(app, ["hunt", str(samples / NJRAT), "--store", str(store)])
    findings = store / "findings.jsonl"
    findings.write_text(findings.read_text() + '{"detector": "beacon"}\n')
    result = runner.invoke(app, ["findings", "--store", str(store)])
    assert result.exit_code == 1
    lines = len(findings.read_text().splitlines())
    assert f"{findings}:{lines}: damaged finding" in result.output


def test_bad_records_are_listed_with_their_lines(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "dns.log"
    log.parent.mkdir()
    header = (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
        "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tquery\n"
        "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\n"
    )
    rows = "1.0\tCa\t10.0.0.1\t5\t10.0.0.53\t53\tudp\ta.example\n1.5\tCb\t10.0.0.1\n"
    log.write_text(header + rows)
    result = runner.invoke(app, ["import", str(log), "--store", str(tmp_path / "s")])
    assert result.exit_code == 0
    assert "Imported 1 file(s): dns 1;" in result.output
    assert "1 bad record(s) were left out:" in result.output
    assert f"{log}:9: wrong number of fields" in result.output
