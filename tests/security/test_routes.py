"""Every route of the web application, classified, and every way in refused: against the
real ``shipyard ui`` on uvicorn.

The routes are enumerated from the application itself (FastAPI's own route listing, which
includes the pages and mounts the OpenAPI schema leaves out) and from the schema the
server serves, so a new route fails :func:`test_every_route_is_classified` until it is
added to :data:`ACCESS` with the role it needs, or a reason it needs none. Every route that
changes something is then tried with each bad credential in :func:`bad_credentials`
(missing, wrong, expired, ended, revoked, disabled, too little, a cookie without its
CSRF token): each is refused with 401 or 403 and not one row of the store changes. Every
reading route refuses nobody and the dead credentials, and lets a viewer in.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from pydantic import SecretStr

from shipyard.domain.access import Role
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.settings import Settings
from shipyard.store import Store
from shipyard.store.sessions import Sessions
from tests.security.conftest import PASSWORD, Site, csrf_of
from ui.app import create_app
from ui.auth import SESSION_COOKIE
from ui.headers import CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Public:
    """A route anyone may call, and why that is safe."""

    why: str


VIEWER, DEPLOYER, ADMIN = Role.VIEWER, Role.DEPLOYER, Role.ADMIN

ACCESS: dict[tuple[str, str], Role | Public] = {
    ("MOUNT", "/static"): Public("the pages' own CSS and JavaScript and the vendored "
                                 "Swagger UI: code, no data"),
    ("POST", "/hooks/github"): Public("GitHub's deliveries: refused (401) unless signed with "
                                      "the webhook secret"),
    ("GET", "/healthz"): Public("liveness: says the version and nothing else"),
    ("GET", "/metrics"): Public("Prometheus' scrape: aggregates over names fixed in code, "
                                "no run, repository, user or message; one store reading "
                                "per 10 s however often asked"),
    ("GET", "/login"): Public("the sign-in form"),
    ("POST", "/login"): Public("signs in: needs the form's CSRF token and the password; "
                               "throttled per name and address"),
    ("POST", "/logout"): Public("ends the session of the cookie it is sent, given that "
                                "session's CSRF token; without a session there is nothing "
                                "to end"),
    ("GET", "/"): Public("redirects to /runs"),
    ("GET", "/openapi.json"): VIEWER,
    ("GET", "/docs"): VIEWER,
    # The API
    ("GET", "/api/runs"): VIEWER,
    ("GET", "/api/runs/{run_id}"): VIEWER,
    ("GET", "/api/runs/{run_id}/logs"): VIEWER,
    ("GET", "/api/runs/{run_id}/stages/{stage_ref}/outputs"): VIEWER,
    ("GET", "/api/apps/{app}/releases"): VIEWER,
    ("GET", "/api/apps/{app}/releases/diff"): VIEWER,
    ("GET", "/api/environments"): VIEWER,
    ("GET", "/api/dora"): VIEWER,
    ("GET", "/api/events"): VIEWER,
    ("GET", "/api/runs/{run_id}/events"): VIEWER,
    ("GET", "/api/audit"): ADMIN,
    ("POST", "/api/runs/{run_id}/judgment"): DEPLOYER,
    ("POST", "/api/runs/{run_id}/cancel"): DEPLOYER,
    ("POST", "/api/runs/{run_id}/restart"): DEPLOYER,
    ("POST", "/api/apps/{app}/promote"): DEPLOYER,
    ("POST", "/api/apps/{app}/rollback"): DEPLOYER,
    # The pages
    ("GET", "/runs"): VIEWER,
    ("GET", "/runs/{run_id}/row"): VIEWER,
    ("GET", "/runs/{run_id}"): VIEWER,
    ("GET", "/runs/{run_id}/canary/{stage_ref}"): VIEWER,
    ("GET", "/runs/{run_id}/chaos/{stage_ref}"): VIEWER,
    ("GET", "/environments"): VIEWER,
    ("GET", "/dora"): VIEWER,
    ("GET", "/apps/{app}/releases"): VIEWER,
    ("POST", "/runs/{run_id}/judgment"): DEPLOYER,
    ("POST", "/runs/{run_id}/cancel"): DEPLOYER,
    ("POST", "/runs/{run_id}/restart"): DEPLOYER,
    ("POST", "/apps/{app}/promote"): DEPLOYER,
    ("POST", "/apps/{app}/rollback"): DEPLOYER,
}
"""Every route: the least role it needs, or why anyone may call it."""

MUTATING = ("POST", "PUT", "PATCH", "DELETE")

# What each action is sent: enough that, let through, it would do its work (and change
# the store), so a refusal is the only reason nothing changes.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/runs/{run_id}/judgment"): {"json": {"decision": "approve"}},
    ("POST", "/api/runs/{run_id}/cancel"): {"json": {"reason": "attack"}},
    ("POST", "/api/runs/{run_id}/restart"): {"json": {"from_stage": "build"}},
    ("POST", "/api/apps/{app}/promote"): {"json": {"why": "attack"}},
    ("POST", "/api/apps/{app}/rollback"): {"json": {"why": "attack"}},
    ("POST", "/runs/{run_id}/judgment"): {"data": {"decision": "approve"}},
    ("POST", "/runs/{run_id}/cancel"): {"data": {"confirmed": "yes", "comment": "attack"}},
    ("POST", "/runs/{run_id}/restart"): {"data": {"from_stage": "build"}},
    ("POST", "/apps/{app}/promote"): {"data": {"comment": "attack"}},
    ("POST", "/apps/{app}/rollback"): {"data": {"confirmed": "yes", "comment": "attack"}},
}


QUERIES: dict[tuple[str, str], str] = {
    ("GET", "/api/apps/{app}/releases/diff"): "?from=1&to=2",
}


def enumerated_routes() -> set[tuple[str, str]]:
    """(method, path) of every route of the application, mounts as ("MOUNT", path)."""
    app = create_app(Settings(home=Path("/nonexistent"), ui_secret_key=SecretStr("k" * 48)))
    found = set()
    for context in iter_route_contexts(app.routes):
        methods = context.methods or {"MOUNT"}
        found |= {(method, str(context.path)) for method in methods if method != "HEAD"}
    return found


def test_every_route_is_classified() -> None:
    routes = enumerated_routes()
    unclassified = routes - ACCESS.keys()
    assert not unclassified, (
        f"routes without an access rule: {sorted(unclassified)}; add each to ACCESS in "
        "tests/security/test_routes.py with the role it needs (and a body in BODIES for an "
        "action), or Public(why anyone may call it)")
    assert not ACCESS.keys() - routes, f"ACCESS names routes that are gone: " \
                                       f"{sorted(ACCESS.keys() - routes)}"


def test_the_served_schema_holds_only_classified_routes(site: Site) -> None:
    served = site.request("GET", "/openapi.json", token=site.tokens["viewer"]).json()
    operations = {(method.upper(), path) for path, item in served["paths"].items()
                  for method in item}
    assert operations, "the schema lists no operation"
    assert operations <= ACCESS.keys()
    assert operations <= enumerated_routes()


# -- the world the attempts are made in ---------------------------------------------------------


@dataclass
class Credential:
    """One way of asking: headers and cookies, and the status it must be refused with."""

    name: str
    refused_with: int
    token: str | None = None
    cookie: str | None = None
    csrf: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    unsafe_only: bool = False
    """Refused only for requests that change something (a missing CSRF token)."""

    def headers(self) -> dict[str, str]:
        sent = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if self.csrf is not None:
            sent["X-CSRF-Token"] = self.csrf
        if self.cookie:
            sent["Cookie"] = f"{SESSION_COOKIE}={self.cookie}"
        return sent | self.extra


@dataclass
class World:
    site: Site
    queued_run: str
    ended_run: str
    viewer_session: Credential
    deployer_session: Credential
    client: httpx.Client
    _bad: dict[Role, list[Credential]] = field(default_factory=dict)

    def bad(self, required: Role) -> list[Credential]:
        """:func:`bad_credentials` for ``required``, made once (each costs a user, some a
        sign-in) and tried on every route needing that role."""
        if required not in self._bad:
            self._bad[required] = list(bad_credentials(self, required))
        return self._bad[required]

    def concrete(self, method: str, path: str) -> str:
        run = self.ended_run if path.endswith("/restart") else self.queued_run
        return (path.replace("{run_id}", run).replace("{app}", "gateway")
                .replace("{stage_ref}", "checkout") + QUERIES.get((method, path), ""))

    def send(self, method: str, path: str, credential: Credential,
             body: dict[str, Any] | None = None) -> httpx.Response:
        kwargs = dict(body if body is not None else BODIES.get((method, path), {}))
        if "data" in kwargs and credential.csrf is not None:
            kwargs["data"] = {**kwargs["data"], "csrf_token": credential.csrf}
        # One client without a cookie jar for every attempt: each sends exactly the
        # credential it is given (and a client each would cost more than the request).
        with self.client.stream(method, self.concrete(method, path),
                                headers=credential.headers(), **kwargs) as answer:
            if not answer.headers.get("content-type", "").startswith("text/event-stream"):
                answer.read()  # an event stream let in is left unread: it never ends
            return answer


def csrf_for(site: Site, cookie: str) -> str:
    """The CSRF token the login form gives a browser holding ``cookie``."""
    with httpx.Client(base_url=site.url, cookies={SESSION_COOKIE: cookie}) as client:
        return csrf_of(client)


def session_cookie(client: httpx.Client) -> str:
    return str(client.cookies[SESSION_COOKIE])


def signed_in(site: Site, name: str) -> Credential:
    client = site.signed_in(name)
    return Credential(f"{name}'s session", 0, cookie=session_cookie(client),
                      csrf=csrf_of(client))


@pytest.fixture(scope="module")
def world(site: Site) -> World:
    store = site.store
    graph = [StageSpec("checkout"), StageSpec("build", ("checkout",))]
    queued = store.create_run("ci", graph, trigger="push", app="gateway", actor="ada",
                              repo_url="https://github.com/acme/shop.git", ref="main",
                              commit_sha="a" * 40,
                              parameters={"repo": "https://github.com/acme/shop.git",
                                          "ref": "a" * 40})
    ended = store.create_run("ci", graph, trigger="push", app="gateway", actor="ada",
                             repo_url="https://github.com/acme/shop.git", ref="main",
                             commit_sha="b" * 40,
                             parameters={"repo": "https://github.com/acme/shop.git",
                                         "ref": "b" * 40})
    store.transition_run(ended.id, State.RUNNING, reason="Started")
    for ref in ("checkout", "build"):
        store.transition_stage(ended.id, ref, State.RUNNING, reason="Started")
        store.transition_stage(ended.id, ref, State.SUCCEEDED, reason="Succeeded")
    store.finish_run(ended.id)
    client = site.browser()
    client.cookies = NoCookies()
    return World(site, queued.id, ended.id, signed_in(site, "vera"), signed_in(site, "dave"),
                 client)


class NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing a server sets."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


def bad_credentials(world: World, required: Role) -> Iterator[Credential]:
    """Every way in that must fail for a route needing ``required``, freshly made: each
    dead one was alive and able (a deployer's) until it died."""
    site = world.site
    yield Credential("no credential", 401)
    yield Credential("an unknown token", 401, token="shy_" + secrets.token_urlsafe(32))
    yield Credential("no token at all", 401, token="not-a-token")
    alive = site.user("alive", required)  # stays able: only what it held dies
    token, token_id = site.token(alive, required)
    site.accounts.revoke_token(token_id)
    yield Credential("a revoked token", 401, token=token)
    yield Credential("an unknown session cookie", 401, cookie=secrets.token_urlsafe(32),
                     csrf="0" * 64)
    past = datetime.now(UTC) - timedelta(hours=13)
    cookie, _ = Sessions(Store(site.store.engine, clock=lambda: past)).start(
        alive, lifetime=timedelta(hours=12))
    yield Credential("an expired session", 401, cookie=cookie, csrf=csrf_for(site, cookie))
    ended = signed_in(site, alive)
    world.client.post("/logout", data={"csrf_token": ended.csrf},
                      headers={"Cookie": f"{SESSION_COOKIE}={ended.cookie}"})
    yield Credential("a signed-out session", 401, cookie=ended.cookie, csrf=ended.csrf)
    name = site.user("repassword", required)
    before = signed_in(site, name)
    site.accounts.set_user(name, password=PASSWORD + " but new")
    yield Credential("a session from before a password change", 401, cookie=before.cookie,
                     csrf=before.csrf)
    name = site.user("disabled", required)
    disabled = signed_in(site, name)
    token, _ = site.token(name, required)
    site.accounts.set_user(name, disabled=True)
    yield Credential("a disabled user's token", 401, token=token)
    yield Credential("a session of a user disabled since", 401, cookie=disabled.cookie,
                     csrf=disabled.csrf)
    if required.rank > Role.VIEWER.rank:
        below = Role.VIEWER if required is Role.DEPLOYER else Role.DEPLOYER
        yield Credential(f"a {below.value}'s token", 403, token=site.tokens[below.value])
        owner = site.user("demoted", required)
        token, _ = site.token(owner, required)
        site.accounts.set_user(owner, role=below)
        yield Credential(f"a {required.value} token of an owner demoted to {below.value}",
                         403, token=token)
        lesser = world.viewer_session if below is Role.VIEWER else world.deployer_session
        yield Credential(f"a {below.value}'s session with its CSRF token", 403,
                         cookie=lesser.cookie, csrf=lesser.csrf)
    able = signed_in(site, "alice") if required is Role.ADMIN else world.deployer_session
    yield Credential("a session without its CSRF token", 403, cookie=able.cookie,
                     unsafe_only=True)
    yield Credential("a session with another session's CSRF token", 403, cookie=able.cookie,
                     csrf=world.viewer_session.csrf, unsafe_only=True)


def routes_where(predicate: Any) -> list[tuple[str, str]]:
    return sorted(key for key, rule in ACCESS.items() if predicate(key, rule))


MUTATING_ROUTES = routes_where(lambda key, rule: key[0] in MUTATING and isinstance(rule, Role))
READING_ROUTES = routes_where(lambda key, rule: key[0] == "GET" and isinstance(rule, Role))


def test_every_mutating_route_refuses_every_bad_credential_and_changes_nothing(
        world: World) -> None:
    assert len(MUTATING_ROUTES) >= 10
    refusals: list[str] = []
    needed = {rule for r in MUTATING_ROUTES if isinstance(rule := ACCESS[r], Role)}
    for required in sorted(needed, key=lambda role: role.rank):
        credentials = world.bad(required)  # made before the snapshot
        before = world.site.snapshot()
        for method, path in MUTATING_ROUTES:
            if ACCESS[method, path] is not required:
                continue
            for credential in credentials:
                answer = world.send(method, path, credential)
                if answer.status_code != credential.refused_with:
                    refusals.append(f"{method} {path} with {credential.name}: "
                                    f"{answer.status_code} {answer.text[:200]}")
        assert world.site.snapshot() == before, "a refused request changed the store"
    assert not refusals, "not refused as they must be:\n" + "\n".join(refusals)


def test_the_same_actions_go_through_with_a_good_credential(world: World) -> None:
    """The control: what the bad credentials were refused is reachable, so the refusal
    above is the credential's doing (a 4xx here comes from the action itself)."""
    token = Credential("the deployer's token", 0, token=world.site.tokens["deployer"])
    for method, path in MUTATING_ROUTES:
        credential = world.deployer_session if not path.startswith("/api/") else token
        if path.endswith("/cancel"):
            continue  # it would end the queued run the other attempts aim at
        answer = world.send(method, path, credential)
        assert answer.status_code not in (401, 403), (method, path, answer.text)
    cancelled = world.send("POST", "/api/runs/{run_id}/cancel", token)
    assert cancelled.status_code == 200, cancelled.text
    assert world.site.store.get_run(world.queued_run).state is State.CANCELLED


def is_api(path: str) -> bool:
    return path.startswith("/api/") or path == "/openapi.json"


def test_every_reading_route_needs_a_live_credential_with_the_role(world: World) -> None:
    failures: list[str] = []
    for method, path in READING_ROUTES:
        required = ACCESS[method, path]
        assert isinstance(required, Role)
        for credential in world.bad(required):
            if credential.unsafe_only:
                continue  # a read needs no CSRF token
            answer = world.send(method, path, credential, body={})
            refused = answer.status_code == credential.refused_with
            if credential.refused_with == 401 and not is_api(path) and not refused:
                # A page sends a browser without a live session to sign in.
                refused = (answer.status_code == 303
                           and answer.headers["location"].startswith("/login?next="))
            if not refused:
                failures.append(f"GET {path} with {credential.name}: {answer.status_code}")
    assert not failures, "\n".join(failures)


def test_a_viewer_may_read_every_reading_route(world: World) -> None:
    viewer = Credential("the viewer's token", 0, token=world.site.tokens["viewer"])
    for method, path in READING_ROUTES:
        if ACCESS[method, path] is not VIEWER:
            continue
        answer = world.send(method, path, viewer, body={})
        # 404 for a report or release the store does not have: past the door all the same.
        assert answer.status_code in (200, 404), (path, answer.status_code)
    audit = world.send("GET", "/api/audit", Credential(
        "the admin's token", 0, token=world.site.tokens["admin"]), body={})
    assert audit.status_code == 200


# -- headers, the Host allow-list, the docs ---------------------------------------------------


def test_every_kind_of_answer_carries_the_security_headers(world: World) -> None:
    site = world.site
    viewer = {"Authorization": f"Bearer {site.tokens['viewer']}"}
    answers = {
        "a page": site.request("GET", "/login"),
        "an API answer": site.request("GET", "/api/runs", headers=viewer),
        "an API refusal": site.request("GET", "/api/runs"),
        "a redirect": site.request("GET", "/runs"),
        "a static file": site.request("GET", "/static/app.js"),
        "a missing static file": site.request("GET", "/static/nope.js"),
        "a missing run": site.request("GET", "/api/runs/0000dead", headers=viewer),
        "an error page": site.request("GET", "/runs?status=sleeping",
                                      headers=viewer | {"Accept": "text/html"}),
        "the docs": site.request("GET", "/docs", headers=viewer),
        "a refused webhook": site.request("POST", "/hooks/github", content=b"{}",
                                          headers={"X-GitHub-Event": "ping"}),
        "a refused Host": site.request("GET", "/healthz", headers={"Host": "evil.example"}),
    }
    with httpx.stream("GET", site.url + "/api/events", headers=viewer, timeout=30) as stream:
        answers["an event stream"] = stream
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "a page": 200, "an API answer": 200, "an API refusal": 401, "a redirect": 303,
        "a static file": 200, "a missing static file": 404, "a missing run": 404,
        "an error page": 422, "the docs": 200, "a refused webhook": 401,
        "a refused Host": 400, "an event stream": 200}
    for name, answer in answers.items():
        headers = answer.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, name
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src" not in CONTENT_SECURITY_POLICY  # default-src 'self' covers it
        assert headers["x-frame-options"] == "DENY", name
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["referrer-policy"] == "same-origin", name


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<style|<[^>]+\sstyle\s*=", re.IGNORECASE)


