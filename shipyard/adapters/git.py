"""Checking out an exact commit: a cached mirror per repository, fetched rather than
re-cloned, and a detached worktree per run.

Every git command that reaches a remote or writes (clone, fetch, push, the worktrees, a
revert's commit) runs through :func:`~shipyard.adapters.process.run_process`, with a
deadline (``SHIPYARD_GIT_TIMEOUT_SECONDS``) and in a process group of its own, so a stage
that times out or is cancelled stops it with its remote helpers. git never waits for a
password: it has no terminal, and ``GIT_TERMINAL_PROMPT=0`` says so. GitPython reads what
is already on disk (commits, trees, blobs).

Refs and URLs are validated before git sees them: a value starting with ``-`` would be read
as an option, and git runs with no shell, so nothing else needs quoting. Errors name the
repository without the credentials its URL may carry (``https://user:token@...``), and
are raised without git's exception chained, whose text holds the command line.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from git import BadName, GitCommandError, InvalidGitRepositoryError, NoSuchPathError, Repo

from shipyard.adapters.process import run_process
from shipyard.domain.clone_urls import RefusedCloneUrl, parse_clone_url
from shipyard.domain.redaction import redact_text, redact_url

__all__ = ["GIT_TIMEOUT_SECONDS", "CheckedOut", "CommitInfo", "GitCheckout", "GitError",
           "GitTimedOut", "files_changed", "head_commit", "tree_hash", "validate_ref",
           "validate_repo_url"]

GIT_TIMEOUT_SECONDS = 300.0
"""How long one git command may run unless the caller says (the stages pass
``SHIPYARD_GIT_TIMEOUT_SECONDS``)."""

# git check-ref-format's rules, in short: no "..", no control characters or " ~^:?*[\",
# no leading "-" or "/", no trailing "/" or ".lock", no "@{".
_REF = re.compile(
    r"^(?!-)(?!/)(?!.*\.\.)(?!.*@\{)(?!.*//)"
    r"[^\x00-\x20~^:?*\[\\]{1,255}(?<!/)(?<!\.lock)$"
)


class GitError(RuntimeError):
    """A checkout failed; the message says which repository and ref, and why."""


class GitTimedOut(GitError):
    """A git command ran past its deadline and was killed; the message says which."""


@dataclass(frozen=True, slots=True)
class CommitInfo:
    sha: str
    author: str
    author_email: str
    message: str
    committed_at: datetime
    changed_files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CheckedOut:
    workspace: Path
    commit: CommitInfo


def validate_ref(ref: str) -> str:
    """Return ``ref`` if it is a valid branch, tag or commit name; raise ValueError."""
    if not _REF.fullmatch(ref):
        raise ValueError(
            f"git ref {ref!r} is not a valid branch, tag or commit: it must not start with "
            "'-' or '/', nor contain spaces, '..', '@{', or any of ~^:?*[\\"
        )
    return ref


def validate_repo_url(url: str) -> str:
    """Return ``url`` if it is a repository URL git may fetch (https, ssh, scp-like, http,
    git, file: see :func:`~shipyard.domain.clone_urls.parse_clone_url`) or an existing
    local directory; raise ValueError.

    For an operator's ``shipyard trigger --repo`` and the worker's checkout, so it may
    look at the disk. Webhook input never comes here: it is held to
    :func:`~shipyard.domain.clone_urls.check_clone_url`, which reads nothing, so an
    answer cannot tell a caller whether a directory exists.
    """
    if url.startswith("-"):
        raise ValueError(f"repository {redact_url(url)!r} must not start with '-'")
    if Path(url).expanduser().is_dir():
        return url
    try:
        parsed = parse_clone_url(url)
    except RefusedCloneUrl:
        parsed = None
    if parsed is not None and parsed.scheme != "path":  # a path must exist (above)
        return url
    raise ValueError(
        f"repository {redact_url(url)!r} is neither a URL (https://, ssh://, git://, "
        "file://, user@host:path) nor an existing local directory"
    )


class GitCheckout:
    """Clones each repository once into ``cache_dir`` and checks commits out into
    ``workspaces_dir/<name>`` as detached worktrees; each git command gets
    ``timeout_seconds``."""

    def __init__(self, cache_dir: Path, workspaces_dir: Path, *,
                 timeout_seconds: float = GIT_TIMEOUT_SECONDS) -> None:
        self.cache_dir = cache_dir
        self.workspaces_dir = workspaces_dir
        self.timeout_seconds = timeout_seconds

    def mirror(self, repo_url: str) -> Repo:
        """The cached mirror of ``repo_url``, cloned on first use and fetched after."""
        validate_repo_url(repo_url)
        source = _source(repo_url)
        path = self._mirror_path(repo_url)
        shown = redact_url(repo_url)
        if (path / "HEAD").exists():
            self._git(["fetch", "--prune", "--force", "origin"], cwd=path,
                      what=f"fetch {shown}")
            return Repo(path)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # Cloned beside, then renamed: a clone killed half-way is never taken for a mirror.
        partial = self.cache_dir / f".{path.name}-{uuid.uuid4().hex[:8]}"
        try:
            self._git(["clone", "--mirror", "--", source, str(partial)], cwd=self.cache_dir,
                      what=f"clone {shown}")
            try:
                partial.rename(path)
            except OSError:
                if not (path / "HEAD").exists():  # not another run's clone of the same
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return Repo(path)

    def _mirror_path(self, repo_url: str) -> Path:
        key = hashlib.sha256(_source(repo_url).encode()).hexdigest()[:16]
        return self.cache_dir / f"{key}.git"

    def _git(self, args: Sequence[str], *, cwd: Path, what: str,
             env: Mapping[str, str] | None = None) -> None:
        """Run ``git args`` in ``cwd`` within the deadline; :class:`GitError` ("cannot
        ``what``") naming git's complaint, :class:`GitTimedOut` at the deadline."""
        done = run_process(["git", *args], cwd=cwd, timeout_seconds=self.timeout_seconds,
                           env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})})
        if done.timed_out:
            raise GitTimedOut(
                f"git could not {what} within {self.timeout_seconds:g} s and was killed: "
                "check that the repository's host answers, or raise "
                "SHIPYARD_GIT_TIMEOUT_SECONDS for a large repository")
        if done.exit_code != 0:
            complaint = redact_text(done.last_lines(1) or f"git exited {done.exit_code}")
            raise GitError(f"cannot {what}: {complaint}")

    def checkout(self, repo_url: str, ref: str, workspace_name: str) -> CheckedOut:
        """Check ``ref`` of ``repo_url`` out into a fresh worktree named ``workspace_name``.

        Running it twice for the same name replaces the first worktree, so a retried stage
        starts clean.
        """
        validate_ref(ref)
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", workspace_name):
            raise ValueError(f"workspace name {workspace_name!r} must be letters, digits, ._-")
        repo = self.mirror(repo_url)
        try:
            commit = repo.commit(ref)
        except (BadName, ValueError, GitCommandError) as err:
            raise GitError(f"{redact_url(repo_url)} has no branch, tag or commit {ref!r}"
                           ) from err
        dest = self._fresh_worktree(repo, workspace_name)
        self._git(["worktree", "add", "--detach", "--force", str(dest), commit.hexsha],
                  cwd=_git_dir(repo), what=f"check out {commit.hexsha[:12]}")
        return CheckedOut(workspace=dest, commit=_commit_info(commit))

    def _fresh_worktree(self, repo: Repo, name: str) -> Path:
        """Where worktree ``name`` goes, with an earlier one of that name removed."""
        dest = self.workspaces_dir / name
        self.workspaces_dir.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            self._git(["worktree", "remove", "--force", str(dest)], cwd=_git_dir(repo),
                      what=f"remove the worktree {dest}")
        self._git(["worktree", "prune"], cwd=_git_dir(repo), what="prune worktrees")
        return dest

    def read_file(self, repo_url: str, commit: str, path: str) -> str | None:
        """The text of ``path`` at ``commit`` of ``repo_url`` (from the cached mirror, no
        worktree needed), or None if the commit has no such file."""
        validate_ref(commit)
        repo = self.mirror(repo_url)
        try:
            blob = repo.commit(commit).tree / path
        except KeyError:
            return None
        except (BadName, ValueError, GitCommandError) as err:
            raise GitError(f"{redact_url(repo_url)} has no commit {commit!r}") from err
        return bytes(blob.data_stream.read()).decode("utf-8")

    def read_dir(self, repo_url: str, commit: str, path: str) -> dict[str, str]:
        """The text files directly in directory ``path`` at ``commit`` (name -> text);
        empty if the commit has no such directory."""
        validate_ref(commit)
        repo = self.mirror(repo_url)
        try:
            tree = repo.commit(commit).tree / path
        except KeyError:
            return {}
        except (BadName, ValueError, GitCommandError) as err:
            raise GitError(f"{redact_url(repo_url)} has no commit {commit!r}") from err
        return {blob.name: bytes(blob.data_stream.read()).decode("utf-8")
                for blob in tree.blobs}

    def push_revert(self, repo_url: str, *, base: str, restore_from: str, path: str,
                    branch: str, message: str) -> str:
        """Commit, on top of ``base``, ``path`` as it was at ``restore_from`` (files added
        since are removed), and push it to ``repo_url`` as ``branch``: the source of truth
        follows a rollback, as a branch to merge, never a force on anyone's branch.
        Returns the new commit's sha."""
        for ref in (base, restore_from):
            validate_ref(ref)
        if not re.fullmatch(r"[A-Za-z0-9._/-]{1,200}", branch) or ".." in branch:
            raise ValueError(f"branch {branch!r} must be letters, digits and ._/-")
        repo = self.mirror(repo_url)
        dest = self._fresh_worktree(
            repo, f"revert-{hashlib.sha256(branch.encode()).hexdigest()[:12]}")
        shown = redact_url(repo_url)
        try:
            self._git(["worktree", "add", "--detach", "--force", str(dest), base],
                      cwd=_git_dir(repo), what=f"check out {base[:12]} of {shown}")
            self._git(["rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", path],
                      cwd=dest, what=f"take {path} out of the index")
            self._git(["checkout", restore_from, "--", path], cwd=dest,
                      what=f"restore {path} as it was at {restore_from[:12]}")
            self._git(["commit", "-q", "--allow-empty", "-m", message,
                       "--author=Shipyard <shipyard@localhost>"], cwd=dest,
                      what="commit the revert",
                      env={"GIT_COMMITTER_NAME": "Shipyard",
                           "GIT_COMMITTER_EMAIL": "shipyard@localhost"})
            sha = str(Repo(dest).head.commit.hexsha)
            self._git(["push", "--", _source(repo_url), f"{sha}:refs/heads/{branch}"],
                      cwd=dest, what=f"push the revert to {shown}")
        finally:
            if dest.exists():
                self._git(["worktree", "remove", "--force", str(dest)], cwd=_git_dir(repo),
                          what=f"remove the worktree {dest}")
        return sha

    def remove_workspace(self, repo_url: str, workspace_name: str) -> None:
        """Delete a run's worktree; the cached mirror stays (and is not fetched)."""
        mirror = self._mirror_path(repo_url)
        dest = self.workspaces_dir / workspace_name
        if dest.exists() and (mirror / "HEAD").exists():
            self._git(["worktree", "remove", "--force", str(dest)], cwd=mirror,
                      what=f"remove the worktree {dest}")


