"""Serving the web application: ``shipyard ui``."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from shipyard.cli import app
from shipyard.cli.context import prefect_ui_url, settings, store, use_prefect
from shipyard.cli.errors import console, err_console

__all__ = ["serve_ui"]


@app.command("ui")
def serve_ui(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535,
                                      help="Port to listen on.")] = 8000,
) -> None:
    """Serve the web application with uvicorn: the pages and the API (sign in with an
    account from `shipyard user add`, or a token from `shipyard token create`), and the
    GitHub webhook (POST /hooks/github) that starts ci on a push. Runs Prefect has not
    taken yet are handed to it in the background, from startup on, until Ctrl-C."""
    import uvicorn

    from shipyard.store import Accounts
    from ui.app import create_app

    prefect_api = use_prefect()
    config = settings()
    opened = store()  # a bad database URL fails here, in one line, before serving
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    shipyard_log = logging.getLogger("shipyard")
    shipyard_log.addHandler(handler)
    shipyard_log.setLevel(logging.INFO)
    if config.webhook_secret is None:
        err_console.print("warning: SHIPYARD_WEBHOOK_SECRET is not set, so webhook "
                          "deliveries are accepted without a signature", markup=False,
                          highlight=False)
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
    # proxy_headers off: the app believes X-Forwarded-* only from SHIPYARD_UI_TRUSTED_PROXIES.
    uvicorn.run(create_app(config, store=opened, prefect_ui=prefect_ui_url(), bound_host=host),
                host=host, port=port, log_level="warning", access_log=False, proxy_headers=False)
