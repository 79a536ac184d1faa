"""The web UI in a real browser: Debian's Chromium driven by Playwright (never a browser
download), against ``shipyard ui`` on the stack's store, Prefect server and worker.

A user signs in, watches a pipeline appear in the run list and advance on its page without
reloading, and approves its manual judgment; the real flow goes on and the page shows it
succeed. Every page visited is saved as a screenshot, at desktop and phone width, into
``SHIPYARD_SCREENSHOTS`` (default ``build/screenshots`` in the checkout).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

from shipyard.adapters.debian import DebianError, apt_install
from shipyard.domain.access import Role
from shipyard.domain.states import State
from shipyard.store import Accounts, Ledger, Store
from tests.support.judgment_flow import register_deployments, start_probe
from tests.support.reports import seed_canary_run, seed_chaos_run
from tests.support.stack import PROJECT, Stack, in_ci
from tests.support.webhooks import Ui, serve_ui

pytestmark = pytest.mark.integration

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "browser test password"
SCREENSHOTS = Path(os.environ.get("SHIPYARD_SCREENSHOTS", PROJECT / "build" / "screenshots"))
# As the machine's notes advise: without these, Chromium calls home at start and is
# refused by the closed network, many times over.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def in_thread(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end in a thread of its own: Playwright's sync API keeps an
    event loop running in this one, where asyncio.run refuses to start another. The
    thread gets this one's context: Prefect's settings (the stack's API URL) live there."""
    context = contextvars.copy_context()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(context.run, asyncio.run, work).result()


