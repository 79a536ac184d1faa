"""Accounts of the web UI: users who sign in with a password, and API tokens.

Passwords are kept as Argon2id hashes (argon2-cffi's defaults, the RFC 9106 low-memory
profile); a hash made with older parameters is replaced on the next good sign-in. Tokens
are kept as their SHA-256 only (see :mod:`shipyard.domain.access`), so the store never
holds a secret that works.

A new password or disabling a user ends every sign-in session of that user in the same
transaction (see :mod:`shipyard.store.sessions`): whoever knew the old password, or was
signed in as someone no longer allowed, is out at once, whichever process made the change.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.domain.access import (
    AccessError,
    Role,
    hash_token,
    new_token,
    validate_password,
    validate_username,
)
from shipyard.store.models import ApiToken, UiSession, User
from shipyard.store.store import Store

__all__ = ["Accounts", "TokenRecord", "UserRecord", "end_sessions_of", "user_record"]

_HASHER = PasswordHasher()
# Verifying against this when the user does not exist costs what a real check costs, so
# the answer's timing does not tell which usernames exist.
_DUMMY_HASH = _HASHER.hash("shipyard: no such user")


@dataclass(frozen=True)
class UserRecord:
    name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    owner: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class Accounts:
    """Users and API tokens in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- users --------------------------------------------------------------------------

    def add_user(self, name: str, password: str, role: Role) -> UserRecord:
        """Create a user; :class:`AccessError` for a bad name or password, or one taken."""
        validate_username(name)
        validate_password(password, username=name)
        row = User(name=name, password_hash=_HASHER.hash(password), role=role.value,
                   created_at=self.store.clock(), disabled_at=None)

        def work(session: Session) -> UserRecord:
            session.add(row)
            session.flush()
            return user_record(row)

        try:
            return self.store.writing(work)
        except IntegrityError:
            raise AccessError(f"username: {name!r} is taken; choose another, or change "
                              "that user with `shipyard user set`") from None

    def set_user(self, name: str, *, password: str | None = None, role: Role | None = None,
                 disabled: bool | None = None) -> UserRecord:
        """Change a user's password, role or whether it may sign in. A new password or
        disabling ends every session of the user (a role takes effect on the next
        request by itself)."""
        if password is not None:
            validate_password(password, username=name)
        hashed = _HASHER.hash(password) if password is not None else None
        now = self.store.clock()

        def work(session: Session) -> UserRecord:
            row = session.get(User, name)
            if row is None:
                raise AccessError(f"username: no user {name!r}; `shipyard user list` "
                                  "shows who there is")
            if hashed is not None:
                row.password_hash = hashed
            if role is not None:
                row.role = role.value
            if disabled is not None:
                row.disabled_at = now if disabled else None
            if hashed is not None or disabled:
                end_sessions_of(session, name)
            session.flush()
            return user_record(row)

        return self.store.writing(work)

    def user(self, name: str) -> UserRecord | None:
        with self.store.reading() as session:
            row = session.get(User, name)
            return user_record(row) if row else None

    def users(self) -> list[UserRecord]:
        with self.store.reading() as session:
            return [user_record(r) for r in session.scalars(select(User).order_by(User.name))]

    def authenticate(self, name: str, password: str) -> UserRecord | None:
        """The user if ``password`` is theirs and they may sign in, else None. Takes the
        same time whether or not the user exists."""
        with self.store.reading() as session:
            row = session.get(User, name)
            stored = row.password_hash if row else _DUMMY_HASH
            record = user_record(row) if row else None
        try:
            _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if record is None or not record.active:
            return None
        if _HASHER.check_needs_rehash(stored):
            rehashed = _HASHER.hash(password)
            self.store.writing(lambda s: s.execute(
                update(User).where(User.name == name).values(password_hash=rehashed)))
        return record

    # -- API tokens ---------------------------------------------------------------------

    def create_token(self, name: str, *, owner: str, role: Role) -> tuple[str, TokenRecord]:
        """A new token and its record. The token itself is returned once, never stored."""
        if not name.strip() or len(name) > 100:
            raise AccessError("token name: give 1 to 100 characters saying what it is for")
        owner_record = self.user(owner)
        if owner_record is None:
            raise AccessError(f"owner: no user {owner!r}; a token belongs to a user")
        if not owner_record.role.allows(role):
            raise AccessError(f"role: {owner!r} has the role {owner_record.role.value} and "
                              f"cannot hand out a token with the role {role.value}; choose "
                              f"{owner_record.role.value} or less")
        token = new_token()
        row = ApiToken(name=name.strip(), owner=owner, token_hash=hash_token(token),
                       role=role.value, created_at=self.store.clock(), last_used_at=None,
                       revoked_at=None)

        def work(session: Session) -> TokenRecord:
            session.add(row)
            session.flush()
            return _token(row)

        return token, self.store.writing(work)

    def token_owner(self, token: str) -> tuple[TokenRecord, UserRecord] | None:
        """The live token and its owner for a bearer ``token``, or None when unknown,
        revoked, or its owner disabled. The token's role is capped by its owner's."""
        try:
            digest = hash_token(token)
        except AccessError:
            return None
        with self.store.reading() as session:
            row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
            if row is None or row.revoked_at is not None:
                return None
            owner = session.get(User, row.owner)
            if owner is None or owner.disabled_at is not None:
                return None
            record, owner_record = _token(row), user_record(owner)
        now = self.store.clock()
        last = record.last_used_at
        # Written at most once a minute per token: a busy API client must not turn every
        # read into a write.
        if last is None or (now - last).total_seconds() >= 60:
            self.store.writing(lambda s: s.execute(
                update(ApiToken).where(ApiToken.id == record.id).values(last_used_at=now)))
        return record, owner_record

    def live_tokens(self, digests: Collection[str]) -> set[str]:
        """Which of the tokens named by their SHA-256 ``digests`` still work: not revoked,
        their owner not disabled (one query for all: open event streams ask every second
        or so)."""
        if not digests:
            return set()
        with self.store.reading() as session:
            return set(session.scalars(
                select(ApiToken.token_hash).join(User, User.name == ApiToken.owner)
                .where(ApiToken.token_hash.in_(list(digests)), ApiToken.revoked_at.is_(None),
                       User.disabled_at.is_(None))))

    def tokens(self, owner: str | None = None) -> list[TokenRecord]:
        query = select(ApiToken).order_by(ApiToken.id)
        if owner:
            query = query.where(ApiToken.owner == owner)
        with self.store.reading() as session:
            return [_token(r) for r in session.scalars(query)]

    def revoke_token(self, token_id: int) -> TokenRecord:
        now = self.store.clock()

        def work(session: Session) -> TokenRecord:
            row = session.get(ApiToken, token_id)
            if row is None:
                raise AccessError(f"token: no token with id {token_id}; `shipyard token "
                                  "list` shows them")
            if row.revoked_at is None:
                row.revoked_at = now
            session.flush()
            return _token(row)

        return self.store.writing(work)


def end_sessions_of(session: Session, user: str) -> int:
    """Delete every sign-in session of ``user`` inside the caller's transaction; how many."""
    result = session.execute(delete(UiSession).where(UiSession.user_name == user))
    return int(getattr(result, "rowcount", 0))


def user_record(row: User) -> UserRecord:
    return UserRecord(row.name, Role(row.role), row.created_at, row.disabled_at)


def _token(row: ApiToken) -> TokenRecord:
    return TokenRecord(row.id, row.name, row.owner, Role(row.role), row.created_at,
                       row.last_used_at, row.revoked_at)
