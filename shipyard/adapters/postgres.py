"""A PostgreSQL server of Debian's package, its data in a directory of ours, on 127.0.0.1.

PostgreSQL refuses to run as root. The usual answer, running it as the ``postgres`` user,
fails when the data directory sits under ``/root`` (mode 0700), which is where the stack
lives by default. So as root the server runs in a user namespace of its own, where root
appears as an ordinary uid: PostgreSQL sees a non-root owner, the kernel still sees root
(who owns the directory), and nothing outside the state directory changes. As any other
user it runs directly.

Access is ``trust`` on loopback only: a single-user development stack, never a shared one.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

__all__ = ["PostgresError", "PostgresServer", "installed_bindir"]

START_TIMEOUT_SECONDS = 60
SUPERUSER = "postgres"
# An unprivileged uid for the namespace; any non-zero one will do.
_NAMESPACE_UID = 1000


class PostgresError(RuntimeError):
    """The server could not be set up, started or reached; the message says why."""


def installed_bindir() -> Path | None:
    """The ``bin`` directory of the newest installed PostgreSQL major version, if any."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """The server whose data, log and socket live in ``home``, listening on 127.0.0.1."""

    home: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    def url(self, database: str, *, driver: str = "psycopg", user: str = "shipyard") -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+{driver}://{user}@127.0.0.1:{self.port}/{database}"

    def bindir(self) -> Path:
        """The binaries of the version that made the data directory, else the newest."""
        version_file = self.data_dir / "PG_VERSION"
        if version_file.exists():
            version = version_file.read_text().strip()
            bindir = Path(f"/usr/lib/postgresql/{version}/bin")
            if not (bindir / "postgres").exists():
                raise PostgresError(
                    f"{self.data_dir} was made by PostgreSQL {version}, which is not "
                    f"installed; install postgresql-{version} or `shipyard down --purge`")
            return bindir
        newest = installed_bindir()
        if newest is None:
            raise PostgresError("no PostgreSQL server is installed (apt-get install "
                                "postgresql)")
        return newest

    def version(self) -> str:
        # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        found = re.search(r"\(PostgreSQL\) (\S+)", self._run(["postgres", "--version"]).stdout)
        return found.group(1) if found else ""

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def initdb(self) -> None:
        """Make the data directory (UTF-8, C.UTF-8 collation: no locale needs generating)."""
        if self.initialized():
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise PostgresError(f"{self.data_dir} is not empty and holds no database "
                                "(an interrupted initdb?); remove it and run again")
        self.home.mkdir(parents=True, exist_ok=True)
        self._run(["initdb", "-D", str(self.data_dir), "--auth=trust", "-U", SUPERUSER,
                   "-E", "UTF8", "--locale=C.UTF-8"], check=True)

    def pid(self) -> int | None:
        """The postmaster's pid if ours runs (its pid file names a live process)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if str(self.data_dir).encode() in cmdline else None

    def answers(self) -> bool:
        """Whether a server accepts connections on the port (ours or another)."""
        try:
            with self.connect(timeout=2):
                return True
        except PostgresError:
            return False

    def start(self, *, fast_and_unsafe: bool = False) -> None:
        """Start the server and wait until it answers. ``fast_and_unsafe`` turns fsync off:
        for throw-away test databases only."""
        self.home.mkdir(parents=True, exist_ok=True)
        # A socket of our own: /var/run/postgresql may not exist and is not ours.
        options = [f"-p {self.port}", f"-k {self.home}", "-c listen_addresses=127.0.0.1"]
        if fast_and_unsafe:
            options += ["-c fsync=off", "-c synchronous_commit=off",
                        "-c full_page_writes=off"]
        done = self._run(["pg_ctl", "-D", str(self.data_dir), "-w", "-t",
                          str(START_TIMEOUT_SECONDS), "-l", str(self.log_file), "start",
                          "-o", " ".join(options)])
        if done.returncode != 0:
            raise PostgresError(f"pg_ctl start failed: {_last_line(done)}")

    def stop(self) -> bool:
        """Stop our server (fast mode: open sessions are ended). Returns whether it ran."""
        if self.pid() is None:
            return False
        done = self._run(["pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "stop",
                          "-m", "fast"])
        if done.returncode != 0:
            raise PostgresError(f"pg_ctl stop failed: {_last_line(done)}")
        return True

    @contextlib.contextmanager
    def connect(self, database: str = "postgres", *,
                timeout: float = 5) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """A superuser connection in autocommit mode (CREATE DATABASE needs it)."""
        try:
            conn = psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                                   dbname=database, connect_timeout=max(1, int(timeout)),
                                   autocommit=True)
        except psycopg.Error as err:
            raise PostgresError(f"cannot connect to PostgreSQL on 127.0.0.1:{self.port} "
                                f"as {SUPERUSER}: {err}".strip()) from err
        with conn:
            yield conn

    def ensure_role_and_databases(self, role: str, databases: Sequence[str]) -> list[str]:
        """Create the login role and the databases it owns unless they exist; returns the
        databases created now."""
        created = []
        with self.connect() as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() \
                    is None:
                # CREATEDB: the tests make a database per test.
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(
                    sql.Identifier(role)))
            for name in databases:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                      (name,)).fetchone()
                if exists is None:
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(role)))
                    created.append(name)
        return created

    def _run(self, argv: list[str], *, check: bool = False) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir() / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["unshare", "--user", f"--map-user={_NAMESPACE_UID}",
                       f"--map-group={_NAMESPACE_UID}", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              cwd=self.home if self.home.exists() else None, timeout=120,
                              stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise PostgresError(f"`{argv[0]}` failed: {_last_line(done)}")
        return done


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"
