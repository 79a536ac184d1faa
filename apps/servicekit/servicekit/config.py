"""Settings read from environment variables, validated once at startup.

Every helper treats an unset or empty variable as "use the default" (Kubernetes manifests
often render optional values as empty strings) and raises ValueError whose message names
the variable, what it must be and how to fix it, so a bad deployment fails at startup with
a line an operator can act on.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

__all__ = [
    "FAULT_KEYS",
    "FaultConfig",
    "ServiceConfig",
    "detect_primary_address",
    "env_bool",
    "env_choice",
    "env_list",
    "env_non_negative_float",
    "env_non_negative_int",
    "env_port",
    "env_positive_float",
    "env_positive_int",
    "env_probability",
]

Env = Mapping[str, str]
Choice = TypeVar("Choice", bound=str)
Number = TypeVar("Number", int, float)

FAULT_KEYS = (
    "FAULT_ERROR_RATE",
    "FAULT_LATENCY_MS",
    "FAULT_LATENCY_JITTER_MS",
    "FAULT_READINESS_FAIL",
)

# Safe in an image tag, a URL and a Prometheus label value.
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
# Discovery's instance id rule (a DNS label), so the default id is always registrable.
_INSTANCE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HOST = re.compile(r"^[A-Za-z0-9.:\[\]-]{1,253}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _raw(env: Env, name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _invalid(name: str, raw: str, must: str, example: str, default: object) -> ValueError:
    return ValueError(
        f"{name}={raw!r} is invalid: it must be {must}; "
        f"set it to e.g. {example}, or unset it to use the default ({default})"
    )


def _number(env: Env, name: str, default: Number, must: str, example: str,
            convert: Callable[[str], Number | None], accept: Callable[[Number], bool]) -> Number:
    raw = _raw(env, name)
    if raw is None:
        return default
    value = convert(raw)
    if value is None or not accept(value):
        raise _invalid(name, raw, must, example, default)
    return value


def _finite_float(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _whole_number(raw: str) -> int | None:
    # isdigit alone would take "²"; int() would take "-1", "+1" and "1_000".
    return int(raw) if raw.isascii() and raw.isdigit() else None


def _float(env: Env, name: str, default: float, must: str, example: str,
           accept: Callable[[float], bool]) -> float:
    return _number(env, name, default, must, example, _finite_float, accept)


def _int(env: Env, name: str, default: int, must: str, example: str,
         accept: Callable[[int], bool]) -> int:
    return _number(env, name, default, must, example, _whole_number, accept)


def env_positive_float(env: Env, name: str, default: float) -> float:
    """A finite number greater than 0 (e.g. seconds between heartbeats)."""
    return _float(env, name, default, "a number greater than 0", "30", lambda v: v > 0)


def env_non_negative_float(env: Env, name: str, default: float) -> float:
    """A finite number of at least 0 (e.g. a delay that may be switched off with 0)."""
    return _float(env, name, default, "a number of at least 0", "5", lambda v: v >= 0)


def env_probability(env: Env, name: str, default: float) -> float:
    """A share between 0 and 1 inclusive (0.05 means 5 %)."""
    return _float(env, name, default, "a probability between 0 and 1", "0.05",
                  lambda v: 0 <= v <= 1)


def env_positive_int(env: Env, name: str, default: int) -> int:
    """A whole number greater than 0."""
    return _int(env, name, default, "a whole number greater than 0", "65536", lambda v: v > 0)


def env_non_negative_int(env: Env, name: str, default: int) -> int:
    """A whole number of at least 0 (e.g. a count of retries, where 0 means none)."""
    return _int(env, name, default, "a whole number of at least 0", "1", lambda v: v >= 0)


def env_port(env: Env, name: str, default: int) -> int:
    """A TCP port, 1 to 65535."""
    return _int(env, name, default, "a TCP port between 1 and 65535", "8080",
                lambda v: 1 <= v <= 65535)


def env_choice(env: Env, name: str, choices: Sequence[Choice], default: Choice) -> Choice:
    """One of `choices`, in any case; the matching choice is returned as spelled there,
    so a tuple of Literal values gives a Literal."""
    raw = _raw(env, name)
    if raw is None:
        return default
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise _invalid(name, raw, f"one of {', '.join(choices)}", default, default)


def env_bool(env: Env, name: str, default: bool) -> bool:
    """true/false, yes/no, on/off or 1/0, in any case."""
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise _invalid(name, raw, "true or false", "true", str(default).lower())


def env_list(env: Env, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A comma-separated list; blanks around items and empty items are dropped."""
    raw = _raw(env, name)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class FaultConfig:
    """Faults a build injects on purpose, to prove that delivery gates catch a bad release.

    `error_rate` of non-operational requests answer 500; each such request is first delayed
    by `latency_ms` plus a uniform share of `latency_jitter_ms`; `readiness_fail` makes
    /readyz answer 503. The default injects nothing.
    """

    error_rate: float = 0.0
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    readiness_fail: bool = False

    @property
    def active(self) -> bool:
        return bool(self.error_rate or self.latency_ms or self.latency_jitter_ms
                     or self.readiness_fail)

    @classmethod
    def from_env(cls, env: Env, base: FaultConfig | None = None) -> FaultConfig:
        """Read the FAULT_* variables; a variable that is absent keeps `base`'s value."""
        base = base or cls()
        return cls(
            error_rate=env_probability(env, "FAULT_ERROR_RATE", base.error_rate),
            latency_ms=env_non_negative_float(env, "FAULT_LATENCY_MS", base.latency_ms),
            latency_jitter_ms=env_non_negative_float(
                env, "FAULT_LATENCY_JITTER_MS", base.latency_jitter_ms),
            readiness_fail=env_bool(env, "FAULT_READINESS_FAIL", base.readiness_fail),
        )


