"""etcd holds every object of the cluster, Secrets included, unencrypted, and serves anyone
who reaches its client port without asking who they are: it must listen on loopback and
nowhere else. Asked of the kernel (the sockets the running etcd process holds, read from
/proc), not of the flags it was started with; and tried from the machine's other
addresses."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from shipyard.adapters.background import BackgroundProcess

# /proc/net/tcp's state column: 0A is LISTEN.
_LISTEN = "0A"


def _address(hex_address: str) -> str:
    """An address as /proc/net/{tcp,udp}{,6} prints it: 32-bit words in host order."""
    words = [hex_address[i:i + 8] for i in range(0, len(hex_address), 8)]
    packed = b"".join(struct.pack("=I", int(word, 16)) for word in words)
    return str(ipaddress.ip_address(packed))


def bound_sockets(pid: int) -> list[tuple[str, str, int]]:
    """(protocol, address, port) of every listening TCP socket and every bound UDP socket
    process ``pid`` holds, over IPv4 and IPv6, in its own network namespace."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        except FileNotFoundError:  # closed meanwhile
            continue
        if found:
            inodes.add(found.group(1))
    sockets = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{protocol}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode not in inodes or (protocol.startswith("tcp") and state != _LISTEN):
                continue
            address, port = local.split(":")
            sockets.append((protocol, _address(address), int(port, 16)))
    return sockets


def _other_addresses() -> list[str]:
    """Every address of this machine's interfaces that is not loopback (nor link-local)."""
    shown = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True)
    addresses = [info["local"] for link in json.loads(shown.stdout)
                 for info in link.get("addr_info", [])]
    return [a for a in addresses if not ipaddress.ip_address(a).is_loopback
            and not ipaddress.ip_address(a).is_link_local]


def test_the_socket_reader_finds_what_a_process_listens_on() -> None:
    with socket.socket() as v4, socket.socket(socket.AF_INET6) as v6, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as idle:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        v6.bind(("::1", 0))
        v6.listen()
        udp.bind(("127.0.0.2", 0))
        idle.bind(("127.0.0.1", 0))  # bound, not listening: nobody can connect
        found = bound_sockets(os.getpid())
        assert ("tcp", "127.0.0.1", v4.getsockname()[1]) in found
        assert ("tcp6", "::1", v6.getsockname()[1]) in found
        assert ("udp", "127.0.0.2", udp.getsockname()[1]) in found
        assert all(port != idle.getsockname()[1] for _, _, port in found)


def test_etcd_listens_on_loopback_only(kwok_cluster: Path) -> None:
    pid = BackgroundProcess("etcd", kwok_cluster.parent / "run").pid()
    assert pid is not None, "the local cluster's etcd runs (started by `shipyard up`)"
    sockets = bound_sockets(pid)
    assert {port for _, _, port in sockets} >= {2379, 2380}, sockets
    exposed = [s for s in sockets if not ipaddress.ip_address(s[1]).is_loopback]
    assert exposed == [], f"etcd listens beyond loopback: {exposed}"

    others = _other_addresses()
    assert others, "the machine has other addresses (the API server's 10.200.0.1 at least)"
    for address in others:
        for port in (2379, 2380):
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            with socket.socket(family) as client, \
                    pytest.raises((ConnectionRefusedError, TimeoutError)):
                client.settimeout(2)
                client.connect((address, port))
