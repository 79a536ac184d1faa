"""Which Host names the UI answers and which proxies it believes, as settings read them."""

from __future__ import annotations

import pytest

from shipyard.domain.hosts import allowed_hosts, host_patterns, proxy_networks
from shipyard.settings import Settings

VARIABLE = "SHIPYARD_UI_ALLOWED_HOSTS"


def test_loopback_names_and_the_bound_address_are_always_answered() -> None:
    assert allowed_hosts([], "127.0.0.1") == ["localhost", "127.0.0.1", "[::1]"]
    assert allowed_hosts([], "192.0.2.10") == ["localhost", "127.0.0.1", "[::1]", "192.0.2.10"]
    assert allowed_hosts([], "2001:db8::5")[-1] == "[2001:db8::5]"
    assert allowed_hosts(["ui.example.com"], "0.0.0.0") == [  # noqa: S104
        "localhost", "127.0.0.1", "[::1]", "ui.example.com"]  # a wildcard bind names no host


def test_host_lists_come_as_json_or_comma_separated_and_in_lower_case() -> None:
    assert host_patterns("UI.example.com, *.corp.example", variable=VARIABLE) == [
        "ui.example.com", "*.corp.example"]
    assert host_patterns('["a.example", "[::1]"]', variable=VARIABLE) == ["a.example", "[::1]"]


@pytest.mark.parametrize("bad", ["*", "ui.example.com:8080", "https://ui.example.com",
                                 "a..b", "ui.*.example"])
def test_an_unusable_host_is_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(ValueError, match=VARIABLE):
        host_patterns(bad, variable=VARIABLE)


def test_proxies_are_addresses_or_networks() -> None:
    assert proxy_networks("127.0.0.1, 10.0.0.0/8,::1", variable="V") == [
        "127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    with pytest.raises(ValueError, match=r"V: 'proxy\.example' is no IP address"):
        proxy_networks("proxy.example", variable="V")


def test_the_settings_read_both_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_UI_ALLOWED_HOSTS", "ci.example.com")
    monkeypatch.setenv("SHIPYARD_TRUSTED_PROXIES", "10.1.2.3")
    settings = Settings()
    assert settings.ui_allowed_hosts == ["ci.example.com"]
    assert settings.trusted_proxies == ["10.1.2.3/32"]
    monkeypatch.setenv("SHIPYARD_UI_ALLOWED_HOSTS", "*")
    with pytest.raises(ValueError, match="SHIPYARD_UI_ALLOWED_HOSTS: '\\*' would answer any"):
        Settings()