def detect_primary_address() -> str:
    """The address other pods reach this process at.

    In a pod the host name resolves (through /etc/hosts) to the pod IP. Elsewhere, the
    source address of the default route; connecting a UDP socket picks it without sending
    a packet. 127.0.0.1 when neither is known.
    """
    try:
        address = socket.gethostbyname(socket.gethostname())
        if not ipaddress.ip_address(address).is_loopback:
            return address
    except (OSError, ValueError):
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed by the table, never sent
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def _default_instance_id(hostname: str) -> str:
    # Pod names are already DNS labels; a laptop's "Jane.Local" becomes "jane-local".
    label = re.sub(r"[^a-z0-9-]+", "-", hostname.lower()).strip("-")[:63].strip("-")
    return label or "instance"


def _discovery_urls(env: Env) -> tuple[str, ...]:
    urls = []
    for url in env_list(env, "DISCOVERY_URL"):
        parts = urlsplit(url)
        if (parts.scheme not in ("http", "https") or not parts.hostname
                or parts.path not in ("", "/") or parts.query or parts.fragment):
            raise ValueError(
                f"DISCOVERY_URL item {url!r} is invalid: it must be a base URL like "
                "http://discovery:8761 (scheme, host and optional port, no path); "
                "separate several with commas"
            )
        urls.append(url.rstrip("/"))
    return tuple(urls)


def _matching(env: Env, name: str, pattern: re.Pattern[str], default: str, must: str,
              example: str) -> str:
    raw = _raw(env, name)
    if raw is None:
        return default
    if not pattern.match(raw):
        raise _invalid(name, raw, must, example, default)
    return raw


def _advertise_host(env: Env, primary_address: Callable[[], str]) -> str:
    raw = _raw(env, "ADVERTISE_HOST")
    if raw is None:
        return primary_address()
    if not _HOST.match(raw):
        raise _invalid("ADVERTISE_HOST", raw, "a host name or IP address", "10.1.2.3",
                       "this pod's IP")
    return raw


