"""The web UI's API and pages as a client meets them: ``shipyard ui`` on real uvicorn, real
HTTP, a real store (SQLite and PostgreSQL), accounts made the way an admin makes them.

Runs are recorded straight into the store (as flow runs record them), with a clock the
test moves, so durations are exact; live events are read from the real SSE stream while
the test writes more.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.domain.access import Role
from shipyard.domain.clock import FrozenClock
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import Accounts, Ledger, RunRecord, Store
from shipyard.store.engine import open_engine
from tests.support.reports import seed_canary_run, seed_chaos_run
from tests.support.stack import free_port
from tests.support.waiting import eventually
from tests.support.webhooks import Ui, UiFailed, serve_ui

pytestmark = pytest.mark.integration

PASSWORD = "a long enough password"
GRAPH = [StageSpec("checkout"), StageSpec("test", ("checkout",)),
         StageSpec("build", ("test",)), StageSpec("push", ("build",))]
STREAMS_PER_IDENTITY = 4


@dataclass
class Site:
    ui: Ui
    store: Store
    clock: FrozenClock
    tokens: dict[str, str]

    def get(self, path: str, *, who: str | None = "viewer",
            headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.ui.url + path, headers=self.headers(who, headers), timeout=30,
                         **kwargs)

    def post(self, path: str, *, who: str | None = "deployer",
             headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.ui.url + path, headers=self.headers(who, headers), timeout=30,
                          **kwargs)

    def headers(self, who: str | None, extra: dict[str, str] | None) -> dict[str, str]:
        sent = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return sent | (extra or {})

    def run(self, *, app: str = "discovery", ref: str = "main", trigger: str = "push",
            pipeline: str = "ci", finish: State | None = State.SUCCEEDED,
            stage_seconds: float = 10) -> RunRecord:
        """A run recorded as a flow records it; each stage takes ``stage_seconds``."""
        self.clock.advance(1)  # runs are listed newest first: each a second newer
        run = self.store.create_run(pipeline, GRAPH, trigger=trigger, app=app, ref=ref,
                                    repo_url="file:///src", actor="ada")
        if finish is None:
            return run
        self.store.transition_run(run.id, State.RUNNING, reason="Started")
        for spec in GRAPH:
            self.store.transition_stage(run.id, spec.ref, State.RUNNING, reason="Started")
            self.clock.advance(stage_seconds)
            last = spec.ref == GRAPH[-1].ref
            outcome = finish if last and finish is State.FAILED else State.SUCCEEDED
            self.store.transition_stage(run.id, spec.ref, outcome,
                                        reason="Failed" if outcome is State.FAILED
                                        else "Succeeded", message="exit 1" if
                                        outcome is State.FAILED else "")
        self.clock.advance(1)
        return self.store.finish_run(run.id)


@pytest.fixture(scope="module")
def site(module_store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A ui on its own store, with an admin, a deployer, a viewer and their tokens; its
    Prefect is a closed port."""
    home = tmp_path_factory.mktemp("ui-site")
    clock = FrozenClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    store = Store.open(module_store_url)
    seeded = Store(open_engine(module_store_url), clock=clock)
    accounts = Accounts(store)
    tokens = {}
    for name, role in (("alice", Role.ADMIN), ("dave", Role.DEPLOYER), ("vera", Role.VIEWER)):
        accounts.add_user(name, PASSWORD, role)
        tokens[role.value] = accounts.create_token(f"{name}'s test", owner=name, role=role)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SHIPYARD_"))}
    env.update(SHIPYARD_HOME=str(home), SHIPYARD_DATABASE_URL=module_store_url,
               PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api",
               SHIPYARD_HAND_OVER_INTERVAL_SECONDS="60",
               SHIPYARD_UI_STREAMS_PER_IDENTITY=str(STREAMS_PER_IDENTITY))
    try:
        with serve_ui(env, home) as ui:
            yield Site(ui, seeded, clock, tokens)
    except UiFailed as err:
        pytest.fail(str(err))
    finally:
        store.close()
        seeded.close()


# -- who may ------------------------------------------------------------------------------


