"""Settings that hold lists, read from one environment variable. Pure."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["checked_list", "string_list"]


def string_list(value: Any, variable: str, what: str, *, example: str,
                comma_example: str) -> list[str]:
    """``value`` as a list of stripped, non-empty strings: from a JSON list
    (``["a", "b"]``), a comma-separated string (``a,b``), or a list given in code. Anything
    else is a ValueError that names ``variable`` and shows both spellings (``example``
    and ``comma_example``) of ``what`` the list holds."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError as err:
                raise ValueError(f"{variable}: {text!r} is not a JSON list of {what} ({err}); "
                                 f"write '{example}' or '{comma_example}'") from err
        else:
            value = text.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{variable}: must be a list of {what}, such as '{example}' or "
                         f"'{comma_example}'")
    return [v.strip() for v in value if v.strip()]


def checked_list(value: Any, variable: str, what: str, *, example: str, comma_example: str,
                 check: Callable[[list[str]], object]) -> list[str]:
    """:func:`string_list`, then ``check`` on the list; a ValueError ``check`` raises comes
    back naming ``variable``."""
    items = string_list(value, variable, what, example=example, comma_example=comma_example)
    try:
        check(items)
    except ValueError as err:
        raise ValueError(f"{variable}: {err}") from err
    return items
