"""Settings from the environment: defaults, the URLs accepted, and bad values named."""

import pytest
from data.config import Settings


def test_defaults_keep_a_sqlite_file_in_the_working_directory() -> None:
    settings = Settings.from_env({})
    assert settings.database_url.render_as_string() == "sqlite:///./data.db"
    assert (settings.cache_ttl_seconds, settings.cache_max_entries) == (10.0, 10_000)


def test_a_plain_postgresql_url_is_driven_by_psycopg() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://app:secret@db:5432/activity"})
    assert settings.database_url.drivername == "postgresql+psycopg"
    assert settings.database_url.database == "activity"


def test_a_cache_ttl_of_zero_turns_the_cache_off() -> None:
    assert Settings.from_env({"CACHE_TTL_SECONDS": "0"}).cache_ttl_seconds == 0


@pytest.mark.parametrize(("env", "message"), [
    ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL uses 'mysql'"),
    ({"DATABASE_URL": "sqlite://"}, "DATABASE_URL must name a SQLite file"),
    ({"DATABASE_URL": "postgresql://db"}, "DATABASE_URL names no database"),
    ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a database URL"),
    ({"CACHE_TTL_SECONDS": "-1"}, "CACHE_TTL_SECONDS='-1' is invalid"),
    ({"CACHE_MAX_ENTRIES": "0"}, "CACHE_MAX_ENTRIES='0' is invalid"),
    ({"DB_TIMEOUT_SECONDS": "soon"}, "DB_TIMEOUT_SECONDS='soon' is invalid"),
])
def test_a_bad_value_is_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_the_refusal_of_a_url_does_not_repeat_its_password() -> None:
    with pytest.raises(ValueError) as refused:
        Settings.from_env({"DATABASE_URL": "oracle://app:hunter2@db/x"})
    assert "hunter2" not in str(refused.value)