def _source(repo_url: str) -> str:
    """What git is given for ``repo_url``: an existing local directory as an absolute
    path, anything else as it is."""
    local = Path(repo_url).expanduser()
    return str(local.resolve()) if local.is_dir() else repo_url


def _git_dir(repo: Repo) -> Path:
    return Path(repo.git_dir)


def _commit_info(commit: object) -> CommitInfo:
    from git import Commit

    assert isinstance(commit, Commit)
    if commit.parents:
        changed = {d.b_path or d.a_path for d in commit.parents[0].diff(commit)}
    else:
        listing = commit.repo.git.ls_tree("-r", "--name-only", commit.hexsha)
        changed = set(listing.splitlines())
    message = commit.message if isinstance(commit.message, str) else commit.message.decode()
    return CommitInfo(
        sha=commit.hexsha,
        author=str(commit.author.name or ""),
        author_email=str(commit.author.email or ""),
        message=message.strip(),
        committed_at=datetime.fromtimestamp(commit.committed_date, UTC),
        changed_files=tuple(sorted(p for p in changed if p)),
    )


def _git_message(err: GitCommandError) -> str:
    """git's complaint, without credentials: both git's stderr and the command line it
    ran can quote the repository's URL."""
    stderr = str(err.stderr or "").strip().replace("stderr: ", "").strip("'\n ")
    return redact_text(stderr.splitlines()[-1] if stderr else str(err))


