"""Knowledge shipped with homecall: public suffixes, known services; feeds and models later."""

from __future__ import annotations

from homecall.intel.domains import is_ip_literal, registered_domain, registered_domains
from homecall.intel.services import known_service

__all__ = ["is_ip_literal", "known_service", "registered_domain", "registered_domains"]