def ensure_chromium() -> None:
    """Debian's Chromium, installed when missing (as root); skipped elsewhere, never in
    CI."""
    if Path(CHROMIUM).exists():
        return
    try:
        apt_install(["chromium"], lambda _: None)
    except DebianError as err:
        if in_ci():
            pytest.fail(f"Chromium is needed for the browser tests: {err}")
        pytest.skip(f"no {CHROMIUM} and it cannot be installed here: {err}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def site(prefect_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """``shipyard ui`` on the stack's store and Prefect, with a deployer to sign in as."""
    in_thread(register_deployments())
    store = Store.open(prefect_stack.store_url)
    try:
        accounts = Accounts(store)
        if accounts.user("dora") is None:
            accounts.add_user("dora", PASSWORD, Role.DEPLOYER)
    finally:
        store.close()
    env = {**prefect_stack.env, "PREFECT_API_URL": prefect_stack.api_url,
           "PREFECT_UI_URL": prefect_stack.api_url.removesuffix("/api")}
    with serve_ui(env, tmp_path_factory.mktemp("browser-ui")) as ui:
        yield ui


@pytest.fixture
def page(browser: Any, site: Ui) -> Iterator[Any]:
    """A page; whatever the Content Security Policy refused on it fails the test (the
    pages and Swagger UI must work with scripts and styles from this origin only)."""
    context = browser.new_context(viewport=DESKTOP, base_url=site.url)
    opened = context.new_page()
    refused: list[str] = []
    opened.on("console", lambda message: refused.append(message.text)
              if "Content Security Policy" in message.text else None)
    try:
        yield opened
    finally:
        context.close()
    assert refused == [], f"the CSP refused: {refused}"


def shoot(page: Any, name: str) -> None:
    """Save the page at desktop width and at phone width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def sign_in(page: Any, next_path: str = "/runs") -> None:
    page.goto(next_path)
    assert page.url.endswith("/login?next=" + quote(next_path, safe="/"))
    shoot(page, "login")
    page.get_by_label("Username").fill("dora")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{next_path}")


def test_a_pipeline_followed_live_and_its_judgment_approved_in_the_browser(
    page: Any, prefect_stack: Stack,
) -> None:
    from playwright.sync_api import expect

    sign_in(page, "/runs?pipeline=judgment-probe")
    store = Store.open(prefect_stack.store_url)
    try:
        run = in_thread(start_probe(store, subject="browser → prod"))
        # The run appears in the open list without a reload, with its state as a word.
        row = page.locator(f'tr[data-run="{run.id}"]')
        expect(row).to_be_visible(timeout=30_000)
        expect(row.locator("[data-state-badge]")).to_contain_text("Waiting", timeout=120_000)
        shoot(page, "runs")

        row.get_by_role("link").click()
        page.wait_for_url(f"**/runs/{run.id}")
        judgment = page.locator("section.judgment")
        expect(judgment).to_be_visible()
        expect(page.locator('[data-stage-node="prepare"]')).to_have_class("node s-succeeded")
        expect(page.locator('[data-stage-row="prepare"] [data-state-badge]')
               ).to_have_text("✔ Succeeded")
        shoot(page, "run-waiting")

        # Keyboard only: focus the comment, type, tab to Approve and press it.
        page.get_by_label("Comment (required to reject)").focus()
        page.keyboard.type("canary clean, chaos passed")
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent")
        assert "Approve" in focused
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_contain_text("Approved")

        # The real flow goes on; the page follows it without a reload.
        page.evaluate("window.__notReloaded = true")
        expect(page.locator('[data-stage-row="ship"] [data-state-badge]')
               ).to_have_text("✔ Succeeded", timeout=120_000)
        expect(page.locator("[data-run-state] [data-state-badge]")
               ).to_have_text("✔ Succeeded", timeout=60_000)
        assert page.evaluate("window.__notReloaded") is True
        expect(page.locator('[data-log-stage="ship"] pre')).to_contain_text("shipping")
        shoot(page, "run-succeeded")
        saved = {p.name for p in SCREENSHOTS.glob("*.png")}
        assert {"login.png", "runs.png", "runs-phone.png", "run-waiting.png",
                "run-succeeded.png", "run-succeeded-phone.png"} <= saved

        final = store.get_run(run.id)
        assert final.state is State.SUCCEEDED
        assert final.stage("judgment").message == (
            "browser → prod: approved by dora: canary clean, chaos passed")
        trail = [(e.actor, e.action, e.details.get("route"))
                 for e in Ledger(store).audit_trail(subject_id=run.id)]
        # Answered from the page: the signed answer says it came through a UI session.
        assert trail == [("dora", "judgment.approve", "ui-session")]
    finally:
        store.close()


def test_every_page_renders_and_opens_the_canary_report_from_its_run(
    page: Any, prefect_stack: Stack,
) -> None:
    """Each page, at desktop and phone width: the canary and chaos reports reached by
    their links from a run, the environments board, an app's releases with a diff, DORA."""
    from playwright.sync_api import expect

    store = Store.open(prefect_stack.store_url)
    try:
        canary = seed_canary_run(store)
        chaos = seed_chaos_run(store)
        ledger = Ledger(store)
        first = ledger.record_release(app="gateway", version="v1", environment="prod",
                                      kind="deploy", digest="sha256:" + "1" * 64, actor="ada",
                                      why="first", manifests="replicas: 2\n", slot="v001")
        second = ledger.record_release(app="gateway", version="v2", environment="prod",
                                       kind="deploy", digest="sha256:" + "2" * 64,
                                       actor="bob", why="faster", manifests="replicas: 3\n",
                                       slot="v002")
    finally:
        store.close()

    sign_in(page, f"/runs/{canary.id}")
    page.get_by_role("link", name="canary report").click()
    page.wait_for_url(f"**/runs/{canary.id}/canary/canary")
    expect(page.get_by_role("heading", level=1)).to_contain_text("gateway v2 against v1")
    expect(page.locator('[data-metric="errors"] h3')).to_contain_text("High")
    shoot(page, "canary-report")

    page.goto(f"/runs/{chaos.id}")
    page.get_by_role("link", name="chaos report").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("deviated")
    shoot(page, "chaos-report")

    page.goto("/environments")
    expect(page.locator('[data-cell="gateway/prod"]')).to_contain_text("v2")
    shoot(page, "environments")

    page.goto(f"/apps/gateway/releases?from={first.id}&to={second.id}")
    expect(page.locator("pre.diff .add")).to_contain_text("+replicas: 3")
    shoot(page, "releases")

    page.goto("/dora")
    expect(page.locator('[data-dora="gateway-7"]')).to_be_visible()
    shoot(page, "dora")

    # Keyboard: the first Tab reaches the skip link, which jumps to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"


def test_the_api_docs_render_from_the_vendored_swagger_ui(page: Any) -> None:
    from playwright.sync_api import expect

    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    sign_in(page, "/docs")  # the API's description is for those who may use it
    expect(page.get_by_text("/api/runs/{run_id}/judgment")).to_be_visible(timeout=30_000)
    shoot(page, "api-docs")
    outside = [url for url in requests if not url.startswith(page.url.split("/docs")[0])]
    assert outside == []
