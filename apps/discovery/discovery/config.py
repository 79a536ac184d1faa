"""Runtime settings read from the environment, validated once at startup."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

MAX_BODY_BYTES = 64 * 1024


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:  # also rejects NaN
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    lease_seconds: float = 30.0
    eviction_interval_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read LEASE_SECONDS and EVICTION_INTERVAL_SECONDS; raise ValueError naming a bad one."""
        source = os.environ if env is None else env
        return cls(
            lease_seconds=_positive_float(source, "LEASE_SECONDS", 30.0),
            eviction_interval_seconds=_positive_float(source, "EVICTION_INTERVAL_SECONDS", 5.0),
        )
