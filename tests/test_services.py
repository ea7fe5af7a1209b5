from __future__ import annotations

import pytest

from homecall.intel.services import known_service


@pytest.mark.parametrize(
    ("dst", "port", "what"),
    [
        ("162.159.200.37", 123, "NTP"),
        ("0.pool.ntp.org", 443, "NTP pool"),
        ("ctldl.windowsupdate.com", 80, "Windows Update"),
        ("OCSP.DigiCert.com.", 80, "certificate status (OCSP)"),
        ("windowsupdate.com.evil.example", 443, None),  # a look-alike is not the service
        ("notwindowsupdate.com", 443, None),
        ("net-img.us", 443, None),
        (None, None, None),
    ],
)
def test_known_service(dst: str | None, port: int | None, what: str | None) -> None:
    assert known_service(dst, port) == what
