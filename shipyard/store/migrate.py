"""Bringing a database to the schema this code expects, with Alembic."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from shipyard.store.engine import WRITE

__all__ = ["current_revision", "head_revision", "upgrade_to_head"]

_SCRIPT_LOCATION = str(Path(__file__).with_name("migrations"))
_IN_PROCESS = threading.Lock()


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", _SCRIPT_LOCATION)
    return config


def head_revision() -> str:
    """The newest migration this code ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(engine: Engine) -> None:
    """Apply every pending migration; safe to call from several processes and threads at
    once."""
    if current_revision(engine) == head_revision():
        return
    # The database lock (see env.py) orders processes; within one process, Alembic's
    # ``context`` is a module global that two threads migrating at once would share.
    with _IN_PROCESS:
        config = _config()
        with engine.connect().execution_options(**{WRITE: True}) as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
