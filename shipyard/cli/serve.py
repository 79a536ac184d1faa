"""Serving the web application: ``shipyard ui``."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from shipyard.cli import app
from shipyard.cli.context import prefect_ui_url, settings, store, use_prefect
from shipyard.cli.errors import console, err_console
from shipyard.cli.permissions import require_private_state
from shipyard.settings import Settings

__all__ = ["serve_ui"]

SHUTDOWN_GRACE_SECONDS = 3


@app.command("ui")
def serve_ui(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535,
                                      help="Port to listen on.")] = 8000,
    insecure_webhook: Annotated[bool, typer.Option(
        "--insecure-webhook", help="For local experiments only: without "
        "SHIPYARD_WEBHOOK_SECRET, take UNSIGNED webhook deliveries instead of refusing "
        "them (anyone who reaches the port can start builds).")] = False,
) -> None:
    """Serve the web application with uvicorn: the pages and the API (sign in with an
    account from `shipyard user add`, or a token from `shipyard token create`), and the
    GitHub webhook (POST /hooks/github) that starts ci on a signed push of an allowed
    repository (SHIPYARD_WEBHOOK_SECRET, SHIPYARD_REPOSITORIES). Runs Prefect has not
    taken yet are handed to it in the background, from startup on, until Ctrl-C."""
    import uvicorn

    from shipyard.store import Accounts
    from ui.app import create_app
    from ui.webhooks import allow_unsigned_deliveries

    config = settings()
    require_private_state(config, "serve the UI")
    if insecure_webhook and config.webhook_secret is not None:
        raise typer.BadParameter("SHIPYARD_WEBHOOK_SECRET is set, so deliveries are "
                                 "verified; drop --insecure-webhook (or unset the secret "
                                 "for a local experiment)", param_hint="--insecure-webhook")
    prefect_api = use_prefect()
    opened = store()  # a bad database URL fails here, in one line, before serving
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    shipyard_log = logging.getLogger("shipyard")
    shipyard_log.addHandler(handler)
    shipyard_log.setLevel(logging.INFO)
    # Importing Prefect puts its console handler on the root logger: it printed every
    # line a second time, in its own format, at 0.25 ms of CPU a line against this
    # handler's 0.02 (a webhook delivery is one line).
    shipyard_log.propagate = False
    for line in _webhook_warnings(config, insecure=insecure_webhook):
        err_console.print(line, markup=False, highlight=False)
    if not Accounts(opened).users() and not config.ui_anonymous_role:
        err_console.print("note: no users yet, so nobody can sign in; add one with "
                          "`shipyard user add NAME --role admin`", markup=False,
                          highlight=False)
    rules = config.trigger_rules
    console.print(f"Shipyard UI on http://{host}:{port} (API docs: /docs; GitHub webhook: "
                  "POST /hooks/github)",
                  markup=False, highlight=False)
    console.print(f"store {opened.url}; Prefect {prefect_api}; pushes start ci on branches "
                  f"{rules.branches.describe()}, tags {rules.tags.describe()}, paths "
                  f"{rules.paths.describe() if rules.paths else 'any'}", markup=False,
                  highlight=False)
    console.print(f"webhook: repositories {', '.join(config.repositories) or 'none'}; "
                  f"clone hosts {', '.join(config.clone_hosts) or 'none'}"
                  f"{' and local repositories' if config.allow_local_repositories else ''}; "
                  f"{config.webhook_rate_per_second:g}/s per address (burst "
                  f"{config.webhook_rate_burst}); a push replayed within "
                  f"{config.webhook_replay_window_seconds:g} s starts nothing; client "
                  f"address from {', '.join(config.trusted_proxies) or 'the socket only'}",
                  markup=False, highlight=False)
    application = create_app(config, store=opened, prefect_ui=prefect_ui_url(),
                             bound_host=host)
    if insecure_webhook:
        allow_unsigned_deliveries(application)
    # uvicorn's own proxy headers off: it would believe X-Forwarded-* from 127.0.0.1, so
    # any local process could pick the address it is counted (and rate-limited) under;
    # the application believes them from SHIPYARD_TRUSTED_PROXIES only.
    # Event streams never end by themselves: on Ctrl-C they get a few seconds to close,
    # rather than holding the shutdown for as long as a browser tab stays open.
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False,
                proxy_headers=False, timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)


def _webhook_warnings(config: Settings, *, insecure: bool) -> list[str]:
    """What the console says at start about a webhook that refuses, or trusts, too much."""
    lines = []
    if config.webhook_secret is None and insecure:
        lines.append("WARNING: --insecure-webhook: SHIPYARD_WEBHOOK_SECRET is not set and "
                     "POST /hooks/github takes UNSIGNED deliveries, so anyone who reaches "
                     "this port can start builds. For local experiments only; every "
                     "delivery is logged as a warning.")
    elif config.webhook_secret is None:
        lines.append("webhook: SHIPYARD_WEBHOOK_SECRET is not set, so POST /hooks/github "
                     "refuses every delivery (401). Set it to the webhook's secret, the same "
                     "as on GitHub's side (e.g. `openssl rand -hex 32`), and restart.")
    if not config.repositories:
        lines.append("webhook: SHIPYARD_REPOSITORIES is not set, so every push is ignored "
                     "(repository not allowed). Set it to the repositories to build: globs "
                     "such as 'acme/*' or 'https://github.com/acme/*'.")
    if config.allow_local_repositories:
        lines.append("WARNING: SHIPYARD_ALLOW_LOCAL_REPOSITORIES is on: webhooks may name "
                     "file:// URLs, local paths and loopback, link-local or private hosts. "
                     "For tests and local experiments only.")
    return lines
