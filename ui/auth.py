"""Who is asking, and may they: sign-in sessions, API tokens, roles and CSRF.

A request is made by a :class:`Principal`, found in this order:

1. ``Authorization: Bearer shy_...``: an API token (its role, capped by its owner's);
2. the signed session cookie set at ``/login`` (Starlette's ``SessionMiddleware``);
3. anonymous, only when ``SHIPYARD_UI_ANONYMOUS_ROLE=viewer`` allows it; otherwise nobody.

Pages send nobody to the login page; the API answers 401 (with ``WWW-Authenticate:
Bearer``) or 403. Requests that change something and are authenticated by the cookie must
carry the session's CSRF token (a form field ``csrf_token`` or the ``X-CSRF-Token``
header): the cookie travels with any request a browser makes, the token only with ours.
Token-authenticated requests need none; no browser adds that header by itself.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse

from shipyard.domain.access import Role
from shipyard.settings import Settings
from shipyard.store import Accounts

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LoginRequired",
    "Principal",
    "api_principal",
    "check_csrf",
    "csrf_token",
    "login_redirect",
    "page_principal",
    "principal_of",
    "secret_key",
    "sign_in",
    "sign_out",
]

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """Who makes a request and with which role."""

    name: str
    role: Role
    via: Literal["session", "token", "anonymous"]

    def may(self, required: Role) -> bool:
        return self.role.allows(required)


class LoginRequired(Exception):
    """A page needs a signed-in user; the handler sends the browser to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def secret_key(settings: Settings) -> str:
    """The key that signs session cookies: configured, or kept in ``<home>/ui-secret-key``
    (created once, readable by the owner only) so sign-ins survive a restart."""
    if settings.ui_secret_key is not None:
        return settings.ui_secret_key.get_secret_value()
    path: Path = settings.home / "ui-secret-key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        # O_EXCL: two processes starting at once keep one key, the first one written.
        with open(path, "x", opener=lambda p, f: os.open(p, f, 0o600)) as out:
            out.write(key + "\n")
        return key
    except FileExistsError:
        return path.read_text().strip()


def principal_of(request: Request) -> Principal | None:
    """Who makes ``request`` (see the module's order), or None for nobody. Blocking (a
    store read): FastAPI runs it in its thread pool as a plain dependency."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    accounts: Accounts = request.app.state.accounts
    settings: Settings = request.app.state.settings
    found: Principal | None = None
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        owned = accounts.token_owner(credentials.strip())
        if owned is None:
            raise HTTPException(401, "the API token is unknown, revoked, or its owner is "
                                "disabled; create one with `shipyard token create`",
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        token, owner = owned
        role = token.role if owner.role.allows(token.role) else owner.role
        found = Principal(owner.name, role, "token")
    elif (name := request.session.get("user")) is not None:
        user = accounts.user(name)
        fresh = time.time() - float(request.session.get("at", 0)) < settings.ui_session_hours * 3600
        if user is not None and user.active and fresh:
            found = Principal(user.name, user.role, "session")
        else:
            request.session.clear()
    if found is None and settings.ui_anonymous_role:
        found = Principal("anonymous", Role.parse(settings.ui_anonymous_role), "anonymous")
    request.state.principal = found
    return found


def api_principal(required: Role) -> Callable[[Request], Principal]:
    """A dependency for API routes: the principal if its role allows ``required``; else
    401 (nobody) or 403 (too little), with a message that says what to do."""

    def dependency(request: Request) -> Principal:
        principal = principal_of(request)
        if principal is None:
            raise HTTPException(401, "sign in, or send an API token as 'Authorization: "
                                "Bearer shy_...' (`shipyard token create`)",
                                headers={"WWW-Authenticate": "Bearer"})
        _require(principal, required)
        check_csrf(request, principal)
        return principal

    return dependency


def page_principal(required: Role) -> Callable[[Request], Principal]:
    """A dependency for pages: as :func:`api_principal`, but nobody is sent to /login."""

    def dependency(request: Request) -> Principal:
        principal = principal_of(request)
        if principal is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(target)
        _require(principal, required)
        return principal

    return dependency


def _require(principal: Principal, required: Role) -> None:
    if not principal.may(required):
        raise HTTPException(403, f"{principal.name} has the role {principal.role.value}; "
                            f"this needs {required.value} (an admin can change roles with "
                            "`shipyard user set NAME --role ...`)")


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


def check_csrf(request: Request, principal: Principal, form_token: str | None = None) -> None:
    """Refuse (403) an unsafe request authenticated by the cookie without the session's
    CSRF token in the header or ``form_token``."""
    if request.method in _SAFE_METHODS or principal.via == "token":
        return
    expected = request.session.get("csrf")
    given = form_token or request.headers.get(CSRF_HEADER, "")
    if not expected or not hmac.compare_digest(str(expected), given):
        raise HTTPException(403, "the form's CSRF token is missing or stale; reload the "
                            "page and try again")


def sign_in(request: Request, name: str) -> None:
    """Start a session for ``name``: a new CSRF token, so one planted before sign-in is
    worthless after it."""
    request.session.clear()
    request.session.update(user=name, at=time.time(), csrf=secrets.token_urlsafe(32))


def sign_out(request: Request) -> None:
    request.session.clear()


def login_redirect(next_path: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(next_path, safe='/')}", status_code=303)
