"""A secret file is its owner's alone (0600 or tighter), a state directory too (0700 or
tighter); anything more is too open, and the message names the path, the mode and the fix."""

from __future__ import annotations

import stat

import pytest

from shipyard.domain.file_modes import StateNotPrivate, TooOpen, mode_problems, too_open


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o200, 0o000])
def test_a_secret_file_only_its_owner_can_reach_is_private(mode: int) -> None:
    assert too_open("/s/key", "secret file", mode) is None


@pytest.mark.parametrize("mode", [0o700, 0o500, 0o300])
def test_a_state_directory_only_its_owner_can_reach_is_private(mode: int) -> None:
    assert too_open("/s", "state directory", mode) is None


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o666])
def test_any_bit_for_the_group_or_others_makes_a_secret_file_too_open(mode: int) -> None:
    assert too_open("/s/key", "secret file", mode) == TooOpen("/s/key", "secret file", mode)


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o711, 0o701, 0o710, 0o770, 0o777])
def test_any_bit_for_the_group_or_others_makes_a_state_directory_too_open(mode: int) -> None:
    assert too_open("/s", "state directory", mode) is not None


def test_the_file_type_and_special_bits_of_st_mode_are_not_permissions() -> None:
    assert too_open("/s/key", "secret file", stat.S_IFREG | 0o600) is None
    assert too_open("/s", "state directory", stat.S_IFDIR | stat.S_ISVTX | 0o700) is None
    found = too_open("/s/key", "secret file", stat.S_IFREG | 0o644)
    assert found is not None
    assert found.mode == 0o644


def test_the_message_names_the_path_the_mode_found_who_may_do_what_and_the_fix() -> None:
    file = too_open("/home/ada/.shipyard/ui-secret-key", "secret file", 0o644)
    assert file is not None
    assert file.message == (
        "/home/ada/.shipyard/ui-secret-key is a secret file with mode 0644: its group may "
        "read it and others may read it; it must be 0600 or tighter: run "
        "`chmod 600 /home/ada/.shipyard/ui-secret-key`")
    directory = too_open("/home/ada/.shipyard", "state directory", 0o751)
    assert directory is not None
    assert directory.message == (
        "/home/ada/.shipyard is a state directory with mode 0751: its group may read/enter "
        "it and others may enter it; it must be 0700 or tighter: run "
        "`chmod 700 /home/ada/.shipyard`")


def test_a_writable_secret_is_too_open_even_when_nobody_else_may_read_it() -> None:
    found = too_open("/s/kubeconfig", "secret file", 0o622)
    assert found is not None
    assert "its group may write it and others may write it" in found.message


def test_tightening_takes_group_and_others_bits_and_keeps_the_owners() -> None:
    assert TooOpen("/s/key", "secret file", 0o644).tightened == 0o600
    assert TooOpen("/s/key", "secret file", 0o444).tightened == 0o400
    assert TooOpen("/s", "state directory", 0o755).tightened == 0o700


def test_a_tightened_readable_secret_is_said_to_have_been_exposed() -> None:
    readable = TooOpen("/s/store.url", "secret file", 0o644)
    assert readable.tightened_message.startswith(
        "/s/store.url was mode 0644 (its group may read it and others may read it): made "
        "it 0600")
    assert "treat what it holds as seen" in readable.tightened_message
    directory = TooOpen("/s", "state directory", 0o755)
    assert "treat" not in directory.tightened_message


def test_every_too_open_entry_is_reported_in_order_and_the_error_carries_them_all() -> None:
    problems = mode_problems([("/s", "state directory", 0o755),
                              ("/s/a.key", "secret file", 0o600),
                              ("/s/b.key", "secret file", 0o640)])
    assert [p.path for p in problems] == ["/s", "/s/b.key"]
    error = StateNotPrivate(problems)
    assert error.problems == tuple(problems)
    assert "chmod 700 /s" in str(error)
    assert "chmod 600 /s/b.key" in str(error)
