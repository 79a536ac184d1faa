"""The one settings object: environment variables ``SHIPYARD_*``, validated at the edge.

``SHIPYARD_HOME`` is the state directory (default ``~/.shipyard``): the SQLite store, git
caches and per-run workspaces live under it. ``SHIPYARD_DATABASE_URL`` overrides the store
with any SQLAlchemy URL (``postgresql+psycopg://user@host/db``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shipyard.domain.environment_access import InvalidEnvironment, validate_environments
from shipyard.domain.globs import GlobSet, InvalidPattern
from shipyard.domain.push_triggers import TriggerRules

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
    webhook_secret: SecretStr | None = Field(
        default=None, description="the GitHub webhook's secret; when set, a delivery without "
        "a valid X-Hub-Signature-256 is refused (401)")
    trigger_branches: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["main"],
        description="branches whose pushes start ci (globs; JSON list or comma-separated)")
    trigger_tags: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="tags whose pushes start ci (globs); none by default")
    trigger_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="a branch push starts ci only if it changes a file matching one of these "
        "globs; none: any change")
    webhook_max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, le=64 * 1024 * 1024,
        description="largest webhook body accepted; a bigger one is refused (413)")
    hand_over_interval_seconds: float = Field(
        default=5.0, gt=0, le=3600,
        description="how often `shipyard ui` hands queued runs Prefect has not taken yet")
    ui_secret_key: SecretStr | None = Field(
        default=None, description="signs the web UI's session cookies; default: a random "
        "key kept in <home>/ui-secret-key (mode 0600)")
    ui_anonymous_role: str | None = Field(
        default=None, pattern=r"^(viewer)$",
        description="'viewer' lets anyone who reaches the UI read it without signing in; "
        "unset (the default): everything but the webhook and /healthz needs an account")
    ui_secure_cookies: bool = Field(
        default=False, description="mark session cookies Secure: set it when the UI is "
        "served over HTTPS (a proxy in front of it)")
    ui_session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="how long a sign-in lasts")

    kubeconfig: Path | None = Field(
        default=None, description="admin kubeconfig of the cluster the cd pipelines deploy "
        "to, used only by `shipyard up` to make the environments and their identities; "
        "default: KUBECONFIG, else the local stack's cluster")
    namespace_prefix: str = Field(
        default="shipyard-", pattern=r"^[a-z0-9]([a-z0-9-]{0,30})$",
        description="an environment's namespace is this prefix plus its name "
        "(shipyard-staging, shipyard-prod)")
    rollout_timeout_seconds: float = Field(
        default=300.0, gt=0, le=86400,
        description="how long a deploy waits for its rollout before it fails")
    warm_seconds: float = Field(
        default=120.0, ge=0, le=7 * 86400,
        description="how long the previous production version stays scaled after a "
        "red/black switch, for an instant rollback")
    keep_versions: int = Field(
        default=2, ge=0, le=50,
        description="how many earlier production versions (scaled down) are kept for a "
        "rollback by re-apply; older ones are deleted")
    environments: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["staging", "prod"],
        description="the environments `shipyard up` makes in the cluster, each a namespace "
        "(the prefix plus its name) enforcing the restricted Pod Security Standard, with a "
        "deploy identity of its own (comma-separated or a JSON list)")
    identity_token_days: float = Field(
        default=30.0, ge=1, le=365,
        description="how long the deploy and read-only identities' tokens live; `shipyard "
        "up` renews one with less than half of that left")

    @field_validator("environments", mode="before")
    @classmethod
    def _environment_list(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            text = value.strip()
            try:
                value = (json.loads(text) if text.startswith("[") else
                         [part.strip() for part in text.split(",") if part.strip()])
            except ValueError as err:
                raise ValueError(f"SHIPYARD_ENVIRONMENTS: {text!r} is not a JSON list "
                                 f"({err}); write 'staging,prod'") from err
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError("SHIPYARD_ENVIRONMENTS: must be a list of names, e.g. "
                             "'staging,prod'")
        try:
            return list(validate_environments(str(info.data.get("namespace_prefix", "")),
                                              value))
        except InvalidEnvironment as err:
            raise ValueError(f"SHIPYARD_ENVIRONMENTS: {err}") from err

    canary_window_seconds: float = Field(
        default=300.0, gt=0, le=86400,
        description="how long the canary analysis measures baseline and canary (after a "
        "warm-up of one interval); Kayenta recommends hours for real traffic")
    canary_interval_seconds: float = Field(
        default=5.0, gt=0, le=3600,
        description="one data point per metric per this many seconds of the analysis")
    canary_rate_per_second: float = Field(
        default=20.0, gt=0, le=1000,
        description="requests per second the canary analysis sends to each track")

    judgment_timeout_seconds: float = Field(
        default=24 * 3600.0, gt=0, le=30 * 86400,
        description="how long a manual judgment waits before it fails (never approves)")
    chaos_window_seconds: float = Field(
        default=20.0, gt=0, le=300,
        description="each window of the chaos experiment: the steady state is judged over "
        "one before the kill and one after it")

    @field_validator("home", "project_dir", "stack_home", "pip_cache", "kubeconfig",
                     mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @field_validator("webhook_secret", "ui_secret_key", "ui_anonymous_role", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("trigger_branches", "trigger_tags", "trigger_paths", mode="before")
    @classmethod
    def _pattern_list(cls, value: Any, info: ValidationInfo) -> Any:
        variable = f"SHIPYARD_{(info.field_name or '').upper()}"
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except ValueError as err:
                    raise ValueError(f"{variable}: {text!r} is not a JSON list of patterns "
                                     f"({err}); write '[\"main\", \"release/*\"]' or "
                                     "'main,release/*'") from err
            else:
                value = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{variable}: must be a list of glob patterns")
        try:
            GlobSet.of(value)
        except InvalidPattern as err:
            raise ValueError(f"{variable}: {err}") from err
        return list(value)

    @property
    def trigger_rules(self) -> TriggerRules:
        """Which pushes start a pipeline (see :mod:`shipyard.domain.push_triggers`)."""
        return TriggerRules.of(branches=self.trigger_branches, tags=self.trigger_tags,
                               paths=self.trigger_paths)

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
    def kubeconfig_file(self) -> Path:
        """The admin kubeconfig of the cluster the cd pipelines deploy to (what the
        bootstrap uses; deploys use their environment's identity):
        ``SHIPYARD_KUBECONFIG``, else ``KUBECONFIG``, else the local stack's."""
        if self.kubeconfig:
            return self.kubeconfig
        named = os.environ.get("KUBECONFIG")
        return Path(named) if named else self.stack_dir / "cluster" / "admin.kubeconfig"

    def namespace_for(self, environment: str) -> str:
        """The Kubernetes namespace of ``environment``."""
        return f"{self.namespace_prefix}{environment}"

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
