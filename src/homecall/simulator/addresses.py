"""IPv4 addresses of the simulated enterprise and of the public Internet around it."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DOMAIN_CONTROLLERS",
    "FILE_SERVER",
    "HOSTS_PER_SUBNET",
    "INTERNAL_NETWORKS",
    "INTRANET_SERVERS",
    "LINUX_SERVERS",
    "MAIL_GATEWAY",
    "MAX_HOSTS",
    "MONITORING_SERVER",
    "PROXY",
    "RESOLVER",
    "WEB_SERVER",
    "draw_public_ips",
    "host_ips",
    "int_to_ip",
    "ip_texts",
    "ip_to_int",
    "is_internal",
    "is_public",
]

INTERNAL_NETWORKS = ("10.0.0.0/8",)
HOSTS_PER_SUBNET = 200  # one /24 per floor, addresses .20-.219 from DHCP
MAX_HOSTS = 250 * HOSTS_PER_SUBNET  # workstation subnets 10.1.1.0/24 .. 10.1.250.0/24


def ip_to_int(ip: str) -> int:
    """Dotted-quad IPv4 address -> integer."""
    return int(ipaddress.IPv4Address(ip))


def int_to_ip(value: int) -> str:
    """Integer -> dotted-quad IPv4 address."""
    return str(ipaddress.IPv4Address(int(value)))


def ip_texts(ips: npt.NDArray[np.uint32]) -> Any:
    """Integers -> dotted quads, as a pyarrow string array."""
    values = np.asarray(ips, dtype=np.uint32)
    octets = [pc.cast(pa.array((values >> s) & 0xFF), pa.string()) for s in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*octets, ".")


RESOLVER = ip_to_int("10.0.0.53")
DOMAIN_CONTROLLERS = (ip_to_int("10.0.0.10"), ip_to_int("10.0.0.11"))
FILE_SERVER = ip_to_int("10.0.1.10")
INTRANET_SERVERS = (ip_to_int("10.0.1.20"), ip_to_int("10.0.1.21"), ip_to_int("10.0.1.22"))
MAIL_GATEWAY = ip_to_int("10.0.1.25")  # checks senders and attachments in DNS-based lists
MONITORING_SERVER = ip_to_int("10.0.1.40")  # names every workstation by reverse DNS
PROXY = ip_to_int("10.0.1.30")  # the explicit web proxy (Squid, port 3128)
WEB_SERVER = ip_to_int("10.0.2.80")  # a customer portal, port 80 forwarded from the Internet
LINUX_SERVERS = (ip_to_int("10.0.3.10"), ip_to_int("10.0.3.11"), ip_to_int("10.0.3.12"))  # CI

_INTERNAL = tuple(ipaddress.IPv4Network(net) for net in INTERNAL_NETWORKS)


def host_ips(hosts: int) -> npt.NDArray[np.uint32]:
    """Stable workstation addresses: host i is 10.1.(1 + i // 200).(20 + i % 200)."""
    if not 0 < hosts <= MAX_HOSTS:
        raise ValueError(f"hosts must be in 1..{MAX_HOSTS}, got {hosts}")
    i = np.arange(hosts, dtype=np.uint32)
    base = np.uint32(ip_to_int("10.1.0.0"))
    subnet = np.uint32(1) + i // np.uint32(HOSTS_PER_SUBNET)
    return base + (subnet << np.uint32(8)) + np.uint32(20) + i % np.uint32(HOSTS_PER_SUBNET)


def is_public(ip: int) -> bool:
    """True for a globally routable unicast address (not RFC 1918/6598, loopback, multicast...)."""
    address = ipaddress.IPv4Address(int(ip))
    return address.is_global and not address.is_multicast


def is_internal(ips: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    """Mask of addresses inside INTERNAL_NETWORKS (the `local_orig`/`local_resp` test)."""
    mask = np.zeros(ips.shape, dtype=np.bool_)
    for net in _INTERNAL:
        netmask = np.uint32(int(net.netmask))
        mask |= (ips & netmask) == np.uint32(int(net.network_address))
    return mask


def draw_public_ips(
    rng: np.random.Generator, blocks: Sequence[str], n: int, used: set[int]
) -> list[int]:
    """Draw n distinct public addresses from the CIDR blocks, none in (and all added to) used."""
    networks = [ipaddress.IPv4Network(block) for block in blocks]
    drawn: list[int] = []
    while len(drawn) < n:
        net = networks[int(rng.integers(len(networks)))]
        ip = int(net.network_address) + int(rng.integers(1, net.num_addresses - 1))
        if ip in used or ip & 0xFF in (0, 255) or not is_public(ip):
            continue
        used.add(ip)
        drawn.append(ip)
    return drawn
