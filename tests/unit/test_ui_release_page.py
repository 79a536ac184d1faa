"""The releases page's promotion form promotes into the production environment of the
settings, from the environment before it, rendered from plain data."""

from __future__ import annotations

from typing import Any

from ui.pages import templates


def releases_page(**context: Any) -> str:
    values: dict[str, Any] = {
        "app": "gateway", "env": "", "releases": [], "environments": [], "left": None,
        "right": None, "diff": None, "may_act": True, "current": {}, "csrf": "token",
        "principal": None, "flashes": [], "badges_json": "{}", "section": "releases",
        "url_for": lambda name, path: f"/{name}/{path}",
        "production": "prod", "promote_from": "staging"}
    return templates.get_template("releases.html").render({**values, **context})


def test_the_promotion_goes_into_production_from_the_environment_before_it():
    page = releases_page(production="live", promote_from="qa")
    assert '<input type="hidden" name="from_env" value="qa">' in page
    assert '<input type="hidden" name="to_env" value="live">' in page
    assert "⇧ Promote to live</button>" in page
    assert "what runs in qa" in page
    assert "staging" not in page and 'value="prod"' not in page


def test_with_nothing_before_production_there_is_nothing_to_promote():
    assert 'action="/apps/gateway/promote"' in releases_page()
    assert 'action="/apps/gateway/promote"' not in releases_page(promote_from=None)