def test_nobody_gets_401_from_the_api_and_the_login_page_from_a_page(site: Site):
    answer = site.get("/api/runs", who=None)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "shipyard token create" in answer.json()["error"]
    page = site.get("/runs?app=gateway", who=None, headers={"Accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/runs%3Fapp%3Dgateway"
    assert site.get("/healthz", who=None).status_code == 200


def test_an_unknown_token_is_refused_and_a_revoked_one_stops_working(site: Site):
    assert site.get("/api/runs", headers={"Authorization": "Bearer shy_nope"},
                    who=None).status_code == 401
    accounts = Accounts(site.store)
    token, record = accounts.create_token("short-lived", owner="vera", role=Role.VIEWER)
    headers = {"Authorization": f"Bearer {token}"}
    assert site.get("/api/runs", who=None, headers=headers).status_code == 200
    accounts.revoke_token(record.id)
    refused = site.get("/api/runs", who=None, headers=headers)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]


def test_a_viewer_may_read_but_not_answer_a_judgment(site: Site):
    run = site.run()
    assert site.get(f"/api/runs/{run.id}", who="viewer").status_code == 200
    refused = site.post(f"/api/runs/{run.id}/judgment", who="viewer",
                        json={"decision": "approve"})
    assert refused.status_code == 403
    assert refused.json()["error"] == (
        "vera has the role viewer; this needs deployer (an admin can change roles with "
        "`shipyard user set NAME --role ...`)")


def test_a_disabled_users_token_stops_working(site: Site):
    accounts = Accounts(site.store)
    accounts.add_user("temp", PASSWORD, Role.VIEWER)
    token, _ = accounts.create_token("temp's", owner="temp", role=Role.VIEWER)
    headers = {"Authorization": f"Bearer {token}"}
    assert site.get("/api/runs", who=None, headers=headers).status_code == 200
    accounts.set_user("temp", disabled=True)
    assert site.get("/api/runs", who=None, headers=headers).status_code == 401


# -- signing in, CSRF ------------------------------------------------------------------------


def signed_in(site: Site, name: str, password: str = PASSWORD,
              next_path: str = "/runs") -> tuple[httpx.Client, httpx.Response]:
    client = httpx.Client(base_url=site.ui.url, timeout=30)
    form = client.get("/login")
    csrf = form.text.split('name="csrf_token" value="')[1].split('"')[0]
    answer = client.post("/login", data={"username": name, "password": password,
                                         "csrf_token": csrf, "next": next_path})
    return client, answer


def csrf_of(page: str) -> str:
    return page.split('name="csrf_token" value="')[1].split('"')[0]


def test_signing_in_sets_a_locked_down_cookie_and_opens_the_pages(site: Site):
    run = site.run(app="gateway")
    client, answer = signed_in(site, "vera", next_path=f"/runs/{run.id}")
    with contextlib.closing(client):
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/runs/{run.id}"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        page = client.get(f"/runs/{run.id}")
        assert page.status_code == 200
        assert f"<code>{run.id[:8]}</code>" in page.text
        assert "vera <small>(viewer)</small>" in page.text


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(site: Site):
    client, answer = signed_in(site, "vera", password="not the password at all")
    with contextlib.closing(client):
        assert answer.status_code == 401
        assert "Wrong username or password" in answer.text
        _, unknown = signed_in(site, "nobody-here", password="not the password at all")
        assert unknown.status_code == 401
        assert client.get("/runs").status_code == 303


def test_login_never_redirects_off_the_site(site: Site):
    client, answer = signed_in(site, "vera", next_path="//evil.example/x")
    with contextlib.closing(client):
        assert answer.headers["location"] == "/runs"


def test_a_form_post_without_the_csrf_token_is_refused(site: Site):
    client, _ = signed_in(site, "dave")
    with contextlib.closing(client):
        run = site.run()
        refused = client.post(f"/runs/{run.id}/judgment", data={"decision": "approve"})
        assert refused.status_code == 403
        assert "CSRF" in refused.json()["error"]
        api = client.post(f"/api/runs/{run.id}/judgment", json={"decision": "approve"})
        assert api.status_code == 403
        # With the session's token the request gets through to the judgment itself,
        # which says the run waits for none.
        token = csrf_of(client.get(f"/runs/{run.id}").text)
        allowed = client.post(f"/api/runs/{run.id}/judgment", json={"decision": "approve"},
                              headers={"X-CSRF-Token": token})
        assert allowed.status_code == 409
        assert "not waiting for a judgment" in allowed.json()["error"]


def test_signing_out_ends_the_session(site: Site):
    client, _ = signed_in(site, "vera")
    with contextlib.closing(client):
        page = client.get("/runs")
        assert client.post("/logout", data={"csrf_token": csrf_of(page.text)}
                           ).status_code == 303
        assert client.get("/runs").status_code == 303


def test_rejecting_from_the_page_asks_for_confirmation_first(site: Site):
    client, _ = signed_in(site, "dave")
    with contextlib.closing(client):
        run = site.run()
        token = csrf_of(client.get(f"/runs/{run.id}").text)
        confirm = client.post(f"/runs/{run.id}/judgment",
                              data={"decision": "reject", "csrf_token": token})
        assert confirm.status_code == 200
        assert "Reject this judgment?" in confirm.text
        assert 'name="confirmed" value="yes"' in confirm.text
        # Nothing was answered or audited by asking.
        assert Ledger(site.store).audit_trail(subject_id=run.id) == []


# -- the run list ------------------------------------------------------------------------------


def test_the_run_list_filters_by_app_status_branch_trigger_and_pipeline(site: Site):
    marker = f"feature/{time.monotonic_ns()}"
    wanted = site.run(app="data", ref=marker, trigger="manual", finish=State.FAILED)
    site.run(app="data", ref=marker, trigger="push")
    site.run(app="streaming", ref=marker, trigger="manual", finish=State.FAILED)
    found = site.get("/api/runs", params={"app": "data", "status": "failed",
                                          "branch": marker, "trigger": "manual",
                                          "pipeline": "ci"}).json()
    assert [r["id"] for r in found["runs"]] == [wanted.id]
    assert found["next_cursor"] is None
    assert found["runs"][0]["state"] == "failed"
    assert found["runs"][0]["duration_seconds"] == 41.0


def test_paging_by_cursor_returns_every_run_once_newest_first(site: Site):
    marker = f"paging/{time.monotonic_ns()}"
    made = [site.run(ref=marker, finish=None).id for _ in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"branch": marker, "limit": 3} | ({"cursor": cursor} if cursor else {})
        page = site.get("/api/runs", params=params).json()
        seen += [r["id"] for r in page["runs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(made))


def test_a_bad_cursor_or_status_names_the_field(site: Site):
    answer = site.get("/api/runs", params={"cursor": "garbage!"})
    assert answer.status_code == 422
    assert answer.json()["error"].startswith("cursor: 'garbage!' is not a page cursor")
    assert site.get("/api/runs", params={"status": "sleeping"}).status_code == 422


def test_the_run_list_page_shows_state_as_icon_and_word(site: Site):
    run = site.run(app="streaming", finish=State.FAILED)
    client, _ = signed_in(site, "vera")
    with contextlib.closing(client):
        page = client.get("/runs", params={"app": "streaming"}).text
    row = page.split(f'data-run="{run.id}"')[1].split("</tr>")[0]
    assert 'class="badge s-failed"' in row
    assert '<span aria-hidden="true">✘</span> Failed' in row


# -- a run, its stages and logs ------------------------------------------------------------


def test_a_run_shows_each_stage_against_its_typical_duration(site: Site):
    app = f"typical{time.monotonic_ns() % 10_000}"
    for seconds in (10, 20, 30):
        site.run(app=app, stage_seconds=seconds)
    slow = site.run(app=app, stage_seconds=90)
    detail = site.get(f"/api/runs/{slow.id[:8]}").json()
    assert detail["id"] == slow.id
    by_ref = {s["ref"]: s for s in detail["stages"]}
    assert by_ref["build"]["duration_seconds"] == 90
    # The median of 10, 20, 30 and 90: the slow run itself counts once it succeeded.
    assert by_ref["build"]["typical_seconds"] == 25
    assert by_ref["test"]["requires"] == ["checkout"]
    assert detail["prefect_url"] is None  # never handed to Prefect


def test_logs_read_on_from_the_last_chunk(site: Site):
    run = site.run(finish=None)
    site.store.append_log(run.id, "checkout", "cloning\n")
    first = site.get(f"/api/runs/{run.id}/logs").json()
    assert [c["text"] for c in first] == ["cloning\n"]
    site.store.append_log(run.id, "checkout", "checked out abc\n")
    more = site.get(f"/api/runs/{run.id}/logs", params={"after": first[-1]["id"]}).json()
    assert [c["text"] for c in more] == ["checked out abc\n"]
    assert site.get(f"/api/runs/{run.id}/logs", params={"stage": "nope"}).status_code == 404


def test_a_log_is_read_a_page_at_a_time_with_the_next_cursor_in_the_answer(site: Site):
    run = site.run(finish=None)
    for n in range(5):
        site.store.append_log(run.id, "test", f"line {n}\n")
    path = f"/api/runs/{run.id}/logs"

    first = site.get(path, params={"stage": "test", "limit": 2})
    assert [c["text"] for c in first.json()] == ["line 0\n", "line 1\n"]
    assert first.headers["x-next-after"] == str(first.json()[-1]["id"])
    assert first.links["next"]["url"] == (
        f"{path}?stage=test&after={first.json()[-1]['id']}&limit=2")
    second = site.get(first.links["next"]["url"])
    last = site.get(second.links["next"]["url"])
    assert [c["text"] for c in last.json()] == ["line 4\n"]
    assert "link" not in last.headers  # no more for now
    rest = site.get(path, params={"stage": "test", "after": last.headers["x-next-after"]})
    assert rest.json() == [] and rest.headers["x-next-after"] == last.headers["x-next-after"]


def test_a_log_page_holds_500_chunks_unless_asked_and_never_more_than_1000(site: Site):
    run = site.run(finish=None)
    for n in range(501):
        site.store.append_log(run.id, "test", f"line {n}\n")
    path = f"/api/runs/{run.id}/logs"

    assert len(site.get(path).json()) == 500
    assert len(site.get(path, params={"limit": 1000}).json()) == 501
    refused = site.get(path, params={"limit": 1001})
    assert refused.status_code == 422
    assert "limit" in refused.text


def test_an_unknown_run_is_404(site: Site):
    assert site.get("/api/runs/0000dead").status_code == 404


# -- live events -------------------------------------------------------------------------------


def read_events(site: Site, path: str, into: queue.Queue[tuple[str, dict[str, Any]]],
                stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {site.tokens['viewer']}"}
    with httpx.stream("GET", site.ui.url + path, headers=headers,
                      timeout=httpx.Timeout(30, read=20)) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in answer.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                into.put((event, json.loads(line[6:])))


def collect(events: queue.Queue[tuple[str, dict[str, Any]]], count: int,
            seconds: float = 15) -> list[tuple[str, dict[str, Any]]]:
    got: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + seconds
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(events.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            break
    return got


def test_a_runs_stream_carries_its_stage_changes_and_logs_as_they_happen(site: Site):
    run = site.run(finish=None)
    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=read_events, daemon=True,
                              args=(site, f"/api/runs/{run.id}/events", events, stop))
    reader.start()
    time.sleep(1.0)  # the stream is open and subscribed
    other = site.run(finish=None)
    site.store.transition_run(other.id, State.RUNNING, reason="Started")  # not this run's
    site.store.transition_run(run.id, State.RUNNING, reason="Started")
    site.store.transition_stage(run.id, "checkout", State.RUNNING, reason="Started")
    site.store.append_log(run.id, "checkout", "cloning into /work\n")
    got = collect(events, 3)
    stop.set()
    assert [(e, d["stage"], d.get("state"), d.get("text")) for e, d in got] == [
        ("run", "", "running", None),
        ("stage", "checkout", "running", None),
        ("log", "checkout", None, "cloning into /work\n")]
    assert {d["run_id"] for _, d in got} == {run.id}


def test_a_stream_opened_late_replays_what_came_after_the_page(site: Site):
    run = site.run(finish=None)
    since = site.get(f"/runs/{run.id}", headers={"Accept": "text/html"}, who="viewer"
                     ).text.split('data-since="')[1].split('"')[0]
    site.store.transition_run(run.id, State.RUNNING, reason="Started")
    site.store.transition_stage(run.id, "checkout", State.RUNNING, reason="Started")
    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    stop = threading.Event()
    threading.Thread(target=read_events, daemon=True, args=(
        site, f"/api/runs/{run.id}/events?since={since}", events, stop)).start()
    got = collect(events, 2)
    stop.set()
    assert [(e, d["stage"], d["state"]) for e, d in got] == [
        ("run", "", "running"), ("stage", "checkout", "running")]


def test_the_list_stream_tells_of_every_runs_changes(site: Site):
    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    stop = threading.Event()
    threading.Thread(target=read_events, daemon=True,
                     args=(site, "/api/events", events, stop)).start()
    time.sleep(1.0)
    run = site.run(finish=None)
    site.store.transition_run(run.id, State.RUNNING, reason="Started")
    site.store.transition_stage(run.id, "checkout", State.RUNNING, reason="Started")
    got = [(e, d["state"]) for e, d in collect(events, 3) if d["run_id"] == run.id]
    stop.set()
    # Created (queued), started, and its first stage: the list hears of all three.
    assert got == [("run", "queued"), ("run", "running"), ("stage", "running")]


def open_stream(site: Site, client: httpx.Client | None = None,
                headers: dict[str, str] | None = None,
                path: str = "/api/events") -> tuple[httpx.Client, httpx.Response]:
    """A live stream held open (its answer's head read, its body not): close the client
    to hang up."""
    client = client or httpx.Client(base_url=site.ui.url, timeout=httpx.Timeout(30, read=20))
    answer = client.send(client.build_request("GET", path, headers=headers), stream=True)
    return client, answer


def a_streaming_token(site: Site) -> dict[str, str]:
    """The headers of a fresh viewer's token: an identity no other test holds streams of."""
    name = f"streams{time.monotonic_ns() % 10_000_000}"
    accounts = Accounts(site.store)
    accounts.add_user(name, PASSWORD, Role.VIEWER)
    token, _ = accounts.create_token(f"{name}'s", owner=name, role=Role.VIEWER)
    return {"Authorization": f"Bearer {token}"}


def test_an_identity_past_its_streams_gets_429_until_it_closes_one(site: Site):
    headers = a_streaming_token(site)
    with contextlib.ExitStack() as held:
        streams = []
        for path in ["/api/events"] * (STREAMS_PER_IDENTITY - 1) + [
                f"/api/runs/{site.run(finish=None).id}/events"]:
            client, answer = open_stream(site, headers=headers, path=path)
            held.callback(client.close)
            assert answer.status_code == 200, answer.read()
            streams.append(client)

        client, refused = open_stream(site, headers=headers)
        held.callback(client.close)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        message = json.loads(refused.read())["error"]
        assert f"SHIPYARD_UI_STREAMS_PER_IDENTITY={STREAMS_PER_IDENTITY}" in message
        assert "close other tabs or streams" in message
        # Another identity is not held to this one's count.
        client, other = open_stream(site, headers=site.headers("viewer", None))
        held.callback(client.close)
        assert other.status_code == 200

        streams[0].close()  # hang up: its slot is free at once
        closed_at = time.monotonic()
        while True:
            client, again = open_stream(site, headers=headers)
            held.callback(client.close)
            if again.status_code == 200 or time.monotonic() - closed_at > 5:
                break
            client.close()
            time.sleep(0.05)
        assert again.status_code == 200, "a closed stream's slot was not freed within 5 s"


def test_a_signed_in_users_streams_count_together_over_their_sessions(site: Site):
    first, _ = signed_in(site, "vera")
    second, _ = signed_in(site, "vera")
    with contextlib.closing(first), contextlib.closing(second):
        answers = [open_stream(site, client)[1]
                   for client in [first, second] * (STREAMS_PER_IDENTITY // 2)]
        try:
            assert [a.status_code for a in answers] == [200] * STREAMS_PER_IDENTITY
            refused = open_stream(site, second)[1]
            assert refused.status_code == 429
            refused.close()
        finally:
            for answer in answers:
                answer.close()


# -- the API's documentation ---------------------------------------------------------------


def test_the_api_docs_are_served_from_the_package_not_a_cdn(site: Site):
    assert site.get("/docs", who=None).status_code == 303  # to sign in
    assert site.get("/openapi.json", who=None).status_code == 401
    page = site.get("/docs", who="viewer")
    assert page.status_code == 200
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    bundle = site.get("/static/vendor/swagger-ui/swagger-ui-bundle.js", who=None)
    assert bundle.status_code == 200 and len(bundle.content) > 500_000
    schema = site.get("/openapi.json", who="viewer").json()
    assert "/api/runs" in schema["paths"]
    assert "/api/runs/{run_id}/judgment" in schema["paths"]


def test_the_session_key_is_kept_private_in_the_home(site: Site, tmp_path: Path):
    key = next(Path(site.ui.log.parent).glob("ui-secret-key"), None)
    assert key is not None
    assert oct(key.stat().st_mode & 0o777) == "0o600"


# -- the canary report ----------------------------------------------------------------------

def test_a_canary_report_shows_each_metric_its_series_and_the_score(site: Site):
    run = seed_canary_run(site.store)
    client, _ = signed_in(site, "vera")
    with contextlib.closing(client):
        detail = client.get(f"/runs/{run.id}").text
        assert f'href="/runs/{run.id}/canary/canary">canary report</a>' in detail
        page = client.get(f"/runs/{run.id}/canary/canary")
    assert page.status_code == 200
    text = page.text
    assert "gateway v2 against v1" in text
    assert '<span aria-hidden="true">✘</span> 0.0 — fail' in text
    errors = text.split('data-metric="errors"')[1].split("</article>")[0]
    assert '<span aria-hidden="true">▲</span> High' in errors
    assert "critical failure" in errors
    # Measured through Prometheus, each metric linked to its graphs, and cross-checked.
    assert "Measured through <strong>prometheus</strong> (queries 4, seconds 0.05)" in text
    assert ('<a href="http://127.0.0.1:9090/classic/graph?g0.expr=canary" '
            'rel="noopener noreferrer" target="_blank">canary\'s graph</a>') in errors
    assert "<th scope=\"row\">pods</th><td>0.0</td><td>fail</td>" in text
    # Both series drawn: the judge removed the canary's missing latency point (its NaN
    # strategy), so its line has 29 points to the baseline's 30.
    latency = text.split('data-metric="latency"')[1].split("</article>")[0]
    baseline_path = latency.split('class="line baseline"')[0].rsplit('d="', 1)[1]
    canary_path = latency.split('class="line canary"')[0].rsplit('d="', 1)[1]
    assert (baseline_path.count(" L"), canary_path.count(" L")) == (29, 28)
    assert latency.count('<g class="box') == 2
    assert "<td data-label=\"count\">29</td>" in latency  # the canary's 29 points


def test_the_api_gives_a_stages_outputs_and_names_the_stages_it_has(site: Site):
    run = seed_canary_run(site.store)
    outputs = site.get(f"/api/runs/{run.id}/stages/canary/outputs").json()
    assert outputs["verdict"] == "fail"
    assert outputs["report"]["metrics"]["errors"]["classification"] == "High"
    assert len(outputs["report"]["metrics"]["errors"]["canary_values"]) == 30
    missing = site.get(f"/api/runs/{run.id}/stages/chaos/outputs")
    assert missing.status_code == 404
    assert missing.json()["error"].endswith("has no stage 'chaos'; it has canary")
    no_report = site.run()
    page = site.get(f"/runs/{no_report.id}/canary/build", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert "has no canary report at stage &#39;build&#39;" in page.text


# -- DORA ----------------------------------------------------------------------------------


def test_dora_counts_deployments_failures_recovery_lead_time_and_rework(
    site: Site, module_store_url: str,
) -> None:
    """v1 (built from a commit two hours before it shipped), v2, a rollback to v1 an hour
    after v2, then v3: three deployments, one failed and recovered in an hour, one of four
    changes unplanned."""
    app = f"dora{time.monotonic_ns() % 100_000}"
    clock = FrozenClock(datetime.now(UTC) - timedelta(days=3))
    store = Store(open_engine(module_store_url), clock=clock)
    try:
        ledger = Ledger(store)
        ci = store.create_run("ci", [StageSpec("checkout")], trigger="push", app=app)
        committed = clock() - timedelta(hours=2)
        store.transition_stage(ci.id, "checkout", State.RUNNING, reason="Started")
        store.transition_stage(ci.id, "checkout", State.SUCCEEDED, reason="Succeeded",
                               outputs={"committed_at": committed.isoformat()})
        ledger.record_artifact(run_id=ci.id, stage_ref="push", app=app, name=app,
                               tag="v1", digest="sha256:" + "1" * 64)
        for version, kind, digit, hours in (("v1", "deploy", "1", 0), ("v2", "deploy", "2", 1),
                                            ("v1", "rollback", "1", 1), ("v3", "deploy", "3", 5)):
            clock.advance(hours * 3600)
            ledger.record_release(app=app, version=version, environment="prod", kind=kind,
                                  digest="sha256:" + digit * 64, actor="ada", why="test")
        ledger.record_release(app=app, version="v9", environment="staging", kind="deploy",
                              digest="sha256:" + "9" * 64, actor="ada", why="not prod")
    finally:
        store.close()

    report = site.get("/api/dora").json()
    week = report["by_app"][app]["7"]["current"]
    assert (week["deployments"], week["rollbacks"], week["failed_deployments"]) == (3, 1, 1)
    assert week["change_fail_rate"] == pytest.approx(1 / 3)
    assert week["recovery_time_median_seconds"] == 3600
    assert week["lead_time_median_seconds"] == 7200  # only v1's commit is known
    assert week["rework_rate"] == 0.25
    assert report["by_app"][app]["7"]["previous"]["deployments"] == 0
    assert report["by_app"][app]["7"]["trend"]["deployment_frequency"] == "better"

    client, _ = signed_in(site, "vera")
    with contextlib.closing(client):
        page = client.get("/dora").text
    row = page.split(f'data-dora="{app}-7"')[1].split("</tr>")[0]
    assert "3 (0.43/day)" in row and "33%" in row and "(1 of 3)" in row
    assert '<span aria-hidden="true">▲</span> better' in row


# -- release history -----------------------------------------------------------------------


def test_the_release_history_shows_who_and_why_and_diffs_two_versions(site: Site):
    app = f"hist{time.monotonic_ns() % 100_000}"
    ledger = Ledger(site.store)
    manifests = "kind: Deployment\nspec:\n  replicas: {n}\n  image: {app}@sha256:{digit}\n"
    first = ledger.record_release(app=app, version="v1", environment="prod", kind="deploy",
                                  digest="sha256:" + "1" * 64, actor="ada", why="first",
                                  manifests=manifests.format(n=2, app=app, digit="1" * 8))
    second = ledger.record_release(app=app, version="v2", environment="prod", kind="deploy",
                                   digest="sha256:" + "2" * 64, actor="bob", why="faster",
                                   manifests=manifests.format(n=3, app=app, digit="2" * 8))
    back = ledger.record_release(app=app, version="v1", environment="prod", kind="rollback",
                                 digest="sha256:" + "1" * 64, actor="carol",
                                 why="p99 doubled", manifests=first.manifests)
    listed = site.get(f"/api/apps/{app}/releases").json()
    assert [(r["id"], r["kind"], r["actor"], r["why"]) for r in listed] == [
        (back.id, "rollback", "carol", "p99 doubled"), (second.id, "deploy", "bob", "faster"),
        (first.id, "deploy", "ada", "first")]
    assert "manifests" not in listed[0]
    diff = site.get(f"/api/apps/{app}/releases/diff",
                    params={"from": first.id, "to": second.id}).json()["diff"]
    assert "-  replicas: 2" in diff and "+  replicas: 3" in diff
    assert site.get(f"/api/apps/{app}/releases/diff",
                    params={"from": first.id, "to": back.id}).json()["diff"] == []
    assert site.get("/api/apps/other/releases/diff",
                    params={"from": first.id, "to": second.id}).status_code == 404

    client, _ = signed_in(site, "vera")
    with contextlib.closing(client):
        page = client.get(f"/apps/{app}/releases",
                          params={"from": first.id, "to": second.id}).text
    assert '<span class="add">+  replicas: 3</span>' in page
    row = page.split(f'data-release="{back.id}"')[1].split("</tr>")[0]
    assert "↺</span> rollback" in row and "carol" in row and "p99 doubled" in row


# -- the environments board ----------------------------------------------------------------


def test_the_board_shows_releases_with_health_unknown_while_the_cluster_is_away(site: Site):
    app = f"board{time.monotonic_ns() % 100_000}"
    ledger = Ledger(site.store)
    ledger.record_release(app=app, version="v1", environment="staging", kind="deploy",
                          digest="sha256:" + "1" * 64, actor="ada", why="first")
    prod = ledger.record_release(app=app, version="v1", environment="prod", kind="promote",
                                 digest="sha256:" + "1" * 64, actor="ada", why="ok",
                                 slot="v001")
    delivering = site.run(app=app, pipeline="cd", finish=None)
    site.store.transition_stage(delivering.id, "checkout", State.RUNNING, reason="Started")

    board = site.get("/api/environments").json()
    assert board["cluster_error"].startswith("no kubeconfig at ")
    cells = {(c["app"], c["environment"]): c for c in board["cells"]}
    assert cells[app, "prod"]["version"] == "v1"
    assert cells[app, "prod"]["release_id"] == prod.id
    assert cells[app, "prod"]["health"] == "unknown"
    assert board["under_way"][app] == {"run_id": delivering.id, "pipeline": "cd",
                                       "stages": ["checkout"]}

    client, _ = signed_in(site, "vera")
    with contextlib.closing(client):
        page = client.get("/environments").text
    cell = page.split(f'data-cell="{app}/prod"')[1].split("</td>")[0]
    assert "<code>v1</code> <small>v001</small>" in cell
    assert '<span aria-hidden="true">?</span> unknown' in cell
    assert "Health is unknown until it answers" in page
    # The live board fetches itself once more when the server's cluster reads expire.
    assert '<div data-live-board data-cluster-cache="5.0">' in page


# -- the chaos report -------------------------------------------------------------------------


def test_a_chaos_report_shows_the_hypothesis_before_and_after_and_the_kills(site: Site):
    run = seed_chaos_run(site.store)

    client, _ = signed_in(site, "vera")
    with contextlib.closing(client):
        assert f'href="/runs/{run.id}/chaos/chaos">chaos report</a>' in client.get(
            f"/runs/{run.id}").text
        page = client.get(f"/runs/{run.id}/chaos/chaos").text
    assert '<span aria-hidden="true">✘</span> deviated' in page
    assert "<code>gateway-7d9-abcde</code> at 6.2 s" in page
    before = page.split('data-probe="before-errors"')[1].split("</tr>")[0]
    after = page.split('data-probe="after-errors"')[1].split("</tr>")[0]
    assert "at most 0.01" in before and "✔</span> yes" in before
    assert ">0.4<" in after and "✘</span> no" in after
    assert "55 requests, 30 failed" in page
    assert 'class="kill"' in page  # the kill on the timeline


# -- actions (what needs no Prefect; the rest is in test_ui_actions.py) ----------------------


def test_cancelling_a_queued_run_cancels_its_stages_and_is_audited(site: Site):
    run = site.run(finish=None)  # queued, never handed to Prefect
    answer = site.post(f"/api/runs/{run.id}/cancel", json={"reason": "wrong branch"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "cancelled"
    cancelled = site.store.get_run(run.id)
    assert cancelled.state is State.CANCELLED
    assert cancelled.message == "cancelled by dave: wrong branch"
    assert {s.state for s in cancelled.stages} == {State.CANCELLED}
    trail = Ledger(site.store).audit_trail(subject_kind="run", subject_id=run.id)
    assert [(e.actor, e.action, e.details["reason"]) for e in trail] == [
        ("dave", "run.cancel", "wrong branch")]
    again = site.post(f"/api/runs/{run.id}/cancel", json={})
    assert again.status_code == 409
    assert "is cancelled already" in again.json()["error"]


def test_cancelling_from_the_page_asks_why_first(site: Site):
    run = site.run(finish=None)
    client, _ = signed_in(site, "dave")
    with contextlib.closing(client):
        token = csrf_of(client.get(f"/runs/{run.id}").text)
        confirm = client.post(f"/runs/{run.id}/cancel", data={"csrf_token": token})
        assert "Cancel this run?" in confirm.text
        assert site.store.get_run(run.id).state is State.QUEUED
        done = client.post(f"/runs/{run.id}/cancel", data={
            "csrf_token": token, "confirmed": "yes", "comment": "superseded"})
        assert done.status_code == 303
    assert site.store.get_run(run.id).message == "cancelled by dave: superseded"


def test_a_refused_action_from_a_page_shows_why_on_the_page_it_returns_to(site: Site):
    ended = site.run()
    client, _ = signed_in(site, "dave")
    with contextlib.closing(client):
        token = csrf_of(client.get(f"/runs/{ended.id}").text)
        refused = client.post(f"/runs/{ended.id}/cancel", data={
            "csrf_token": token, "confirmed": "yes", "comment": "too late"})
        assert refused.status_code == 303
        assert refused.headers["location"] == f"/runs/{ended.id}"
        page = client.get(f"/runs/{ended.id}").text
        assert '<p class="flash error" role="status">' in page
        assert f"run {ended.short_id} is succeeded already" in page
        answered = client.post(f"/runs/{ended.id}/judgment", data={
            "csrf_token": token, "decision": "approve"})
        assert answered.headers["location"] == f"/runs/{ended.id}"
        assert "not waiting for a judgment" in client.get(f"/runs/{ended.id}").text
    assert site.store.get_run(ended.id).state is State.SUCCEEDED


def test_restarting_a_run_still_going_or_from_a_stage_it_lacks_is_refused(site: Site):
    running = site.run(finish=None)
    refused = site.post(f"/api/runs/{running.id}/restart", json={"from_stage": "build"})
    assert refused.status_code == 409
    assert "restart a run once it has ended" in refused.json()["error"]
    assert "its stages: " in refused.json()["error"]
    cd = site.run(pipeline="cd")
    refused = site.post(f"/api/runs/{cd.id}/restart", json={"from_stage": "canary:data"})
    assert refused.status_code == 409
    stages = ", ".join(s.ref for s in site.store.get_run(cd.id).stages)
    assert f"has no stage 'canary:data'; its stages are: {stages}" in refused.json()["error"]


def test_a_rollback_without_a_reason_is_refused_and_a_viewer_may_not_promote(site: Site):
    refused = site.post("/api/apps/gateway/rollback", json={"why": " "})
    assert refused.status_code == 409
    assert "a rollback needs a reason" in refused.json()["error"]
    assert site.post("/api/apps/gateway/promote", json={}, who="viewer").status_code == 403
    bad = site.post("/api/apps/Not_An_App/promote", json={})
    assert bad.status_code == 422


def test_the_audit_trail_is_for_admins(site: Site):
    run = site.run(finish=None)
    assert site.post(f"/api/runs/{run.id}/cancel", json={"reason": "audit me"}
                     ).status_code == 200
    assert site.get("/api/audit", who="deployer").status_code == 403
    trail = site.get("/api/audit", who="admin",
                     params={"subject_kind": "run", "subject_id": run.id}).json()
    assert [(e["actor"], e["action"], e["details"]["via"]) for e in trail] == [
        ("dave", "run.cancel", "token")]


def test_repeated_wrong_passwords_lock_the_name_out_for_a_while(site: Site):
    Accounts(site.store).add_user("gus", PASSWORD, Role.VIEWER)
    for _ in range(5):
        _, refused = signed_in(site, "gus", password="a wrong password here")
        assert refused.status_code == 401
    client, locked = signed_in(site, "gus")  # the right password, too late
    client.close()
    assert locked.status_code == 429
    assert 55 <= int(locked.headers["retry-after"]) <= 60
    assert "Too many failed sign-ins for &#39;gus&#39;" in locked.text
    client, other = signed_in(site, "vera")  # other names are not affected
    client.close()
    assert other.status_code == 303


# -- Prometheus' scrape ----------------------------------------------------------------------


def test_metrics_are_public_aggregates_read_from_the_store(site: Site):
    from prometheus_client.parser import text_string_to_metric_families

    waiting = site.run(pipeline="promote", finish=None)  # queued, not yet Prefect's

    def queued() -> float | None:
        answer = site.get("/metrics", who=None)
        assert answer.status_code == 200, answer.text
        families = {f.name: f for f in text_string_to_metric_families(answer.text)}
        assert {"shipyard_runs_started", "shipyard_runs_finished",
                "shipyard_stage_duration_seconds", "shipyard_webhook_deliveries",
                "shipyard_hand_over_latency_seconds", "shipyard_queue_depth",
                "shipyard_sweeper_repairs"} <= set(families)
        depth = sum(s.value for s in families["shipyard_queue_depth"].samples
                    if s.labels == {"pipeline": "promote", "waiting_for": "prefect"})
        return depth or None

    # The store is read at most every 10 s: the queued run shows within that.
    assert eventually(queued, seconds=30, what="the queued promote in the queue depth") >= 1
    assert waiting.state is State.QUEUED
