"""The webhook's guard settings: defaults that build nothing unasked, and errors that name
the ``SHIPYARD_`` variable and the fix."""

from __future__ import annotations

import os

import pydantic
import pytest

from shipyard.settings import Settings

VARIABLES = ("SHIPYARD_REPOSITORIES", "SHIPYARD_CLONE_HOSTS",
             "SHIPYARD_ALLOW_LOCAL_REPOSITORIES", "SHIPYARD_WEBHOOK_REPLAY_WINDOW_SECONDS",
             "SHIPYARD_WEBHOOK_RATE_PER_SECOND", "SHIPYARD_WEBHOOK_RATE_BURST",
             "SHIPYARD_TRUSTED_PROXIES")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("SHIPYARD_"):
            monkeypatch.delenv(name)


def test_by_default_no_repository_only_github_nothing_local_and_the_socket_peer() -> None:
    settings = Settings()
    assert settings.repositories == []
    assert settings.clone_hosts == ["github.com"]
    assert settings.allow_local_repositories is False
    assert settings.webhook_replay_window_seconds == 600
    assert (settings.webhook_rate_per_second, settings.webhook_rate_burst) == (10, 100)
    assert settings.trusted_proxies == []


def test_the_lists_read_as_json_or_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_REPOSITORIES", "acme/*, !acme/old,file:///srv/git/**")
    monkeypatch.setenv("SHIPYARD_CLONE_HOSTS", '["github.com", "*.corp.example", "10.0.0.7"]')
    monkeypatch.setenv("SHIPYARD_TRUSTED_PROXIES", "10.0.0.5,192.168.1.0/24,fd00::/8")
    monkeypatch.setenv("SHIPYARD_ALLOW_LOCAL_REPOSITORIES", "True")
    settings = Settings()
    assert settings.repositories == ["acme/*", "!acme/old", "file:///srv/git/**"]
    assert settings.clone_hosts == ["github.com", "*.corp.example", "10.0.0.7"]
    assert settings.trusted_proxies == ["10.0.0.5/32", "192.168.1.0/24", "fd00::/8"]
    assert settings.allow_local_repositories is True


@pytest.mark.parametrize(("variable", "value", "fix"), [
    ("SHIPYARD_REPOSITORIES", "shop", "write 'owner/name'"),
    ("SHIPYARD_REPOSITORIES", '["acme/*", 3]', "such as '[\"acme/*\", \"!acme/old\"]'"),
    ("SHIPYARD_REPOSITORIES", "[acme/*", "is not a JSON list of repository patterns"),
    ("SHIPYARD_CLONE_HOSTS", "https://github.com", "without scheme, user, port, path"),
    ("SHIPYARD_CLONE_HOSTS", "github.com:22", "without scheme, user, port, path"),
    ("SHIPYARD_CLONE_HOSTS", "[git.example", "is not a JSON list of host patterns"),
    ("SHIPYARD_CLONE_HOSTS", "git[.example", "port, path or brackets"),
    ("SHIPYARD_ALLOW_LOCAL_REPOSITORIES", "sure", "write 'true' or 'false'"),
    ("SHIPYARD_WEBHOOK_REPLAY_WINDOW_SECONDS", "0", "from 1 to 604800, such as 600"),
    ("SHIPYARD_WEBHOOK_REPLAY_WINDOW_SECONDS", "ten", "from 1 to 604800"),
    ("SHIPYARD_WEBHOOK_RATE_PER_SECOND", "-1", "from 0.01 to 100000, such as 10"),
    ("SHIPYARD_WEBHOOK_RATE_PER_SECOND", "nan", "from 0.01"),
    ("SHIPYARD_WEBHOOK_RATE_BURST", "2.5", "must be a whole number from 1"),
    ("SHIPYARD_TRUSTED_PROXIES", "proxy.example", "names are not resolved"),
    ("SHIPYARD_TRUSTED_PROXIES", "0.0.0.0/0", "name your proxies"),
    ("SHIPYARD_TRUSTED_PROXIES", "::/0", "trusts every address"),
])
def test_a_bad_value_is_refused_naming_the_variable_and_the_fix(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fix: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(pydantic.ValidationError) as raised:
        Settings()
    assert f"{variable}: " in str(raised.value)
    assert fix in str(raised.value)
