"""Settings that hold lists, read from one environment variable. Pure."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["string_list"]


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
