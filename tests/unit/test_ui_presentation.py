"""How states, durations and times read on the pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shipyard.domain.states import State
from ui.presentation import STATE_BADGES, badge, duration_text, pace, since_text


def test_every_state_has_its_own_icon_and_word() -> None:
    assert set(STATE_BADGES) == {s.value for s in State}
    icons = [icon for icon, _ in STATE_BADGES.values()]
    words = [word for _, word in STATE_BADGES.values()]
    assert len(set(icons)) == len(icons) and len(set(words)) == len(words)
    assert badge(State.FAILED) == ("✘", "Failed")
    assert badge("rolled_back") == ("↺", "Rolled back")


@pytest.mark.parametrize(("seconds", "text"), [
    (None, ""), (0.25, "250 ms"), (4.26, "4.3 s"), (42.4, "42 s"), (185, "3 m 05 s"),
    (3599.6, "1 h 00 m"), (7620, "2 h 07 m"),
])
def test_durations(seconds: float | None, text: str) -> None:
    assert duration_text(seconds) == text


@pytest.mark.parametrize(("seconds", "typical", "word"), [
    (10, 10, "typical"), (15, 10, "typical"), (15.1, 10, "slow"), (4.9, 10, "fast"),
    (5, 10, "typical"), (None, 10, ""), (10, None, ""), (10, 0, ""),
])
def test_pace_against_the_typical_duration(seconds: float | None, typical: float | None,
                                           word: str) -> None:
    assert pace(seconds, typical) == word


def test_times_read_relative_to_now() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert since_text(None, now) == ""
    assert since_text(now - timedelta(seconds=30), now) == "just now"
    assert since_text(now - timedelta(minutes=5), now) == "5 min ago"
    assert since_text(now - timedelta(hours=3), now) == "3 h ago"
    assert since_text(now - timedelta(days=4), now) == "4 days ago"
