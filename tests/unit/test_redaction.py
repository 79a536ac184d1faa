"""Credentials in repository URLs are hidden wherever a URL is shown."""

from __future__ import annotations

from shipyard.domain.redaction import redact_text, redact_url, redact_values


def test_the_user_part_of_an_https_url_is_hidden_whole() -> None:
    assert redact_url("https://ada:ghp_s3cret@github.com/acme/shop.git") == (
        "https://***@github.com/acme/shop.git")
    # GitHub takes a token alone as the user.
    assert redact_url("https://ghp_s3cret@github.com/acme/shop") == (
        "https://***@github.com/acme/shop")
    assert redact_url("http://x-access-token:tok@git.example:8443") == (
        "http://***@git.example:8443")


def test_a_password_with_an_unescaped_at_sign_is_hidden_whole() -> None:
    assert redact_url("https://ada:p@ss@git.example/r.git") == "https://***@git.example/r.git"


def test_ssh_urls_keep_the_user_and_lose_the_password() -> None:
    assert redact_url("ssh://git@github.com/acme/shop.git") == "ssh://git@github.com/acme/shop.git"
    assert redact_url("ssh://git:hunter2@git.example:22/shop.git") == (
        "ssh://git:***@git.example:22/shop.git")
    assert redact_url("git+ssh://deploy:pw@host/r") == "git+ssh://deploy:***@host/r"


def test_urls_without_credentials_are_left_alone() -> None:
    for url in ("https://github.com/acme/shop.git", "git@github.com:acme/shop.git",
                "file:///srv/repos/shop", "/srv/repos/shop",
                "https://github.com/acme/shop/commit/abc?x=a@b"):
        assert redact_url(url) == url


def test_urls_in_free_text_are_found_and_the_rest_kept() -> None:
    message = ("cannot fetch https://ada:tok@github.com/acme/shop.git: fatal: unable to access "
               "'https://ada:tok@github.com/acme/shop.git/': The requested URL returned 403; "
               "mail ada@example.com")
    assert redact_text(message) == (
        "cannot fetch https://***@github.com/acme/shop.git: fatal: unable to access "
        "'https://***@github.com/acme/shop.git/': The requested URL returned 403; "
        "mail ada@example.com")


def test_every_string_in_a_runs_parameters_is_redacted() -> None:
    parameters = {"repo": "https://ada:tok@github.com/a/b.git", "ref": "abc", "all": True,
                  "apps": ["https://u:p@h/x", 3], "nested": {"url": "ssh://git:pw@h/r"}}
    assert redact_values(parameters) == {
        "repo": "https://***@github.com/a/b.git", "ref": "abc", "all": True,
        "apps": ["https://***@h/x", 3], "nested": {"url": "ssh://git:***@h/r"}}
