"""Domain knowledge shipped with homecall: public suffixes now; lists, feeds and models later."""

from __future__ import annotations

from homecall.intel.domains import is_ip_literal, registered_domain, registered_domains

__all__ = ["is_ip_literal", "registered_domain", "registered_domains"]
