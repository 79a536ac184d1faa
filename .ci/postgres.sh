#!/usr/bin/env bash
# Provide a real, throw-away PostgreSQL server on 127.0.0.1 for Shipyard's tests.
#
# Usage:
#   bash .ci/postgres.sh          # (or "start") ensure the server runs; idempotent
#   bash .ci/postgres.sh stop     # stop it (no-op if it is not running)
#
# "start" prints exactly one line on stdout, as its last line:
#   SHIPYARD_TEST_POSTGRES_URL=postgresql+psycopg://shipyard@127.0.0.1:PORT/shipyard_test
# Everything else goes to stderr, so a caller can do:
#   eval "export $(bash .ci/postgres.sh | tail -1)"
#
# Environment:
#   SHIPYARD_CI_STATE  state root, outside the repo (default /var/tmp/shipyard-ci);
#                      the server lives in $SHIPYARD_CI_STATE/postgres
#   SHIPYARD_PG_PORT   TCP port (default 54329)
#
# Meant for CI running as root on Debian 12 (bookworm), without systemd. The
# server is run as the "postgres" system user (postgres refuses to run as root).
set -euo pipefail

log() { printf '[postgres.sh] %s\n' "$*" >&2; }
die() { printf '[postgres.sh] ERROR: %s\n' "$*" >&2; exit 1; }

ACTION="${1:-start}"
case "$ACTION" in
  start | stop) ;;
  -h | --help)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 0
    ;;
  *) die "unknown action '$ACTION' (usage: bash .ci/postgres.sh [start|stop])" ;;
esac

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and runs the server as user 'postgres' via runuser)"

STATE_ROOT="${SHIPYARD_CI_STATE:-/var/tmp/shipyard-ci}"
PGSTATE="$STATE_ROOT/postgres"
DATA="$PGSTATE/data"
LOGFILE="$PGSTATE/postgres.log"
SOCKDIR="$PGSTATE" # unix socket lives here, not in /var/run/postgresql (may not exist)
PORT="${SHIPYARD_PG_PORT:-54329}"
HOST=127.0.0.1

[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] ||
  die "SHIPYARD_PG_PORT must be a TCP port number, got '$PORT'"
case "$STATE_ROOT" in
  /*) ;;
  *) die "SHIPYARD_CI_STATE must be an absolute path, got '$STATE_ROOT'" ;;
esac
# Unix socket paths are limited to ~107 bytes: "<sockdir>/.s.PGSQL.<port>".
[ "${#SOCKDIR}" -le 90 ] || die "state dir path too long for a unix socket: $SOCKDIR (set SHIPYARD_CI_STATE to something shorter)"

# Highest installed major version (sort -V so that 9.6 < 10 < 15 < 16).
find_bindir() {
  local f best
  best="$(for f in /usr/lib/postgresql/*/bin/postgres; do
    if [ -x "$f" ]; then printf '%s\n' "$f"; fi
  done | sort -V | tail -n 1)"
  [ -n "$best" ] && dirname "$best"
}

# Run a command as the postgres user, from a directory it can read (runuser
# keeps root's cwd, which the postgres user may not be allowed to access).
# 9>&- : do not leak our flock fd (see take_lock) into the long-lived
# postmaster, which would otherwise hold the lock forever.
as_pg() { (cd "$PGSTATE" && runuser -u postgres -- "$@" 9>&-); }

# pg_isready exit codes: 0 accepting, 1 rejecting (starting up / shutting down),
# 2 no response, 3 no attempt (bad parameters).
pg_ready() {
  local rc=0
  # -U/-d: otherwise it probes as OS user "root", which the server logs as
  # 'FATAL: role "root" does not exist' on every check.
  "$BINDIR/pg_isready" -q -h "$HOST" -p "$PORT" -U postgres -d postgres -t 3 || rc=$?
  return "$rc"
}

# Is the pid recorded in postmaster.pid a live postmaster for *our* data dir?
# (In containers a stale pid is often reused by an unrelated process, so a
# plain kill -0 is not enough, and we must never signal someone else's pid.)
postmaster_pid_alive() {
  local pid
  [ -f "$DATA/postmaster.pid" ] || return 1
  pid="$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$DATA"
}

