"""The stack's PostgreSQL: one server on 127.0.0.1 holding Shipyard's store (database
``shipyard``) and the Prefect server's database (``prefect``).

Prefect on SQLite locks up once runs overlap (503s, 7-67 s to create 10 runs, measured in
../shared/reference/prefect.md), so the stack gives both a real server. While it is up its
store URL is recorded in :attr:`Settings.stack_database_file`, which the CLI, the worker's
flows and the Prefect component read; ``down`` removes the record and SQLite is the default
again. Data is kept unless ``--purge``.

Every connection needs a password (see :mod:`shipyard.adapters.postgres`), so the recorded
URL and Prefect's database URL carry the role's password: the record is a secret file
(mode 0600, in a directory of mode 0700). A stack made with ``trust`` by an older Shipyard
is switched to passwords by ``up``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from shipyard.adapters.background import tail_file
from shipyard.adapters.debian import DebianError, apt_install
from shipyard.adapters.postgres import SUPERUSER, PostgresError, PostgresServer, installed_bindir
from shipyard.adapters.secret_files import EmptySecret, private_dir, write_secret
from shipyard.settings import Settings
from shipyard.stack.component import ComponentFailed, ComponentStatus, Progress, UpResult

__all__ = ["PREFECT_DATABASE", "STORE_DATABASE", "PostgresComponent", "prefect_database_url"]

STORE_DATABASE = "shipyard"
PREFECT_DATABASE = "prefect"
ROLE = "shipyard"


def prefect_database_url(settings: Settings) -> str | None:
    """The Prefect server's database URL (asyncpg, as Prefect requires) while the stack's
    PostgreSQL is up, else None (Prefect keeps its SQLite file)."""
    if not settings.stack_database_file.exists():
        return None
    return PostgresServer(_home(settings), settings.postgres_port).url(
        PREFECT_DATABASE, driver="asyncpg")


def _home(settings: Settings) -> Path:
    return settings.stack_database_file.parent


@dataclass
class PostgresComponent:
    settings: Settings
    name: str = "postgres"

    @property
    def server(self) -> PostgresServer:
        return PostgresServer(_home(self.settings), self.settings.postgres_port)

    def status(self) -> ComponentStatus:
        server = self.server
        address = f"127.0.0.1:{server.port}"
        if not server.answers():
            return ComponentStatus(self.name, False, "", address, "not answering")
        owner = "started by shipyard" if server.pid() else "already running"
        if server.accepts_without_password():
            return ComponentStatus(self.name, False, _version(server), address,
                                   f"{owner}; accepts connections without a password: "
                                   "`shipyard up` makes it require them")
        recorded = self.settings.stack_database_file.exists()
        return ComponentStatus(
            self.name, recorded, _version(server), address,
            f"{owner}; store {server.url(STORE_DATABASE, hide_password=True)}" if recorded
            else f"{owner}; not recorded as the store: run `shipyard up`")

    def up(self, progress: Progress) -> UpResult:
        server = self.server
        started = False
        private_dir(server.home)
        try:
            if not server.answers():
                if installed_bindir() is None:
                    apt_install(["postgresql"], progress)
                if not server.initialized():
                    progress(f"initialising a database cluster in {server.data_dir}")
                    server.initdb()
                progress(f"starting PostgreSQL on 127.0.0.1:{server.port}")
                server.start()
                started = True
            progress("requiring a password for every connection (scram-sha-256)")
            done = (["passwords required (scram-sha-256; was trust)"]
                    if server.require_passwords() else [])
            done += server.ensure_role_and_databases(ROLE, [STORE_DATABASE,
                                                            PREFECT_DATABASE])
            url = server.url(STORE_DATABASE)
        except (PostgresError, DebianError, EmptySecret) as err:
            if started:
                server.stop()
            raise ComponentFailed(self.name, str(err), fix="is the port taken by another "
                                  "server? set SHIPYARD_POSTGRES_PORT, or see the log",
                                  log_tail=tail_file(server.log_file),
                                  log_file=str(server.log_file)) from err
        record = self.settings.stack_database_file
        recorded = record.exists() and record.read_text().strip() == url
        if not recorded:
            write_secret(record, url + "\n")
        changed = started or bool(done) or not recorded
        what = "started" if started else "already up"
        return UpResult(self.name, changed,
                        f"PostgreSQL {what} on 127.0.0.1:{server.port}"
                        + (f"; {', '.join(done)}" if done else "")
                        + f"; the store is {server.url(STORE_DATABASE, hide_password=True)}"
                        f" (password in {server.password_file(ROLE)})")

    def down(self, *, purge: bool = False) -> bool:
        record = self.settings.stack_database_file
        changed = record.exists()
        record.unlink(missing_ok=True)
        try:
            changed = self.server.stop() or changed
        except PostgresError as err:
            raise ComponentFailed(self.name, str(err), log_tail=tail_file(self.server.log_file),
                                  log_file=str(self.server.log_file)) from err
        if purge and self.server.data_dir.exists():
            shutil.rmtree(self.server.data_dir)
            # The passwords belong to the data: a new cluster gets new ones.
            for role in (SUPERUSER, ROLE):
                self.server.password_file(role).unlink(missing_ok=True)
            changed = True
        return changed


def _version(server: PostgresServer) -> str:
    try:
        return server.version()
    except PostgresError:
        return ""

