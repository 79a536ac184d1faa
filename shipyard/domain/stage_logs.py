"""A stage's log, bounded: what the store keeps of a chunk, the marker that says what it
dropped, and the file name the full log goes to. Pure.

The store keeps the first ``cap`` lines of a stage's log. Past them a chunk is dropped,
and one marker line (``truncated: N lines dropped; the full log is in PATH``) is kept
current in its place; the flows write every line to a file of the stage's own (see
:mod:`shipyard.adapters.stage_log_files`). A line is what ends in ``\\n``, and the text
after the last ``\\n`` if there is any: the same count whichever way a log is chunked,
as long as its chunks end in ``\\n`` (the flows' always do).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["MARKER_STREAM", "CappedChunk", "cap_chunk", "count_lines", "log_file_name",
           "truncation_marker"]

MARKER_STREAM = "truncated"
"""The ``stream`` of the one log row that says what the store dropped."""


@dataclass(frozen=True, slots=True)
class CappedChunk:
    """What the store keeps of a chunk (``kept``, ``kept_lines`` lines of it) and how many
    of its lines it drops."""

    kept: str
    kept_lines: int
    dropped_lines: int


def count_lines(text: str) -> int:
    """The lines in ``text``: its ``\\n``s, plus one for text after the last of them."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def cap_chunk(text: str, *, kept_before: int, cap: int | None) -> CappedChunk:
    """Split ``text`` into the lines a log that already holds ``kept_before`` lines keeps
    under ``cap`` (None: no cap) and the number it drops."""
    total = count_lines(text)
    room = total if cap is None else max(0, cap - kept_before)
    if total <= room:
        return CappedChunk(text, total, 0)
    if room == 0:
        return CappedChunk("", 0, total)
    cut = -1
    for _ in range(room):
        cut = text.index("\n", cut + 1)
    return CappedChunk(text[:cut + 1], room, total - room)


def truncation_marker(dropped: int, full_log: str | None) -> str:
    """The line that stands for ``dropped`` lines, naming the file that holds them all
    (None: none does)."""
    lines = "line" if dropped == 1 else "lines"
    where = (f"the full log is in {full_log}" if full_log
             else "no full log was kept of this stage")
    return f"truncated: {dropped} {lines} dropped; {where}\n"


def log_file_name(ref: str) -> str:
    """A file name for stage ``ref`` (``test:gateway`` → ``test%3Agateway.log``): what
    is not a letter, digit, ``_``, ``.`` or ``-`` is percent-encoded, so two refs never
    share a file, and a name never starts with a dot (no hidden file, no ``..``)."""
    if not ref:
        raise ValueError("a stage log needs the stage's ref")
    name = quote(ref, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    return name + ".log"
