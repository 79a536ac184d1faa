"""The GitHub webhook as GitHub meets it: ``shipyard ui`` served by real uvicorn on a
loopback port, real signed HTTP requests, a real store (SQLite and PostgreSQL) and, where
runs must run, the real Prefect server and worker.

The first group pins what each delivery is answered and what it records. Its ui's Prefect
is a closed port, as when Prefect is down, so accepted runs stay queued (and say why).
The last group hands runs to the real Prefect server and follows the ci flow on a real git
repository: a bare clone of ``source_repo`` is the remote, commits are pushed to it, and
each push is told to the webhook the way GitHub tells it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from pipelines.launch import follow_run
from shipyard.domain.states import State
from shipyard.domain.webhooks import sign
from shipyard.store import Ledger, RunRecord, Store
from tests.support.prefect_runs import settled_prefect_state
from tests.support.stack import PROJECT, SHIPYARD, free_port
from tests.support.waiting import eventually
from tests.support.webhooks import (
    CLONE_URL,
    SECRET,
    GitHub,
    Remote,
    Ui,
    UiFailed,
    local_repository,
    push_payload,
    serve_ui,
)

pytestmark = pytest.mark.integration

T = TypeVar("T")

ZERO = "0" * 40


def clean_env() -> dict[str, str]:
    """This process's environment without Prefect's or Shipyard's settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHIPYARD_"))}


def ui_env(base: dict[str, str], **settings: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("PREFECT_API")}
    env.update(SHIPYARD_WEBHOOK_SECRET=SECRET, SHIPYARD_HAND_OVER_INTERVAL_SECONDS="1",
               **settings)
    return env


@contextmanager
def serving(env: dict[str, str], log_dir: Path) -> Iterator[Ui]:
    try:
        with serve_ui(env, log_dir) as ui:
            yield ui
    except UiFailed as err:
        pytest.fail(str(err))


def awaiting_prefect(store: Store, run_id: str, what: str) -> RunRecord:
    """The run, once it says it waits for Prefect."""
    return eventually(lambda: next((r for r in [store.get_run(run_id)]
                                    if r.reason == "AwaitingPrefect"), None),
                      seconds=30, what=what)




# -- what a delivery is answered, and what it records --------------------------------------


@dataclass
class Hooks:
    ui: Ui
    github: GitHub
    store: Store
    ledger: Ledger

    def runs(self) -> int:
        return len(self.store.list_runs(limit=10_000))


