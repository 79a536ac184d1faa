"""A label selector asks for every label it is given, as the API server spells it."""

from __future__ import annotations

from shipyard.domain.labels import APP_LABEL, TRACK_LABEL, label_selector


def test_a_selector_asks_for_every_label_in_order():
    assert label_selector({APP_LABEL: "gateway", TRACK_LABEL: "canary"}) == (
        "app.kubernetes.io/name=gateway,shipyard.dev/track=canary")


def test_no_labels_select_everything():
    assert label_selector({}) == ""
