"""Sign-in sessions are records in the store, and they end when they must: signing out, a
new password, disabling the user, and (for API tokens) revoking. Each is made the way an
admin makes it, from another process than the ui (the CLI, or this test through the
store), and each closes the event streams it opened within seconds, against the real
``shipyard ui``.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from shipyard.domain.access import Role
from shipyard.domain.pipeline import StageSpec
from shipyard.domain.states import State
from shipyard.store import Store
from shipyard.store.sessions import Sessions
from tests.security.conftest import PASSWORD, Site, csrf_of
from tests.support.stack import PROJECT, SHIPYARD
from ui.auth import SESSION_COOKIE

pytestmark = pytest.mark.integration

CLOSES_WITHIN = 5.0
"""Seconds from a revocation to its streams' end: the ui checks every second."""


@dataclass
class Stream:
    """An event stream read in a thread: its events as they came, and when it ended."""

    headers: dict[str, str]
    events: list[tuple[float, str]] = field(default_factory=list)
    ended_at: float | None = None
    opened: threading.Event = field(default_factory=threading.Event)
    status: int = 0

    def read(self, url: str) -> None:
        try:
            with httpx.stream("GET", url + "/api/events", headers=self.headers,
                              timeout=httpx.Timeout(30, read=60)) as answer:
                self.status = answer.status_code
                self.opened.set()
                event = ""
                for line in answer.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((time.monotonic(), event))
        finally:
            self.ended_at = time.monotonic()
            self.opened.set()

    def names(self) -> list[str]:
        return [name for _, name in self.events]

    def wait_ended(self, seconds: float = 15) -> float:
        deadline = time.monotonic() + seconds
        while self.ended_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.ended_at is not None, f"the stream is still open after {seconds} s"
        return self.ended_at


def open_stream(site: Site, headers: dict[str, str]) -> Stream:
    stream = Stream(headers)
    threading.Thread(target=stream.read, args=(site.url,), daemon=True).start()
    assert stream.opened.wait(15)
    assert stream.status == 200
    time.sleep(1.5)  # subscribed, and past one check of its credential
    return stream


def cookie_of(client: httpx.Client) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"}


def shipyard(site: Site, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*SHIPYARD, *args], env=site.env | env, cwd=PROJECT, text=True,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done


def still_live(site: Site, stream: Stream) -> bool:
    """Whether ``stream`` still carries events: one is written to the store and looked for."""
    run = site.store.create_run("ci", [StageSpec("checkout")], trigger="manual")
    site.store.transition_run(run.id, State.RUNNING, reason="Started")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if stream.events and stream.events[-1][1] == "run" and stream.ended_at is None:
            return True
        time.sleep(0.1)
    return False


def test_the_cookie_holds_a_random_token_and_the_store_only_its_hash(site: Site) -> None:
    client = site.browser()
    answer = client.post("/login", data={"username": "vera", "password": PASSWORD,
                                         "csrf_token": csrf_of(client)})
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    token = client.cookies[SESSION_COOKIE]
    assert len(token) == 43  # 256 bits, URL-safe base64
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain HTTP, and no trusted proxy said otherwise
    with site.store.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM ui_sessions")).all()
    assert hashlib.sha256(token.encode()).hexdigest() in {row.id_hash for row in rows}
    assert not any(token in map(str, row) for row in rows)


def test_a_forwarded_proto_from_an_untrusted_client_is_ignored(site: Site) -> None:
    client = site.browser()
    answer = client.post("/login", headers={"X-Forwarded-Proto": "https"},
                         data={"username": "vera", "password": PASSWORD,
                               "csrf_token": csrf_of(client)})
    assert answer.status_code == 303
    assert "Secure" not in answer.headers["set-cookie"]


def test_signing_in_again_makes_a_new_token(site: Site) -> None:
    client = site.browser()
    planted = client.get("/login").cookies[SESSION_COOKIE]  # e.g. set by an attacker
    client.post("/login", data={"username": "vera", "password": PASSWORD,
                                "csrf_token": csrf_of(client)})
    assert client.cookies[SESSION_COOKIE] != planted
    with httpx.Client(base_url=site.url) as attacker:
        refused = attacker.get("/api/runs", headers={"Cookie": f"{SESSION_COOKIE}={planted}"})
    assert refused.status_code == 401


