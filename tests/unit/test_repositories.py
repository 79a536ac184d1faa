"""Which repositories a webhook may build: globs on owner/name and on clone URLs."""

from __future__ import annotations

import pytest

from shipyard.domain.clone_urls import parse_clone_url
from shipyard.domain.globs import GlobSet, InvalidPattern
from shipyard.domain.repositories import NOT_ALLOWED, RepositoryAllowList

SHOP = parse_clone_url("https://github.com/acme/shop.git")


def allows(patterns: list[str], full_name: str | None, url: str) -> bool:
    return RepositoryAllowList.of(patterns).allows(full_name, parse_clone_url(url))


def test_no_patterns_allow_nothing() -> None:
    assert not RepositoryAllowList.of([]).allows("acme/shop", SHOP)


@pytest.mark.parametrize(("patterns", "expected"), [
    (["acme/shop"], True),
    (["Acme/SHOP"], True),  # GitHub's names ignore case
    (["acme/*"], True),
    (["*/*"], True),
    (["acme/shop-*"], False),
    (["other/*"], False),
    (["acme/*", "!acme/shop"], False),
    (["!acme/shop", "acme/*"], True),  # the last match decides
])
def test_names_are_globs_on_owner_and_name(patterns: list[str], expected: bool) -> None:
    assert allows(patterns, "acme/shop", "https://github.com/acme/shop.git") is expected


@pytest.mark.parametrize(("pattern", "url"), [
    ("https://github.com/acme/*", "https://github.com/acme/shop.git"),
    ("https://github.com/acme/shop", "https://github.com/acme/shop.git"),
    ("https://github.com/acme/shop.git", "https://github.com/acme/shop.git"),
    ("https://github.com/**", "https://u:token@github.com/acme/shop.git"),
    ("git@github.com:acme/*", "git@github.com:acme/shop.git"),
    ("ssh://git@github.com/acme/*", "ssh://git@github.com/acme/shop.git"),
    ("file:///srv/git/**", "file:///srv/git/teams/shop.git"),
    ("/srv/git/*", "/srv/git/shop.git"),
])
def test_urls_are_globs_on_the_clone_url_without_credentials(pattern: str, url: str) -> None:
    assert allows([pattern], None, url)


def test_a_url_pattern_can_exclude_what_a_name_pattern_allows() -> None:
    patterns = ["acme/*", "!https://github.com/acme/shop*"]
    assert not allows(patterns, "acme/shop", "https://github.com/acme/shop.git")
    assert allows(patterns, "acme/cart", "https://github.com/acme/cart.git")


def test_a_name_counts_only_when_the_clone_url_names_the_same_repository() -> None:
    # Otherwise an allowed name would carry any code in.
    assert not allows(["acme/shop"], "acme/shop", "https://github.com/evil/shop.git")
    assert not allows(["acme/shop"], "acme/shop", "file:///tmp/acme/shop.git")
    assert allows(["acme/shop"], "Acme/Shop", "git@github.com:acme/shop")
    assert allows(["file:///tmp/**"], "acme/shop", "file:///tmp/acme/shop.git")


@pytest.mark.parametrize(("pattern", "problem"), [
    ("shop", "names no owner"),
    ("acme/[shop", "never closes"),
    (" acme/shop", "leading or trailing spaces"),
])
def test_a_bad_pattern_is_refused_naming_it(pattern: str, problem: str) -> None:
    with pytest.raises(InvalidPattern, match=problem):
        RepositoryAllowList.of([pattern])


def test_the_refusal_names_the_setting_and_never_the_credentials() -> None:
    url = parse_clone_url("https://x:ghp_token@github.com/evil/thing.git")
    none_set = RepositoryAllowList.of([]).refusal("evil/thing", url)
    assert none_set.startswith(f"{NOT_ALLOWED}: SHIPYARD_REPOSITORIES is not set")
    some_set = RepositoryAllowList.of(["acme/*"]).refusal(None, url)
    assert some_set == (f"{NOT_ALLOWED}: https://github.com/evil/thing.git matches no "
                        "pattern of SHIPYARD_REPOSITORIES; add it there to build it")
    assert "ghp_token" not in none_set + some_set


def test_a_glob_sets_verdict_is_its_last_matching_pattern_or_none() -> None:
    globs = GlobSet.of(["a/*", "!a/b"])
    assert (globs.verdict("a/c"), globs.verdict("a/b"), globs.verdict("z")) == (
        True, False, None)
