"""The store's statement deadline on a real PostgreSQL: a query past it is cancelled and
is a StoreTimedOut naming the deadline, and the store goes on working."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shipyard.store import Store
from shipyard.store.errors import StoreTimedOut

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_query_past_the_statement_timeout_is_cancelled_naming_it(store_url: str):
    url = make_url(store_url).update_query_dict({"options": "-c statement_timeout=200ms"})
    store = Store.open(url.render_as_string(hide_password=False))
    try:
        with pytest.raises(StoreTimedOut, match=r"ran past its statement_timeout "
                                                r"\(-c statement_timeout=200ms\)"), \
                store.engine.connect() as connection:
            connection.execute(text("SELECT pg_sleep(2)"))
        with store.engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        store.close()
