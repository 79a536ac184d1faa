"""Which clone URLs a webhook delivery may name, decided from the text alone.

A push names the repository Shipyard will fetch and build, so the URL is checked before
anything is recorded, and the check is pure: no filesystem, no DNS. (A check that looked
at the disk would tell a caller, by 422 versus 202, whether a directory exists on the
host.) What passes:

* ``https://host/path`` and ``ssh://[user@]host[:port]/path`` or scp-like
  ``user@host:path``, on a host the operator allows (``SHIPYARD_CLONE_HOSTS``, globs,
  default ``github.com``);
* only with ``SHIPYARD_ALLOW_LOCAL_REPOSITORIES`` (tests, local experiments): ``file://``
  URLs, absolute local paths, and hosts that are internal address literals (loopback,
  link-local, private, or otherwise not global), over any of the schemes above or the
  unauthenticated ``git://`` and ``http://``. An internal address the operator lists
  exactly (no wildcard) in ``SHIPYARD_CLONE_HOSTS`` is allowed over https and ssh.

Everything else is refused, with the reason and the setting that would change it:
``git://`` and ``http://`` to any other host (unauthenticated and unencrypted: anyone on
the path can swap the code), relative paths and ``~``, other schemes (git's ``ext::``
runs a command), option-like text (``-oProxyCommand=...``), spaces and control
characters. Address literals are read as the system resolver reads them, so ``127.1``,
``2130706433``, ``0x7f.0.0.1`` and ``[::ffff:127.0.0.1]`` are loopback too.

A host *name* that resolves to an internal address is not caught here: that would take
DNS, and an answer can change between this check and the clone. ``SHIPYARD_CLONE_HOSTS``
is the guard: name the hosts you trust, never ``*``.

Credentials in a URL (``https://user:token@host/...``) are accepted, but every message
and :attr:`CloneUrl.shown` leave them out, so they reach no log line and no answer.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from shipyard.domain.globs import GlobSet

__all__ = [
    "ALLOWED_SCHEMES",
    "CloneUrl",
    "CloneUrlPolicy",
    "RefusedCloneUrl",
    "Scheme",
    "check_clone_url",
    "is_internal_address",
    "parse_clone_url",
]

Scheme = Literal["https", "ssh", "scp", "http", "git", "file", "path"]
"""``scp`` is ``user@host:path``; ``path`` a local path without a scheme."""

ALLOWED_SCHEMES = "https:// or ssh:// (or git@host:owner/name)"

_NETWORK_SCHEMES = frozenset({"https", "ssh", "http", "git"})
_HOSTNAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}"
                       r"[a-z0-9])?)*")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_SCP = re.compile(r"(?P<user>[^@/:]+)@(?P<host>\[[^\]/]+\]|[^:/\[\]]+):(?P<path>.+)")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,15}")  # anything else may hold credentials
_NUMERIC_PART = re.compile(r"0x[0-9a-f]*|[0-9]+")
_WILDCARDS = frozenset("*?[!")
_LOCAL_HINT = ("set SHIPYARD_ALLOW_LOCAL_REPOSITORIES=true to allow local repositories "
               "(tests, local experiments)")


class RefusedCloneUrl(ValueError):
    """A clone URL Shipyard will not fetch from a webhook; the message says why and what
    would change it, and never repeats the URL's credentials."""


@dataclass(frozen=True, slots=True)
class CloneUrl:
    """A clone URL taken apart. ``host`` is lower-case without brackets (empty for local
    ones); ``shown`` is the URL without its credentials, for messages and allow-lists."""

    scheme: Scheme
    host: str
    path: str
    shown: str

    @property
    def local(self) -> bool:
        """A ``file://`` URL or a local path."""
        return self.scheme in ("file", "path")

    @property
    def repository_path(self) -> str:
        """The path as ``owner/name``: no leading or trailing ``/``, no ``.git``, lower
        case (``https://github.com/Acme/Shop.git`` gives ``acme/shop``)."""
        return self.path.strip("/").removesuffix(".git").casefold()


