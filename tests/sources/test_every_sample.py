"""Every file under ../shared/c2-samples imports without error (issue 6's first criterion).

One test per file. A log is recognised by content, imported with no error and no bad record,
and yields rows, unless it is a log type homecall knowingly leaves out (a Zeek weird.log, say),
which must then be recognised as such rather than "no reader recognises this file". The
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
    assert result.problems.records == [], [str(p) for p in result.problems.records]
    assert result.problems.bad_records == 0
    if result.rows == 0:
        [skipped] = result.problems.skipped
        assert "no reader recognises" not in skipped.reason, skipped
