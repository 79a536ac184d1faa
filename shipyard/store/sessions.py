"""Sign-ins to the web UI as server-side records (table ``ui_sessions``).

The browser's cookie holds a random 256-bit token and nothing else; the store keeps only
its SHA-256 (as for API tokens, a fast hash is right for a random secret of that size), the
user, when it began and when it expires. So a session can be ended from anywhere that
reaches the store: signing out deletes its row; a password change or disabling the user
(:meth:`Accounts.set_user`, from the UI's process or the CLI's) deletes every row of that
user; and the web process sees it on the next request, or within seconds on an open
event stream (:meth:`Sessions.live`). Expired rows are deleted whenever someone signs in.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Delete, delete, select, update
from sqlalchemy.orm import Session

from shipyard.store.accounts import UserRecord, end_sessions_of, user_record
from shipyard.store.models import UiSession, User
from shipyard.store.store import Store

__all__ = ["SessionRecord", "Sessions", "new_session_token", "session_digest"]

MAX_TOKEN_LENGTH = 100
"""Longer cookie values are not ours (ours are 43 characters): not even hashed."""


def new_session_token() -> str:
    """A fresh session token: 256 random bits, URL-safe. Goes to the browser only."""
    return secrets.token_urlsafe(32)


def session_digest(token: str) -> str:
    """What the store keeps of a session token, and how an event stream names it."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SessionRecord:
    digest: str
    user: UserRecord
    created_at: datetime
    expires_at: datetime
    flashes: tuple[dict[str, Any], ...]


class Sessions:
    """The web UI's sign-in sessions in the store. Every method takes the browser's token
    (or its digest, for :meth:`live`); a token that is unknown, ended or expired is simply
    no session."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def start(self, user: str, *, lifetime: timedelta) -> tuple[str, SessionRecord]:
        """A new session for ``user`` lasting ``lifetime``; its token, shown only to the
        browser. Expired sessions of anyone are deleted on the way."""
        token = new_session_token()
        now = self.store.clock()

        def work(session: Session) -> SessionRecord:
            session.execute(delete(UiSession).where(UiSession.expires_at <= now))
            owner = session.get(User, user)
            if owner is None or owner.disabled_at is not None:
                raise LookupError(f"user {user!r} does not exist or is disabled")
            row = UiSession(id_hash=session_digest(token), user_name=user, created_at=now,
                            expires_at=now + lifetime, flashes=[])
            session.add(row)
            session.flush()
            return _record(row, owner)

        return token, self.store.writing(work)

    def find(self, token: str) -> SessionRecord | None:
        """The live session of ``token``: None when unknown, ended, expired, or its user
        is disabled."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        now = self.store.clock()
        with self.store.reading() as session:
            found = session.execute(
                select(UiSession, User).join(User, User.name == UiSession.user_name)
                .where(UiSession.id_hash == session_digest(token),
                       UiSession.expires_at > now, User.disabled_at.is_(None))).first()
            return _record(found[0], found[1]) if found else None

    def live(self, digests: Collection[str]) -> set[str]:
        """Which of the sessions named by ``digests`` are still live (one query for all:
        the event streams ask this every second or so)."""
        if not digests:
            return set()
        now = self.store.clock()
        with self.store.reading() as session:
            return set(session.scalars(
                select(UiSession.id_hash).join(User, User.name == UiSession.user_name)
                .where(UiSession.id_hash.in_(list(digests)), UiSession.expires_at > now,
                       User.disabled_at.is_(None))))

    def end(self, token: str) -> bool:
        """End the session of ``token`` (signing out); whether there was one."""
        digest = session_digest(token)
        return bool(self.store.writing(lambda s: _deleted(
            s, delete(UiSession).where(UiSession.id_hash == digest))))

    def end_all(self, user: str) -> int:
        """End every session of ``user``; how many there were."""
        return int(self.store.writing(lambda s: end_sessions_of(s, user)))

    def count(self, user: str) -> int:
        """How many live sessions ``user`` has."""
        now = self.store.clock()
        with self.store.reading() as session:
            return len(session.scalars(select(UiSession.id_hash).where(
                UiSession.user_name == user, UiSession.expires_at > now)).all())

    def prune(self) -> int:
        """Delete the expired sessions; how many."""
        now = self.store.clock()
        return self.store.writing(lambda s: _deleted(
            s, delete(UiSession).where(UiSession.expires_at <= now)))

    def add_flash(self, token: str, flash: dict[str, Any]) -> None:
        """Keep a message for the session's next page."""
        digest = session_digest(token)

        def work(session: Session) -> None:
            row = session.get(UiSession, digest)
            if row is not None:
                row.flashes = [*row.flashes, flash]

        self.store.writing(work)

    def take_flashes(self, token: str) -> list[dict[str, Any]]:
        """The session's messages, removed: each is shown once."""
        digest = session_digest(token)

        def work(session: Session) -> list[dict[str, Any]]:
            row = session.get(UiSession, digest)
            if row is None or not row.flashes:
                return []
            taken = list(row.flashes)
            session.execute(update(UiSession).where(UiSession.id_hash == digest)
                            .values(flashes=[]))
            return taken

        return self.store.writing(work)


def _deleted(session: Session, statement: Delete) -> int:
    """Run a DELETE; how many rows it removed."""
    return int(getattr(session.execute(statement), "rowcount", 0))


def _record(row: UiSession, owner: User) -> SessionRecord:
    return SessionRecord(row.id_hash, user_record(owner), row.created_at, row.expires_at,
                         tuple(row.flashes or ()))
