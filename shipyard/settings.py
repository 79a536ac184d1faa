"""The one settings object: environment variables ``SHIPYARD_*``, validated at the edge.

``SHIPYARD_HOME`` is the state directory (default ``~/.shipyard``): the SQLite store, git
caches and per-run workspaces live under it. ``SHIPYARD_DATABASE_URL`` overrides the store
with any SQLAlchemy URL (``postgresql+psycopg://user@host/db``).
"""

from __future__ import annotations

import ipaddress
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shipyard.domain.clone_urls import CloneUrlPolicy
from shipyard.domain.environment_access import InvalidEnvironment, validate_environments
from shipyard.domain.globs import GlobSet
from shipyard.domain.hosts import host_patterns, proxy_networks
from shipyard.domain.push_triggers import TriggerRules
from shipyard.domain.repositories import RepositoryAllowList
from shipyard.domain.setting_lists import checked_list, string_list

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
    worker: Literal["warm", "process"] = Field(
        default="warm", description="the local stack's Prefect worker: warm (flow runs forked "
        "from an interpreter that imported Prefect and the pipelines already) or process "
        "(Prefect's stock process worker: a new interpreter per flow run)")
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
    wheelhouse: Path | None = Field(
        default=None, description="the gathered wheel sets (binary only, by a key of what "
        "chose them), reused by builds and test images; default <stack>/wheelhouse")
    test_cpus: float = Field(
        default=1.0, gt=0, le=64, description="CPUs the container of a test stage may use")
    test_memory_mib: int = Field(
        default=2048, ge=128, le=1024 * 1024,
        description="memory (MiB, no swap; its /tmp counts too) of a test stage's container; "
        "past it the kernel kills the tests and the stage fails OutOfMemory")
    test_pids: int = Field(
        default=1024, ge=32, le=1 << 22,
        description="processes and threads a test stage's container may hold at once")
    test_timeout_seconds: float = Field(
        default=900.0, gt=0, le=6 * 3600,
        description="wall-clock limit of a test stage's container; past it the container "
        "is killed and the stage fails TimedOut")
    git_timeout_seconds: float = Field(
        default=300.0, gt=0, le=3600,
        description="how long one git command (a clone, a fetch, a push) may run; past it "
        "git's process group is killed and the stage fails naming the repository")
    pip_timeout_seconds: float = Field(
        default=900.0, gt=0, le=6 * 3600,
        description="how long one `pip download` of an app's wheels may run; past it pip's "
        "process group is killed and the stage fails")
    push_branches: list[str] = Field(
        default_factory=lambda: ["*"],
        description="branches whose ci runs push images (shell patterns, JSON list); "
        "elsewhere push is skipped with WhenNotMet")
    registry: str = Field(default="127.0.0.1:5000", pattern=r"^127\.0\.0\.1:\d{1,5}$",
                          description="address of the local registry (loopback only)")
    prometheus: str = Field(
        default="127.0.0.1:9090", pattern=r"^127\.0\.0\.1:\d{1,5}$",
        description="address of the local stack's Prometheus (loopback only)")
    prometheus_url: str | None = Field(
        default=None, description="an existing Prometheus to read canary and chaos "
        "metrics from (for example http://prometheus.monitoring:9090); when set, "
        "`shipyard up` starts no Prometheus of its own")
    prometheus_scrape_seconds: float = Field(
        default=1.0, ge=0.5, le=60,
        description="how often the local Prometheus scrapes the cluster's pods; a canary "
        "interval shorter than two scrapes cannot be read from Prometheus")
    metrics_provider: Literal["auto", "prometheus", "pods"] = Field(
        default="auto", description="where the canary reads its metrics: `prometheus` "
        "(PromQL range queries), `pods` (each pod's /metrics through the API server), "
        "or `auto`: Prometheus whenever one answers, else the pods")
    canary_cross_check: bool = Field(
        default=False, description="also measure every canary through the other metrics "
        "provider over the same window and record both verdicts and their costs")
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
    repositories: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="repositories whose pushes may start ci: globs on owner/name "
        "(repository.full_name) or on clone URLs, '!' excludes (JSON list or "
        "comma-separated); none (the default): every push is ignored, repository not allowed")
    clone_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["github.com"],
        description="hosts a webhook's clone URL may name, over https or ssh (globs)")
    allow_local_repositories: bool = Field(
        default=False, description="let webhooks name file:// URLs, local paths and "
        "loopback, link-local or private hosts (tests, local experiments; logged loudly)")
    webhook_replay_window_seconds: float = Field(
        default=600.0, description="a push of the same repository, ref and commit within "
        "this many seconds of one that started a run starts nothing (duplicate push)")
    webhook_rate_per_second: float = Field(
        default=10.0, description="webhook calls per second one source address may make "
        "after its burst; beyond it: 429 with Retry-After")
    webhook_rate_burst: int = Field(
        default=100, description="webhook calls one source address may make at once")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="addresses or networks of reverse proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed; none: the socket's peer is "
        "the client")
    hand_over_interval_seconds: float = Field(
        default=5.0, gt=0, le=3600,
        description="how often `shipyard ui` hands queued runs Prefect has not taken yet")
    heartbeat_seconds: float = Field(
        default=10.0, gt=0, le=300,
        description="how often a running flow notes in the store that its process is alive")
    abandon_after_seconds: float = Field(
        default=120.0, gt=0, le=86400,
        description="a run whose flow Prefect says runs, but whose heartbeat is older than "
        "this, lost its process: the sweeper settles it as Abandoned (keep it several "
        "heartbeats long)")
    sweep_interval_seconds: float = Field(
        default=30.0, gt=0, le=3600,
        description="how often `shipyard ui` sweeps unfinished runs for ones whose process "
        "is gone")
    lock_wait_seconds: float = Field(
        default=900.0, ge=0, le=86400,
        description="how long a delivery or rollback waits for another run to give back "
        "an app and environment's deploy lock before it fails with DeployInProgress (0: "
        "fail at once)")
    sweep_grace_seconds: float = Field(
        default=30.0, ge=0, le=3600,
        description="how long after Prefect says a flow run ended the sweeper leaves its "
        "still unfinished run to the flow's own last write before settling it")

    @field_validator("abandon_after_seconds", mode="after")
    @classmethod
    def _several_heartbeats(cls, value: float, info: ValidationInfo) -> float:
        beat = info.data.get("heartbeat_seconds")
        if beat is not None and value < 3 * beat:
            raise ValueError(f"SHIPYARD_ABANDON_AFTER_SECONDS ({value:g}) must be at least "
                             f"three heartbeats (3 times SHIPYARD_HEARTBEAT_SECONDS, "
                             f"{3 * beat:g}): one late beat must not settle a live run")
        return value
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
    ui_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host header values the UI answers besides the loopback names and the "
        "address it is bound to (a guard against DNS rebinding); '*.example.com' allows "
        "subdomains; JSON list or comma-separated")

    ui_streams_per_identity: int = Field(
        default=8, description="live-update streams (server-sent events) one identity may "
        "hold open at once: a signed-in user, an API token, an anonymous viewer's address; "
        "one more is refused (429) until one closes")
    ui_cluster_cache_seconds: float = Field(
        default=5.0, description="how long the environments board reuses what it read "
        "from the cluster (shared by every request of the process); 0: read it anew for "
        "each request")

    @field_validator("ui_allowed_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any, info: ValidationInfo) -> list[str]:
        return host_patterns(value, variable=_variable(info))

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
        description="the environments `shipyard up` makes in the cluster, in delivery "
        "order, each a namespace (the prefix plus its name) enforcing the restricted Pod "
        "Security Standard, with a deploy identity of its own (comma-separated or a JSON "
        "list)")
    identity_token_days: float = Field(
        default=30.0, ge=1, le=365,
        description="how long the deploy and read-only identities' tokens live; `shipyard "
        "up` renews one with less than half of that left")

    @field_validator("environments", mode="before")
    @classmethod
    def _environment_list(cls, value: Any, info: ValidationInfo) -> Any:
        value = string_list(value, "SHIPYARD_ENVIRONMENTS", "environment names",
                            example='["staging", "prod"]', comma_example="staging,prod")
        try:
            return list(validate_environments(str(info.data.get("namespace_prefix", "")),
                                              value))
        except InvalidEnvironment as err:
            raise ValueError(f"SHIPYARD_ENVIRONMENTS: {err}") from err

    production_environment: str = Field(
        default="", validate_default=True,
        description="the environment deployed red/black, behind the canary, chaos and "
        "judgment gates; default: the last of SHIPYARD_ENVIRONMENTS")

    @field_validator("production_environment", mode="before")
    @classmethod
    def _one_of_the_environments(cls, value: Any, info: ValidationInfo) -> Any:
        environments: list[str] | None = info.data.get("environments")
        if not environments:
            return value  # SHIPYARD_ENVIRONMENTS was refused; its error says why
        name = value.strip() if isinstance(value, str) else value
        if name in (None, ""):
            return environments[-1]
        if name not in environments:
            raise ValueError(f"{_variable(info)}: {value!r} is not one of "
                             f"SHIPYARD_ENVIRONMENTS ({', '.join(environments)}); name one "
                             f"of them, or leave it unset for the last ({environments[-1]})")
        return name

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
    judgment_key_file: Path | None = Field(
        default=None, description="the key that signs judgment answers (32 random bytes as "
        "hex); the CLI, the UI and the worker's flows must read the same file; default "
        "<home>/judgment-key, created once, mode 0600")
    chaos_window_seconds: float = Field(
        default=20.0, gt=0, le=300,
        description="each window of the chaos experiment: the steady state is judged over "
        "one before the kill and one after it")

    stage_log_max_lines: int = Field(
        default=20_000, description="lines of a stage's log the store keeps; past them "
        "one marker line says how many were dropped, and the full log is in "
        "<home>/logs/<run>/<stage>.log")
    retain_runs_days: int = Field(
        default=90, description="`shipyard gc` deletes runs that ended more than this "
        "many days ago, with their stages, logs and history (never one a release names)")
    retain_deliveries_days: int = Field(
        default=30, description="`shipyard gc` deletes webhook deliveries received more "
        "than this many days ago")

    @field_validator("home", "project_dir", "stack_home", "pip_cache", "wheelhouse",
                     "kubeconfig", mode="after")
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
        return checked_list(value, _variable(info), "glob patterns",
                            example='["main", "release/*"]', comma_example="main,release/*",
                            check=GlobSet.of)

    @field_validator("repositories", mode="before")
    @classmethod
    def _repository_patterns(cls, value: Any, info: ValidationInfo) -> Any:
        return checked_list(value, _variable(info), "repository patterns",
                            example='["acme/*", "!acme/old"]', comma_example="acme/*,!acme/old",
                            check=RepositoryAllowList.of)

    @field_validator("clone_hosts", mode="before")
    @classmethod
    def _host_patterns(cls, value: Any, info: ValidationInfo) -> Any:
        return checked_list(value, _variable(info), "host patterns",
                            example='["github.com", "*.example.com"]',
                            comma_example="github.com,git.example.com", check=_clone_hosts)

    @field_validator("allow_local_repositories", mode="before")
    @classmethod
    def _flag(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            if text not in _TRUE | _FALSE:
                raise ValueError(f"{_variable(info)}: {value!r} is neither true nor false; "
                                 "write 'true' or 'false'")
            return text in _TRUE
        return value

    @field_validator("webhook_replay_window_seconds", "webhook_rate_per_second",
                     "webhook_rate_burst", "stage_log_max_lines", "retain_runs_days",
                     "retain_deliveries_days", "ui_streams_per_identity",
                     "ui_cluster_cache_seconds", mode="before")
    @classmethod
    def _bounded_number(cls, value: Any, info: ValidationInfo) -> Any:
        low, high, example = _NUMBERS[info.field_name or ""]
        variable = _variable(info)
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        whole = info.field_name in _WHOLE_NUMBERS
        if not low <= number <= high or (whole and not number.is_integer()):
            raise ValueError(f"{variable}: {value!r} must be a {'whole ' if whole else ''}"
                             f"number from {_shown(low)} to {_shown(high)}, such as {example}")
        return int(number) if whole else number

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: Any, info: ValidationInfo) -> Any:
        return proxy_networks(value, variable=_variable(info))

    @property
    def worker_type(self) -> str:
        """The Prefect worker type of ``worker``: ``shipyard-warm`` (registered by
        :mod:`shipyard.worker.warm`) or Prefect's ``process``."""
        return "shipyard-warm" if self.worker == "warm" else "process"

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

    @property
    def pre_production_environment(self) -> str | None:
        """The environment just before production in ``environments``, where a version
        proves itself before it is promoted to production; None when production comes
        first."""
        return self.environment_before(self.production_environment)

    def environment_before(self, environment: str) -> str | None:
        """The environment just before ``environment`` in ``environments`` (a promotion
        to ``environment`` starts from it); None for the first. Raises ValueError for an
        environment that is not one of ``environments``."""
        if environment not in self.environments:
            raise ValueError(f"{environment!r} is not one of SHIPYARD_ENVIRONMENTS "
                             f"({', '.join(self.environments)})")
        index = self.environments.index(environment)
        return self.environments[index - 1] if index else None

    def namespace_for(self, environment: str) -> str:
        """The Kubernetes namespace of ``environment``."""
        return f"{self.namespace_prefix}{environment}"

    @property
    def workspaces_dir(self) -> Path:
        """Per-run checkouts (git worktrees)."""
        return self.home / "workspaces"

    @property
    def stage_logs_dir(self) -> Path:
        """Stages' full logs, one directory per run (the store keeps a capped copy)."""
        return self.home / "logs"

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
    def judgment_key_path(self) -> Path:
        """The key that signs judgment answers: ``SHIPYARD_JUDGMENT_KEY_FILE``, else
        ``<home>/judgment-key``."""
        return (self.judgment_key_file or self.home / "judgment-key").expanduser().resolve()

    @property
    def wheelhouse_dir(self) -> Path:
        """The gathered wheel sets: ``SHIPYARD_WHEELHOUSE``, else kept with the stack."""
        return self.wheelhouse or self.stack_dir / "wheelhouse"

    @property
    def prometheus_base_url(self) -> str:
        """The Prometheus the canary reads: ``SHIPYARD_PROMETHEUS_URL``, else the local
        stack's (without a trailing slash)."""
        return (self.prometheus_url or f"http://{self.prometheus}").rstrip("/")

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


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_NUMBERS: dict[str, tuple[float, float, str]] = {
    "webhook_replay_window_seconds": (1, 7 * 86400, "600 (ten minutes)"),
    "webhook_rate_per_second": (0.01, 100_000, "10"),
    "webhook_rate_burst": (1, 1_000_000, "100"),
    "stage_log_max_lines": (100, 10_000_000, "20000"),
    "retain_runs_days": (1, 36_500, "90"),
    "retain_deliveries_days": (1, 36_500, "30"),
    "ui_streams_per_identity": (1, 1000, "8"),
    "ui_cluster_cache_seconds": (0, 300, "5 (0 reads the cluster for every request)"),
}
_WHOLE_NUMBERS = frozenset({"webhook_rate_burst", "stage_log_max_lines", "retain_runs_days",
                            "retain_deliveries_days", "ui_streams_per_identity"})


def _shown(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _clone_hosts(hosts: list[str]) -> None:
    """Refuse what is no host name or address, then what :class:`CloneUrlPolicy` refuses."""
    for host in hosts:
        if any(c in host for c in "/@[]") or (":" in host and not _is_address(host)):
            raise ValueError(f"{host!r} must be a host name or address (github.com, "
                             "*.example.com, 10.0.0.7, fd00::7), without scheme, user, port, "
                             "path or brackets")
    CloneUrlPolicy.of(hosts)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _variable(info: ValidationInfo) -> str:
    return f"SHIPYARD_{(info.field_name or '').upper()}"

