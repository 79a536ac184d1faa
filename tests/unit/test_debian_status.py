"""Reading dpkg's package status: only an installed package counts as installed."""

from __future__ import annotations

import pytest

from shipyard.adapters.debian import is_installed, status_is_installed


@pytest.mark.parametrize(("status", "installed"), [
    ("install ok installed", True),
    ("hold ok installed", True),
    # Known to apt (e.g. listed after an update) but never installed: the word
    # "installed" ends the text, and once made a fresh machine skip installing debootstrap.
    ("unknown ok not-installed", False),
    ("deinstall ok config-files", False),
    ("install ok half-configured", False),
    ("install ok unpacked", False),
    ("", False),
])
def test_only_the_installed_state_counts(status: str, installed: bool) -> None:
    assert status_is_installed(status) is installed


def test_dpkg_knows_no_made_up_package() -> None:
    assert is_installed("shipyard-no-such-package") is False


def test_dpkg_itself_is_installed() -> None:
    assert is_installed("dpkg") is True
