"""What a client is counted as by the limits that count per address (the webhook's rate
limit, the sign-in throttle). Pure."""

from __future__ import annotations

import ipaddress

__all__ = ["client_key"]


def client_key(address: str | None) -> str:
    """The key a call from ``address`` is counted under: an IPv4 address itself; an
    IPv4-mapped IPv6 address as its IPv4 address; any other IPv6 address as its /64 (one
    host is usually given a whole /64, so counting single addresses would let it try
    forever; a zone such as ``%eth0`` belongs to no network); anything that is no address
    (a Unix socket) as itself, and no address at all as ``unknown``."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        unscoped = ipaddress.IPv6Address(int(parsed))
        return str(ipaddress.IPv6Network((unscoped, 64), strict=False))
    return str(parsed)
