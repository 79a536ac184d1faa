"""Playing GitHub against ``shipyard ui``: serving the ui, sending signed deliveries, and a
bare repository standing in for GitHub's side, described the way GitHub's push payload
describes it. Shared by the webhook tests and ``bench/webhook_latency.py``."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from git import Actor, Repo

from shipyard.domain.webhooks import sign
from tests.support.stack import PROJECT, SHIPYARD, free_port

__all__ = ["CLONE_URL", "SECRET", "GitHub", "Remote", "Ui", "UiFailed", "local_repository",
           "push_payload", "serve_ui"]

SECRET = "It's a Secret to Everybody"
CLONE_URL = "https://github.com/acme/shop.git"


class UiFailed(RuntimeError):
    """``shipyard ui`` exited or never answered; the message holds its output."""


@dataclass
class Ui:
    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def serve_ui(env: dict[str, str], log_dir: Path, *, seconds: float = 60,
             args: tuple[str, ...] = ()) -> Iterator[Ui]:
    """``shipyard ui [args]`` on a free loopback port, yielded once it answers /healthz
    and stopped (SIGTERM, as Ctrl-C) afterwards."""
    port = free_port()
    log = log_dir / f"ui-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([*SHIPYARD, "ui", "--port", str(port), *args], env=env,
                                   cwd=PROJECT, stdout=sink, stderr=subprocess.STDOUT)
    ui = Ui(f"http://127.0.0.1:{port}", log, process)
    try:
        deadline = time.monotonic() + seconds
        while True:
            if process.poll() is not None:
                raise UiFailed(f"`shipyard ui` exited with {process.returncode}:\n"
                               f"{ui.output()}")
            try:
                if httpx.get(f"{ui.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise UiFailed(f"`shipyard ui` did not answer in {seconds:.0f}s:\n"
                               f"{ui.output()}")
            time.sleep(0.1)
        yield ui
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class GitHub:
    """Sends deliveries as GitHub does: a JSON body, the event and delivery id in headers,
    signed with the webhook's secret."""

    def __init__(self, url: str, secret: str = SECRET,
                 client: httpx.Client | None = None) -> None:
        self.url = f"{url}/hooks/github"
        self.secret = secret.encode()
        self.client = client  # reused connections; else one per delivery

    def headers(self, event: str, body: bytes, *, delivery: str | None = "new",
                signature: str | None = "sign") -> dict[str, str]:
        """The headers GitHub sends: ``delivery="new"`` makes a fresh id and
        ``signature="sign"`` signs ``body``; None leaves the header out."""
        sent = {"X-GitHub-Event": event, "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/shipyard-test"}
        if delivery is not None:
            sent["X-GitHub-Delivery"] = str(uuid.uuid4()) if delivery == "new" else delivery
        if signature is not None:
            sent["X-Hub-Signature-256"] = (sign(self.secret, body) if signature == "sign"
                                           else signature)
        return sent

    def send(self, event: str, payload: Any = None, *, body: bytes | None = None,
             delivery: str | None = "new", signature: str | None = "sign",
             timeout: float = 30) -> httpx.Response:
        content = body if body is not None else json.dumps(payload).encode()
        headers = self.headers(event, content, delivery=delivery, signature=signature)
        if self.client is not None:
            return self.client.post(self.url, content=content, headers=headers,
                                    timeout=timeout)
        return httpx.post(self.url, content=content, headers=headers, timeout=timeout)


def push_payload(ref: str = "refs/heads/main", *, after: str | None = None,
                 before: str = "a" * 40,
                 files: tuple[str, ...] = ("apps/discovery/discovery/api.py",),
                 clone_url: str = CLONE_URL, full_name: str = "acme/shop",
                 **extra: Any) -> dict[str, Any]:
    """A push in GitHub's format: one commit (a fresh sha unless ``after``) modifying
    ``files`` of repository ``full_name``; ``extra`` replaces top-level fields."""
    after = after or uuid.uuid4().hex + uuid.uuid4().hex[:8]
    commit = {"id": after, "message": "Change things", "timestamp": "2026-03-01T12:00:00Z",
              "author": {"name": "Ada Tester", "email": "ada@example.com"},
              "added": [], "modified": list(files), "removed": [], "distinct": True}
    payload: dict[str, Any] = {
        "ref": ref, "before": before, "after": after, "created": False, "deleted": False,
        "forced": False, "base_ref": None, "compare": f"{CLONE_URL[:-4]}/compare",
        "commits": [commit], "head_commit": commit,
        "repository": {"name": full_name.rsplit("/", 1)[-1], "full_name": full_name,
                       "clone_url": clone_url},
        "pusher": {"name": "Ada Tester", "email": "ada@example.com"},
        "sender": {"login": "ada"},
    }
    payload.update(extra)
    return payload


def local_repository(url: str) -> dict[str, str]:
    """The settings that let a ui build the local repository at ``url`` (a ``file://``
    URL): the operator's explicit allowance, and the repository on the allow-list."""
    return {"SHIPYARD_ALLOW_LOCAL_REPOSITORIES": "true", "SHIPYARD_REPOSITORIES": url}


@dataclass
class Remote:
    """A bare repository standing in for GitHub, and a clone that pushes to it."""

    bare: Path
    work: Repo

    @classmethod
    def clone(cls, source: Path, root: Path) -> Remote:
        """A bare clone of ``source`` under ``root`` as the remote, and a working clone."""
        Repo.clone_from(str(source), root / "remote.git", bare=True)
        return cls(root / "remote.git", Repo.clone_from(str(root / "remote.git"),
                                                         root / "work"))

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def push_commit(self, message: str, *, write: dict[str, str] | None = None,
                    remove: tuple[str, ...] = ()) -> dict[str, Any]:
        """Commit, push to main, and return the push as GitHub would describe it."""
        before = self.work.head.commit.hexsha
        for path, text in (write or {}).items():
            (Path(str(self.work.working_tree_dir)) / path).write_text(text)
            self.work.index.add([path])
        if remove:
            self.work.index.remove(list(remove), r=True, working_tree=True)
        author = Actor("Ada Tester", "ada@example.com")
        after = self.work.index.commit(message, author=author, committer=author).hexsha
        self.work.remote("origin").push("HEAD:refs/heads/main")
        return self.describe(before, after)

    def describe(self, before: str, after: str, ref: str = "refs/heads/main") -> dict[str, Any]:
        """GitHub's push payload for ``before..after`` on ``ref``."""
        repo = Repo(self.bare)
        commits = []
        for commit in reversed(list(repo.iter_commits(f"{before}..{after}"))):
            files: dict[str, list[str]] = {"added": [], "modified": [], "removed": []}
            listing = repo.git.diff_tree("--no-commit-id", "--name-status", "-r", commit.hexsha)
            for line in listing.splitlines():
                status, path = line.split("\t", 1)
                files[{"A": "added", "D": "removed"}.get(status[0], "modified")].append(path)
            commits.append({"id": commit.hexsha, "message": commit.message,
                            "timestamp": commit.committed_datetime.isoformat(),
                            "author": {"name": commit.author.name,
                                       "email": commit.author.email},
                            "distinct": True, **files})
        return {"ref": ref, "before": before, "after": after, "created": False,
                "deleted": False, "forced": False, "base_ref": None, "commits": commits,
                "head_commit": commits[-1] if commits else None,
                "repository": {"name": "shop", "full_name": "acme/shop",
                               "clone_url": self.url},
                "pusher": {"name": "Ada Tester", "email": "ada@example.com"},
                "sender": {"login": "ada"}}
