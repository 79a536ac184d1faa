"""Streaming's own settings, read from the environment and validated once at startup.

The settings every service shares (APP_VERSION, PORT, DISCOVERY_URL, ...) are servicekit's
ServiceConfig.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from servicekit.config import (
    env_choice,
    env_non_negative_float,
    env_positive_float,
    env_positive_int,
)

from streaming.log import NAME_PATTERN, is_valid_name

__all__ = ["FsyncPolicy", "Settings"]

FsyncPolicy = Literal["always", "never"]
_FSYNC_POLICIES: tuple[FsyncPolicy, ...] = ("always", "never")
# Index entries hold 32-bit file positions; far below that, a segment is still cheap to scan.
_MAX_SEGMENT_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Every field is one variable, named in upper case (data_dir is DATA_DIR, ...)."""

    data_dir: Path = Path("streaming-data")
    fsync_policy: FsyncPolicy = "always"
    default_partitions: int = 3
    max_partitions: int = 64
    segment_bytes: int = 8 * 1024 * 1024
    index_interval_bytes: int = 4096
    max_batch_records: int = 500
    fetch_max_records: int = 1000
    fetch_max_bytes: int = 1024 * 1024
    aggregation_topic: str = "views"
    aggregation_allowed_lateness_seconds: float = 30.0
    aggregation_poll_seconds: float = 0.1
    aggregation_retention_seconds: float = 7 * 24 * 3600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the variables; raise ValueError naming a bad one and how to fix it."""
        source = os.environ if env is None else env
        settings = cls(
            data_dir=Path((source.get("DATA_DIR") or "").strip() or cls.data_dir),
            fsync_policy=env_choice(source, "FSYNC_POLICY", _FSYNC_POLICIES,
                                    cls.fsync_policy),
            default_partitions=env_positive_int(source, "DEFAULT_PARTITIONS",
                                                cls.default_partitions),
            max_partitions=env_positive_int(source, "MAX_PARTITIONS", cls.max_partitions),
            segment_bytes=env_positive_int(source, "SEGMENT_BYTES", cls.segment_bytes),
            index_interval_bytes=env_positive_int(source, "INDEX_INTERVAL_BYTES",
                                                  cls.index_interval_bytes),
            max_batch_records=env_positive_int(source, "MAX_BATCH_RECORDS",
                                               cls.max_batch_records),
            fetch_max_records=env_positive_int(source, "FETCH_MAX_RECORDS",
                                               cls.fetch_max_records),
            fetch_max_bytes=env_positive_int(source, "FETCH_MAX_BYTES", cls.fetch_max_bytes),
            aggregation_topic=_topic(source),
            aggregation_allowed_lateness_seconds=env_non_negative_float(
                source, "AGGREGATION_ALLOWED_LATENESS_SECONDS",
                cls.aggregation_allowed_lateness_seconds),
            aggregation_poll_seconds=env_positive_float(
                source, "AGGREGATION_POLL_SECONDS", cls.aggregation_poll_seconds),
            aggregation_retention_seconds=env_positive_float(
                source, "AGGREGATION_RETENTION_SECONDS", cls.aggregation_retention_seconds),
        )
        if settings.segment_bytes > _MAX_SEGMENT_BYTES:
            raise ValueError(
                f"SEGMENT_BYTES='{settings.segment_bytes}' is invalid: it must be at most "
                f"{_MAX_SEGMENT_BYTES} (1 GiB); set it to e.g. 8388608, or unset it to use "
                f"the default ({cls.segment_bytes})")
        if settings.default_partitions > settings.max_partitions:
            raise ValueError(
                f"DEFAULT_PARTITIONS={settings.default_partitions} is invalid: it must be at "
                f"most MAX_PARTITIONS ({settings.max_partitions}); lower it or raise "
                "MAX_PARTITIONS")
        return settings

    @property
    def fsync(self) -> bool:
        return self.fsync_policy == "always"


def _topic(env: Mapping[str, str]) -> str:
    raw = (env.get("AGGREGATION_TOPIC") or "").strip()
    if not raw:
        return Settings.aggregation_topic
    if not is_valid_name(raw):
        raise ValueError(
            f"AGGREGATION_TOPIC={raw!r} is invalid: it must be a topic name matching "
            f"{NAME_PATTERN}; set it to e.g. views, or unset it to use the default "
            f"({Settings.aggregation_topic})")
    return raw