@pytest.fixture(scope="module")
def hooks(module_store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    """One ui per store backend: repositories of acme but acme/secret, from github.com;
    triggers on main and release/*, tags v*, changes under apps/ other than Markdown; a
    rate limit no test reaches; its Prefect is a port nothing listens on."""
    home = tmp_path_factory.mktemp("ui-home")
    env = ui_env(clean_env(), SHIPYARD_HOME=str(home), SHIPYARD_DATABASE_URL=module_store_url,
                 SHIPYARD_REPOSITORIES="acme/*,!acme/secret",
                 SHIPYARD_TRIGGER_BRANCHES='["main", "release/*"]',
                 SHIPYARD_TRIGGER_TAGS="v*", SHIPYARD_TRIGGER_PATHS="apps/**,!**/*.md",
                 SHIPYARD_WEBHOOK_RATE_BURST="100000",
                 PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api")
    with serving(env, home) as ui:
        store = Store.open(module_store_url)
        try:
            yield Hooks(ui, GitHub(ui.url), store, Ledger(store))
        finally:
            store.close()


def test_a_ping_is_answered_200(hooks: Hooks) -> None:
    answer = hooks.github.send("ping", {"zen": "Design for failure.", "hook_id": 1})
    assert answer.status_code == 200
    assert answer.json() == {"pong": True, "zen": "Design for failure."}


def test_a_signed_push_to_main_is_recorded_as_a_queued_ci_run(hooks: Hooks) -> None:
    payload = push_payload()
    answer = hooks.github.send("push", payload, delivery="push-main-1")

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body == {"run_id": body["run_id"], "pipeline": "ci", "delivery": "push-main-1"}
    run = hooks.store.get_run(body["run_id"])
    assert (run.pipeline, run.state, run.trigger, run.actor) == (
        "ci", State.QUEUED, "push", "Ada Tester")
    assert (run.repo_url, run.ref, run.commit_sha) == (CLONE_URL, "main", payload["after"])
    assert run.parameters == {"repo": CLONE_URL, "ref": payload["after"], "branch": "main"}
    assert [s.ref for s in run.stages] == ["checkout"]
    delivery = hooks.ledger.delivery("push-main-1")
    assert delivery is not None
    assert (delivery.event, delivery.outcome, delivery.run_id) == ("push", "accepted", run.id)


def test_a_run_prefect_cannot_take_stays_queued_and_says_why(hooks: Hooks) -> None:
    run_id = hooks.github.send("push", push_payload()).json()["run_id"]

    run = awaiting_prefect(hooks.store, run_id, "the refused hand-over to be noted")

    assert run.state is State.QUEUED and run.prefect_flow_run_id is None
    assert "Prefect did not take the run" in run.message and "stays queued" in run.message
    assert "HandOverFailed" in [t.reason for t in hooks.store.transitions(run_id)]


def test_a_redelivery_answers_the_first_run_and_records_nothing_new(hooks: Hooks) -> None:
    payload = push_payload()
    first = hooks.github.send("push", payload, delivery="redelivered-1")
    runs = hooks.runs()

    again = hooks.github.send("push", payload, delivery="redelivered-1")

    assert again.status_code == 202
    assert again.json() == {**first.json(), "redelivery": True}
    assert hooks.runs() == runs


def test_ten_simultaneous_copies_of_a_delivery_start_one_run(hooks: Hooks) -> None:
    payload = push_payload()
    copies = 10
    barrier = threading.Barrier(copies)
    runs = hooks.runs()

    def deliver(_: int) -> httpx.Response:
        barrier.wait()
        return hooks.github.send("push", payload, delivery="simultaneous-1")

    with ThreadPoolExecutor(copies) as pool:
        answers = list(pool.map(deliver, range(copies)))

    assert [a.status_code for a in answers] == [202] * copies
    assert len({a.json()["run_id"] for a in answers}) == 1
    assert sum("redelivery" not in a.json() for a in answers) == 1
    assert hooks.runs() == runs + 1


@pytest.mark.parametrize("signature", [
    None, "sha256=" + "0" * 64, "sha1=" + "0" * 40, "garbage",
    sign(b"another secret", b"anything"),
], ids=["missing", "zeros", "sha1", "garbage", "other-secret"])
def test_a_missing_or_forged_signature_is_refused_and_records_nothing(
        hooks: Hooks, signature: str | None) -> None:
    runs = hooks.runs()
    delivery = f"forged-{uuid.uuid4()}"

    answer = hooks.github.send("push", push_payload(), delivery=delivery, signature=signature)

    assert answer.status_code == 401
    assert "X-Hub-Signature-256" in answer.json()["error"]
    assert hooks.ledger.delivery(delivery) is None
    assert hooks.runs() == runs


def test_a_body_changed_after_signing_is_refused(hooks: Hooks) -> None:
    signed = json.dumps(push_payload()).encode()
    tampered = signed.replace(b"refs/heads/main", b"refs/heads/evil")
    answer = hooks.github.send("push", body=tampered,
                               signature=sign(SECRET.encode(), signed))
    assert answer.status_code == 401


def test_malformed_json_is_400_and_records_nothing(hooks: Hooks) -> None:
    runs = hooks.runs()
    answer = hooks.github.send("push", body=b'{"ref": "refs/heads/main",', delivery="bad-json")
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("the body is not valid JSON")
    assert hooks.ledger.delivery("bad-json") is None and hooks.runs() == runs


def test_a_body_over_the_limit_is_413(hooks: Hooks) -> None:
    padded = push_payload(padding="x" * (1024 * 1024))
    answer = hooks.github.send("push", padded)
    assert answer.status_code == 413
    assert "larger than 1048576 bytes" in answer.json()["error"]


def test_a_streamed_body_over_the_limit_is_413_without_a_content_length(
        hooks: Hooks) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(160):
            yield b" " * 8192  # JSON whitespace: ~1.3 MB in all

    answer = httpx.post(hooks.github.url, content=chunks(), timeout=30,
                        headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": "streamed",
                                 "X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert answer.status_code == 413


def test_an_unknown_event_is_202_and_ignored_with_the_reason(hooks: Hooks) -> None:
    answer = hooks.github.send("issues", {"action": "opened"})
    assert answer.status_code == 202
    assert answer.json() == {"ignored": "event 'issues' is not handled; Shipyard starts "
                                        "pipelines on push (and answers ping)"}


def test_a_push_without_a_delivery_id_is_400(hooks: Hooks) -> None:
    runs = hooks.runs()
    answer = hooks.github.send("push", push_payload(), delivery=None)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("X-GitHub-Delivery is missing")
    assert hooks.runs() == runs


def test_a_push_missing_a_field_is_422_naming_it(hooks: Hooks) -> None:
    payload = push_payload()
    del payload["repository"]["clone_url"]
    answer = hooks.github.send("push", payload)
    assert answer.status_code == 422
    assert answer.json()["field"] == "repository.clone_url"


def test_a_branch_deletion_starts_nothing_and_says_so(hooks: Hooks) -> None:
    runs = hooks.runs()
    deletion = push_payload(after=ZERO, deleted=True, commits=[], head_commit=None)

    answer = hooks.github.send("push", deletion, delivery="deleted-main")

    assert answer.status_code == 202
    assert answer.json() == {"ignored": "branch 'main' was deleted; a deletion starts "
                                        "nothing", "delivery": "deleted-main"}
    assert hooks.runs() == runs
    delivery = hooks.ledger.delivery("deleted-main")
    assert delivery is not None and (delivery.outcome, delivery.run_id) == ("ignored", None)


def test_a_tag_matching_a_tag_pattern_starts_a_run(hooks: Hooks) -> None:
    tag = push_payload("refs/tags/v1.2.0", before=ZERO, commits=[], created=True)
    answer = hooks.github.send("push", tag)
    assert answer.status_code == 202, answer.text
    run = hooks.store.get_run(answer.json()["run_id"])
    assert (run.ref, run.commit_sha) == ("v1.2.0", tag["after"])
    assert run.parameters["branch"] is None


def test_a_tag_matching_no_tag_pattern_is_ignored(hooks: Hooks) -> None:
    answer = hooks.github.send("push", push_payload("refs/tags/nightly-7", before=ZERO, commits=[]))
    assert answer.status_code == 202
    assert answer.json()["ignored"] == "tag 'nightly-7' matches no trigger tag pattern (v*)"


def test_a_push_to_another_branch_is_ignored_but_a_release_branch_is_not(
        hooks: Hooks) -> None:
    feature = hooks.github.send("push", push_payload("refs/heads/feature/login"))
    release = hooks.github.send("push", push_payload("refs/heads/release/2.0"))
    assert feature.json()["ignored"] == ("branch 'feature/login' matches no trigger branch "
                                         "pattern (main, release/*)")
    assert "run_id" in release.json()


def test_a_push_changing_only_documentation_is_ignored_for_its_paths(hooks: Hooks) -> None:
    docs = push_payload(files=("README.md", "apps/gateway/README.md"))
    answer = hooks.github.send("push", docs)
    assert answer.status_code == 202
    assert answer.json()["ignored"] == (
        "no changed file matches the trigger paths (apps/**, !**/*.md); changed: "
        "README.md, apps/gateway/README.md")


@pytest.mark.parametrize("body", [
    b"[]", b'"push"', b"null", b"{}", b"[" * 100_000 + b"]" * 100_000,
    b'{"ref": 1' + b"0" * 5000 + b"}",
    json.dumps(push_payload(ref="refs/heads/" + "m" * 300)).encode(),
    json.dumps(push_payload(clone_url="-uploadpack=touch /tmp/pwned")).encode(),
    json.dumps(push_payload(clone_url="/" + "d" * 400)).encode(),
    json.dumps(push_payload(clone_url="~no-such-user/repo")).encode(),
    json.dumps(push_payload(clone_url="/tmp/a\u0000b")).encode(),
    json.dumps(push_payload(pusher={"name": "x" * 1000})).encode(),
    json.dumps(push_payload(commits=[{"added": [1, 2]}])).encode(),
    json.dumps({**push_payload(), "after": "A" * 40}).encode(),
    "{\"ref\": \"\udcff\"}".encode("utf-8", "surrogatepass"),
], ids=["list", "string", "null", "empty", "deep", "huge-number", "long-ref",
        "option-url", "long-path", "unknown-home", "nul", "long-pusher", "bad-files",
        "upper-sha", "bad-utf8"])
def test_bad_input_is_never_a_server_error(hooks: Hooks, body: bytes) -> None:
    answer = hooks.github.send("push", body=body)
    assert 400 <= answer.status_code < 500 or answer.status_code == 202, answer.text
    assert hooks.ui.process.poll() is None


# -- which repositories, from where, how often ---------------------------------------------


@pytest.mark.parametrize(("full_name", "clone_url"), [
    ("other/thing", "https://github.com/other/thing.git"),
    ("acme/secret", "https://github.com/acme/secret.git"),
    # an allowed name does not carry another repository's URL in
    ("acme/shop", "https://github.com/evil/shop.git"),
], ids=["other-owner", "excluded", "name-of-another-url"])
def test_a_push_of_a_repository_not_allowed_is_ignored_recorded_and_starts_nothing(
        hooks: Hooks, full_name: str, clone_url: str) -> None:
    runs = hooks.runs()
    delivery = f"not-allowed-{uuid.uuid4()}"

    answer = hooks.github.send("push", push_payload(full_name=full_name, clone_url=clone_url),
                               delivery=delivery)

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["ignored"], body["delivery"]) == ("repository not allowed", delivery)
    assert "matches no pattern of SHIPYARD_REPOSITORIES" in body["reason"]
    assert hooks.runs() == runs
    recorded = hooks.ledger.delivery(delivery)
    assert recorded is not None and (recorded.outcome, recorded.run_id) == ("ignored", None)


def test_a_push_of_an_allowed_repository_by_ssh_starts_a_run(hooks: Hooks) -> None:
    answer = hooks.github.send("push", push_payload(
        clone_url="git@github.com:acme/shop.git"))
    assert answer.status_code == 202 and "run_id" in answer.json(), answer.text


@pytest.mark.parametrize("clone_url", [
    "file:///srv/git/shop.git", "/srv/git/shop.git", "git://github.com/acme/shop.git",
    "http://github.com/acme/shop.git", "https://127.0.0.1/acme/shop.git",
    "https://127.1/acme/shop.git", "https://169.254.169.254/acme/shop.git",
    "https://[::1]/acme/shop.git", "https://[::ffff:127.0.0.1]/acme/shop.git",
    "ssh://git@10.0.0.1/acme/shop.git", "git@localhost:acme/shop.git",
    "https://gitlab.com/acme/shop.git",
])
def test_a_local_plain_or_foreign_clone_url_is_422_naming_the_field(
        hooks: Hooks, clone_url: str) -> None:
    runs = hooks.runs()
    delivery = f"bad-url-{uuid.uuid4()}"

    answer = hooks.github.send("push", push_payload(clone_url=clone_url), delivery=delivery)

    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "repository.clone_url"
    assert answer.json()["error"].startswith("repository.clone_url: ")
    assert hooks.ledger.delivery(delivery) is None and hooks.runs() == runs


def test_an_existing_and_a_missing_directory_get_the_same_answer(
        hooks: Hooks, tmp_path: Path) -> None:
    # Nothing about the host's disk leaks: the check never looks at it.
    (tmp_path / "exists.git").mkdir()
    answers = [hooks.github.send("push", push_payload(clone_url=url), delivery="same-answer")
               for url in (str(tmp_path / "exists.git"), str(tmp_path / "missing.git"),
                           f"file://{tmp_path / 'exists.git'}",
                           f"file://{tmp_path / 'missing.git'}")]
    assert [a.status_code for a in answers] == [422] * 4
    assert answers[0].json() == answers[1].json()
    assert answers[2].json() == answers[3].json()


def test_credentials_in_a_clone_url_reach_no_answer_and_no_log_line(hooks: Hooks) -> None:
    token = f"ghp_{uuid.uuid4().hex}"
    urls = [f"https://x-access-token:{token}@github.com/acme/shop.git",  # accepted
            f"https://{token}@github.com/other/thing.git",  # not allowed
            f"https://u:{token}@gitlab.com/acme/shop.git"]  # refused host
    answers = [hooks.github.send("push", push_payload(clone_url=url)) for url in urls]

    assert [a.status_code for a in answers] == [202, 202, 422]
    assert "run_id" in answers[0].json()
    assert "https://github.com/other/thing.git" in answers[1].json()["reason"]
    assert all(token not in a.text for a in answers)
    logged = hooks.ui.log.read_text(errors="replace")  # stderr is line-buffered
    assert "https://github.com/other/thing.git" in logged and token not in logged


def test_a_replay_under_a_new_delivery_id_is_a_duplicate_of_the_first_run(
        hooks: Hooks) -> None:
    body = json.dumps(push_payload()).encode()
    first = hooks.github.send("push", body=body, delivery=f"replay-a-{uuid.uuid4()}")
    runs = hooks.runs()
    delivery = f"replay-b-{uuid.uuid4()}"

    replay = hooks.github.send("push", body=body, delivery=delivery)
    again = hooks.github.send("push", body=body, delivery=delivery)

    run_id = first.json()["run_id"]
    assert replay.status_code == 202
    assert replay.json() == {"ignored": "duplicate push", "run_id": run_id,
                             "delivery": delivery, "reason": replay.json()["reason"]}
    assert "SHIPYARD_WEBHOOK_REPLAY_WINDOW_SECONDS" in replay.json()["reason"]
    assert again.json() == {**replay.json(), "redelivery": True}
    assert hooks.runs() == runs
    recorded = hooks.ledger.delivery(delivery)
    assert recorded is not None and (recorded.outcome, recorded.run_id) == ("ignored", run_id)


def test_the_same_commit_pushed_to_another_branch_is_no_replay(hooks: Hooks) -> None:
    payload = push_payload()
    first = hooks.github.send("push", payload)
    other = hooks.github.send("push", {**payload, "ref": "refs/heads/release/9"})
    assert "run_id" in first.json() and "run_id" in other.json(), other.text
    assert first.json()["run_id"] != other.json()["run_id"]


def test_ten_simultaneous_replays_under_new_delivery_ids_start_one_run(hooks: Hooks) -> None:
    body = json.dumps(push_payload()).encode()
    copies = 10
    barrier = threading.Barrier(copies)
    runs = hooks.runs()

    def deliver(n: int) -> httpx.Response:
        barrier.wait()
        return hooks.github.send("push", body=body, delivery=f"racing-{n}-{uuid.uuid4()}")

    with ThreadPoolExecutor(copies) as pool:
        answers = list(pool.map(deliver, range(copies)))

    assert [a.status_code for a in answers] == [202] * copies
    assert len({a.json()["run_id"] for a in answers}) == 1
    assert sum("ignored" not in a.json() for a in answers) == 1
    assert hooks.runs() == runs + 1


# -- a ui without a secret, and one told to take unsigned deliveries -------------------------


@dataclass
class Bare:
    ui: Ui
    github: GitHub
    store: Store


@pytest.fixture(scope="module")
def unconfigured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bare]:
    """A ui as a new user starts it: no secret, no repositories; a small rate limit (a
    burst of 5, then 1 a second) so the limit is reached in a few calls; 127.0.0.2 plays
    a reverse proxy the operator trusts."""
    home = tmp_path_factory.mktemp("bare-home")
    env = {**clean_env(), "SHIPYARD_HOME": str(home), "SHIPYARD_WEBHOOK_RATE_BURST": "5",
           "SHIPYARD_WEBHOOK_RATE_PER_SECOND": "1", "SHIPYARD_TRUSTED_PROXIES": "127.0.0.2",
           "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}
    with serving(env, home) as ui:
        store = Store.open(f"sqlite:///{home / 'shipyard.db'}")
        try:
            yield Bare(ui, GitHub(ui.url), store)
        finally:
            store.close()


def test_without_a_secret_every_delivery_is_refused_and_the_console_says_why(
        unconfigured: Bare) -> None:
    output = unconfigured.ui.output()
    assert ("SHIPYARD_WEBHOOK_SECRET is not set, so POST /hooks/github refuses every "
            "delivery (401)") in output
    assert "SHIPYARD_REPOSITORIES is not set, so every push is ignored" in output

    # from an address of its own, so the rate limit's tests do not count these calls
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3")) as client:
        github = GitHub(unconfigured.ui.url, client=client)
        signed = github.send("push", push_payload())
        unsigned = github.send("push", push_payload(), signature=None)
        ping = github.send("ping", {"zen": "Keep it logically awesome."})

    for answer in (signed, unsigned, ping):
        assert answer.status_code == 401
        assert answer.json()["error"].startswith("SHIPYARD_WEBHOOK_SECRET is not set, so "
                                                 "Shipyard refuses every delivery: set it")
    assert unconfigured.store.list_runs() == []


def flood(client: httpx.Client, url: str, **headers: str) -> list[int]:
    """Webhook calls from ``client`` until one is refused for the rate (at most 10): the
    statuses."""
    statuses: list[int] = []
    while 429 not in statuses and len(statuses) < 10:
        statuses.append(client.post(url, content=b"{}", headers={
            "X-GitHub-Event": "push", **headers}).status_code)
    return statuses


def test_a_flood_from_one_address_is_429_until_it_slows_down(unconfigured: Bare) -> None:
    url = unconfigured.github.url
    with httpx.Client() as client, httpx.Client(
            transport=httpx.HTTPTransport(local_address="127.0.0.2")) as proxy:
        statuses = flood(client, url)
        assert statuses[:2] == [401, 401] and statuses[-1] == 429, statuses
        limited = client.post(url, content=b"{}", headers={"X-GitHub-Event": "push"})
        # X-Forwarded-For is believed only from the trusted proxy: not from 127.0.0.1
        spoofed = client.post(url, content=b"{}", headers={
            "X-GitHub-Event": "push", "X-Forwarded-For": "203.0.113.9"})
        other_address = proxy.post(url, content=b"{}", headers={"X-GitHub-Event": "push"})

        assert limited.status_code == 429 and spoofed.status_code == 429
        assert limited.json()["error"].startswith("too many deliveries from this address")
        wait = int(limited.headers["Retry-After"])
        assert 1 <= wait <= 2
        assert other_address.status_code == 401  # counted apart
        time.sleep(wait)  # the server said when; a real clock is what uvicorn runs on
        assert client.post(url, content=b"{}",
                           headers={"X-GitHub-Event": "push"}).status_code == 401


def test_behind_a_trusted_proxy_each_client_it_names_is_counted_apart(
        unconfigured: Bare) -> None:
    url = unconfigured.github.url
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as proxy:
        first = flood(proxy, url, **{"X-Forwarded-For": "198.51.100.1"})
        second = proxy.post(url, content=b"{}", headers={
            "X-GitHub-Event": "push", "X-Forwarded-For": "198.51.100.2"})
    assert first[0] == 401 and first[-1] == 429, first
    assert second.status_code == 401


def test_insecure_webhook_refuses_to_start_beside_a_secret(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    # In this process (a `shipyard` process costs seconds of imports): the check comes
    # before anything is served, and serving would fail the test rather than hang it.
    import uvicorn

    from shipyard.cli import main
    from shipyard.cli.context import settings

    for name in [n for n in os.environ if n.startswith("SHIPYARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path))
    monkeypatch.setenv("SHIPYARD_WEBHOOK_SECRET", SECRET)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("it served"))
    settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            main(["ui", "--insecure-webhook", "--port", str(free_port())])
    finally:
        settings.cache_clear()

    assert exited.value.code == 2
    error = " ".join(capsys.readouterr().err.split())
    assert "SHIPYARD_WEBHOOK_SECRET is set" in error and "drop --insecure-webhook" in error


@pytest.fixture(scope="module")
def insecure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bare]:
    """``shipyard ui --insecure-webhook`` for a local experiment: no secret, acme's
    repositories and any local path, local repositories allowed."""
    home = tmp_path_factory.mktemp("insecure-home")
    env = {**clean_env(), "SHIPYARD_HOME": str(home),
           "SHIPYARD_REPOSITORIES": "acme/*,/**,file:///**",
           "SHIPYARD_ALLOW_LOCAL_REPOSITORIES": "true",
           "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}
    try:
        with serve_ui(env, home, args=("--insecure-webhook",)) as ui:
            store = Store.open(f"sqlite:///{home / 'shipyard.db'}")
            try:
                yield Bare(ui, GitHub(ui.url, secret="not the secret"), store)
            finally:
                store.close()
    except UiFailed as err:
        pytest.fail(str(err))


def test_insecure_webhook_takes_unsigned_pushes_and_warns_at_start_and_on_each(
        insecure: Bare) -> None:
    assert "WARNING: --insecure-webhook" in insecure.ui.output()
    assert "WARNING: SHIPYARD_ALLOW_LOCAL_REPOSITORIES is on" in insecure.ui.output()

    unsigned = insecure.github.send("push", push_payload(), signature=None)
    malformed = insecure.github.send("push", body=b"{", signature=None)
    missing_id = insecure.github.send("push", push_payload(), delivery=None)

    assert unsigned.status_code == 202 and "run_id" in unsigned.json(), unsigned.text
    assert (malformed.status_code, missing_id.status_code) == (400, 400)
    assert insecure.store.get_run(unsigned.json()["run_id"]).trigger == "push"
    lines = [line for line in insecure.ui.log.read_text().splitlines()
             if "webhook from" in line]
    assert len(lines) >= 3
    assert all("WARNING" in line and "UNSIGNED delivery taken" in line for line in lines)


def test_allowed_local_paths_get_the_same_answer_whether_they_exist_or_not(
        insecure: Bare, tmp_path: Path) -> None:
    (tmp_path / "exists.git").mkdir()
    answers = [insecure.github.send("push", push_payload(clone_url=url), signature=None)
               for url in (str(tmp_path / "exists.git"), str(tmp_path / "missing.git"))]
    assert [a.status_code for a in answers] == [202, 202]
    assert all("run_id" in a.json() for a in answers)


# -- through the real Prefect server and worker ---------------------------------------------


@pytest.fixture(scope="module")
def remote(source_repo: Any, tmp_path_factory: pytest.TempPathFactory) -> Remote:
    """The remote, with the apps reduced to discovery (and the kit it builds on), so each
    ci run tests and builds one app."""
    remote = Remote.clone(source_repo.path, tmp_path_factory.mktemp("remote"))
    remote.push_commit("Keep only discovery", remove=tuple(
        f"apps/{app}" for app in ("gateway", "data", "streaming")))
    return remote


@pytest.fixture
def prefect_ui_env(prefect_stack: Any, remote: Remote) -> dict[str, str]:
    """The environment of a ui on the stack's store, whose flows the stack's worker runs,
    allowed to build the local remote."""
    return ui_env(prefect_stack.env, **local_repository(remote.url))


def follow(store: Store, run_id: str, seconds: float = 900) -> RunRecord:
    async def last() -> RunRecord:
        return [r async for r in follow_run(store, run_id, timeout_seconds=seconds)][-1]

    return asyncio.run(last())


def assert_ci_ran_the_pushed_commit(store: Store, run_id: str, after: str) -> RunRecord:
    run = follow(store, run_id)
    assert run.state is State.SUCCEEDED, (run.reason, run.message)
    assert run.commit_sha == after
    checkout = run.stage("checkout")
    assert checkout.state is State.SUCCEEDED and checkout.outputs["sha"] == after
    assert run.prefect_flow_run_id is not None
    assert settled_prefect_state(run.prefect_flow_run_id) == "COMPLETED"
    return run


def test_a_signed_push_runs_ci_through_prefect_on_the_pushed_commit(
        prefect_stack: Any, prefect_ui_env: dict[str, str], remote: Remote,
        tmp_path: Path) -> None:
    store = Store.open(prefect_stack.store_url)
    described = remote.push_commit("Stamp discovery", write={
        "apps/discovery/STAMP": f"webhook test {uuid.uuid4()}\n"})
    with serving(prefect_ui_env, tmp_path) as ui:
        answer = GitHub(ui.url).send("push", described)
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        linked = eventually(lambda: store.get_run(run_id).prefect_flow_run_id, seconds=60,
                            what=f"the hand-over to Prefect\n{ui.output()}")
        run = assert_ci_ran_the_pushed_commit(store, run_id, described["after"])
    assert run.prefect_flow_run_id == linked
    assert (run.trigger, run.actor, run.ref) == ("push", "Ada Tester", "main")
    assert run.stage("test:discovery").state is State.SUCCEEDED
    assert run.stage("push:discovery").state is State.SUCCEEDED


class TcpProxy:
    """A loopback port forwarded to another, closed until :meth:`open`: Prefect "down",
    then "back", at one address."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event

    def open(self) -> None:
        ready = threading.Event()
        stop = asyncio.Event()

        async def serve() -> None:
            server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
            self._stop = stop
            ready.set()
            async with server:
                await stop.wait()
            pipes = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)

        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(serve(),), daemon=True)
        self._thread.start()
        assert ready.wait(10)

    async def _pipe(self, client_in: asyncio.StreamReader,
                    client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            finally:
                sink.close()

        await asyncio.gather(copy(client_in, server_out), copy(server_in, client_out),
                             return_exceptions=True)

    def close(self) -> None:
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        self._loop.close()


def test_a_run_waits_while_prefect_is_down_and_is_handed_over_when_it_answers(
        prefect_stack: Any, remote: Remote, tmp_path: Path) -> None:
    store = Store.open(prefect_stack.store_url)
    proxy = TcpProxy(int(prefect_stack.api_url.split(":")[-1].split("/")[0]))
    env = ui_env(prefect_stack.env, PREFECT_API_URL=f"http://127.0.0.1:{proxy.port}/api",
                 **local_repository(remote.url))
    described = remote.push_commit("Say hello", write={"HELLO.txt": "hello\n"})
    try:
        with serving(env, tmp_path) as ui:
            answer = GitHub(ui.url).send("push", described)
            assert answer.status_code == 202, answer.text
            run_id = answer.json()["run_id"]
            waiting = awaiting_prefect(store, run_id, "the refusal to be noted")
            assert waiting.state is State.QUEUED and waiting.prefect_flow_run_id is None

            proxy.open()
            eventually(lambda: store.get_run(run_id).prefect_flow_run_id, seconds=60,
                       what=f"the reconciler's hand-over\n{ui.output()}")
            run = assert_ci_ran_the_pushed_commit(store, run_id, described["after"])
    finally:
        proxy.close()
    reasons = [t.reason for t in store.transitions(run.id)]
    assert reasons[:3] == ["Created", "HandOverFailed", "HandedOver"]


def test_trigger_starts_ci_by_hand_and_follows_it(prefect_stack: Any, remote: Remote) -> None:
    store = Store.open(prefect_stack.store_url)
    described = remote.push_commit("By hand", write={"HAND.txt": "by hand\n"})

    done = prefect_stack.shipyard("trigger", "--repo", remote.url, "--ref", "main",
                                  "--follow", timeout=900)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    run = store.list_runs(limit=1, pipeline="ci")[0]
    assert (run.trigger, run.ref, run.commit_sha, run.state) == (
        "manual", "main", described["after"], State.SUCCEEDED)


def test_a_triggered_run_prefect_cannot_take_stays_queued_until_the_ui_hands_it_over(
        prefect_stack: Any, prefect_ui_env: dict[str, str], remote: Remote,
        tmp_path: Path) -> None:
    store = Store.open(prefect_stack.store_url)
    described = remote.push_commit("While Prefect is away", write={"AWAY.txt": "away\n"})
    down = {**prefect_stack.env, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}

    refused = prefect_stack.shipyard_with(down, "trigger", "--repo", remote.url, "--ref",
                                          described["after"])

    assert refused.returncode == 1
    assert "stays queued" in refused.stderr and "`shipyard ui`" in refused.stderr
    waiting = store.list_runs(limit=1, pipeline="ci")[0]
    assert (waiting.state, waiting.reason) == (State.QUEUED, "AwaitingPrefect")
    with serving(prefect_ui_env, tmp_path) as ui:  # its first pass, at startup
        eventually(lambda: store.get_run(waiting.id).prefect_flow_run_id, seconds=60,
                   what=f"the startup hand-over\n{ui.output()}")
        assert_ci_ran_the_pushed_commit(store, waiting.id, described["after"])


@pytest.mark.parametrize(("repo", "ref", "problem"), [
    ("-oProxyCommand=x", "main", "must not start with '-'"),
    ("/no/such/repository", "main", "neither a URL"),
    (".", "--upload-pack=x", "not a valid branch"),
    (".", "main..other", "not a valid branch"),
])
def test_trigger_refuses_a_bad_repository_or_ref_and_records_nothing(
        tmp_path: Path, repo: str, ref: str, problem: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHIPYARD_"))}
    env.update(SHIPYARD_HOME=str(tmp_path), SHIPYARD_PREFECT_PORT=str(free_port()))
    done = subprocess.run([*SHIPYARD, "trigger", "--repo", repo, "--ref", ref], env=env,
                          cwd=PROJECT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and problem in done.stderr
    assert not (tmp_path / "shipyard.db").exists() or not Store.open(
        f"sqlite:///{tmp_path / 'shipyard.db'}").list_runs()
