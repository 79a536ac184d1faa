"""Debian's packages: what is installed, installing what the stack needs, the mirror."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["DebianError", "apt_install", "debian_mirror", "is_installed"]

_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


class DebianError(RuntimeError):
    """A package could not be installed, or the system is not Debian-like."""


def is_installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],  # noqa: S607
                          capture_output=True, text=True, check=False)
    return done.returncode == 0 and done.stdout.endswith("installed")


def apt_install(packages: Sequence[str], progress: Callable[[str], None]) -> list[str]:
    """Install the ``packages`` not yet installed; returns those it installed."""
    missing = [p for p in packages if not is_installed(p)]
    if not missing:
        return []
    if os.geteuid() != 0:
        raise DebianError(f"installing {', '.join(missing)} needs root: run "
                          f"`apt-get install -y {' '.join(missing)}` as root first")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    progress(f"apt-get update (for {', '.join(missing)})")
    _apt(["apt-get", "update", "-qq"], env)
    progress(f"apt-get install {' '.join(missing)}")
    _apt(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env)
    return missing


def _apt(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                          timeout=1800)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise DebianError(f"`{' '.join(argv)}` failed: {tail}")


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (the first ``deb`` source for Debian
    proper, not its security archive)."""
    for path in _SOURCES:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(
                r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            if "security" not in uri:
                return str(uri)
    raise DebianError("no Debian mirror in /etc/apt/sources.list(.d): is this Debian?")
