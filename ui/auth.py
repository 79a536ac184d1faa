"""Who is asking, and may they: sign-in sessions, API tokens, roles and CSRF.

A request is made by a :class:`Principal`, found in this order:

1. ``Authorization: Bearer shy_...``: an API token (its role, capped by its owner's);
2. the session cookie set at ``/login``: a random 256-bit token naming a live row of
   ``ui_sessions`` (:mod:`shipyard.store.sessions`); the cookie holds nothing else, so
   ending the row (signing out, a new password, disabling the user, from this process or
   the CLI) ends the session at the next request;
3. anonymous, only when ``SHIPYARD_UI_ANONYMOUS_ROLE=viewer`` allows it; otherwise nobody.

Pages send nobody to the login page (a form posted without a session is answered 401);
the API answers 401 (with ``WWW-Authenticate: Bearer``) or 403. Requests that change
something and are authenticated by the cookie must carry the session's CSRF token (a form
field ``csrf_token`` or the ``X-CSRF-Token`` header): the cookie travels with any request a
browser makes, the token only with ours. The CSRF token is the HMAC of the cookie's token
under the UI key, so it needs no storage and changes with every sign-in. A browser that is
not signed in gets a cookie token too (with no row behind it), so the login form carries
a CSRF token as well (login CSRF: signing a victim in as the attacker).
Token-authenticated requests need none; no browser adds that header by itself.

Cookies are ``HttpOnly``, ``SameSite=Lax``, and ``Secure`` when the request came over
HTTPS (directly, or through a proxy in ``SHIPYARD_TRUSTED_PROXIES`` saying so) or
``SHIPYARD_UI_SECURE_COOKIES`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from fastapi import HTTPException, Request, Response
from fastapi.responses import RedirectResponse

from shipyard.adapters.secret_files import PrivateFileError, read_or_create_secret
from shipyard.domain.access import Role, hash_token
from shipyard.settings import Settings
from shipyard.store import Accounts
from shipyard.store.sessions import SessionRecord, Sessions, new_session_token

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "MIN_KEY_BYTES",
    "SESSION_COOKIE",
    "LoginRequired",
    "Principal",
    "UiKeyError",
    "api_principal",
    "browser_token",
    "check_csrf",
    "csrf_token",
    "live_credentials",
    "login_redirect",
    "page_principal",
    "principal_of",
    "remember_browser",
    "secret_key",
    "session_of",
    "sign_in",
    "sign_out",
    "valid_csrf",
]

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_COOKIE = "shipyard_session"
MIN_KEY_BYTES = 32
KEY_VARIABLE = "SHIPYARD_UI_SECRET_KEY"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class UiKeyError(ValueError):
    """The UI key is missing, empty or too short; the message names where it came from
    and how to fix it."""


@dataclass(frozen=True)
class Principal:
    """Who makes a request and with which role. ``credential`` names what proved it
    (``session:<sha256>`` or ``token:<sha256>``; None for anonymous): an open event
    stream is ended once it no longer works."""

    name: str
    role: Role
    via: Literal["session", "token", "anonymous", "cli"]
    credential: str | None = None

    def may(self, required: Role) -> bool:
        return self.role.allows(required)


class LoginRequired(Exception):
    """A page needs a signed-in user; the handler sends the browser to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


# -- the UI key ---------------------------------------------------------------------------


def secret_key(settings: Settings) -> str:
    """The key that derives CSRF tokens: ``SHIPYARD_UI_SECRET_KEY``, else the one kept in
    ``<home>/ui-secret-key`` (made once, readable by the owner only). Either must hold at
    least :data:`MIN_KEY_BYTES` bytes: :class:`UiKeyError` otherwise, and for an empty or
    cut-short file (never an empty key)."""
    if settings.ui_secret_key is not None:
        return _long_enough(
            settings.ui_secret_key.get_secret_value(), KEY_VARIABLE,
            "set it to the output of `python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(48))'`, or unset it to use <home>/ui-secret-key")
    path: Path = settings.home / "ui-secret-key"
    try:
        # Made once, whole, linked into place: UIs starting at once agree on one key.
        key = read_or_create_secret(path, lambda: secrets.token_urlsafe(48), what="the UI key")
    except PrivateFileError as err:
        raise UiKeyError(f"{err} (everyone signs in again), or set {KEY_VARIABLE}") from err
    return _long_enough(key, str(path), "the file is cut short: delete it and start the "
                        "UI again to make a new one (everyone signs in again), or set "
                        f"{KEY_VARIABLE}")


def _long_enough(key: str, where: str, fix: str) -> str:
    """``key`` when it holds at least :data:`MIN_KEY_BYTES` bytes; else :class:`UiKeyError`
    saying ``where`` it came from and the ``fix``."""
    if len(key.encode()) < MIN_KEY_BYTES:
        raise UiKeyError(f"{where} holds {len(key.encode())} bytes; the UI key needs at "
                         f"least {MIN_KEY_BYTES}: {fix}")
    return key


# -- who is asking ------------------------------------------------------------------------


def browser_token(request: Request) -> str | None:
    """The token in the browser's session cookie, if it sent one."""
    return request.cookies.get(SESSION_COOKIE) or None