remove_stale_locks() {
  log "removing stale $DATA/postmaster.pid (no live server owns it)"
  rm -f "$DATA/postmaster.pid"
  # Same problem for the unix socket lock file left behind by a killed server.
  rm -f "$SOCKDIR/.s.PGSQL.$PORT" "$SOCKDIR/.s.PGSQL.$PORT.lock"
}

# Show the server log; with an argument (a byte offset), only what was written
# after that offset, i.e. by the current start attempt.
dump_log_tail() {
  local from="${1:-0}"
  if [ -f "$LOGFILE" ]; then
    printf '[postgres.sh] ---- server log %s (last 60 lines) ----\n' "$LOGFILE" >&2
    tail -c +"$((from + 1))" "$LOGFILE" | tail -n 60 >&2 || true
    printf '[postgres.sh] ---- end of log ----\n' >&2
  else
    log "no server log at $LOGFILE"
  fi
}

# If the data dir already exists, prefer the binaries of the major version that
# created it; otherwise use the highest installed version.
select_bindir() {
  local ver
  if [ -f "$DATA/PG_VERSION" ]; then
    ver="$(cat "$DATA/PG_VERSION")"
    if [ -x "/usr/lib/postgresql/$ver/bin/postgres" ]; then
      BINDIR="/usr/lib/postgresql/$ver/bin"
      return 0
    fi
    [ "$ACTION" = stop ] && return 1
    die "$DATA was initialized by PostgreSQL $ver, but /usr/lib/postgresql/$ver is not installed; remove $DATA to re-initialize with $(find_bindir || echo 'the installed version')"
  fi
  BINDIR="$(find_bindir || true)"
  [ -n "$BINDIR" ]
}

# Serialize concurrent invocations (e.g. parallel CI steps on one machine).
take_lock() {
  exec 9>"$PGSTATE/.postgres.sh.lock"
  flock -w 120 9 || die "timed out waiting for lock $PGSTATE/.postgres.sh.lock"
}

# ---------------------------------------------------------------- stop ------
if [ "$ACTION" = stop ]; then
  if [ ! -d "$PGSTATE" ] || [ ! -f "$DATA/PG_VERSION" ]; then
    log "no PostgreSQL data dir at $DATA; nothing to stop"
    exit 0
  fi
  take_lock
  if ! select_bindir; then
    log "no PostgreSQL binaries installed for $DATA; nothing to stop"
    exit 0
  fi
  if postmaster_pid_alive; then
    log "stopping PostgreSQL (data dir $DATA)"
    if ! as_pg "$BINDIR/pg_ctl" -D "$DATA" -w -t 60 stop -m fast >&2; then
      dump_log_tail
      die "pg_ctl stop failed"
    fi
    log "stopped"
  else
    [ -f "$DATA/postmaster.pid" ] && remove_stale_locks
    log "PostgreSQL is not running (data dir $DATA); nothing to stop"
  fi
  exit 0
fi

# ---------------------------------------------------------------- start -----
# 1. Install Debian's PostgreSQL if no server binaries are present.
if [ -z "$(find_bindir || true)" ]; then
  log "PostgreSQL server not found under /usr/lib/postgresql; installing Debian's 'postgresql' package"
  apt-get update >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2 ||
    die "apt-get install postgresql failed"
  [ -n "$(find_bindir || true)" ] || die "postgresql installed but no /usr/lib/postgresql/*/bin/postgres found"
fi
id postgres >/dev/null 2>&1 || die "system user 'postgres' does not exist (it is created by the postgresql-common package)"

# 2. State dir (outside the repo), owned by postgres.
mkdir -p "$STATE_ROOT"
install -d -o postgres -g postgres -m 0755 "$PGSTATE"
chown postgres:postgres "$PGSTATE"
runuser -u postgres -- test -w "$PGSTATE" ||
  die "user 'postgres' cannot write to $PGSTATE (a parent directory of $STATE_ROOT is probably not traversable by others); choose another SHIPYARD_CI_STATE"
take_lock

select_bindir || die "no PostgreSQL server binaries found under /usr/lib/postgresql"
log "using PostgreSQL binaries in $BINDIR"