@dataclass(frozen=True)
class CloneUrlPolicy:
    """The hosts webhook clone URLs may name, and whether local repositories may be."""

    hosts: GlobSet
    allow_local: bool = False

    @classmethod
    def of(cls, hosts: Iterable[str] = ("github.com",), *,
           allow_local: bool = False) -> CloneUrlPolicy:
        """Compile the host patterns (lower-cased); :class:`InvalidPattern` if one is bad."""
        return cls(GlobSet.of(h.lower() for h in hosts), allow_local)

    def lists_exactly(self, host: str) -> bool:
        """Whether a pattern without wildcards names ``host`` (an address in any of its
        spellings: ``fd00::7`` and ``fd00:0::7`` are the same)."""
        wanted = _address(host)
        for pattern in self.hosts.patterns:
            if _WILDCARDS.intersection(pattern):
                continue
            if pattern == host or (wanted is not None and _address(pattern) == wanted):
                return True
        return False


def check_clone_url(url: str, policy: CloneUrlPolicy) -> CloneUrl:
    """Return ``url`` taken apart if ``policy`` lets a webhook name it; raise
    :class:`RefusedCloneUrl` saying why not. Pure: reads nothing but its arguments."""
    parsed = parse_clone_url(url)
    if parsed.local:
        if not policy.allow_local:
            kind = "a file:// URL" if parsed.scheme == "file" else "a local path"
            raise RefusedCloneUrl(f"{kind} is not fetched from a webhook; use "
                                  f"{ALLOWED_SCHEMES} on an allowed host, or {_LOCAL_HINT}")
        return parsed
    internal = is_internal_address(parsed.host)
    if internal:
        if policy.allow_local:
            return parsed
        if not policy.lists_exactly(parsed.host):
            raise RefusedCloneUrl(
                f"host {parsed.host!r} is a loopback, link-local or private address; "
                f"name it exactly in SHIPYARD_CLONE_HOSTS, or {_LOCAL_HINT}")
    if parsed.scheme in ("git", "http"):
        raise RefusedCloneUrl(
            f"{parsed.scheme}:// is neither authenticated nor encrypted (anyone on the path "
            f"can swap the code); use {ALLOWED_SCHEMES}")
    if not internal and not policy.hosts.matches(parsed.host):
        raise RefusedCloneUrl(f"host {parsed.host!r} is not in SHIPYARD_CLONE_HOSTS "
                              f"({policy.hosts.describe()}); add it there to build from it")
    return parsed


def parse_clone_url(url: str) -> CloneUrl:
    """Take ``url`` apart, or raise :class:`RefusedCloneUrl` when it is no clone URL git
    could only read as one: a URL (https, ssh, http, git, file), scp-like
    ``user@host:path``, or an absolute local path. Applies no policy."""
    if not url:
        raise RefusedCloneUrl("is empty")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise RefusedCloneUrl("must not contain spaces or control characters")
    if url.startswith("-"):
        raise RefusedCloneUrl("must not start with '-' (git would read it as an option)")
    if "\\" in url:  # URL parsers disagree on it (WHATWG reads it as '/'): no host games
        raise RefusedCloneUrl("must not contain '\\'")
    if url.startswith("/"):
        return CloneUrl("path", "", url, url)
    if url.startswith("~") or url.startswith("."):
        raise RefusedCloneUrl("a relative path or one starting with '~' names no "
                              "repository; use an absolute path or a URL")
    if "://" in url:
        return _parse_url(url)
    scp = _SCP.fullmatch(url)
    if scp is not None:
        return _parse_scp(scp["user"], scp["host"], scp["path"])
    raise RefusedCloneUrl(f"is not a clone URL: use {ALLOWED_SCHEMES}, such as "
                          "'https://github.com/owner/name.git'")


