"""A run recorded with credentials in its repository URL shows none of them: not in the
API's answers, the pages, the live events, the CLI, nor git's errors."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shipyard.adapters.git import GitCheckout, GitError
from shipyard.cli import context, main
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import RunRecord
from tests.security.conftest import Site

pytestmark = pytest.mark.integration

SECRET = "ghp_n0tReallyASecretButTreatedAsOne"
URL = f"https://ada:{SECRET}@github.com/acme/shop.git"
SHOWN = "https://***@github.com/acme/shop.git"


@pytest.fixture(scope="module")
def run(site: Site) -> RunRecord:
    """A run as a push with a credentialled URL leaves it: in its fields, parameters,
    messages, logs and outputs (what older code or a careless stage might have written)."""
    store = site.store
    made = store.create_run("ci", [StageSpec("checkout")], trigger="manual", actor="ada",
                            repo_url=URL, ref="main", parameters={"repo": URL, "ref": "main"})
    store.transition_run(made.id, State.RUNNING, reason="Started", message=f"cloning {URL}")
    store.transition_stage(made.id, "checkout", State.RUNNING, reason="Started")
    store.append_log(made.id, "checkout", f"fetching {URL} and checking out main\n")
    store.transition_stage(made.id, "checkout", State.FAILED, reason="CheckoutFailed",
                           message=f"cannot fetch {URL}: unable to access '{URL}/'",
                           outputs={"source": URL})
    return store.finish_run(made.id)


def test_the_api_and_pages_never_show_the_credentials(site: Site, run: RunRecord) -> None:
    viewer = {"Authorization": f"Bearer {site.tokens['viewer']}"}
    detail = site.request("GET", f"/api/runs/{run.id}", headers=viewer)
    assert detail.json()["repo_url"] == SHOWN
    assert detail.json()["parameters"]["repo"] == SHOWN
    answers = {
        "the run": detail.text,
        "the list": site.request("GET", "/api/runs", headers=viewer,
                                 params={"trigger": "manual"}).text,
        "the logs": site.request("GET", f"/api/runs/{run.id}/logs", headers=viewer).text,
        "the outputs": site.request("GET", f"/api/runs/{run.id}/stages/checkout/outputs",
                                    headers=viewer).text,
        "the run page": site.signed_in("vera").get(f"/runs/{run.id}").text,
        # Every run's changes from the start, replayed from the store.
        "the events": read_until(site, "/api/events?since=0.0", viewer, "CheckoutFailed"),
        # The run's log, live.
        "the run's events": read_until(
            site, f"/api/runs/{run.id}/events", viewer, "again from",
            then=lambda: site.store.append_log(run.id, "checkout", f"again from {URL}\n")),
    }
    for name, text in answers.items():
        assert SECRET not in text, name
        assert "***@github.com" in text, name  # the rest of the URL is still there


def read_until(site: Site, path: str, headers: dict[str, str], wanted: str,
               then: Callable[[], object] = lambda: None) -> str:
    """The event stream at ``path`` until a line containing ``wanted``; ``then`` runs once
    the stream is open (to write what it should carry live)."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        with httpx.stream("GET", site.url + path, headers=headers, timeout=30) as answer:
            for line in answer.iter_lines():
                lines.append(line)
                if wanted in line:
                    found.set()
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(1.5)  # subscribed
    then()
    assert found.wait(30), f"{path} never carried {wanted!r}: {lines[-5:]}"
    reader.join(30)
    return "\n".join(lines)


def run_cli(site: Site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            *args: str) -> str:
    """``shipyard ARGS`` as the console script runs it (``shipyard.cli.main``), in this
    process (it has imported everything the CLI needs already: a process each would cost
    seconds), on the site's store; what it printed."""
    for name, value in site.env.items():
        if name.startswith("SHIPYARD_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "250")
    context.settings.cache_clear()
    context.store.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        assert exited.value.code == 0, capsys.readouterr()
        return capsys.readouterr().out
    finally:
        context.store().close()
        context.settings.cache_clear()
        context.store.cache_clear()


def test_the_cli_never_shows_the_credentials(site: Site, run: RunRecord,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    show = run_cli(site, monkeypatch, capsys, "show", run.id, "--transitions")
    logs = run_cli(site, monkeypatch, capsys, "logs", run.id)
    listed = run_cli(site, monkeypatch, capsys, "runs", "--limit", "50")
    assert "cannot fetch https://***@github.com" in show, show
    assert "cloning https://***@github.com" in show, show
    assert f"fetching {SHOWN}" in logs, logs
    assert run.short_id in listed
    for output in (show, logs, listed):
        assert SECRET not in output


def test_git_errors_name_the_repository_without_its_credentials(tmp_path: Path) -> None:
    git = GitCheckout(tmp_path / "cache", tmp_path / "workspaces")
    # A closed port on this machine: git fails at once, quoting what it was given.
    with pytest.raises((GitError, ValueError)) as caught:
        git.checkout(f"https://ada:{SECRET}@127.0.0.1:1/acme/shop.git", "main", "w1")
    chain: list[str] = []
    error: BaseException | None = caught.value
    while error is not None:  # what a traceback would print, causes included
        chain.append(str(error))
        error = error.__cause__ or (None if error.__suppress_context__
                                    else error.__context__)
    assert SECRET not in json.dumps(chain)
    assert "***@127.0.0.1:1/acme/shop.git" in chain[0]
