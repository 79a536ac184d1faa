"""The store's PostgreSQL deadlines: every connection gets them unless its URL says
otherwise, and a server that takes the connection and never answers (a socket on loopback,
no PostgreSQL) is a StoreTimedOut naming the deadline. The statement timeout against a
real server is in tests/integration/test_store_deadlines.py."""

from __future__ import annotations

import socket
import time

import pytest
from sqlalchemy.engine import make_url

from shipyard.store.engine import POSTGRES_DEADLINES, open_engine, postgres_connect_args
from shipyard.store.errors import StoreTimedOut


def test_a_postgresql_url_gets_every_deadline_it_does_not_name():
    assert postgres_connect_args(make_url("postgresql+psycopg://u@db/shipyard")
                                 ) == POSTGRES_DEADLINES
    assert POSTGRES_DEADLINES["options"] == "-c statement_timeout=60s"


def test_a_deadline_the_url_names_is_the_urls():
    named = postgres_connect_args(make_url(
        "postgresql+psycopg://u@db/shipyard?connect_timeout=30&options=-c%20search_path%3Dx"))
    assert "connect_timeout" not in named and "options" not in named
    assert named["keepalives"] == "1"


def test_a_server_that_never_answers_is_a_timeout_naming_connect_timeout():
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        engine = open_engine(f"postgresql+psycopg://u:secret@127.0.0.1:{port}/shipyard"
                             "?connect_timeout=1")
        started = time.monotonic()
        with pytest.raises(StoreTimedOut, match=r"did not accept a connection within its "
                                                r"connect_timeout of 1 s") as raised:
            engine.connect()
        engine.dispose()
    assert time.monotonic() - started < 5
    assert "secret" not in str(raised.value)