def test_signing_out_ends_every_session_of_the_user_and_their_open_streams(
        site: Site) -> None:
    name = site.user("out", Role.VIEWER)
    client, elsewhere = site.signed_in(name), site.signed_in(name)
    other = site.signed_in("vera")  # another user's session, which lives on
    stream = open_stream(site, cookie_of(client))
    forgotten = open_stream(site, cookie_of(elsewhere))
    kept = open_stream(site, cookie_of(other))
    asked = time.monotonic()
    assert client.post("/logout", data={"csrf_token": csrf_of(client)}).status_code == 303
    assert stream.wait_ended() - asked < CLOSES_WITHIN
    assert forgotten.wait_ended() - asked < CLOSES_WITHIN
    assert stream.names()[-1] == "ended"
    assert elsewhere.get("/api/runs").status_code == 401
    assert client.get("/runs").status_code == 303  # the browser dropped the cookie
    # and the server the session: the old cookie, kept by a thief, opens nothing.
    assert site.request("GET", "/api/runs", headers=stream.headers).status_code == 401
    assert still_live(site, kept)
    assert other.post("/logout", data={"csrf_token": csrf_of(other)}).status_code == 303
    kept.wait_ended()


def test_a_new_password_from_the_cli_ends_every_session_and_stream(site: Site) -> None:
    name = site.user("newpass", Role.VIEWER)
    laptop, phone = site.signed_in(name), site.signed_in(name)
    stream = open_stream(site, cookie_of(phone))
    done = shipyard(site, "user", "set", name, "--password",
                    SHIPYARD_PASSWORD=PASSWORD + " and more")
    changed = time.monotonic()
    assert f"{name} is signed out everywhere" in done.stdout
    assert stream.wait_ended() - changed < CLOSES_WITHIN
    for browser in (laptop, phone):
        assert browser.get("/api/runs").status_code == 401
    assert site.signed_in(name, PASSWORD + " and more").get("/api/runs").status_code == 200


def test_disabling_a_user_ends_their_sessions_and_streams_for_good(site: Site) -> None:
    name = site.user("disable", Role.VIEWER)
    browser = site.signed_in(name)
    token, _ = site.token(name, Role.VIEWER)
    by_cookie = open_stream(site, cookie_of(browser))
    by_token = open_stream(site, {"Authorization": f"Bearer {token}"})
    site.accounts.set_user(name, disabled=True)
    changed = time.monotonic()
    assert by_cookie.wait_ended() - changed < CLOSES_WITHIN
    assert by_token.wait_ended() - changed < CLOSES_WITHIN
    assert browser.get("/api/runs").status_code == 401
    site.accounts.set_user(name, disabled=False)
    assert browser.get("/api/runs").status_code == 401  # the session stays ended
    assert site.request("GET", "/api/runs", token=token).status_code == 200  # tokens return


def test_revoking_a_token_closes_its_stream_and_no_other(site: Site) -> None:
    name = site.user("revoke", Role.VIEWER)
    token, token_id = site.token(name, Role.VIEWER)
    other, other_id = site.token(name, Role.VIEWER)
    revoked = open_stream(site, {"Authorization": f"Bearer {token}"})
    kept = open_stream(site, {"Authorization": f"Bearer {other}"})
    site.accounts.revoke_token(token_id)  # as `shipyard token revoke` does
    done = time.monotonic()
    assert revoked.wait_ended() - done < CLOSES_WITHIN
    assert revoked.names()[-1] == "ended"
    assert site.request("GET", "/api/runs", token=token).status_code == 401
    assert still_live(site, kept)
    site.accounts.revoke_token(other_id)
    kept.wait_ended()


def test_an_expired_session_is_refused_and_its_row_pruned_at_the_next_sign_in(
        site: Site) -> None:
    name = site.user("expires", Role.VIEWER)
    past = datetime.now(UTC) - timedelta(hours=13)
    token, record = Sessions(Store(site.store.engine, clock=lambda: past)).start(
        name, lifetime=timedelta(hours=12))
    assert site.request("GET", "/api/runs",
                        headers={"Cookie": f"{SESSION_COOKIE}={token}"}).status_code == 401
    site.signed_in("vera")
    with site.store.engine.connect() as connection:
        left = connection.execute(text("SELECT id_hash FROM ui_sessions WHERE id_hash = :h"),
                                  {"h": record.digest}).all()
    assert left == []
