"""Settings come from ``SHIPYARD_*`` environment variables, validated when loaded."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

import shipyard
from shipyard.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SHIPYARD_* variable of the developer's leaks in, and ~ is a fresh directory."""
    for name in ("SHIPYARD_HOME", "SHIPYARD_DATABASE_URL", "SHIPYARD_PROJECT_DIR",
                 "SHIPYARD_WORK_POOL", "SHIPYARD_STACK_HOME", "SHIPYARD_POSTGRES_PORT",
                 "SHIPYARD_WEBHOOK_SECRET", "SHIPYARD_TRIGGER_BRANCHES",
                 "SHIPYARD_TRIGGER_TAGS", "SHIPYARD_TRIGGER_PATHS",
                 "SHIPYARD_WEBHOOK_MAX_BODY_BYTES", "SHIPYARD_STAGE_LOG_MAX_LINES",
                 "SHIPYARD_RETAIN_RUNS_DAYS", "SHIPYARD_RETAIN_DELIVERIES_DAYS",
                 "SHIPYARD_UI_STREAMS_PER_IDENTITY", "SHIPYARD_UI_CLUSTER_CACHE_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def test_home_defaults_to_dot_shipyard_in_the_users_home(clean_environment: Path) -> None:
    assert Settings().home == clean_environment.resolve() / ".shipyard"


def test_the_store_defaults_to_sqlite_under_home(clean_environment: Path) -> None:
    expected = clean_environment.resolve() / ".shipyard" / "shipyard.db"
    assert Settings().store_url == f"sqlite:///{expected}"


def test_shipyard_home_moves_the_state_directory(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "state"))

    settings = load_settings()

    assert settings.home == tmp_path.resolve() / "state"
    assert settings.store_url == f"sqlite:///{tmp_path.resolve() / 'state' / 'shipyard.db'}"
    assert settings.workspaces_dir == tmp_path.resolve() / "state" / "workspaces"
    assert settings.git_cache_dir == tmp_path.resolve() / "state" / "git-cache"


def test_a_home_with_a_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch,
                                         clean_environment: Path) -> None:
    monkeypatch.setenv("SHIPYARD_HOME", "~/ci-state")
    assert Settings().home == clean_environment.resolve() / "ci-state"


