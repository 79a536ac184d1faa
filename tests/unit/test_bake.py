"""Which environments the bake versions for red/black: production, as the settings name it."""

from __future__ import annotations

import pytest

from stages.bake import red_black_environments


@pytest.fixture(autouse=True)
def default_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPYARD_ENVIRONMENTS", raising=False)
    monkeypatch.delenv("SHIPYARD_PRODUCTION_ENVIRONMENT", raising=False)


def test_production_alone_is_deployed_red_black() -> None:
    assert red_black_environments() == frozenset({"prod"})


def test_the_red_black_environment_follows_the_production_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_ENVIRONMENTS", "staging,live,sandbox")
    assert red_black_environments() == frozenset({"sandbox"})
    monkeypatch.setenv("SHIPYARD_PRODUCTION_ENVIRONMENT", "live")
    assert red_black_environments() == frozenset({"live"})
