"""Who may do what: roles, the actions they allow, and the rules for names, passwords and
API tokens. Pure: the store keeps accounts, the web application enforces these rules.

Three roles, each allowing everything the one before it does:

* ``viewer`` reads runs, releases, reports and logs;
* ``deployer`` also acts on deliveries: approve or reject a judgment, promote, roll back,
  restart a stage, cancel a run;
* ``admin`` also manages accounts and tokens.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets

__all__ = [
    "ACTION_ROLES",
    "MIN_PASSWORD_LENGTH",
    "TOKEN_PREFIX",
    "AccessError",
    "Role",
    "hash_token",
    "new_token",
    "validate_password",
    "validate_username",
]

MIN_PASSWORD_LENGTH = 12
TOKEN_PREFIX = "shy_"  # noqa: S105 - a prefix, not a secret
_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,62}$")


class AccessError(ValueError):
    """A name, password, role or token is unusable; the message names the field and fix."""


class Role(enum.Enum):
    """A user's or token's role, ordered by what it allows."""

    VIEWER = "viewer"
    DEPLOYER = "deployer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, required: Role) -> bool:
        """Whether this role may do what ``required`` may."""
        return self.rank >= required.rank

    @classmethod
    def parse(cls, value: str, *, field: str = "role") -> Role:
        """The role named ``value``; :class:`AccessError` naming ``field`` otherwise."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            names = ", ".join(r.value for r in cls)
            raise AccessError(f"{field}: {value!r} is no role; use one of {names}") from None


_RANKS = {Role.VIEWER: 0, Role.DEPLOYER: 1, Role.ADMIN: 2}

ACTION_ROLES: dict[str, Role] = {
    "view": Role.VIEWER,
    "judgment.approve": Role.DEPLOYER,
    "judgment.reject": Role.DEPLOYER,
    "release.promote": Role.DEPLOYER,
    "release.rollback": Role.DEPLOYER,
    "run.restart": Role.DEPLOYER,
    "run.cancel": Role.DEPLOYER,
    "account.manage": Role.ADMIN,
}
"""The least role each action needs; the audit trail records actions by these names."""


def validate_username(name: str) -> str:
    """``name`` if usable as a login: lower case, starts with a letter, 2 to 63 of
    letters, digits, ``.``, ``_`` and ``-``."""
    if not _USERNAME.fullmatch(name):
        raise AccessError(f"username: {name!r} is not usable; use 2 to 63 lower-case "
                          "letters, digits, '.', '_' or '-', starting with a letter")
    return name


def validate_password(password: str, *, username: str = "") -> str:
    """``password`` if acceptable: at least :data:`MIN_PASSWORD_LENGTH` characters, not
    the username, not one character repeated."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccessError(f"password: too short ({len(password)} characters); use at least "
                          f"{MIN_PASSWORD_LENGTH}")
    if username and password.lower() == username.lower():
        raise AccessError("password: must not be the username")
    if len(set(password)) == 1:
        raise AccessError("password: one character repeated is guessable; choose another")
    return password


def new_token() -> str:
    """A fresh API token: the prefix (so leaked tokens are recognisable) and 256 random
    bits. Shown once; only :func:`hash_token` of it is stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the store keeps of a token: its SHA-256. A random 256-bit secret needs no salt
    or slow hash, and a fast hash lets every API request look its token up by index."""
    if not token.startswith(TOKEN_PREFIX):
        raise AccessError(f"token: not a Shipyard API token (they start with "
                          f"{TOKEN_PREFIX!r})")
    return hashlib.sha256(token.encode()).hexdigest()
