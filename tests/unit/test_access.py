"""Roles, names, passwords and tokens: the access rules the web UI enforces."""

from __future__ import annotations

import pytest

from shipyard.domain.access import (
    ACTION_ROLES,
    TOKEN_PREFIX,
    AccessError,
    Role,
    hash_token,
    new_token,
    validate_password,
    validate_username,
)


@pytest.mark.parametrize(("role", "required", "allowed"), [
    (Role.VIEWER, Role.VIEWER, True),
    (Role.VIEWER, Role.DEPLOYER, False),
    (Role.DEPLOYER, Role.VIEWER, True),
    (Role.DEPLOYER, Role.DEPLOYER, True),
    (Role.DEPLOYER, Role.ADMIN, False),
    (Role.ADMIN, Role.DEPLOYER, True),
    (Role.ADMIN, Role.ADMIN, True),
])
def test_each_role_allows_what_the_ones_below_it_do(role: Role, required: Role,
                                                    allowed: bool) -> None:
    assert role.allows(required) is allowed


def test_a_role_is_parsed_forgivingly_and_refused_with_the_choices() -> None:
    assert Role.parse(" Deployer ") is Role.DEPLOYER
    with pytest.raises(AccessError, match=r"^--role: 'root' is no role; use one of viewer, "
                                          r"deployer, admin$"):
        Role.parse("root", field="--role")


def test_acting_needs_a_deployer_and_managing_accounts_an_admin() -> None:
    assert ACTION_ROLES["view"] is Role.VIEWER
    assert {ACTION_ROLES[a] for a in ("judgment.approve", "judgment.reject",
                                      "release.promote", "release.rollback", "run.restart",
                                      "run.cancel")} == {Role.DEPLOYER}
    assert ACTION_ROLES["account.manage"] is Role.ADMIN


@pytest.mark.parametrize("name", ["ada", "j.doe", "ops-bot_2"])
def test_usable_usernames(name: str) -> None:
    assert validate_username(name) == name


@pytest.mark.parametrize("name", ["", "a", "Ada", "1ada", "ada smith", "x" * 64, "ada@home"])
def test_unusable_usernames_are_refused_naming_the_rule(name: str) -> None:
    with pytest.raises(AccessError, match=r"^username: .* lower-case letters"):
        validate_username(name)


def test_passwords_need_twelve_characters_not_the_name_not_one_repeated() -> None:
    assert validate_password("twelve chars") == "twelve chars"
    with pytest.raises(AccessError, match=r"too short \(11 characters\); use at least 12"):
        validate_password("eleven char")
    with pytest.raises(AccessError, match="must not be the username"):
        validate_password("Administrator", username="administrator")
    with pytest.raises(AccessError, match="one character repeated"):
        validate_password("aaaaaaaaaaaaaaa")


def test_tokens_are_random_prefixed_and_stored_as_a_fixed_length_hash() -> None:
    first, second = new_token(), new_token()
    assert first != second
    assert first.startswith(TOKEN_PREFIX) and len(first) > 40
    assert hash_token(first) == hash_token(first)
    assert hash_token(first) != hash_token(second)
    assert len(hash_token(first)) == 64 and first not in hash_token(first)


def test_something_that_is_not_a_token_is_refused_before_any_lookup() -> None:
    with pytest.raises(AccessError, match="not a Shipyard API token"):
        hash_token("ghp_somebody_elses_token")
