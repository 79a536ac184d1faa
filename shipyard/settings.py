"""The one settings object: environment variables ``SHIPYARD_*``, validated at the edge.

``SHIPYARD_HOME`` is the state directory (default ``~/.shipyard``): the SQLite store, git
caches and per-run workspaces live under it. ``SHIPYARD_DATABASE_URL`` overrides the store
with any SQLAlchemy URL (``postgresql+psycopg://user@host/db``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Shipyard's configuration. Immutable once loaded; pass it down, never re-read it."""

    model_config = SettingsConfigDict(env_prefix="SHIPYARD_", frozen=True, extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path.home() / ".shipyard",
        description="state directory: store, caches, workspaces",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the store; default SQLite under home"
    )
    project_dir: Path | None = Field(
        default=None,
        description="the Shipyard checkout whose apps/ the pipelines build; default: this one",
    )
    work_pool: str = Field(default="shipyard", description="Prefect work pool of deployments")
    prefect_port: int = Field(default=4200, ge=1, le=65535,
                              description="port of the local Prefect server on 127.0.0.1")
    stack_home: Path | None = Field(
        default=None,
        description="where the local stack keeps what is slow to make (engine data, "
        "registry storage, base image, cluster); default: <home>/stack",
    )
    postgres_port: int = Field(default=54320, ge=1, le=65535,
                               description="port of the stack's PostgreSQL on 127.0.0.1")
    pip_cache: Path | None = Field(
        default=None, description="pip's cache for the apps' wheels; default <stack>/pip-cache")
    push_branches: list[str] = Field(
        default_factory=lambda: ["*"],
        description="branches whose ci runs push images (shell patterns, JSON list); "
        "elsewhere push is skipped with WhenNotMet")
    registry: str = Field(default="127.0.0.1:5000", pattern=r"^127\.0\.0\.1:\d{1,5}$",
                          description="address of the local registry (loopback only)")

    @field_validator("home", "project_dir", "stack_home", "pip_cache", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @property
    def store_url(self) -> str:
        """The store's SQLAlchemy URL: the configured one; else the stack's PostgreSQL
        while ``shipyard up`` has it (see :attr:`stack_database_file`); else SQLite under
        ``home``."""
        if self.database_url:
            return self.database_url
        try:
            return self.stack_database_file.read_text().strip()
        except FileNotFoundError:
            return f"sqlite:///{self.home / 'shipyard.db'}"

    @property
    def stack_database_file(self) -> Path:
        """Holds the store URL on the stack's PostgreSQL: written by ``shipyard up``,
        removed by ``shipyard down``, so without the stack SQLite stays the default."""
        return self.stack_dir / "postgres" / "store.url"

    @property
    def workspaces_dir(self) -> Path:
        """Per-run checkouts (git worktrees)."""
        return self.home / "workspaces"

    @property
    def git_cache_dir(self) -> Path:
        """One bare clone per repository, fetched rather than re-cloned."""
        return self.home / "git-cache"

    @property
    def stack_dir(self) -> Path:
        """The local stack's long-lived state."""
        return self.stack_home or self.home / "stack"

    @property
    def pip_cache_dir(self) -> Path:
        """pip's cache for gathering the apps' wheels: ``SHIPYARD_PIP_CACHE``, else kept
        with the stack, so a rebuild downloads nothing."""
        return self.pip_cache or self.stack_dir / "pip-cache"

    @property
    def prefect_home(self) -> Path:
        """The local Prefect server's home: its database, logs and pid files."""
        return self.home / "prefect"

    @property
    def source_dir(self) -> Path:
        """The checkout holding ``apps/`` and ``prefect.yaml``."""
        return self.project_dir or Path(__file__).resolve().parent.parent


def load_settings() -> Settings:
    """Read the settings from the environment."""
    return Settings()
