"""What every command needs: the settings, the store, the Prefect server's address and
auth string."""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from shipyard.adapters.prefect_server import PrefectServer
from shipyard.adapters.secret_files import private_dir
from shipyard.settings import Settings, load_settings
from shipyard.store import Store

__all__ = ["prefect_server", "prefect_ui_url", "settings", "store", "use_prefect"]


@cache
def settings() -> Settings:
    loaded = load_settings()
    # Whichever command runs first makes the home: private from the start (0700), before
    # the store, the UI's key or a workspace lands in it.
    private_dir(loaded.home)
    return loaded


@cache
def store() -> Store:
    return Store.open(settings().store_url)


def prefect_server() -> PrefectServer:
    """The local Prefect server of this Shipyard home."""
    return PrefectServer(settings().prefect_home, settings().prefect_port)


_prefect_settings = ExitStack()
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def use_prefect() -> str:
    """Point the Prefect client at the configured server: ``PREFECT_API_URL`` if set,
    else the local one, with its auth string: ``PREFECT_API_AUTH_STRING`` if set, else the
    local server's, sent only to an address on this machine (a server elsewhere has its
    own; set the variable). Returns the API URL.

    The environment carries both to the Prefect processes we start, and to Prefect in this
    process if it is imported later; if it was imported already, it read its settings then,
    so they go into its settings context too.
    """
    local = prefect_server()
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.update(local.env())
    url = os.environ["PREFECT_API_URL"]
    if not os.environ.get("PREFECT_API_AUTH_STRING") and urlsplit(url).hostname in _LOOPBACK:
        os.environ["PREFECT_API_AUTH_STRING"] = local.auth_string()
    if "prefect.settings" not in sys.modules:
        return url  # Prefect, once imported, reads the environment: nothing else to do
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    updates: dict[Any, str] = {PREFECT_API_URL: url}
    if os.environ.get("PREFECT_API_AUTH_STRING"):
        updates[PREFECT_API_AUTH_STRING] = os.environ["PREFECT_API_AUTH_STRING"]
    _prefect_settings.close()
    _prefect_settings.enter_context(temporary_settings(updates=updates))
    return url


def prefect_ui_url() -> str | None:
    """Where Prefect's UI shows flow runs (``PREFECT_UI_URL``, else beside the API)."""
    if os.environ.get("PREFECT_UI_URL"):
        return os.environ["PREFECT_UI_URL"]
    api = os.environ.get("PREFECT_API_URL") or prefect_server().api_url
    return api.removesuffix("/api")
