"""Credentials in repository URLs, hidden wherever a URL is shown. Pure.

A repository may be given as ``https://user:token@host/owner/repo.git`` (or with the token
alone as the user, as GitHub allows): git needs it to clone, but no page, API answer, log
line or error message may repeat it. What is hidden:

* in ``http``, ``https`` and any other scheme but ssh, the whole user part (it may be the
  token itself): ``https://***@host/...``;
* in ``ssh://`` URLs, the password only: the user (``git``) says which key is used and is
  no secret: ``ssh://git:***@host/...``.

:func:`redact_text` finds such URLs anywhere in free text (git's own error messages quote
the URL), :func:`redact_url` is the same for one URL, and :func:`redact_values` applies it
to every string in a JSON-like value (a run's parameters).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "redact_text", "redact_url", "redact_values"]

MASK = "***"

# The user part is everything up to the last "@" before the path: a password with an
# unescaped "@" in it is still hidden whole.
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@",
                       re.IGNORECASE)
_SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})


def _mask(match: re.Match[str]) -> str:
    scheme, userinfo = match["scheme"], match["userinfo"]
    if scheme[:-3].lower() in _SSH_SCHEMES:
        user, colon, _ = userinfo.partition(":")
        return f"{scheme}{user}:{MASK}@" if colon else match[0]
    return f"{scheme}{MASK}@"


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    if "@" not in text:  # most log lines: no work
        return text
    return _USERINFO.sub(_mask, text)


def redact_url(url: str) -> str:
    """``url`` without its credentials (a URL without any is returned as it is)."""
    return redact_text(url)


def redact_values(value: Any) -> Any:
    """A copy of a JSON-like ``value`` (dicts, lists, strings, numbers) with every string
    passed through :func:`redact_text`."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_values(item) for item in value]
    return value
