"""Secret files and private directories on the real filesystem: private from the moment they
exist, whatever the umask; checked and tightened by the inventory of Shipyard's own state."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.adapters.private_state import (
    check_private_state,
    private_state,
    tighten_private_state,
)
from shipyard.adapters.secret_files import (
    EmptySecret,
    check_private,
    create_secret,
    private_dir,
    read_secret,
    require_private,
    write_secret,
)
from shipyard.domain.file_modes import StateNotPrivate
from shipyard.settings import Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The worst umask a user may have: nothing masked."""
    before = os.umask(0)
    try:
        yield
    finally:
        os.umask(before)


def test_a_secret_is_written_0600_and_its_missing_directories_0700(
        tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "a" / "b" / "store.url"
    write_secret(path, "postgresql+psycopg://shipyard:pw@127.0.0.1:1/shipyard\n")
    assert path.read_text() == "postgresql+psycopg://shipyard:pw@127.0.0.1:1/shipyard\n"
    assert _mode(path) == 0o600
    assert _mode(tmp_path / "a") == 0o700
    assert _mode(tmp_path / "a" / "b") == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["store.url"], "no temporary left"


def test_writing_a_secret_over_a_readable_file_replaces_it_with_a_private_one(
        tmp_path: Path) -> None:
    path = tmp_path / "admin.kubeconfig"
    path.write_text("old")
    path.chmod(0o644)
    write_secret(path, b"new")
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o600


def test_a_created_secret_is_made_once_and_then_kept(tmp_path: Path,
                                                     permissive_umask: None) -> None:
    path = tmp_path / "pg" / "shipyard.password"
    first = create_secret(path, lambda: "first")
    again = create_secret(path, lambda: "second")
    assert (first, again) == ("first", "first")
    assert path.read_text() == "first\n"
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700


def test_processes_racing_to_create_a_secret_all_get_the_one_kept(tmp_path: Path) -> None:
    path = tmp_path / "ui-secret-key"
    got: list[str] = []
    barrier = threading.Barrier(8)

    def create(n: int) -> None:
        barrier.wait()
        got.append(create_secret(path, lambda: f"key-{n}"))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(got)) == 1
    assert read_secret(path) == got[0]


def test_an_empty_secret_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "shipyard.password"
    path.write_text("\n")
    with pytest.raises(EmptySecret, match=f"{path} is empty"):
        create_secret(path, lambda: "never used")
    assert path.read_text() == "\n", "an existing secret is never replaced"


def test_a_private_directory_keeps_the_mode_of_one_that_exists(tmp_path: Path) -> None:
    existing = tmp_path / "home"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    private_dir(existing / "stack" / "cluster")
    assert _mode(existing) == 0o755, "reported by the check, not changed behind the user"
    assert _mode(existing / "stack") == 0o700
    assert _mode(existing / "stack" / "cluster") == 0o700


def test_the_check_reports_what_is_too_open_and_skips_what_is_missing(tmp_path: Path) -> None:
    private = tmp_path / "private.key"
    write_secret(private, "k")
    readable = tmp_path / "readable.key"
    readable.write_text("k")
    readable.chmod(0o644)
    problems = check_private(files=[private, readable, tmp_path / "missing.key"],
                             dirs=[tmp_path, tmp_path / "missing"])
    assert [(p.path, p.mode) for p in problems] == [(str(readable), 0o644)]
    with pytest.raises(StateNotPrivate, match=f"run `chmod 600 {readable}`"):
        require_private(files=[readable])


def test_a_link_is_judged_by_what_it_leads_to(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("secret")
    target.chmod(0o644)
    link = tmp_path / "admin.kubeconfig"
    link.symlink_to(target)
    (found,) = check_private(files=[link])
    assert (found.path, found.mode) == (str(link), 0o644)


def _stack_made_before_the_checks(home: Path) -> Settings:
    """Shipyard's state as an older version left it: directories 0755, the store's URL
    0644; the keys and kubeconfigs were already 0600."""
    settings = Settings(home=home, stack_home=None, database_url=None)
    cluster = settings.stack_dir / "cluster"
    for directory in (home, settings.stack_dir, cluster, cluster / "pki",
                      settings.stack_database_file.parent):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
    (cluster / "pki").chmod(0o700)
    for secret, mode in ((cluster / "pki" / "ca.key", 0o600),
                         (cluster / "admin.kubeconfig", 0o600),
                         (settings.stack_database_file, 0o644)):
        secret.write_text("x")
        secret.chmod(mode)
    (cluster / "pki" / "ca.crt").write_text("a certificate is public")
    (cluster / "pki" / "ca.crt").chmod(0o644)
    return settings


def test_the_inventory_covers_the_homes_stacks_keys_kubeconfigs_and_store_url(
        tmp_path: Path) -> None:
    settings = _stack_made_before_the_checks(tmp_path / "home")
    state = private_state(settings)
    cluster = settings.stack_dir / "cluster"
    assert {settings.home, settings.stack_dir, cluster, cluster / "pki",
            settings.stage_logs_dir} <= set(state.dirs)
    assert {cluster / "pki" / "ca.key", cluster / "admin.kubeconfig",
            settings.stack_database_file, settings.home / "ui-secret-key"} <= set(state.files)
    assert cluster / "pki" / "ca.crt" not in state.files

    too_open = {p.path: p.mode for p in check_private_state(settings)}
    assert too_open == {str(settings.home): 0o755, str(settings.stack_dir): 0o755,
                        str(cluster): 0o755, str(settings.stack_database_file.parent): 0o755,
                        str(settings.stack_database_file): 0o644}


def test_tightening_the_inventory_makes_it_private_and_leaves_the_rest(
        tmp_path: Path) -> None:
    settings = _stack_made_before_the_checks(tmp_path / "home")
    tightened = tighten_private_state(settings)
    assert len(tightened) == 5
    assert check_private_state(settings) == []
    assert _mode(settings.stack_database_file) == 0o600
    assert _mode(settings.stack_dir / "cluster" / "pki" / "ca.crt") == 0o644
    assert tighten_private_state(settings) == [], "idempotent"
