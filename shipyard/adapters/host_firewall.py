"""The iptables rules a real node needs on this host, added idempotently and removed on
``down``: pods may talk to each other (and to the host) but never leave the machine.

Docker sets the FORWARD policy to DROP; with bridge netfilter on, pod-to-pod traffic
crosses FORWARD and would be dropped without the ACCEPT rule.
"""

from __future__ import annotations

import subprocess

__all__ = [
    "FirewallError",
    "allow_pod_bridge",
    "remove_kubelet_chains",
    "remove_pod_bridge_rules",
]


class FirewallError(RuntimeError):
    pass


def _iptables(*args: str, check: bool = True) -> bool:
    done = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True,
                          check=False, timeout=30)
    if check and done.returncode != 0:
        raise FirewallError(f"`iptables {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.returncode == 0


def _rules(bridge: str) -> list[list[str]]:
    return [["FORWARD", "-i", bridge, "!", "-o", bridge, "-j", "DROP"],
            ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]]


def allow_pod_bridge(bridge: str) -> None:
    """Put the two rules at the top of FORWARD unless they are there."""
    for rule in _rules(bridge):
        if not _iptables("-C", *rule, check=False):
            _iptables("-I", rule[0], "1", *rule[1:])


def remove_pod_bridge_rules(bridge: str) -> None:
    for rule in _rules(bridge):
        while _iptables("-D", *rule, check=False):
            pass


def remove_kubelet_chains() -> None:
    """The kubelet's own chains, which ``kube-proxy --cleanup`` leaves behind."""
    _iptables("-D", "INPUT", "-j", "KUBE-FIREWALL", check=False)
    _iptables("-D", "OUTPUT", "-j", "KUBE-FIREWALL", check=False)
    for table, chain in (("filter", "KUBE-FIREWALL"), ("filter", "KUBE-KUBELET-CANARY"),
                         ("nat", "KUBE-KUBELET-CANARY"), ("mangle", "KUBE-KUBELET-CANARY"),
                         ("mangle", "KUBE-IPTABLES-HINT")):
        _iptables("-t", table, "-F", chain, check=False)
        _iptables("-t", table, "-X", chain, check=False)
