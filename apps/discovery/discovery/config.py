"""Discovery's own settings, read from the environment and validated once at startup.

The settings every service shares (APP_VERSION, PORT, ...) are servicekit's ServiceConfig.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from servicekit.config import env_positive_float


@dataclass(frozen=True)
class Settings:
    lease_seconds: float = 30.0
    eviction_interval_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read LEASE_SECONDS and EVICTION_INTERVAL_SECONDS; raise ValueError naming a bad one."""
        source = os.environ if env is None else env
        return cls(
            lease_seconds=env_positive_float(source, "LEASE_SECONDS", cls.lease_seconds),
            eviction_interval_seconds=env_positive_float(
                source, "EVICTION_INTERVAL_SECONDS", cls.eviction_interval_seconds),
        )
