"""A settings file re-read when it changes, so an operator's edit applies without a restart.

Kubernetes updates a mounted ConfigMap by swapping a symlink, so a change can land within
one mtime tick; the file's (mtime, inode, size) together tell that it changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["WatchedFile"]

_logger = logging.getLogger("servicekit.watched_file")

T = TypeVar("T")


@dataclass(eq=False)
class WatchedFile(Generic[T]):
    """The value `parse` makes of the text of `path`, as the file is now.

    `current()` stats the file on each call and parses it again only when its mtime, inode
    or size changed. A missing (or unreadable) file gives `default`. A file that cannot be
    read or parsed (`parse` raises ValueError) is logged to `logger` and the last good value
    stays in force, because a typo in a ConfigMap must not take the service down. `what`
    names the file in those log lines ("fault file"); `describe` renders a newly read value
    for the log.
    """

    path: Path
    parse: Callable[[str], T]
    default: T
    _: KW_ONLY
    what: str = "watched file"
    logger: logging.Logger = _logger
    describe: Callable[[T], object] = repr
    _signature: tuple[int, int, int] | None = field(default=None, init=False, repr=False)
    _current: T = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._current = self.default

    def current(self) -> T:
        try:
            stat = self.path.stat()
            signature: tuple[int, int, int] | None = (stat.st_mtime_ns, stat.st_ino,
                                                      stat.st_size)
        except OSError:  # absent, or unreadable: the default either way
            signature = None
        if signature != self._signature:
            self._signature = signature
            self._current = self._load() if signature else self._absent()
        return self._current

    def _absent(self) -> T:
        self.logger.info("%s %s is absent: the defaults apply", self.what, self.path)
        return self.default

    def _load(self) -> T:
        try:
            value = self.parse(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:  # UnicodeDecodeError is a ValueError
            self.logger.error("%s ignored, keeping the last good settings (%s): %s",
                              self.what, self.path, err)
            return self._current
        self.logger.warning("%s %s read: %s", self.what, self.path, self.describe(value))
        return value