def test_a_relative_home_is_made_absolute(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHIPYARD_HOME", "relative/state")
    assert Settings().home == tmp_path.resolve() / "relative" / "state"


def test_the_database_url_overrides_the_sqlite_default(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+psycopg://shipyard@db.internal:5432/shipyard"
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", url)
    assert Settings().store_url == url


def test_an_empty_database_url_means_the_default(monkeypatch: pytest.MonkeyPatch,
                                                 clean_environment: Path) -> None:
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", "")
    assert Settings().store_url.startswith(f"sqlite:///{clean_environment.resolve()}")


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch,
                                                  clean_environment: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    monkeypatch.setenv("WORK_POOL", "other")
    settings = Settings()
    assert settings.store_url.startswith("sqlite:///")
    assert settings.work_pool == "shipyard"


def test_unknown_shipyard_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_NO_SUCH_SETTING", "x")
    assert Settings().work_pool == "shipyard"


def test_the_work_pool_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_WORK_POOL", "k8s-pool")
    assert Settings().work_pool == "k8s-pool"


def test_the_source_dir_defaults_to_this_checkout() -> None:
    package_dir = Path(shipyard.__file__).resolve().parent
    assert Settings().source_dir == package_dir.parent


def test_the_project_dir_overrides_the_source_dir(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHIPYARD_PROJECT_DIR", "checkout")
    settings = Settings()
    assert settings.project_dir == tmp_path.resolve() / "checkout"
    assert settings.source_dir == tmp_path.resolve() / "checkout"


def test_settings_cannot_be_changed_once_loaded() -> None:
    settings = Settings()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        settings.work_pool = "other"


def test_the_stacks_postgres_is_the_store_while_recorded(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path))
    record = Settings().stack_database_file
    assert record == tmp_path.resolve() / "stack" / "postgres" / "store.url"
    record.parent.mkdir(parents=True)
    record.write_text("postgresql+psycopg://shipyard@127.0.0.1:54320/shipyard\n")

    assert Settings().store_url == "postgresql+psycopg://shipyard@127.0.0.1:54320/shipyard"
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", "sqlite:////elsewhere.db")
    assert Settings().store_url == "sqlite:////elsewhere.db", "an explicit URL wins"
    monkeypatch.delenv("SHIPYARD_DATABASE_URL")
    record.unlink()
    assert Settings().store_url == f"sqlite:///{tmp_path.resolve() / 'shipyard.db'}"


def test_pushes_to_main_trigger_by_default_and_deliveries_need_no_signature() -> None:
    settings = Settings()
    assert (settings.trigger_branches, settings.trigger_tags, settings.trigger_paths) == (
        ["main"], [], [])
    assert settings.webhook_secret is None
    assert settings.webhook_max_body_bytes == 1024 * 1024


def test_the_webhook_secret_is_read_and_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_WEBHOOK_SECRET", "s3cret")
    settings = Settings()
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_an_empty_webhook_secret_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_WEBHOOK_SECRET", "")
    assert Settings().webhook_secret is None


@pytest.mark.parametrize("value", ['["main", "release/*"]', "main, release/*", "main,release/*,"])
def test_trigger_patterns_are_a_json_list_or_comma_separated(
        monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SHIPYARD_TRIGGER_BRANCHES", value)
    assert Settings().trigger_branches == ["main", "release/*"]


def test_the_trigger_rules_are_built_from_the_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_TRIGGER_TAGS", "v*")
    monkeypatch.setenv("SHIPYARD_TRIGGER_PATHS", '["apps/**", "!**/*.md"]')
    rules = Settings().trigger_rules
    assert rules.tags.matches("v1.0") and not rules.tags.matches("nightly")
    assert rules.paths.matches("apps/x.py") and not rules.paths.matches("apps/README.md")


@pytest.mark.parametrize(("variable", "value", "problem"), [
    ("SHIPYARD_TRIGGER_BRANCHES", "release/[0-9", "never closes"),
    ("SHIPYARD_TRIGGER_TAGS", '["v*", 3]', "must be a list of glob patterns"),
    ("SHIPYARD_TRIGGER_PATHS", "[apps/**", "is not a JSON list"),
])
def test_a_bad_trigger_pattern_is_refused_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(pydantic.ValidationError, match=problem) as raised:
        Settings()
    assert f"{variable}: " in str(raised.value)


def test_a_tiny_body_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_WEBHOOK_MAX_BODY_BYTES", "10")
    with pytest.raises(pydantic.ValidationError, match="webhook_max_body_bytes"):
        Settings()


def test_logs_are_capped_and_old_runs_and_deliveries_retained_by_default(
        clean_environment: Path) -> None:
    settings = Settings()
    assert settings.stage_log_max_lines == 20_000
    assert (settings.retain_runs_days, settings.retain_deliveries_days) == (90, 30)
    assert settings.stage_logs_dir == clean_environment.resolve() / ".shipyard" / "logs"


def test_the_bounds_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_STAGE_LOG_MAX_LINES", "100")
    monkeypatch.setenv("SHIPYARD_RETAIN_RUNS_DAYS", "7")
    monkeypatch.setenv("SHIPYARD_RETAIN_DELIVERIES_DAYS", "1")
    settings = Settings()
    assert (settings.stage_log_max_lines, settings.retain_runs_days,
            settings.retain_deliveries_days) == (100, 7, 1)


def test_the_ui_holds_8_streams_per_identity_and_caches_the_cluster_5_s_by_default(
        ) -> None:
    settings = Settings()
    assert (settings.ui_streams_per_identity, settings.ui_cluster_cache_seconds) == (8, 5.0)


def test_the_ui_bounds_are_read_from_the_environment_and_0_turns_the_cache_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_UI_STREAMS_PER_IDENTITY", "1000")
    monkeypatch.setenv("SHIPYARD_UI_CLUSTER_CACHE_SECONDS", "0")
    settings = Settings()
    assert (settings.ui_streams_per_identity, settings.ui_cluster_cache_seconds) == (1000, 0)


@pytest.mark.parametrize(("variable", "value", "problem"), [
    ("SHIPYARD_STAGE_LOG_MAX_LINES", "99", "whole number from 100 to 10000000, such as 20000"),
    ("SHIPYARD_UI_STREAMS_PER_IDENTITY", "0", "whole number from 1 to 1000, such as 8"),
    ("SHIPYARD_UI_STREAMS_PER_IDENTITY", "1001", "whole number from 1 to 1000"),
    ("SHIPYARD_UI_STREAMS_PER_IDENTITY", "2.5", "whole number from 1 to 1000"),
    ("SHIPYARD_UI_CLUSTER_CACHE_SECONDS", "-1", "number from 0 to 300, such as 5"),
    ("SHIPYARD_UI_CLUSTER_CACHE_SECONDS", "soon", "number from 0 to 300"),
    ("SHIPYARD_STAGE_LOG_MAX_LINES", "lots", "whole number from 100"),
    ("SHIPYARD_RETAIN_RUNS_DAYS", "0", "whole number from 1 to 36500, such as 90"),
    ("SHIPYARD_RETAIN_DELIVERIES_DAYS", "1.5", "whole number from 1 to 36500, such as 30"),
])
def test_a_bound_out_of_range_is_refused_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(pydantic.ValidationError, match=problem) as raised:
        Settings()
    assert f"{variable}: {value!r} must be" in str(raised.value)