def tree_hash(workspace: Path, path: str) -> str | None:
    """The git tree hash of ``path`` at the commit checked out in ``workspace``, or None
    if the commit has no such folder."""
    try:
        entry = Repo(workspace).head.commit.tree / path
    except KeyError:
        return None
    return str(entry.hexsha)


def files_changed(workspace: Path, base: str, head: str) -> list[str] | None:
    """The paths that differ between commits ``base`` and ``head`` of the repository of
    ``workspace``; None when ``base`` is not in it (another repository, or gone)."""
    repo = Repo(workspace)
    try:
        repo.commit(base)
    except (BadName, ValueError, GitCommandError):
        return None
    try:
        output = repo.git.diff("--name-only", "--no-renames", base, head,
                               kill_after_timeout=GIT_TIMEOUT_SECONDS)
    except GitCommandError as err:
        raise GitError(f"cannot compare {base[:12]} with {head[:12]}: "
                       f"{_git_message(err)}") from err
    return [line for line in output.splitlines() if line]


def head_commit(path: Path) -> str:
    """The full sha of the commit checked out at ``path``; GitError if it is no git
    repository or has no commit yet."""
    try:
        return str(Repo(path, search_parent_directories=False).head.commit.hexsha)
    except (InvalidGitRepositoryError, NoSuchPathError, ValueError) as err:
        raise GitError(f"{path} is not a git repository with a commit: {err}") from err