def _parse_url(url: str) -> CloneUrl:
    scheme_text = url.split("://", 1)[0].lower()
    if scheme_text == "file":
        return _parse_file_url(url)
    if scheme_text not in _NETWORK_SCHEMES:
        named = repr(scheme_text) if _SCHEME.fullmatch(scheme_text) else "of this URL"
        raise RefusedCloneUrl(f"the scheme {named} is not one Shipyard fetches; use "
                              f"{ALLOWED_SCHEMES}")
    scheme: Scheme = scheme_text  # type: ignore[assignment]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:  # a bad port or bracket
        raise RefusedCloneUrl(f"cannot be read as a URL: {err}") from err
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise RefusedCloneUrl("must not have a ?query or #fragment")
    if parts.netloc.count("@") > 1:  # which '@' ends the credentials is a guess
        raise RefusedCloneUrl("must have at most one '@' before the host")
    host = _host(parts.hostname or "", bracketed="[" in parts.netloc)
    if not parts.path.strip("/"):
        raise RefusedCloneUrl("names a host but no repository path")
    user = parts.username
    if scheme == "ssh" and user is not None and not _USER.fullmatch(user):
        raise RefusedCloneUrl("the ssh user must be letters, digits and '._-'")
    # The user of an ssh URL is an account name (git@); anything else in the userinfo
    # may be a token, and is left out of what is shown.
    keep_user = scheme == "ssh" and user is not None and parts.password is None
    netloc = (f"{user}@" if keep_user else "") + _netloc(host, port)
    return CloneUrl(scheme, host, parts.path, f"{scheme}://{netloc}{parts.path}")


def _parse_file_url(url: str) -> CloneUrl:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise RefusedCloneUrl("a file:// URL names no host other than localhost")
    if not parts.path.startswith("/") or parts.query or parts.fragment:
        raise RefusedCloneUrl("a file:// URL needs an absolute path and nothing more")
    return CloneUrl("file", "", parts.path, f"file://{parts.path}")


def _parse_scp(user: str, host_text: str, path: str) -> CloneUrl:
    if not _USER.fullmatch(user):
        raise RefusedCloneUrl("the ssh user must be letters, digits and '._-'")
    bracketed = host_text.startswith("[")
    host = _host(host_text.strip("[]").lower(), bracketed=bracketed)
    if path.startswith("-") or not path.strip("/"):
        raise RefusedCloneUrl("an scp-like URL needs a repository path after ':' that does "
                              "not start with '-'")
    shown_host = f"[{host}]" if ":" in host else host
    return CloneUrl("scp", host, path, f"{user}@{shown_host}:{path}")


def _host(host: str, *, bracketed: bool) -> str:
    if not host:
        raise RefusedCloneUrl("names no host")
    if bracketed:
        if _address(host) is None:
            raise RefusedCloneUrl(f"[{_printable(host)}] is not an IPv6 address")
        return host
    if not _HOSTNAME.fullmatch(host):
        raise RefusedCloneUrl(f"host {_printable(host)!r} is not a host name (letters, "
                              "digits, '-' and '.'; not starting with '-')")
    if _looks_numeric(host) and _address(host) is None:
        raise RefusedCloneUrl(f"host {host!r} is not a valid address")
    return host


def _netloc(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port is not None else shown


def is_internal_address(host: str) -> bool:
    """Whether ``host`` (as in a URL, lower case, no brackets) is ``localhost`` or an
    address literal that is not global: loopback, link-local, private, shared, reserved,
    unspecified or multicast, also when written the old ways (``127.1``, ``0x7f000001``)
    or mapped into IPv6 (``::ffff:127.0.0.1``, 6to4, Teredo)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True  # RFC 6761: always the loopback
    address = _address(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return True  # a zone is only ever given for link-local addresses
        embedded = address.ipv4_mapped or address.sixtofour or (
            address.teredo[1] if address.teredo else None)
        if embedded is not None and not embedded.is_global:
            return True
    return not address.is_global or address.is_multicast


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an address literal, read as ``inet_aton`` and ``inet_pton`` read it;
    None for a host name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not _looks_numeric(host):
        return None
    return _legacy_ipv4(host)


def _looks_numeric(host: str) -> bool:
    # A name whose every label is a number is no name (no top-level domain is numeric):
    # the resolver reads it as an address.
    parts = host.split(".")
    return 1 <= len(parts) <= 4 and all(_NUMERIC_PART.fullmatch(p) for p in parts)


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    # inet_aton: each part decimal, 0x hex or 0-prefixed octal; the last part fills the
    # remaining bytes, so 127.1 is 127.0.0.1 and 2130706433 is too.
    values: list[int] = []
    for part in host.split("."):
        try:
            if part.startswith("0x"):
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part))
        except ValueError:
            return None
    *leading, last = values
    if any(v > 255 for v in leading) or last >= 256 ** (4 - len(leading)):
        return None
    number = last
    for index, value in enumerate(leading):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _printable(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."
