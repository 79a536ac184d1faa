"""GitHub deliveries as plain data: signatures, delivery ids, bodies and push payloads."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from shipyard.domain.webhooks import (
    MAX_LISTED_COMMITS,
    InvalidPayload,
    InvalidSignature,
    MalformedBody,
    decode_body,
    parse_push,
    sign,
    validate_delivery_id,
    verify_signature,
)

# GitHub's published example (docs: "Validating webhook deliveries").
GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

BEFORE = "a" * 40
AFTER = "b" * 40


def push_payload(**changes: Any) -> dict[str, Any]:
    """A push as GitHub sends it, trimmed to a realistic core."""
    payload: dict[str, Any] = {
        "ref": "refs/heads/main", "before": BEFORE, "after": AFTER,
        "created": False, "deleted": False, "forced": False,
        "repository": {"full_name": "acme/shop", "clone_url": "https://github.com/acme/shop.git"},
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat-account"},
        "commits": [
            {"id": AFTER, "added": ["apps/gateway/new.py"], "modified": ["README.md"],
             "removed": []},
            {"id": "c" * 40, "added": [], "modified": [], "removed": ["apps/data/old.py"]},
        ],
        "head_commit": {"id": AFTER, "added": [], "modified": [], "removed": []},
    }
    payload.update(changes)
    return payload


def test_githubs_published_test_vector_signs_as_github_says() -> None:
    assert sign(GITHUB_SECRET, GITHUB_BODY) == GITHUB_SIGNATURE


def test_githubs_published_test_vector_verifies() -> None:
    verify_signature(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE)


def test_a_signature_in_capitals_is_the_same_signature() -> None:
    capitals = "sha256=" + GITHUB_SIGNATURE.removeprefix("sha256=").upper()
    verify_signature(GITHUB_SECRET, GITHUB_BODY, capitals)


@pytest.mark.parametrize("header", [None, ""])
def test_a_missing_signature_is_refused(header: str | None) -> None:
    with pytest.raises(InvalidSignature, match="missing"):
        verify_signature(GITHUB_SECRET, GITHUB_BODY, header)


@pytest.mark.parametrize("header", ["757107ea" * 8, "sha1=" + "0" * 40, "sha256=xyz",
                                    GITHUB_SIGNATURE[:-1]])
def test_a_malformed_signature_is_refused(header: str) -> None:
    with pytest.raises(InvalidSignature, match="must be 'sha256=' and 64 hex digits"):
        verify_signature(GITHUB_SECRET, GITHUB_BODY, header)


def test_a_signature_of_another_body_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_signature(GITHUB_SECRET, b"Hello, World?", GITHUB_SIGNATURE)


def test_a_signature_made_with_another_secret_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_signature(b"another secret", GITHUB_BODY, GITHUB_SIGNATURE)


def test_a_delivery_id_like_githubs_is_accepted() -> None:
    guid = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert validate_delivery_id(guid) == guid


@pytest.mark.parametrize(("value", "problem"), [
    (None, "missing"), ("", "missing"), ("-rf", "letters, digits"), ("a b", "letters, digits"),
    ("x" * 101, "at most 100"),
])
def test_a_missing_or_strange_delivery_id_is_refused(value: str | None, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        validate_delivery_id(value)


def test_a_json_body_is_decoded() -> None:
    assert decode_body(b'{"zen": "Keep it simple."}', "application/json") == {
        "zen": "Keep it simple."}


def test_a_form_encoded_body_carries_the_json_in_its_payload_field() -> None:
    body = urlencode({"payload": json.dumps({"zen": "x"})}).encode()
    assert decode_body(body, "application/x-www-form-urlencoded; charset=utf-8") == {
        "zen": "x"}


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b'{"a": 1}}'])
def test_a_body_that_is_not_json_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBody, match="not valid JSON"):
        decode_body(body, "application/json")


def test_a_form_body_without_a_payload_field_is_malformed() -> None:
    with pytest.raises(MalformedBody, match="'payload' field"):
        decode_body(b"other=1", "application/x-www-form-urlencoded")


def test_a_push_is_read_into_what_decides_the_build() -> None:
    push = parse_push(push_payload())
    assert (push.ref, push.kind, push.name, push.before, push.after) == (
        "refs/heads/main", "branch", "main", BEFORE, AFTER)
    assert (push.clone_url, push.repository, push.pusher, push.deleted) == (
        "https://github.com/acme/shop.git", "acme/shop", "octocat", False)


def test_the_changed_paths_are_every_pushed_commits_added_modified_and_removed() -> None:
    assert parse_push(push_payload()).changed_paths == frozenset({
        "apps/gateway/new.py", "README.md", "apps/data/old.py"})


def test_a_tag_push_is_a_tag_by_its_name() -> None:
    push = parse_push(push_payload(ref="refs/tags/v1.2.0", commits=[], head_commit=None))
    assert (push.kind, push.name) == ("tag", "v1.2.0")


def test_another_ref_is_neither_branch_nor_tag() -> None:
    push = parse_push(push_payload(ref="refs/notes/commits"))
    assert (push.kind, push.name) == ("other", "refs/notes/commits")


def test_a_deleted_branch_is_a_deletion_whichever_way_github_says_it() -> None:
    flagged = push_payload(deleted=True, after="0" * 40, commits=[], head_commit=None)
    only_zeros = push_payload(after="0" * 40, commits=[], head_commit=None)
    assert parse_push(flagged).deleted and parse_push(only_zeros).deleted


def test_a_push_without_listed_commits_cannot_tell_its_files() -> None:
    assert parse_push(push_payload(commits=[], head_commit=None)).changed_paths is None


def test_a_push_whose_commit_list_was_cut_short_cannot_tell_its_files() -> None:
    commits = [{"id": AFTER, "added": [], "modified": ["a"], "removed": []}] * MAX_LISTED_COMMITS
    assert parse_push(push_payload(commits=commits)).changed_paths is None


def test_a_push_without_a_full_name_has_no_repository_name() -> None:
    payload = push_payload(repository={"clone_url": "https://github.com/acme/shop.git"})
    assert parse_push(payload).repository == ""


def test_the_sender_names_the_pusher_when_github_gives_no_pusher() -> None:
    payload = push_payload()
    del payload["pusher"]
    assert parse_push(payload).pusher == "octocat-account"


def test_a_pusher_is_named_in_any_script() -> None:
    for name in ("José Núñez", "李雷", "Ada Tester"):
        assert parse_push(push_payload(pusher={"name": name})).pusher == name


def test_a_long_pusher_name_is_cut_to_what_the_store_keeps() -> None:
    assert parse_push(push_payload(pusher={"name": "n" * 500})).pusher == "n" * 120


def test_a_sha256_repository_is_read_too() -> None:
    assert parse_push(push_payload(after="d" * 64)).after == "d" * 64


@pytest.mark.parametrize(("changes", "field"), [
    ({"ref": None}, "ref"),
    ({"ref": "main"}, "ref"),
    ({"after": "HEAD"}, "after"),
    ({"before": "A" * 40}, "before"),
    ({"repository": "acme/shop"}, "repository"),
    ({"repository": {"full_name": "acme/shop"}}, "repository.clone_url"),
    ({"repository": {"clone_url": "https://x/" + "y" * 1000}}, "repository.clone_url"),
    ({"ref": "refs/heads/main\nINFO forged log line"}, "ref"),
    ({"repository": {"clone_url": "https://github.com/a/b.git", "full_name": 7}},
     "repository.full_name"),
    ({"repository": {"clone_url": "https://github.com/a/b.git", "full_name": "shop"}},
     "repository.full_name"),
    ({"repository": {"clone_url": "https://github.com/a/b.git", "full_name": "a/b\nc"}},
     "repository.full_name"),
    ({"deleted": "no"}, "deleted"),
    ({"commits": {"id": AFTER}}, "commits"),
    ({"commits": ["abc"]}, "commits[0]"),
    ({"commits": [{"id": AFTER, "added": "apps/x.py"}]}, "commits[0].added"),
    ({"pusher": {"name": "\ud800"}}, "pusher.name"),
    ({"pusher": {"name": "ada\u0000"}}, "pusher.name"),
    ({"pusher": None, "sender": {"login": "\u001b[31mroot"}}, "sender.login"),
])
def test_a_payload_that_is_not_a_push_names_the_field(changes: dict[str, Any],
                                                      field: str) -> None:
    with pytest.raises(InvalidPayload) as raised:
        parse_push(push_payload(**changes))
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_a_payload_that_is_no_object_is_refused() -> None:
    with pytest.raises(InvalidPayload, match="must be a JSON object"):
        parse_push(["refs/heads/main"])
