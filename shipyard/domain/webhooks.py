"""GitHub webhook deliveries as plain data: the signature over the raw body, the delivery
id, and a ``push`` event's payload parsed into a typed :class:`Push`.

Everything here works on bytes and parsed JSON, so the HTTP layer only reads the body
(bounded), asks these functions, and answers with what they decide. The payload format is
GitHub's own (https://docs.github.com/en/webhooks/webhook-events-and-payloads#push): a
field is checked only where Shipyard relies on it, and a wrong one is named in the error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

__all__ = [
    "MAX_LISTED_COMMITS",
    "InvalidPayload",
    "InvalidSignature",
    "MalformedBody",
    "Push",
    "RefKind",
    "decode_body",
    "parse_push",
    "sign",
    "validate_delivery_id",
    "verify_signature",
]

MAX_LISTED_COMMITS = 2048
"""GitHub lists at most this many commits in a push; a full list may have been cut short."""

RefKind = Literal["branch", "tag", "other"]

_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_DELIVERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
_FULL_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}(?:/[A-Za-z0-9._-]{1,100}){1,4}")
_MAX_URL = 1000  # the store's column
_MAX_REF = 255
_MAX_ACTOR = 120
_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # controls, lone surrogates


class InvalidSignature(ValueError):
    """``X-Hub-Signature-256`` is missing, malformed or does not match the body."""


class MalformedBody(ValueError):
    """The body is not JSON (or not GitHub's form encoding of it)."""


class InvalidPayload(ValueError):
    """Well-formed JSON that is not what the event promises; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> None:
    """Return if ``header`` is the HMAC-SHA256 of ``body`` under ``secret``; raise
    :class:`InvalidSignature` saying what is wrong otherwise.

    The comparison takes the same time wherever the first differing byte is, so an
    attacker cannot guess the signature byte by byte from answer times.
    """
    if not header:
        raise InvalidSignature("X-Hub-Signature-256 is missing; sign deliveries with the "
                               "webhook's secret")
    match = _SIGNATURE.fullmatch(header.strip())
    if match is None:
        raise InvalidSignature("X-Hub-Signature-256 must be 'sha256=' and 64 hex digits")
    expected = sign(secret, body)
    if not hmac.compare_digest(expected, "sha256=" + match[1].lower()):
        raise InvalidSignature("X-Hub-Signature-256 does not match the body; is the secret "
                               "the same on both sides?")


def validate_delivery_id(delivery_id: str | None) -> str:
    """Return the ``X-GitHub-Delivery`` id, or raise ValueError when it is missing or is
    not an id (letters, digits, ``._:-``; at most 100)."""
    if not delivery_id:
        raise ValueError("X-GitHub-Delivery is missing; every delivery needs its id, which "
                         "makes a redelivery start nothing new")
    if not _DELIVERY_ID.fullmatch(delivery_id):
        raise ValueError("X-GitHub-Delivery must be letters, digits and '._:-', at most 100 "
                         "characters")
    return delivery_id


def decode_body(body: bytes, content_type: str) -> object:
    """The JSON document a delivery carries: the body itself, or its ``payload`` field
    when GitHub sends ``application/x-www-form-urlencoded``. Raises
    :class:`MalformedBody`."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as err:
            raise MalformedBody(f"the form body cannot be decoded: {err}") from err
        payloads = fields.get("payload")
        if not payloads or len(payloads) != 1:
            raise MalformedBody("a form-encoded delivery must have exactly one 'payload' field")
        text: str | bytes = payloads[0]
    else:
        text = body
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise MalformedBody(f"the body is not valid JSON: {err}") from err


@dataclass(frozen=True, slots=True)
class Push:
    """A ``push`` event, reduced to what decides whether and what to build."""

    ref: str  # the full ref: refs/heads/main, refs/tags/v1.2
    before: str
    after: str
    clone_url: str
    repository: str  # owner/name (repository.full_name); "" when the payload has none
    pusher: str
    deleted: bool
    changed_paths: frozenset[str] | None  # None: the payload cannot tell every file

    @property
    def kind(self) -> RefKind:
        if self.ref.startswith("refs/heads/"):
            return "branch"
        if self.ref.startswith("refs/tags/"):
            return "tag"
        return "other"

    @property
    def name(self) -> str:
        """The branch or tag name (``main``, ``v1.2``); the full ref for other refs."""
        for prefix in ("refs/heads/", "refs/tags/"):
            if self.ref.startswith(prefix):
                return self.ref.removeprefix(prefix)
        return self.ref


def parse_push(payload: object) -> Push:
    """Check a ``push`` payload and return it as a :class:`Push`; raise
    :class:`InvalidPayload` naming the first field that is wrong.

    A branch deletion arrives with ``deleted: true`` and ``after`` all zeros; either makes
    :attr:`Push.deleted` true. ``head_commit`` may be null (a deletion, or a tag on an
    existing commit) and is not relied on.
    """
    if not isinstance(payload, Mapping):
        raise InvalidPayload("(body)", "a push payload must be a JSON object")
    ref = _string(payload, "ref")
    if not ref.startswith("refs/") or len(ref) > _MAX_REF or not _printable(ref):
        raise InvalidPayload("ref", f"{ref!r} must be a full git ref such as 'refs/heads/main'")
    before, after = _sha(payload, "before"), _sha(payload, "after")
    repository = payload.get("repository")
    if not isinstance(repository, Mapping):
        raise InvalidPayload("repository", "must be an object with clone_url")
    clone_url = _string(repository, "clone_url", "repository.clone_url")
    if len(clone_url) > _MAX_URL:
        raise InvalidPayload("repository.clone_url", f"longer than {_MAX_URL} characters")
    full_name = repository.get("full_name") or ""
    if not isinstance(full_name, str) or (full_name and not _FULL_NAME.fullmatch(full_name)):
        raise InvalidPayload("repository.full_name", "must be 'owner/name' (letters, digits "
                                                     "and '._-')")
    deleted_flag = payload.get("deleted", False)
    if not isinstance(deleted_flag, bool):
        raise InvalidPayload("deleted", "must be true or false")
    return Push(
        ref=ref, before=before, after=after, clone_url=clone_url,
        repository=full_name,
        pusher=_pusher(payload),
        deleted=deleted_flag or set(after) == {"0"},
        changed_paths=_changed_paths(payload),
    )


def _string(mapping: Mapping[str, object], key: str, field: str | None = None) -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidPayload(field or key, "must be a non-empty string")
    return value


def _printable(text: str) -> bool:
    # What goes into a log line must not be able to start a line of its own.
    return all(c.isprintable() and not c.isspace() for c in text)


def _sha(payload: Mapping[str, object], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not _SHA.fullmatch(value):
        raise InvalidPayload(key, "must be a full commit sha (40 or 64 lowercase hex digits)")
    return value


def _pusher(payload: Mapping[str, object]) -> str:
    # GitHub names the pusher by git name; the sender is the account, a fallback. The
    # name is the run's actor, stored and shown: neither database can encode a lone
    # surrogate (the insert failed, a 500), PostgreSQL takes no NUL, and a control
    # character could write over a terminal's line.
    for key, name_key in (("pusher", "name"), ("sender", "login")):
        who = payload.get(key)
        if isinstance(who, Mapping) and isinstance(who.get(name_key), str) and who[name_key]:
            name = str(who[name_key])[:_MAX_ACTOR]
            if _NOT_TEXT.search(name):
                raise InvalidPayload(f"{key}.{name_key}", "must be text, without control "
                                                          "characters or lone surrogates")
            return name
    return ""


def _changed_paths(payload: Mapping[str, object]) -> frozenset[str] | None:
    commits = payload.get("commits", [])
    if not isinstance(commits, list):
        raise InvalidPayload("commits", "must be a list")
    if not commits or len(commits) >= MAX_LISTED_COMMITS:
        return None  # nothing listed (a new ref at a known commit), or the list was cut
    paths: set[str] = set()
    for index, commit in enumerate(commits):
        if not isinstance(commit, Mapping):
            raise InvalidPayload(f"commits[{index}]", "must be an object")
        for key in ("added", "modified", "removed"):
            files = commit.get(key, [])
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise InvalidPayload(f"commits[{index}].{key}", "must be a list of paths")
            paths.update(files)
    return frozenset(paths)