if [ ! -f "$DATA/PG_VERSION" ]; then
  if [ -d "$DATA" ] && [ -n "$(ls -A "$DATA")" ]; then
    die "$DATA exists, is not empty and has no PG_VERSION (interrupted initdb?); remove it and re-run"
  fi
  install -d -o postgres -g postgres -m 0700 "$DATA"
  # C.UTF-8 always exists on Debian 12 and does not depend on the CI's $LANG
  # (an ungenerated locale like en_US.UTF-8 would make initdb fail).
  locale_opt=(--locale=C.UTF-8)
  locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$' || locale_opt=(--no-locale)
  log "initializing data dir $DATA"
  as_pg "$BINDIR/initdb" -D "$DATA" --auth=trust --username=postgres -E UTF8 "${locale_opt[@]}" >&2 ||
    die "initdb failed for $DATA"
else
  # e.g. a cached state dir restored with a different uid for postgres
  if [ "$(stat -c %U "$DATA")" != postgres ]; then
    log "fixing ownership of $DATA"
    chown -R postgres:postgres "$DATA"
  fi
  chmod 0700 "$DATA"
fi
touch "$LOGFILE"
chown postgres:postgres "$LOGFILE"

# 3. Start the server unless one already answers on the port.
ready_rc=0
pg_ready || ready_rc=$?
if [ "$ready_rc" -eq 1 ]; then
  log "a server on $HOST:$PORT is starting up or shutting down; waiting up to 60s"
  for _ in $(seq 1 60); do
    ready_rc=0
    pg_ready || ready_rc=$?
    [ "$ready_rc" -eq 1 ] || break
    sleep 1
  done
fi

if [ "$ready_rc" -eq 0 ]; then
  log "a PostgreSQL server already accepts connections on $HOST:$PORT; reusing it"
else
  if [ -f "$DATA/postmaster.pid" ]; then
    if postmaster_pid_alive; then
      die "a postmaster for $DATA is running (pid $(head -n 1 "$DATA/postmaster.pid")) but does not answer on $HOST:$PORT (different port?); run 'bash .ci/postgres.sh stop' (with the same SHIPYARD_PG_PORT it was started with) and retry"
    fi
    remove_stale_locks
  fi
  log "starting PostgreSQL on $HOST:$PORT (data dir $DATA, log $LOGFILE)"
  log_offset="$(stat -c %s "$LOGFILE")"
  # fsync/synchronous_commit/full_page_writes=off: this is a disposable test
  # database, so trade crash-safety for much faster commits and DDL. Never use
  # these settings for data you care about.
  if ! as_pg "$BINDIR/pg_ctl" -D "$DATA" -w -t 60 -l "$LOGFILE" start \
    -o "-p $PORT -k $SOCKDIR -c listen_addresses=$HOST -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >&2; then
    dump_log_tail "$log_offset"
    die "PostgreSQL failed to start on $HOST:$PORT (see log above, full log: $LOGFILE)"
  fi
  pg_ready || {
    dump_log_tail "$log_offset"
    die "pg_ctl reported success but nothing accepts connections on $HOST:$PORT"
  }
fi

# 4. Role and databases (idempotent). Connect over TCP so this also works
#    against a reused server whose socket is elsewhere.
psql_admin() {
  "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U postgres -d postgres "$@"
}

exists="$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'shipyard'")" ||
  die "cannot connect to $HOST:$PORT as superuser 'postgres' (trust auth) to set up role/databases"
if [ "$exists" != 1 ]; then
  log "creating role shipyard"
  psql_admin -c "CREATE ROLE shipyard WITH LOGIN SUPERUSER" >&2 || die "could not create role shipyard"
fi
for db in shipyard_test prefect; do
  exists="$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ||
    die "could not query pg_database on $HOST:$PORT"
  if [ "$exists" != 1 ]; then
    log "creating database $db"
    psql_admin -c "CREATE DATABASE \"$db\" OWNER shipyard" >&2 || die "could not create database $db"
  fi
done

# 5. The one and only line on stdout.
log "ready: postgresql://shipyard@$HOST:$PORT/shipyard_test (also database 'prefect')"
echo "SHIPYARD_TEST_POSTGRES_URL=postgresql+psycopg://shipyard@$HOST:$PORT/shipyard_test"
