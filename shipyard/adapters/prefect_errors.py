"""What goes wrong talking to Prefect, importable without importing Prefect (its import
takes a second, which a command that only hands a run over should not pay)."""

from __future__ import annotations

__all__ = ["UNAUTHORIZED", "PrefectError", "PrefectUnauthorized", "PrefectUnavailable"]


class PrefectError(RuntimeError):
    """The Prefect server refused or could not be reached; the message says which."""


class PrefectUnavailable(PrefectError):
    """The Prefect server could not be reached, or answered that it cannot serve now (5xx):
    asking again later may work, asking again at once will not."""


class PrefectUnauthorized(PrefectUnavailable):
    """The Prefect server refused this client's credentials (401): every request will be
    refused until it carries the server's auth string."""


UNAUTHORIZED = ("the Prefect server refused Shipyard's credentials (HTTP 401): "
                "PREFECT_API_AUTH_STRING is missing or is not the server's; the local "
                "server's is in $SHIPYARD_HOME/prefect/api-auth-string, which `shipyard "
                "up` makes")