def test_no_page_needs_what_the_policy_forbids(world: World) -> None:
    """No inline script, event handler attribute or inline style on any page the UI
    serves: the CSP (scripts and styles from this origin only) breaks none of them."""
    client = world.site.signed_in("dave")
    client.headers["Accept"] = "text/html"
    paths = ["/login", "/runs", f"/runs/{world.ended_run}", f"/runs/{world.queued_run}",
             "/environments", "/dora", "/apps/gateway/releases", "/docs", "/runs/nope"]
    for path in paths:
        html = client.get(path).text
        assert "<html" in html, path
        for pattern in (INLINE_SCRIPT, INLINE_HANDLER, INLINE_STYLE):
            assert not pattern.search(html), (path, pattern.search(html))


def test_only_allowed_host_names_are_answered(site: Site) -> None:
    port = site.url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}",
                 "ci.example.test", f"CI.Example.Test:{port}"):
        assert site.request("GET", "/healthz", headers={"Host": host}).status_code == 200, host
    # DNS rebinding: the attacker's name resolved to this machine.
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example",
                 "example.test", "xci.example.test"):
        refused = site.request("GET", "/healthz", headers={"Host": host})
        assert refused.status_code == 400, host
        assert refused.text == "Invalid host header"
    with_cookie = site.signed_in("vera")
    assert with_cookie.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400


def test_the_api_docs_and_schema_need_a_viewer(site: Site) -> None:
    page = site.request("GET", "/docs")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/docs"
    schema = site.request("GET", "/openapi.json")
    assert schema.status_code == 401
    assert "shipyard token create" in schema.json()["error"]
    viewer = site.signed_in("vera")
    docs = viewer.get("/docs")
    assert docs.status_code == 200
    assert '<script src="http://127.0.0.1:' in docs.text
    assert "/static/docs.js" in docs.text and "swagger-ui-bundle.js" in docs.text
    assert "/api/runs" in viewer.get("/openapi.json").json()["paths"]
