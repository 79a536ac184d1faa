"""GitCheckout against real repositories: clone once, fetch after, a worktree per run."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from git import Actor, Repo

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.git import GitCheckout, GitError, GitTimedOut, head_commit, validate_ref

pytestmark = pytest.mark.integration

AUTHOR = Actor("Grace Hopper", "grace@example.com")


@pytest.fixture
def upstream(tmp_path: Path) -> Repo:
    repo = Repo.init(tmp_path / "upstream", initial_branch="main")
    (Path(repo.working_dir) / "README").write_text("one\n")
    repo.index.add(["README"])
    repo.index.commit("First", author=AUTHOR, committer=AUTHOR)
    return repo


def commit_file(repo: Repo, name: str, text: str, message: str) -> str:
    path = Path(repo.working_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    repo.index.add([name])
    return repo.index.commit(message, author=AUTHOR, committer=AUTHOR).hexsha


def test_checkout_gives_the_exact_commit_with_author_message_and_changed_files(
        upstream: Repo, tmp_path: Path):
    sha = commit_file(upstream, "apps/x/app.py", "print('x')\n", "Add x\n\nbody")
    git = GitCheckout(tmp_path / "cache", tmp_path / "ws")
    done = git.checkout(str(upstream.working_dir), "main", "run-1")
    assert done.commit.sha == sha
    assert done.commit.author == "Grace Hopper"
    assert done.commit.message == "Add x\n\nbody"
    assert done.commit.changed_files == ("apps/x/app.py",)
    assert (done.workspace / "apps" / "x" / "app.py").read_text() == "print('x')\n"
    assert head_commit(done.workspace) == sha


def test_a_new_commit_upstream_is_fetched_not_recloned(upstream: Repo, tmp_path: Path):
    git = GitCheckout(tmp_path / "cache", tmp_path / "ws")
    git.checkout(str(upstream.working_dir), "main", "run-1")
    mirror = next((tmp_path / "cache").iterdir())
    marker = mirror / "shipyard-marker"
    marker.write_text("still the same clone")
    second = commit_file(upstream, "two.txt", "2\n", "Second")
    done = git.checkout(str(upstream.working_dir), "main", "run-2")
    assert done.commit.sha == second
    assert marker.exists()  # fetched into the same mirror
    assert done.commit.changed_files == ("two.txt",)


def test_an_older_commit_and_a_retry_of_the_same_workspace(upstream: Repo, tmp_path: Path):
    first = upstream.head.commit.hexsha
    commit_file(upstream, "two.txt", "2\n", "Second")
    git = GitCheckout(tmp_path / "cache", tmp_path / "ws")
    git.checkout(str(upstream.working_dir), "main", "run-1")
    (tmp_path / "ws" / "run-1" / "junk").write_text("left by a failed attempt")
    again = git.checkout(str(upstream.working_dir), first, "run-1")
    assert again.commit.sha == first
    assert not (again.workspace / "junk").exists()
    assert not (again.workspace / "two.txt").exists()


def test_an_unknown_ref_is_a_clear_error(upstream: Repo, tmp_path: Path):
    git = GitCheckout(tmp_path / "cache", tmp_path / "ws")
    with pytest.raises(GitError, match="has no branch, tag or commit 'nope'"):
        git.checkout(str(upstream.working_dir), "nope", "run-1")


def test_a_missing_repository_is_refused_before_git_runs(tmp_path: Path):
    git = GitCheckout(tmp_path / "cache", tmp_path / "ws")
    with pytest.raises(ValueError, match="neither a URL"):
        git.checkout(str(tmp_path / "absent"), "main", "run-1")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("ref", ["-rf", "a..b", "x y", "a@{1}", "ref~1", "refs/heads/", "b.lock"])
def test_option_like_or_invalid_refs_are_refused(ref: str):
    with pytest.raises(ValueError, match="is not a valid branch, tag or commit"):
        validate_ref(ref)


def test_a_revert_branch_puts_one_directory_back_and_leaves_the_rest(upstream: Repo,
                                                                     tmp_path: Path):
    root = Path(upstream.working_dir)
    (root / "apps" / "x").mkdir(parents=True)
    (root / "apps" / "y").mkdir(parents=True)
    (root / "apps" / "y" / "keep.txt").write_text("y1\n")
    good = commit_file(upstream, "apps/x/a.txt", "good\n", "x good")
    (root / "apps" / "x" / "new.txt").write_text("added later\n")
    upstream.index.add(["apps/x/new.txt"])
    commit_file(upstream, "apps/y/keep.txt", "y2\n", "y moves on")
    bad = commit_file(upstream, "apps/x/a.txt", "bad\n", "x bad")
    git = GitCheckout(tmp_path / "cache", tmp_path / "work")

    sha = git.push_revert(str(root), base=bad, restore_from=good, path="apps/x",
                          branch="shipyard/revert-x-bad", message="Revert x to good\n")

    pushed = upstream.commit("shipyard/revert-x-bad")
    assert pushed.hexsha == sha and pushed.parents[0].hexsha == bad
    assert (pushed.tree / "apps/x/a.txt").data_stream.read() == b"good\n"
    assert "apps/x/new.txt" not in {str(getattr(item, "path", ""))
                                    for item in pushed.tree.traverse()}
    assert (pushed.tree / "apps/y/keep.txt").data_stream.read() == b"y2\n"  # untouched
    assert pushed.author.name == "Shipyard" and str(pushed.message).startswith("Revert x")
    assert upstream.head.commit.hexsha == bad  # nobody's branch was moved
    assert not any((tmp_path / "work").iterdir())  # the worktree is gone


@pytest.fixture
def silent_remote() -> Iterator[str]:
    """A git:// remote that takes the connection and never answers (on this host)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        yield f"git://127.0.0.1:{silent.getsockname()[1]}/shop.git"


def test_a_clone_that_hangs_is_killed_at_its_deadline_naming_the_setting(
        silent_remote: str, tmp_path: Path):
    git = GitCheckout(tmp_path / "cache", tmp_path / "ws", timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(GitTimedOut, match=r"could not clone git://127.0.0.1:\d+/shop.git "
                                          r"within 1 s.*SHIPYARD_GIT_TIMEOUT_SECONDS"):
        git.checkout(silent_remote, "main", "run-1")
    assert time.monotonic() - started < 10
    assert list((tmp_path / "cache").iterdir()) == []  # no half clone is taken for a mirror


def test_a_cancelled_checkout_stops_git_and_keeps_no_half_clone(silent_remote: str,
                                                                  tmp_path: Path):
    git = GitCheckout(tmp_path / "cache", tmp_path / "ws", timeout_seconds=60)

    async def stage() -> None:
        async with asyncio.timeout(0.5):
            await run_blocking(git.checkout, silent_remote, "main", "run-1")

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(stage())
    assert time.monotonic() - started < 10
    assert list((tmp_path / "cache").iterdir()) == []
