"""Handing a run to Prefect over its REST API with httpx, without importing Prefect.

Importing Prefect's client takes about a second, and a command such as ``shipyard
rollback`` spends it before the rollback can even be asked for. Creating a flow run of a
deployment is two requests, so they are made here directly: read the deployment by name,
then ``POST /deployments/{id}/create_flow_run`` in state ``Scheduled``, as Prefect's
``run_deployment`` does (the server merges the deployment's default parameters, tags and
work queue). The API's address and auth string come from Prefect's settings when Prefect
is imported already (the tests set them in its context), else from the environment that
``use_prefect`` prepared.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any
from urllib.parse import quote

import httpx

from shipyard.adapters.prefect_errors import (
    UNAUTHORIZED,
    PrefectError,
    PrefectUnauthorized,
    PrefectUnavailable,
)
from shipyard.adapters.prefect_server import basic_auth_header

__all__ = ["PREFECT_CALL_TIMEOUT_SECONDS", "api_address", "start_deployment"]

PREFECT_CALL_TIMEOUT_SECONDS = 120.0
"""How long one exchange with the Prefect server may take in all."""
REQUEST_TIMEOUT_SECONDS = 60.0


def api_address() -> tuple[str, str | None]:
    """Prefect's API URL and auth string, as Prefect's own client would send them."""
    if "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

        url, auth = PREFECT_API_URL.value(), PREFECT_API_AUTH_STRING.value()
        if url:
            return str(url), (auth.get_secret_value() if hasattr(auth, "get_secret_value")
                              else auth) or None
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        raise PrefectUnavailable("PREFECT_API_URL is not set: no Prefect server to hand the "
                                 "run to (`shipyard up` starts one)")
    return url, os.environ.get("PREFECT_API_AUTH_STRING") or None


async def start_deployment(name: str, parameters: dict[str, Any], *,
                           idempotency_key: str | None = None) -> str:
    """Create a flow run of deployment ``name`` ("flow/deployment") without waiting for it.

    With ``idempotency_key``, asking twice returns the first flow run instead of a second.
    Raises :class:`PrefectUnavailable` when the server cannot be reached or fails,
    :class:`PrefectUnauthorized` on a 401, and :class:`PrefectError` when the deployment
    does not exist.
    """
    url, auth = api_address()
    flow, _, deployment = name.partition("/")
    auth_header = basic_auth_header(auth) if auth else {}
    try:
        async with asyncio.timeout(PREFECT_CALL_TIMEOUT_SECONDS), httpx.AsyncClient(
                base_url=url.rstrip("/") + "/", headers=auth_header,
                timeout=REQUEST_TIMEOUT_SECONDS) as client:
            found = await client.get(f"deployments/name/{quote(flow, safe='')}/"
                                     f"{quote(deployment, safe='')}")
            if found.status_code == 404:
                raise PrefectError(f"Prefect has no deployment {name!r}; `shipyard "
                                   "deployments apply` (or `shipyard up`) registers it")
            _raise_for(found, name)
            body: dict[str, Any] = {"parameters": parameters,
                                    "state": {"type": "SCHEDULED", "name": "Scheduled"}}
            if idempotency_key is not None:
                body["idempotency_key"] = idempotency_key
            created = await client.post(f"deployments/{found.json()['id']}/create_flow_run",
                                        json=body)
            _raise_for(created, name)
            return str(created.json()["id"])
    except TimeoutError as err:
        raise PrefectUnavailable(
            f"the Prefect server did not answer about starting deployment {name!r} within "
            f"{PREFECT_CALL_TIMEOUT_SECONDS:g} s; `shipyard status` shows whether it "
            "runs") from err
    except httpx.TransportError as err:
        raise PrefectUnavailable(f"the Prefect server cannot be reached: "
                                 f"{type(err).__name__}: {err}") from err


def _raise_for(response: httpx.Response, name: str) -> None:
    if response.status_code == 401:
        raise PrefectUnauthorized(UNAUTHORIZED)
    if response.status_code >= 500:
        raise PrefectUnavailable(f"the Prefect server failed: HTTP {response.status_code}")
    if response.status_code >= 400:
        raise PrefectError(f"Prefect refused a request about deployment {name!r}: HTTP "
                           f"{response.status_code}: {response.text[:300]}")

