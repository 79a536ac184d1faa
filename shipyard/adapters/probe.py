"""Health probes over HTTP(S) on loopback: is a local server answering yet?"""

from __future__ import annotations

import httpx

__all__ = ["http_ok"]


def http_ok(url: str, *, expect: str = "", timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 200 (and its body contains ``expect``). Certificates are not
    verified: these are the stack's own servers on loopback, probed for liveness only."""
    try:
        response = httpx.get(url, timeout=timeout, verify=False)  # noqa: S501
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and expect in response.text
