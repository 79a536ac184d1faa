"""An app's image, named by content: the one form an image takes from the push that made it
to the pod spec that runs it.

The registry answers a push with the digest of the image's manifest; from then on the image
is that digest in that repository of that registry. A plan, a bake and a release carry an
:class:`ImageRef`, never a formatted ``registry/repo@digest`` string to be parsed back.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import BeforeValidator

__all__ = ["ImageRef", "OptionalRecordedImage", "RecordedImage", "image_repository", "is_digest"]

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REPOSITORY = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")


def is_digest(text: str) -> bool:
    """Whether ``text`` is a content digest as registries give them: ``sha256:`` and 64
    lowercase hex digits."""
    return _DIGEST.fullmatch(text) is not None


def image_repository(app: str) -> str:
    """Where an app's images live in the registry."""
    return f"shipyard/{app}"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image by content: ``registry`` (host and port), ``repository`` in it, and the
    manifest ``digest`` the registry reported. Refuses a malformed field, naming it."""

    registry: str
    repository: str
    digest: str

    def __post_init__(self) -> None:
        if not self.registry or any(c in self.registry for c in "/@ "):
            raise ValueError(f"image registry {self.registry!r} must be a host[:port], "
                             "without a path")
        if _REPOSITORY.fullmatch(self.repository) is None:
            raise ValueError(f"image repository {self.repository!r} must be lowercase path "
                             "components (like shipyard/gateway)")
        if not is_digest(self.digest):
            raise ValueError(f"image digest {self.digest!r} must be 'sha256:' and 64 "
                             "lowercase hex digits")

    @classmethod
    def of_app(cls, registry: str, app: str, digest: str) -> ImageRef:
        """``app``'s image with ``digest`` in ``registry``."""
        return cls(registry, image_repository(app), digest)

    @property
    def reference(self) -> str:
        """What a pod spec names: ``registry/repository@digest``."""
        return f"{self.registry}/{self.repository}@{self.digest}"

    @property
    def short(self) -> str:
        """The digest's first 12 hex digits, for logs and summaries."""
        return self.digest[7:19]


def _from_recorded(value: object) -> object:
    """Stage outputs recorded before images were typed hold ``registry/repo@digest`` (or
    ``""`` for none): read them as the :class:`ImageRef` (or ``None``) they meant, so a
    restart or a resumed run can reuse them."""
    if not isinstance(value, str):
        return value
    if not value:
        return None
    name, _, digest = value.rpartition("@")
    registry, _, repository = name.partition("/")
    return ImageRef(registry, repository, digest)


RecordedImage = Annotated[ImageRef, BeforeValidator(_from_recorded)]
"""An :class:`ImageRef` field of a stage's outputs, older records included."""
OptionalRecordedImage = Annotated[ImageRef | None, BeforeValidator(_from_recorded)]
"""The same, where there may be no image."""
