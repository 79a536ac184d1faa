"""The gateway's own settings, read from GATEWAY_* variables and validated at startup, and
the version weights, which may also come from a file that is re-read when it changes.

The settings every service shares (APP_VERSION, PORT, DISCOVERY_URL, ...) are
servicekit's ServiceConfig.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import Field, StrictInt, TypeAdapter, ValidationError
from servicekit.config import (
    env_choice,
    env_non_negative_int,
    env_positive_float,
    env_positive_int,
    env_probability,
)
from servicekit.watched_file import WatchedFile

from gateway.balancer import BALANCERS, BalancerKind
from gateway.breaker import BreakerPolicy
from gateway.weights import Weights

__all__ = ["APP_NAME", "DEFAULT_DISCOVERY_URL", "GatewaySettings", "WeightsSource",
           "parse_routing_file", "parse_weights"]

logger = logging.getLogger("gateway.config")

Env = Mapping[str, str]
DEFAULT_DISCOVERY_URL = "http://127.0.0.1:8761"
# Discovery's rule for app names (a DNS label), so a valid name is one it can hold.
APP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# servicekit's APP_VERSION rule: what an instance can register as its version.
_VERSION = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$"

_WEIGHTS = TypeAdapter(dict[
    Annotated[str, Field(pattern=APP_NAME.pattern)],
    dict[Annotated[str, Field(pattern=_VERSION)], Annotated[StrictInt, Field(ge=0)]],
])


def parse_weights(raw: object, source: str) -> Weights:
    """Validate {app: {version: weight}} (weights whole numbers >= 0); ValueError naming
    `source` and the bad entry otherwise. The result is read-only."""
    try:
        weights = _WEIGHTS.validate_python(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'top level'}: {e['msg']}"
                             for e in err.errors())
        raise ValueError(f"{source} is invalid ({problems}); it must map app names to "
                         'version weights, e.g. {"data": {"1.2.0": 90, "1.3.0": 10}}') from None
    return MappingProxyType({app: MappingProxyType(w) for app, w in weights.items()})


def parse_routing_file(text: str, source: str) -> Weights:
    """The weights in a GATEWAY_CONFIG_FILE: a JSON object {"weights": {...}}."""
    try:
        loaded: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source} is not valid JSON: {err}") from None
    if not isinstance(loaded, dict) or set(loaded) - {"weights"}:
        raise ValueError(f'{source} must be a JSON object whose only key is "weights"')
    return parse_weights(loaded.get("weights", {}), f"{source} (weights)")


def _env_weights(env: Env) -> Weights:
    raw = (env.get("GATEWAY_WEIGHTS") or "").strip()
    if not raw:
        return MappingProxyType({})
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"GATEWAY_WEIGHTS is not valid JSON: {err}; set it to e.g. "
                         '{"data": {"1.2.0": 90, "1.3.0": 10}}, or unset it') from None
    return parse_weights(loaded, "GATEWAY_WEIGHTS")


@dataclass(frozen=True)
class GatewaySettings:
    """Each setting from one variable (defaults in brackets):

    balancer GATEWAY_BALANCER [least-outstanding], connect_timeout_seconds
    GATEWAY_CONNECT_TIMEOUT_SECONDS [1], timeout_seconds GATEWAY_TIMEOUT_SECONDS [10]
    (the whole request, retries included), retries GATEWAY_RETRIES [1],
    max_connections GATEWAY_MAX_CONNECTIONS [200], max_response_bytes
    GATEWAY_MAX_RESPONSE_BYTES [10 MiB], breaker GATEWAY_BREAKER_FAILURES [5],
    GATEWAY_BREAKER_FAILURE_RATIO [0.5], GATEWAY_BREAKER_WINDOW [20],
    GATEWAY_BREAKER_COOLDOWN_SECONDS [10], weights GATEWAY_WEIGHTS [none] and
    config_file GATEWAY_CONFIG_FILE [none].
    """

    balancer: BalancerKind = "least-outstanding"
    connect_timeout_seconds: float = 1.0
    timeout_seconds: float = 10.0
    retries: int = 1
    max_connections: int = 200
    max_response_bytes: int = 10 * 1024 * 1024
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    weights: Weights = field(default_factory=lambda: MappingProxyType({}))
    config_file: Path | None = None

    @classmethod
    def from_env(cls, env: Env | None = None) -> GatewaySettings:
        """Read the variables above from `env` (os.environ by default); raise ValueError
        naming the first bad one and how to fix it."""
        env = os.environ if env is None else env
        policy = BreakerPolicy()
        config_file = (env.get("GATEWAY_CONFIG_FILE") or "").strip()
        return cls(
            balancer=env_choice(env, "GATEWAY_BALANCER", BALANCERS, cls.balancer),
            connect_timeout_seconds=env_positive_float(
                env, "GATEWAY_CONNECT_TIMEOUT_SECONDS", cls.connect_timeout_seconds),
            timeout_seconds=env_positive_float(env, "GATEWAY_TIMEOUT_SECONDS",
                                               cls.timeout_seconds),
            retries=env_non_negative_int(env, "GATEWAY_RETRIES", cls.retries),
            max_connections=env_positive_int(env, "GATEWAY_MAX_CONNECTIONS",
                                             cls.max_connections),
            max_response_bytes=env_positive_int(env, "GATEWAY_MAX_RESPONSE_BYTES",
                                                cls.max_response_bytes),
            breaker=BreakerPolicy(
                consecutive_failures=env_positive_int(
                    env, "GATEWAY_BREAKER_FAILURES", policy.consecutive_failures),
                failure_ratio=_ratio(env, policy.failure_ratio),
                window=env_positive_int(env, "GATEWAY_BREAKER_WINDOW", policy.window),
                cooldown_seconds=env_positive_float(
                    env, "GATEWAY_BREAKER_COOLDOWN_SECONDS", policy.cooldown_seconds),
            ),
            weights=_env_weights(env),
            config_file=Path(config_file) if config_file else None,
        )


def _ratio(env: Env, default: float) -> float:
    ratio = env_probability(env, "GATEWAY_BREAKER_FAILURE_RATIO", default)
    if ratio == 0:
        raise ValueError("GATEWAY_BREAKER_FAILURE_RATIO='0' is invalid: it must be above 0 "
                         "(0 would open the breaker on every request); e.g. 0.5")
    return ratio


class WeightsSource:
    """The weights in force now: GATEWAY_CONFIG_FILE's when that file exists, else
    GATEWAY_WEIGHTS'.

    The file is re-read when it changes (a WatchedFile, as servicekit's fault file): a
    missing file means the environment's weights; an invalid one is logged and the last
    good weights stay, because a typo in a ConfigMap must not take routing down.
    """

    def __init__(self, base: Weights, path: Path | None = None) -> None:
        self.base = base
        self.path = path
        self._file = None if path is None else WatchedFile(
            path, lambda text: parse_routing_file(text, str(path)), base,
            what="routing file", logger=logger,
            describe=lambda weights: {app: dict(w) for app, w in weights.items()})

    def current(self) -> Weights:
        return self.base if self._file is None else self._file.current()
