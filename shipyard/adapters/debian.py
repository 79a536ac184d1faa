"""Debian's packages: what is installed, installing what the stack needs, the mirror."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["DebianError", "apt_install", "debian_mirror", "debootstrap", "is_installed",
           "pack_rootfs", "status_is_installed"]

_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))


class DebianError(RuntimeError):
    """A package could not be installed, or the system is not Debian-like."""


def is_installed(package: str) -> bool:
    """Whether dpkg has ``package`` installed (not merely known, removed or half-set-up)."""
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                          capture_output=True, text=True, check=False, timeout=60)
    return done.returncode == 0 and status_is_installed(done.stdout)


def status_is_installed(status: str) -> bool:
    """Read dpkg's ``${Status}`` (want, error flag, state): only the state ``installed``
    counts. A package apt knows but never installed reads "unknown ok not-installed"."""
    return status.split()[-1:] == ["installed"]


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
    """The Debian mirror this machine's apt uses for Debian proper (not its security
    archive), read from apt's sources, so no mirror is written into the code."""
    for path in _SOURCES:
        try:
            text = path.read_text()
        except OSError:
            continue
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        for paragraph in "\n".join(lines).split("\n\n"):
            uris = re.findall(r"^URIs:\s*(\S+)", paragraph, re.M)
            if uris and "security" not in uris[0]:
                return str(uris[0])
        for uri in re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", "\n".join(lines), re.M):
            if "security" not in uri:
                return str(uri)
    raise DebianError("no Debian mirror in /etc/apt/sources.list(.d): is this Debian?")


# Left out of a root filesystem packed into an image: package caches, apt lists, docs,
# man pages and locales (about 150 MB of 275 MB; Python's __pycache__ stays, it starts
# faster with it).
_ROOTFS_EXCLUDES = ("./var/cache/apt/archives/*.deb", "./var/cache/apt/*.bin",
                    "./var/lib/apt/lists/*", "./usr/share/doc/*", "./usr/share/man/*",
                    "./usr/share/info/*", "./usr/share/locale/*", "./var/log/*")


def debootstrap(target: Path, *, suite: str, packages: Sequence[str], mirror: str) -> None:
    """Build a minimal Debian root filesystem into ``target`` (which must not exist)."""
    done = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite,
         str(target), mirror], capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise DebianError(f"debootstrap {suite} from {mirror} failed: {tail}")


def pack_rootfs(rootfs: Path, tarball: Path) -> None:
    """Pack ``rootfs`` into ``tarball`` without caches and docs, numeric owners kept."""
    excludes = [f"--exclude={pattern}" for pattern in _ROOTFS_EXCLUDES]
    partial = tarball.with_suffix(".partial")
    done = subprocess.run(["tar", "-C", str(rootfs), *excludes, "--numeric-owner",
                           "-cf", str(partial), "."], capture_output=True, text=True,
                          check=False, timeout=600)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise DebianError(f"packing {rootfs}: {done.stderr.strip()[-300:]}")
    partial.replace(tarball)