def session_of(request: Request) -> SessionRecord | None:
    """The live session of the request's cookie, or None. Blocking (a store read)."""
    if hasattr(request.state, "session_record"):
        found: SessionRecord | None = request.state.session_record
        return found
    token = browser_token(request)
    sessions: Sessions = request.app.state.sessions
    request.state.session_record = sessions.find(token) if token else None
    return request.state.session_record  # type: ignore[no-any-return]


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
        found = Principal(owner.name, role, "token",
                          f"token:{hash_token(credentials.strip())}")
    elif (session := session_of(request)) is not None:
        found = Principal(session.user.name, session.user.role, "session",
                          f"session:{session.digest}")
    if found is None and settings.ui_anonymous_role:
        found = Principal("anonymous", Role.parse(settings.ui_anonymous_role), "anonymous")
    request.state.principal = found
    return found


def live_credentials(accounts: Accounts, sessions: Sessions,
                     credentials: Collection[str]) -> set[str]:
    """Which of ``credentials`` (as in :attr:`Principal.credential`) still work, asked of
    the store in one query per kind. Blocking."""
    digests: dict[str, set[str]] = {"session": set(), "token": set()}
    for credential in credentials:
        kind, _, digest = credential.partition(":")
        if kind in digests:
            digests[kind].add(digest)
    return ({f"session:{d}" for d in sessions.live(digests["session"])}
            | {f"token:{d}" for d in accounts.live_tokens(digests["token"])})


def api_principal(required: Role) -> Callable[[Request], Principal]:
    """A dependency for API routes: the principal if its role allows ``required``; else
    401 (nobody) or 403 (too little, or an unsafe cookie request without its CSRF
    token), with a message that says what to do."""

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
    """A dependency for pages: as :func:`api_principal`, but nobody is sent to /login
    when reading, and answered 401 when posting a form (the form's work is lost either
    way; a redirect would hide that)."""

    def dependency(request: Request) -> Principal:
        principal = principal_of(request)
        if principal is None:
            if request.method not in _SAFE_METHODS:
                raise HTTPException(401, "you are not signed in (or your session ended): "
                                    "sign in and try again")
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


# -- CSRF -----------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's browser: the HMAC of its cookie token. A browser
    without a cookie is given one (:func:`remember_browser` sets it on the response)."""
    token = browser_token(request) or getattr(request.state, "new_browser_token", None)
    if token is None:
        token = new_session_token()
        request.state.new_browser_token = token
    return _csrf_for(request, token)


def _csrf_for(request: Request, token: str) -> str:
    key: bytes = request.app.state.ui_key
    return hmac.new(key, b"csrf\0" + token.encode(), hashlib.sha256).hexdigest()


def remember_browser(request: Request, response: Response) -> None:
    """Set the cookie token :func:`csrf_token` made for a browser that had none."""
    token = getattr(request.state, "new_browser_token", None)
    if token is not None:
        _set_cookie(request, response, token, max_age=None)


def check_csrf(request: Request, principal: Principal, form_token: str | None = None) -> None:
    """Refuse (403) an unsafe request authenticated by the cookie without the session's
    CSRF token in the header or ``form_token``."""
    if request.method in _SAFE_METHODS or principal.via != "session":
        return
    if not valid_csrf(request, form_token or request.headers.get(CSRF_HEADER, "")):
        raise HTTPException(403, "the form's CSRF token is missing or stale; reload the "
                            "page and try again")


def valid_csrf(request: Request, given: str) -> bool:
    """Whether ``given`` is the CSRF token of the request's cookie."""
    token = browser_token(request)
    if not token or not given:
        return False
    return hmac.compare_digest(_csrf_for(request, token), given)


# -- signing in and out ---------------------------------------------------------------------


def sign_in(request: Request, response: Response, name: str) -> None:
    """Start a session for ``name`` under a new cookie token (one planted in the browser
    before sign-in is worthless after it), lasting ``SHIPYARD_UI_SESSION_HOURS``."""
    settings: Settings = request.app.state.settings
    sessions: Sessions = request.app.state.sessions
    lifetime = timedelta(hours=settings.ui_session_hours)
    token, _ = sessions.start(name, lifetime=lifetime)
    _set_cookie(request, response, token, max_age=int(lifetime.total_seconds()))


def sign_out(request: Request, response: Response) -> None:
    """Sign the request's user out everywhere: every session of that user ends (their
    open event streams close within seconds), and the cookie is dropped. Ending only this
    browser's session would leave a forgotten one (a shared machine, a lost phone) live
    until it expires; signing in again elsewhere is cheap."""
    token = browser_token(request)
    if token:
        sessions: Sessions = request.app.state.sessions
        found = sessions.find(token)
        if found is not None:
            sessions.end_all(found.user.name)
        sessions.end(token)  # an expired or disabled user's row, gone too
    response.delete_cookie(SESSION_COOKIE, path="/", secure=_secure(request), httponly=True,
                           samesite="lax")


def _secure(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    # The scheme is https over TLS, or when a trusted proxy said so (ProxyHeadersMiddleware
    # believes X-Forwarded-Proto from SHIPYARD_TRUSTED_PROXIES only).
    return settings.ui_secure_cookies or request.url.scheme == "https"


def _set_cookie(request: Request, response: Response, token: str, *,
                max_age: int | None) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True,
                        samesite="lax", secure=_secure(request))


def login_redirect(next_path: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(next_path, safe='/')}", status_code=303)

