"""Talking to Prefect has a deadline in all: a server that takes the connection and never
answers (a socket on loopback, no Prefect server) is PrefectUnavailable naming what was
asked, within the deadline, whatever the client's own timeouts and retries. The real
server is exercised in tests/integration/test_prefect_adapter.py."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from shipyard.adapters import prefect as prefect_adapter
from shipyard.adapters.prefect import PrefectUnavailable, flow_run_state


@pytest.fixture
def silent_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(prefect_adapter, "PREFECT_CALL_TIMEOUT_SECONDS", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as silent, temporary_settings(
            {PREFECT_API_URL: f"http://127.0.0.1:{silent.getsockname()[1]}/api"}):
        yield


@pytest.mark.usefixtures("silent_server")
def test_a_server_that_never_answers_is_unavailable_naming_what_was_asked():
    flow_run_id = str(uuid.uuid4())
    started = time.monotonic()
    with pytest.raises(PrefectUnavailable, match=rf"did not answer about flow run "
                                                 rf"{flow_run_id} within 0.5 s"):
        asyncio.run(flow_run_state(flow_run_id))
    assert time.monotonic() - started < 5