@dataclass(frozen=True)
class ServiceConfig:
    """The settings every service shares, each from one variable (defaults in brackets):

    app_version APP_VERSION ["dev"], port PORT [the app's], host HOST ["0.0.0.0"],
    max_body_bytes MAX_BODY_BYTES [65536], drain_seconds DRAIN_SECONDS [5],
    shutdown_timeout_seconds SHUTDOWN_TIMEOUT_SECONDS [20], log_level LOG_LEVEL ["INFO"],
    discovery_urls DISCOVERY_URL [none], heartbeat_seconds DISCOVERY_HEARTBEAT_SECONDS [10],
    refresh_seconds DISCOVERY_REFRESH_SECONDS [5], instance_id INSTANCE_ID [the host
    name as a DNS label], advertise_host ADVERTISE_HOST [the pod IP], faults FAULT_*
    [none], fault_config_file FAULT_CONFIG_FILE [none]. Build it with `from_env`.
    """

    port: int
    instance_id: str
    advertise_host: str
    app_version: str = "dev"
    # All interfaces: inside a container the pod IP is the only way in.
    host: str = "0.0.0.0"  # noqa: S104
    max_body_bytes: int = 64 * 1024
    drain_seconds: float = 5.0
    shutdown_timeout_seconds: int = 20
    log_level: str = "INFO"
    discovery_urls: tuple[str, ...] = ()
    heartbeat_seconds: float = 10.0
    refresh_seconds: float = 5.0
    faults: FaultConfig = field(default_factory=FaultConfig)
    fault_config_file: Path | None = None

    @classmethod
    def from_env(
        cls,
        env: Env | None = None,
        *,
        default_port: int = 8080,
        hostname: Callable[[], str] = socket.gethostname,
        primary_address: Callable[[], str] = detect_primary_address,
    ) -> ServiceConfig:
        """Read the variables above from `env` (os.environ by default); raise ValueError
        naming the first bad one and how to fix it.

        `hostname` and `primary_address` are consulted only when INSTANCE_ID or
        ADVERTISE_HOST are unset, so tests can pin them.
        """
        env = os.environ if env is None else env
        fault_file = _raw(env, "FAULT_CONFIG_FILE")
        instance_id = _raw(env, "INSTANCE_ID")
        if instance_id is not None and not _INSTANCE_ID.match(instance_id):
            raise _invalid("INSTANCE_ID", instance_id,
                           "lowercase letters, digits and dashes (a DNS label, at most 63)",
                           "gateway-7d9f-abcde", "the host name")
        return cls(
            app_version=_matching(env, "APP_VERSION", _VERSION, "dev",
                                  "letters, digits and . _ + - (an image tag)", "1.4.2"),
            port=env_port(env, "PORT", default_port),
            host=_matching(env, "HOST", _HOST, cls.host, "an address to listen on", "127.0.0.1"),
            max_body_bytes=env_positive_int(env, "MAX_BODY_BYTES", cls.max_body_bytes),
            drain_seconds=env_non_negative_float(env, "DRAIN_SECONDS", cls.drain_seconds),
            shutdown_timeout_seconds=env_positive_int(
                env, "SHUTDOWN_TIMEOUT_SECONDS", cls.shutdown_timeout_seconds),
            log_level=env_choice(env, "LOG_LEVEL", _LOG_LEVELS, cls.log_level),
            discovery_urls=_discovery_urls(env),
            heartbeat_seconds=env_positive_float(
                env, "DISCOVERY_HEARTBEAT_SECONDS", cls.heartbeat_seconds),
            refresh_seconds=env_positive_float(
                env, "DISCOVERY_REFRESH_SECONDS", cls.refresh_seconds),
            instance_id=instance_id or _default_instance_id(hostname()),
            advertise_host=_advertise_host(env, primary_address),
            faults=FaultConfig.from_env(env),
            fault_config_file=Path(fault_file) if fault_file else None,
        )
