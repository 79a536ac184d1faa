"""A ui behind a trusted reverse proxy, with anonymous viewing on: what the proxy says of
the client (its address, that it came over HTTPS) is believed, and anonymous visitors read
everything, the API's documentation too, but change nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest

from shipyard.domain.pipeline import StageSpec
from tests.security.conftest import PASSWORD, Site, csrf_of, running_site
from tests.security.test_routes import ACCESS, BODIES, MUTATING

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(tmp_path_factory, "proxied-ui", SHIPYARD_UI_ANONYMOUS_ROLE="viewer",
                      SHIPYARD_TRUSTED_PROXIES="127.0.0.1",
                      SHIPYARD_UI_STREAMS_PER_IDENTITY="2") as site:
        yield site


def test_anonymous_viewers_read_the_pages_the_api_and_its_docs(proxied: Site) -> None:
    for path in ("/runs", "/api/runs", "/docs", "/openapi.json", "/environments"):
        assert proxied.request("GET", path).status_code == 200, path
    assert proxied.request("GET", "/api/audit").status_code == 403  # admins only


def test_anonymous_viewers_change_nothing(proxied: Site) -> None:
    run = proxied.store.create_run("ci", [StageSpec("checkout")], trigger="manual").id
    before = proxied.snapshot()
    for (method, path), _ in sorted(ACCESS.items()):
        if method not in MUTATING or path in ("/hooks/github", "/login", "/logout"):
            continue
        concrete = path.replace("{run_id}", run).replace("{app}", "gateway")
        answer = proxied.request(method, concrete, **BODIES.get((method, path), {}))
        assert answer.status_code == 403, (path, answer.status_code)
    assert proxied.snapshot() == before


def sign_in(site: Site, name: str, password: str, **headers: str) -> int:
    client = site.browser()
    csrf = csrf_of(client)
    answer = client.post("/login", headers=headers, data={
        "username": name, "password": password, "csrf_token": csrf})
    return answer.status_code


def test_a_proxy_saying_https_makes_the_cookie_secure(proxied: Site) -> None:
    client = proxied.browser()
    csrf = csrf_of(client)
    answer = client.post("/login", headers={"X-Forwarded-Proto": "https"},
                         data={"username": "vera", "password": PASSWORD, "csrf_token": csrf})
    assert answer.status_code == 303
    assert "Secure" in answer.headers["set-cookie"]
    plain = proxied.browser()
    answer = plain.post("/login", data={"username": "vera", "password": PASSWORD,
                                        "csrf_token": csrf_of(plain)})
    assert "Secure" not in answer.headers["set-cookie"]


def test_one_address_trying_many_names_is_locked_out_by_its_address(proxied: Site) -> None:
    sprayer = {"X-Forwarded-For": "203.0.113.9"}
    for i in range(20):
        assert sign_in(proxied, f"user{i}", "a guess at a password", **sprayer) == 401
    client = proxied.browser()
    locked = client.post("/login", headers=sprayer, data={
        "username": "vera", "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert locked.status_code == 429  # even with the right password: checked first
    assert "Too many failed sign-ins from your address" in locked.text
    assert 55 <= int(locked.headers["retry-after"]) <= 60
    assert sign_in(proxied, "vera", PASSWORD, **{"X-Forwarded-For": "203.0.113.10"}) == 303


def test_anonymous_streams_are_counted_by_the_address_the_proxy_names(proxied: Site) -> None:
    def stream(held: contextlib.ExitStack, address: str) -> int:
        client = held.enter_context(httpx.Client(base_url=proxied.url, timeout=30))
        answer = client.send(client.build_request(
            "GET", "/api/events", headers={"X-Forwarded-For": address}), stream=True)
        held.callback(answer.close)
        return answer.status_code

    with contextlib.ExitStack() as held:
        assert [stream(held, "203.0.113.20") for _ in range(3)] == [200, 200, 429]
        assert stream(held, "203.0.113.21") == 200
        # One IPv6 host holds its whole /64: two of its addresses are one viewer.
        assert [stream(held, address) for address in
                ("2001:db8:7::1", "2001:db8:7::2", "2001:db8:7::3")] == [200, 200, 429]
