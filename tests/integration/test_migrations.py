"""The Alembic migrations build exactly the schema the models describe, on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, MetaData, String, inspect, text

import shipyard.store.migrate
from shipyard.domain.pipeline import StageSpec
from shipyard.store import Store
from shipyard.store.engine import WRITE, open_engine
from shipyard.store.migrate import current_revision, head_revision, upgrade_to_head
from shipyard.store.models import Base

pytestmark = pytest.mark.integration

@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    opened = open_engine(store_url)
    yield opened
    opened.dispose()


def drift(engine: Engine, metadata: MetaData = Base.metadata) -> list[Any]:
    """What autogenerate would put in a new migration: empty when the schema matches."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, metadata))


def alembic_upgrade(engine: Engine, target: str = "head") -> None:
    """Alembic's own upgrade, without :func:`upgrade_to_head`'s early return."""
    config = Config()
    config.set_main_option(
        "script_location", str(Path(shipyard.store.migrate.__file__).with_name("migrations")))
    with engine.connect().execution_options(**{WRITE: True}) as connection:
        config.attributes["connection"] = connection
        if target == "base":
            command.downgrade(config, target)
        else:
            command.upgrade(config, target)
        connection.commit()


def version_rows(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(text("SELECT version_num FROM alembic_version")))


def test_the_migrations_have_a_single_head() -> None:
    config = Config()
    config.set_main_option(
        "script_location", str(Path(shipyard.store.migrate.__file__).with_name("migrations")))
    assert ScriptDirectory.from_config(config).get_heads() == [head_revision()]


def test_an_empty_database_is_upgraded_to_head(engine: Engine) -> None:
    assert current_revision(engine) is None

    upgrade_to_head(engine)

    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_the_migrated_schema_matches_the_models(engine: Engine) -> None:
    upgrade_to_head(engine)
    assert drift(engine) == []


def test_the_drift_check_notices_a_column_the_migrations_lack(engine: Engine) -> None:
    upgrade_to_head(engine)
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["pipeline_runs"].append_column(Column("priority", String(10)))

    assert [(d[0], d[3].name) for d in drift(engine, changed)] == [("add_column", "priority")]


def test_upgrading_twice_changes_nothing(engine: Engine) -> None:
    upgrade_to_head(engine)
    store = Store(engine)
    run_id = store.create_run("ci", [StageSpec("checkout")], trigger="manual").id

    upgrade_to_head(engine)
    alembic_upgrade(engine)

    assert version_rows(engine) == [head_revision()]
    assert store.get_run(run_id).stage("checkout").ref == "checkout"
    assert drift(engine) == []


def test_downgrading_to_base_removes_every_table_and_upgrading_restores_them(
    engine: Engine,
) -> None:
    upgrade_to_head(engine)

    alembic_upgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(engine) is None

    alembic_upgrade(engine)
    assert drift(engine) == []


def test_opening_a_store_migrates_it(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        assert current_revision(store.engine) == head_revision()
    finally:
        store.close()


def test_several_stores_opening_a_new_database_at_once_migrate_it_once(store_url: str) -> None:
    def open_and_create(n: int) -> str:
        store = Store.open(store_url)
        try:
            return store.create_run("ci", [StageSpec("checkout")], trigger="manual",
                                    actor=f"opener{n}").id
        finally:
            store.close()

    pool = ThreadPoolExecutor(max_workers=4)
    try:
        futures = [pool.submit(open_and_create, n) for n in range(4)]
        # Bounded: a migration deadlock must fail this test, not hang the suite.
        run_ids = [future.result(timeout=120) for future in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)

    engine = open_engine(store_url)
    try:
        assert version_rows(engine) == [head_revision()]
        assert len(Store(engine).list_runs()) == len(set(run_ids)) == 4
    finally:
        engine.dispose()
