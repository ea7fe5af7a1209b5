"""Services that call home on a timer by design: NTP, DNS, certificate status, OS and browser
updates, telemetry and connectivity checks. A beacon to one of them is lowered, not hidden."""

from __future__ import annotations

__all__ = ["KNOWN_PORTS", "KNOWN_SUFFIXES", "known_service"]

KNOWN_PORTS: dict[int, str] = {
    123: "NTP",  # RFC 5905
    53: "DNS",  # RFC 1035
    853: "DNS over TLS",  # RFC 7858
}

# (registered domain or name suffix, what it is). A name matches a suffix when it equals it or
# ends with "." + suffix. Vendors' documented endpoints; kept short on purpose: a long list
# would hide C2 that hides behind look-alike names.
KNOWN_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ntp.org", "NTP pool"),
    ("time.windows.com", "Windows time"),
    ("time.apple.com", "Apple time"),
    ("time.google.com", "Google time"),
    ("ocsp.digicert.com", "certificate status (OCSP)"),
    ("crl3.digicert.com", "certificate revocation list"),
    ("crl4.digicert.com", "certificate revocation list"),
    ("o.lencr.org", "certificate status (OCSP)"),
    ("ocsp.pki.goog", "certificate status (OCSP)"),
    ("ocsp.sectigo.com", "certificate status (OCSP)"),
    ("ocsp.globalsign.com", "certificate status (OCSP)"),
    ("ocsp.entrust.net", "certificate status (OCSP)"),
    ("ocsp.godaddy.com", "certificate status (OCSP)"),
    ("ocsp.apple.com", "certificate status (OCSP)"),
    ("windowsupdate.com", "Windows Update"),
    ("update.microsoft.com", "Windows Update"),
    ("delivery.mp.microsoft.com", "Windows Update delivery"),
    ("events.data.microsoft.com", "Windows telemetry"),
    ("msftconnecttest.com", "Windows connectivity check"),
    ("update.googleapis.com", "Google software update"),
    ("connectivitycheck.gstatic.com", "Android connectivity check"),
    ("detectportal.firefox.com", "Firefox captive-portal check"),
    ("aus5.mozilla.org", "Firefox update"),
    ("swscan.apple.com", "Apple software update"),
    ("mesu.apple.com", "Apple software update"),
    ("connectivity-check.ubuntu.com", "Ubuntu connectivity check"),
    ("updates.paloaltonetworks.com", "PAN-OS dynamic updates"),
    ("wildfire.paloaltonetworks.com", "PAN-OS WildFire cloud"),
)


def known_service(dst: str | None, port: int | None) -> str | None:
    """What known timer-driven service `dst:port` is, or None."""
    if port is not None and port in KNOWN_PORTS:
        return KNOWN_PORTS[port]
    if not dst:
        return None
    name = dst.lower().rstrip(".")
    for suffix, what in KNOWN_SUFFIXES:
        if name == suffix or name.endswith("." + suffix):
            return what
    return None
