"""The data service's own settings, read from the environment and validated once at startup.

The settings every service shares (APP_VERSION, PORT, DISCOVERY_URL, ...) are servicekit's
ServiceConfig.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from servicekit.config import env_non_negative_float, env_positive_float, env_positive_int
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["DEFAULT_DATABASE_URL", "LOCAL_DISCOVERY_URL", "Settings", "parse_database_url"]

# Relative to the working directory: `python -m data` in a checkout keeps its data there.
DEFAULT_DATABASE_URL = "sqlite:///./data.db"
# Where `python -m discovery` listens when run locally; deployments set DISCOVERY_URL.
LOCAL_DISCOVERY_URL = "http://127.0.0.1:8761"


def parse_database_url(raw: str) -> URL:
    """A SQLAlchemy URL for SQLite or PostgreSQL (driven by psycopg 3, the driver installed:
    `postgresql://` is read as `postgresql+psycopg://`). Raises ValueError naming
    DATABASE_URL and the accepted forms."""
    accepted = ("accepted: sqlite:///relative/path.db, sqlite:////absolute/path.db or "
                "postgresql+psycopg://user:password@host:5432/database")
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ValueError(f"DATABASE_URL is not a database URL; {accepted}") from None
    if url.drivername in ("postgresql", "postgresql+psycopg"):
        if not url.database:
            raise ValueError(f"DATABASE_URL names no database; {accepted}")
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        if url.database in (None, "", ":memory:"):
            # Each pooled connection would get its own empty database.
            raise ValueError(f"DATABASE_URL must name a SQLite file, not memory; {accepted}")
        return url
    raise ValueError(f"DATABASE_URL uses {url.drivername!r}, which this service does not "
                     f"support; {accepted}")


@dataclass(frozen=True)
class Settings:
    """database_url DATABASE_URL [sqlite:///./data.db], db_timeout_seconds
    DB_TIMEOUT_SECONDS [5]: the longest wait to connect, for a pooled connection or for
    SQLite's write lock; cache_ttl_seconds CACHE_TTL_SECONDS [10], 0 turns the cache off;
    cache_max_entries CACHE_MAX_ENTRIES [10000]."""

    database_url: URL
    db_timeout_seconds: float = 5.0
    cache_ttl_seconds: float = 10.0
    cache_max_entries: int = 10_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the variables above; raise ValueError naming the first bad one."""
        source = os.environ if env is None else env
        raw_url = (source.get("DATABASE_URL") or "").strip() or DEFAULT_DATABASE_URL
        return cls(
            database_url=parse_database_url(raw_url),
            db_timeout_seconds=env_positive_float(
                source, "DB_TIMEOUT_SECONDS", cls.db_timeout_seconds),
            cache_ttl_seconds=env_non_negative_float(
                source, "CACHE_TTL_SECONDS", cls.cache_ttl_seconds),
            cache_max_entries=env_positive_int(
                source, "CACHE_MAX_ENTRIES", cls.cache_max_entries),
        )
