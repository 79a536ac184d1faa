"""Accounts of the web UI: ``shipyard user add|set|list`` and ``shipyard token
create|list|revoke``. Run on the machine that holds the store; whoever can run them there
is trusted as an admin, as with any other direct access to the database. They change the
store, which the running UI reads on every request, so a new password, a disabled user or
a revoked token takes effect there at once (open event streams within seconds)."""

from __future__ import annotations

import getpass
import os
import sys
from typing import Annotated

import typer
from rich.table import Table

from shipyard.cli import app
from shipyard.cli.context import store
from shipyard.cli.errors import CommandFailed, console
from shipyard.domain.access import AccessError, Role, validate_username
from shipyard.store import Accounts

__all__ = ["token_app", "user_app"]

user_app = typer.Typer(help="Who may sign in to the web UI.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens for the web API.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")

RoleOption = Annotated[str, typer.Option("--role", help="viewer, deployer or admin.")]
PASSWORD_VARIABLE = "SHIPYARD_PASSWORD"  # noqa: S105 - a variable name


def _role(value: str) -> Role:
    try:
        return Role.parse(value, field="--role")
    except AccessError as err:
        raise typer.BadParameter(str(err)) from None


def _password(name: str) -> str:
    """The new password: from $SHIPYARD_PASSWORD (scripts), else asked twice."""
    given = os.environ.get(PASSWORD_VARIABLE)
    if given:
        return given
    if not sys.stdin.isatty():
        raise CommandFailed(f"no password: set {PASSWORD_VARIABLE} or run this in a terminal")
    first = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise CommandFailed("the two passwords differ; nothing changed")
    return first


@user_app.command("add")
def user_add(name: Annotated[str, typer.Argument(metavar="NAME")],
             role: RoleOption = "viewer") -> None:
    """Add a user who signs in with a password (asked for, or $SHIPYARD_PASSWORD)."""
    chosen = _role(role)
    validate_username(name)  # before asking for a password
    record = Accounts(store()).add_user(name, _password(name), chosen)
    console.print(f"added {record.name} ({record.role.value})", highlight=False)


@user_app.command("set")
def user_set(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    role: Annotated[str | None, typer.Option("--role", help="A new role.")] = None,
    password: Annotated[bool, typer.Option("--password", help="Set a new password.")] = False,
    disable: Annotated[bool | None, typer.Option(
        "--disable/--enable", help="Stop or allow signing in (and the user's tokens).",
        show_default=False)] = None,
) -> None:
    """Change a user's role or password, or disable them. A new password or disabling
    signs the user out everywhere: their sessions end, and their open live pages close
    within seconds."""
    record = Accounts(store()).set_user(
        name, password=_password(name) if password else None,
        role=_role(role) if role else None, disabled=disable)
    state = "active" if record.active else "disabled"
    console.print(f"{record.name}: {record.role.value}, {state}", highlight=False)
    if password or disable:
        console.print(f"{record.name} is signed out everywhere", highlight=False)


@user_app.command("list")
def user_list() -> None:
    """The users, their roles and whether they may sign in."""
    table = Table("NAME", "ROLE", "STATE", "SINCE")
    for user in Accounts(store()).users():
        table.add_row(user.name, user.role.value, "active" if user.active else "disabled",
                      user.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="What the token is for.")],
    owner: Annotated[str, typer.Option("--owner", help="The user it acts as.")],
    role: RoleOption = "viewer",
) -> None:
    """Create an API token; it is printed once (send it as `Authorization: Bearer ...`)."""
    token, record = Accounts(store()).create_token(name, owner=owner, role=_role(role))
    console.print(f"token {record.id} ({record.role.value}, acts as {record.owner}); "
                  "shown once:", highlight=False)
    # Plain print: a token must reach a pipe intact, without Rich's wrapping.
    print(token)


@token_app.command("list")
def token_list(owner: Annotated[str | None, typer.Option("--owner")] = None) -> None:
    """The tokens (never their secrets)."""
    table = Table("ID", "NAME", "OWNER", "ROLE", "LAST USED", "STATE")
    for token in Accounts(store()).tokens(owner):
        used = token.last_used_at.strftime("%Y-%m-%d %H:%M") if token.last_used_at else "-"
        table.add_row(str(token.id), token.name, token.owner, token.role.value, used,
                      "revoked" if token.revoked_at else "live")
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Revoke a token at once: requests with it are refused, and event streams it opened
    close within seconds."""
    record = Accounts(store()).revoke_token(token_id)
    console.print(f"token {record.id} ({record.name}) revoked", highlight=False)
