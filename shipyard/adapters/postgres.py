"""A PostgreSQL server of Debian's package, its data in a directory of ours, on 127.0.0.1.

PostgreSQL refuses to run as root. The usual answer, running it as the ``postgres`` user,
fails when the data directory sits under ``/root`` (mode 0700), which is where the stack
lives by default. So as root the server runs in a user namespace of its own, where root
appears as an ordinary uid: PostgreSQL sees a non-root owner, the kernel still sees root
(who owns the directory), and nothing outside the state directory changes. As any other
user it runs directly.

Every connection needs a password, checked with SCRAM-SHA-256, whether it comes over TCP
(127.0.0.1 or ::1, the only addresses it listens on) or over its Unix socket: loopback is
shared by every process and user of the machine, and ``trust`` would hand the store to any
of them. Each role's password is generated once and kept in ``<home>/<role>.password``
(mode 0600); only its hash (a SCRAM verifier, computed here) ever reaches the server. A
server made with ``trust`` by an older Shipyard is given its passwords and switched over by
:meth:`PostgresServer.require_passwords`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import pq, sql

from shipyard.adapters.secret_files import (
    create_secret,
    private_dir,
    read_secret,
    write_secret,
)

__all__ = ["PG_HBA", "SUPERUSER", "PostgresError", "PostgresServer", "installed_bindir"]

START_TIMEOUT_SECONDS = 60
RELOAD_TIMEOUT_SECONDS = 10
SUPERUSER = "postgres"
PG_HBA = """\
# Written by Shipyard: every connection needs its role's password (SCRAM-SHA-256), over
# the Unix socket and over loopback alike. No replication. Rewritten by `shipyard up`.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
"""
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

    @property
    def hba_file(self) -> Path:
        return self.data_dir / "pg_hba.conf"

    def password_file(self, role: str) -> Path:
        """Where the password of ``role`` is kept (mode 0600)."""
        return self.home / f"{role}.password"

    def url(self, database: str, *, driver: str = "psycopg", user: str = "shipyard",
            hide_password: bool = False) -> str:
        """The SQLAlchemy URL of ``database`` on this server as ``user``, with the role's
        password when it has one (shown as ``***`` with ``hide_password``)."""
        try:
            password = read_secret(self.password_file(user))
        except FileNotFoundError:  # a server still on `trust`, before `shipyard up`
            credentials = user
        else:
            credentials = f"{user}:{'***' if hide_password else quote(password, safe='')}"
        return f"postgresql+{driver}://{credentials}@127.0.0.1:{self.port}/{database}"

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
        """Make the data directory (UTF-8, C.UTF-8 collation: no locale needs generating),
        the superuser's password and the server's pg_hba.conf (:data:`PG_HBA`)."""
        if self.initialized():
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise PostgresError(f"{self.data_dir} is not empty and holds no database "
                                "(an interrupted initdb?); remove it and run again")
        private_dir(self.home)
        create_secret(self.password_file(SUPERUSER), _new_password)
        self._run(["initdb", "-D", str(self.data_dir), "--auth=scram-sha-256",
                   f"--pwfile={self.password_file(SUPERUSER)}", "-U", SUPERUSER,
                   "-E", "UTF8", "--locale=C.UTF-8"], check=True)
        write_secret(self.hba_file, PG_HBA)

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
        """Whether a PostgreSQL server (ours or another) accepts connections on the port;
        libpq's ping, which needs no password."""
        conninfo = psycopg.conninfo.make_conninfo(host="127.0.0.1", port=self.port,
                                                  dbname="postgres", connect_timeout=2)
        return pq.PGconn.ping(conninfo.encode()) == pq.Ping.OK

    def accepts_without_password(self, host: str = "127.0.0.1") -> bool:
        """Whether the superuser can connect with no password (``trust``): over TCP, or
        over the Unix socket with ``host=str(home)``. False when refused, or not up."""
        try:
            # No password from anywhere: libpq would read ~/.pgpass (PGPASSFILE); this
            # file, in our private home, never exists (libpq warns of /dev/null).
            conn = psycopg.connect(host=host, port=self.port, user=SUPERUSER,
                                   dbname="postgres", password="",
                                   passfile=str(self.home / ".no-passfile"),
                                   connect_timeout=2)
        except psycopg.Error:
            return False
        conn.close()
        return True

    def start(self, *, fast_and_unsafe: bool = False) -> None:
        """Start the server and wait until it answers. ``fast_and_unsafe`` turns fsync off:
        for throw-away test databases only."""
        private_dir(self.home)
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
        """A superuser connection in autocommit mode (CREATE DATABASE needs it), with the
        superuser's password (none before a ``trust`` server has one)."""
        password_file = self.password_file(SUPERUSER)
        try:
            password = read_secret(password_file)
        except FileNotFoundError:
            password = ""
        try:
            conn = psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                                   password=password, dbname=database,
                                   connect_timeout=max(1, int(timeout)), autocommit=True)
        except psycopg.Error as err:
            fix = ""
            if "password authentication failed" in str(err):
                fix = (f"; the password kept in {password_file} is not the server's: "
                       "restore that file, or start over with `shipyard down --purge "
                       "--only postgres` (which deletes the data)")
            raise PostgresError(f"cannot connect to PostgreSQL on 127.0.0.1:{self.port} "
                                f"as {SUPERUSER}: {str(err).strip()}{fix}") from err
        with conn:
            yield conn

    def require_passwords(self) -> bool:
        """Make every connection need a password: give the superuser its password, write
        :data:`PG_HBA` and reload, unless the server already refuses a connection without
        one. Turns a server made with ``trust`` into one like :meth:`initdb` makes.
        Idempotent; returns whether anything changed."""
        try:
            hba = self.hba_file.read_text()
        except FileNotFoundError as err:
            raise PostgresError(f"{self.hba_file} is missing: is the server on port "
                                f"{self.port} another one than {self.data_dir}'s?") from err
        if hba == PG_HBA and not self.accepts_without_password():
            return False
        password = create_secret(self.password_file(SUPERUSER), _new_password)
        with self.connect() as conn:  # `trust` still lets us in, password or not
            _set_password(conn, SUPERUSER, password)
            write_secret(self.hba_file, PG_HBA)
            conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + RELOAD_TIMEOUT_SECONDS
        while self.accepts_without_password():  # the postmaster reloads asynchronously
            if time.monotonic() > deadline:
                raise PostgresError(f"PostgreSQL still accepts connections without a "
                                    f"password after reloading {self.hba_file}")
            time.sleep(0.1)
        return True

    def ensure_role_and_databases(self, role: str, databases: Sequence[str]) -> list[str]:
        """Create the login role, with its password (made now unless kept), and the
        databases it owns, unless they exist; a role whose kept password does not log in
        (it had none, under ``trust``) is given it. Returns what was done, in words."""
        done = []
        password = create_secret(self.password_file(role), _new_password)
        with self.connect() as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() \
                    is None:
                # CREATEDB: the tests make a database per test.
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(
                    sql.Identifier(role)))
                _set_password(conn, role, password)
                done.append(f"role {role}")
            elif not self._logs_in(role, password):
                _set_password(conn, role, password)
                done.append(f"password of {role}")
            for name in databases:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                      (name,)).fetchone()
                if exists is None:
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(role)))
                    done.append(f"database {name}")
        return done

    def _logs_in(self, role: str, password: str) -> bool:
        try:
            conn = psycopg.connect(host="127.0.0.1", port=self.port, user=role,
                                   password=password, dbname="postgres", connect_timeout=2)
        except psycopg.Error:
            return False
        conn.close()
        return True

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


def _new_password() -> str:
    # 256 bits, URL-safe: it goes into SQLAlchemy URLs as it is.
    return secrets.token_urlsafe(32)


def _set_password(conn: psycopg.Connection[tuple[object, ...]], role: str,
                  password: str) -> None:
    """Set ``role``'s password as a SCRAM-SHA-256 verifier made by libpq here, so the
    password itself never reaches the server (nor its log)."""
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(),
                                            b"scram-sha-256")
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(verifier.decode())))


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"
