"""Which clone URLs a webhook may name, decided from the text alone (no disk, no DNS)."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest

from shipyard.domain.clone_urls import (
    CloneUrlPolicy,
    RefusedCloneUrl,
    check_clone_url,
    is_internal_address,
    parse_clone_url,
)
from shipyard.domain.redaction import redact_url

GITHUB = CloneUrlPolicy.of(["github.com"])
LOCAL = CloneUrlPolicy.of(["github.com"], allow_local=True)


@pytest.mark.parametrize("url", [
    "https://github.com/acme/shop.git",
    "https://github.com/acme/shop",
    "HTTPS://GitHub.com/acme/shop.git",
    "https://github.com:443/acme/shop.git",
    "ssh://git@github.com/acme/shop.git",
    "ssh://git@github.com:22/acme/shop.git",
    "git@github.com:acme/shop.git",
])
def test_https_and_ssh_on_an_allowed_host_pass(url: str) -> None:
    assert check_clone_url(url, GITHUB).host == "github.com"


@pytest.mark.parametrize(("url", "problem"), [
    ("file:///srv/git/shop.git", "a file:// URL is not fetched from a webhook"),
    ("file://localhost/srv/git/shop.git", "a file:// URL is not fetched"),
    ("/srv/git/shop.git", "a local path is not fetched from a webhook"),
    ("git://github.com/acme/shop.git", "git:// is neither authenticated nor encrypted"),
    ("http://github.com/acme/shop.git", "http:// is neither authenticated nor encrypted"),
    ("https://gitlab.com/acme/shop.git", "host 'gitlab.com' is not in SHIPYARD_CLONE_HOSTS"),
    ("git@gitlab.com:acme/shop.git", "host 'gitlab.com' is not in SHIPYARD_CLONE_HOSTS"),
    ("https://github.com.evil.example/acme/shop.git", "is not in SHIPYARD_CLONE_HOSTS"),
    ("https://github.com./acme/shop.git", "is not a host name"),
])
def test_local_repositories_and_other_hosts_and_schemes_are_refused(url: str,
                                                                    problem: str) -> None:
    with pytest.raises(RefusedCloneUrl, match=problem):
        check_clone_url(url, GITHUB)


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.9.9.9", "localhost", "git.localhost", "[::1]", "10.1.2.3",
    "172.16.0.1", "192.168.1.1", "169.254.169.254", "[fe80::1]", "[fd00::7]",
    "0.0.0.0",  # noqa: S104 - an address to refuse, not one to bind
    "[::]", "100.64.0.1", "224.0.0.1",
    # the same addresses, spelled as inet_aton and IPv6 embeddings read them
    "127.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "0177.0.0.1", "017700000001",
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[2002:7f00:1::]", "[fe80::1%25eth0]",
])
def test_internal_address_hosts_are_refused_however_spelled(host: str) -> None:
    with pytest.raises(RefusedCloneUrl, match="loopback, link-local or private address"):
        check_clone_url(f"https://{host}/acme/shop.git", CloneUrlPolicy.of(["*"]))


@pytest.mark.parametrize("host", ["140.82.112.3", "github.com", "8.8.8.8", "2606:4700::1"])
def test_global_addresses_and_names_are_not_internal(host: str) -> None:
    assert not is_internal_address(host)


def test_an_internal_address_named_exactly_in_the_hosts_is_allowed_over_https_and_ssh(
        ) -> None:
    policy = CloneUrlPolicy.of(["github.com", "10.0.0.7", "fd00::7"])
    assert check_clone_url("https://10.0.0.7/acme/shop.git", policy).host == "10.0.0.7"
    assert check_clone_url("git@[fd00:0::7]:acme/shop.git", policy).host == "fd00:0::7"
    with pytest.raises(RefusedCloneUrl, match="git:// is neither"):
        check_clone_url("git://10.0.0.7/acme/shop.git", policy)
    with pytest.raises(RefusedCloneUrl, match="private address"):
        check_clone_url("https://10.0.0.8/acme/shop.git", CloneUrlPolicy.of(["10.0.0.*"]))


@pytest.mark.parametrize("url", [
    "file:///tmp/shop.git", "/tmp/shop.git", "https://127.0.0.1:8443/shop.git",
    "git://127.0.0.1/shop.git", "http://[::1]:8080/shop.git", "git@localhost:shop.git",
])
def test_an_operator_may_allow_local_repositories(url: str) -> None:
    check_clone_url(url, LOCAL)


def test_allowing_local_repositories_allows_no_other_host_nor_plain_git_on_one() -> None:
    with pytest.raises(RefusedCloneUrl, match="not in SHIPYARD_CLONE_HOSTS"):
        check_clone_url("https://gitlab.com/acme/shop.git", LOCAL)
    with pytest.raises(RefusedCloneUrl, match="git:// is neither"):
        check_clone_url("git://github.com/acme/shop.git", LOCAL)


@pytest.mark.parametrize(("url", "problem"), [
    ("", "is empty"),
    ("-uploadpack=touch /tmp/pwned", "spaces or control characters"),
    ("--upload-pack=touch", "must not start with '-'"),
    ("ssh://-oProxyCommand=touch/x", "not a host name"),
    ("git@-oProxyCommand=touch:x", "not a host name"),
    ("git@github.com:-x/shop.git", "does not start with '-'"),
    ("-@github.com:acme/shop.git", "must not start with '-'"),
    ("ext::sh", "is not a clone URL"),
    ("fd::7:sh", "is not a clone URL"),
    ("github.com:acme/shop.git", "is not a clone URL"),
    ("~/shop", "relative path or one starting with '~'"),
    ("../shop", "relative path"),
    ("/tmp/a\u0000b", "control characters"),
    ("https://github.com/acme/shop.git\n", "control characters"),
    ("https://github.com/", "no repository path"),
    ("https:///acme/shop.git", "names no host"),
    ("https://github.com:99999/acme/shop.git", "cannot be read as a URL"),
    ("https://github.com/acme/shop.git?x=1", "?query or #fragment"),
    ("https://evil.example#@github.com/acme/shop.git", "?query or #fragment"),
    ("https://github.com\\@evil.example/acme/shop.git", "must not contain"),
    ("https://a@b@github.com/acme/shop.git", "at most one '@'"),
    ("https://gíthub.com/acme/shop.git", "not a host name"),
    ("https://999.1.1.1/acme/shop.git", "not a valid address"),
    ("https://[github.com]/acme/shop.git", "cannot be read as a URL"),
    ("git@[github.com]:acme/shop.git", "is not an IPv6 address"),
    ("ftp://github.com/acme/shop.git", "the scheme 'ftp' is not one"),
    ("file://other-host/srv/shop.git", "names no host other than localhost"),
])
def test_what_is_no_clone_url_is_refused_saying_why(url: str, problem: str) -> None:
    with pytest.raises(RefusedCloneUrl, match=problem.replace("?", r"\?")):
        parse_clone_url(url)


def test_credentials_are_never_shown_nor_repeated_in_a_refusal() -> None:
    token = "ghp_secret123"
    parsed = check_clone_url(f"https://x-access-token:{token}@github.com/acme/shop.git",
                             GITHUB)
    assert parsed.shown == "https://github.com/acme/shop.git"
    assert check_clone_url(f"https://{token}@github.com/a/b.git", GITHUB).shown == (
        "https://github.com/a/b.git")
    assert check_clone_url(f"ssh://git:{token}@github.com/a/b.git", GITHUB).shown == (
        "ssh://github.com/a/b.git")
    for refused in (f"https://u:{token}@gitlab.com/a/b.git",
                    f"https://u:{token}@127.0.0.1/a/b.git",
                    f"git://u:{token}@github.com/a/b.git",
                    f"https://u:{token}@github.com/a/b.git?x",
                    f"{token}:x@y://z", f"https://u:{token}@@github.com/a"):
        with pytest.raises(RefusedCloneUrl) as raised:
            check_clone_url(refused, GITHUB)
        assert token not in str(raised.value)
    assert token not in redact_url(f"https://u:{token}@github.com/a.git")
    assert token not in redact_url(f"odd://u:{token}@host/a b")


def test_the_repository_path_is_owner_and_name_in_lower_case() -> None:
    assert parse_clone_url("https://github.com/Acme/Shop.git").repository_path == "acme/shop"
    assert parse_clone_url("git@github.com:acme/shop.git").repository_path == "acme/shop"
    assert parse_clone_url("ssh://git@github.com/acme/shop/").repository_path == "acme/shop"


def test_the_check_reads_neither_the_disk_nor_the_resolver(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def probe(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the check looked at the world: {args}")

    for module, name in ((os, "stat"), (os, "lstat"), (os, "access"), (os, "listdir"),
                         (os, "scandir"), (os.path, "exists"), (os.path, "isdir"),
                         (Path, "stat"), (Path, "is_dir"), (Path, "exists"),
                         (socket, "getaddrinfo"), (socket, "gethostbyname"),
                         (socket, "inet_aton")):
        monkeypatch.setattr(module, name, probe)
    for url in (str(tmp_path), f"file://{tmp_path}", "/no/such/dir", "~/x",
                "https://github.com/acme/shop.git", "https://example.org/x.git",
                "https://127.1/x"):
        for policy in (GITHUB, LOCAL):
            with contextlib.suppress(RefusedCloneUrl):
                check_clone_url(url, policy)


def test_an_existing_and_a_missing_directory_get_the_same_answer(tmp_path: Path) -> None:
    answers = []
    for path in (tmp_path, tmp_path / "missing"):
        with pytest.raises(RefusedCloneUrl) as raised:
            check_clone_url(str(path), GITHUB)
        answers.append(str(raised.value))
        assert check_clone_url(str(path), LOCAL).scheme == "path"
    assert answers[0] == answers[1]
