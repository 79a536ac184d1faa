"""The one host network device the local cluster needs: an address that is not loopback
for the API server to advertise (Kubernetes refuses a loopback advertise address).

It is a bridge with no ports, not a ``dummy`` device, because these kernels are built
without the dummy driver. Traffic to it never leaves the machine.
"""

from __future__ import annotations

import ipaddress
import subprocess

__all__ = ["NetworkError", "ensure_local_address", "remove_device"]


class NetworkError(RuntimeError):
    """``ip`` refused; the message carries its error."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False,
                          timeout=30)
    if check and done.returncode != 0:
        raise NetworkError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


def ensure_local_address(device: str, address: str) -> bool:
    """Make ``device`` exist, be up and carry ``address``/32. Returns whether anything
    changed."""
    ipaddress.ip_address(address)  # refuse anything that is not an address
    changed = False
    if _ip("link", "show", device, check=False).returncode != 0:
        _ip("link", "add", device, "type", "bridge")
        changed = True
    if f" {address}/" not in _ip("-4", "addr", "show", "dev", device).stdout:
        _ip("addr", "add", f"{address}/32", "dev", device)
        changed = True
    _ip("link", "set", device, "up")
    return changed


def remove_device(device: str) -> bool:
    """Delete ``device`` if it exists; returns whether it did."""
    if _ip("link", "show", device, check=False).returncode != 0:
        return False
    _ip("link", "delete", device)
    return True
