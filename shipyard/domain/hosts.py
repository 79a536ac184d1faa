"""Which Host names the web UI answers, and which proxies it believes. Pure.

A page served to any Host is open to DNS rebinding: a site the victim visits makes its own
name resolve to 127.0.0.1, and the victim's browser then reads the UI as that site, with
the victim's network position. Answering only the names an operator chose closes that: the
loopback names (no outside name can be them), the address the UI is bound to, and the
names in ``SHIPYARD_UI_ALLOWED_HOSTS``.

A proxy in front of the UI says the client's address and scheme in ``X-Forwarded-For`` and
``X-Forwarded-Proto``; anyone can send those headers, so only the proxies listed in
``SHIPYARD_TRUSTED_PROXIES`` are believed.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from shipyard.domain.setting_lists import string_list

__all__ = ["LOOPBACK_HOSTS", "allowed_hosts", "host_patterns", "proxy_networks"]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
"""Host header values that only this machine can mean."""

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$|^\[[0-9a-f:.]+\]$")
_WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - names, not a bind


def host_patterns(value: Any, *, variable: str) -> list[str]:
    """``value`` (a list, JSON list or comma-separated string) as Host allow-list
    entries, lower case; ValueError naming ``variable`` for one that is no host name,
    carries a port, or is ``*`` (which would undo the guard)."""
    patterns = []
    for item in string_list(value, variable, "host names", example='["ui.example.com"]',
                            comma_example="ui.example.com,*.corp.example"):
        name = item.lower()
        if name == "*":
            raise ValueError(f"{variable}: '*' would answer any Host and so undo the guard "
                             "against DNS rebinding; list the names the UI is reached by")
        if not _HOST.fullmatch(name):
            raise ValueError(f"{variable}: {item!r} is no host name; write a name without "
                             "scheme or port (ui.example.com), '*.example.com' for its "
                             "subdomains, or an IPv6 address in brackets ([::1])")
        patterns.append(name)
    return patterns


def proxy_networks(value: Any, *, variable: str) -> list[str]:
    """``value`` as addresses or networks (``10.0.0.0/8``), normalised; ValueError naming
    ``variable`` for anything else."""
    networks = []
    for item in string_list(value, variable, "addresses or networks",
                            example='["10.0.0.5", "192.168.1.0/24"]',
                            comma_example="10.0.0.5,192.168.1.0/24"):
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{variable}: {item!r} is no IP address or network; write "
                             "127.0.0.1, 10.0.0.0/8 or ::1 (names are not resolved)") from None
        if network.prefixlen == 0:
            raise ValueError(f"{variable}: {item!r} trusts every address, so any caller "
                             "could claim any address; name your proxies")
        networks.append(str(network))
    return networks


def allowed_hosts(configured: list[str], bound_host: str | None) -> list[str]:
    """The Host values to answer: the loopback names, the address the server is bound to
    (unless it is a wildcard such as 0.0.0.0, which names no host) and ``configured``."""
    hosts = list(LOOPBACK_HOSTS)
    if bound_host and bound_host not in _WILDCARD_BINDS:
        bound = bound_host.lower()
        try:
            if ipaddress.ip_address(bound.strip("[]")).version == 6:
                bound = f"[{bound.strip('[]')}]"
        except ValueError:
            pass
        hosts.append(bound)
    hosts += [h for h in configured if h not in hosts]
    return list(dict.fromkeys(hosts))
