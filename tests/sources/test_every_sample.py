"""Every file under ../shared/c2-samples imports without error (issue 6's first criterion).

One test per file. A log is recognised by content, imported with no error and no bad record
(but for the two malformed lines listed below, which must be reported by line), and yields
rows, unless it is a log type homecall knowingly leaves out (a Zeek weird.log, say), which
must then be recognised as such rather than "no reader recognises this file". The
documentation (PROVENANCE.txt, README.md) and the domain lists under benign-domains/ and
dga-domains/ are not logs: their provenance says so, and homecall must not take them for one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from homecall.errors import UnknownFormatError
from homecall.pipeline import discover, import_paths
from homecall.sources import detect
from homecall.store import Store
from tests.conftest import _samples_dir

_NOT_LOGS = ("benign-domains", "dga-domains")  # "not a log format" (their PROVENANCE.txt)
_DOCUMENTATION = ("PROVENANCE.txt", "README.md")
# The only malformed lines in the samples; each must be reported with its line, the rest stored.
_MALFORMED = {
    # PROVENANCE.txt: "incl. 2 deliberately malformed lines (IN=enp.1s0, XX=)"; XX= has no IN=
    "firewall-iptables/crowdsec-hub/iptables-logs.log": [3],
    # "Teardown TCP connection ... for DMZ-Inside:[10.22.8.10/57109 to ...": a stray "["
    "firewall-cisco-asa/apache-metron/asa_raw.log": [93],
}


def _sample_files() -> list[str]:
    root = _samples_dir()
    if root is None:
        return ["<no samples>"]
    return [str(p.relative_to(root)) for p in discover([root])]


def _is_log(relative: Path) -> bool:
    return relative.name not in _DOCUMENTATION and relative.parts[0] not in _NOT_LOGS


@pytest.mark.parametrize("relative", _sample_files())
def test_sample_file_imports_without_error(samples: Path, tmp_path: Path, relative: str) -> None:
    path = samples / relative
    if not _is_log(Path(relative)):
        with pytest.raises(UnknownFormatError):
            detect(path)
        return
    result = import_paths([path], Store(tmp_path / "store"))
    assert result.errors == []
    expected = _MALFORMED.get(relative, [])
    assert [p.line for p in result.problems.records] == expected, [
        str(p) for p in result.problems.records
    ]
    assert result.problems.bad_records == len(expected)
    if result.rows == 0:
        [skipped] = result.problems.skipped
        assert "no reader recognises" not in skipped.reason, skipped
