"""What the bootstrap applies for an installation's environments, as plain data: namespaces
enforcing the restricted standard, accounts outside the environments, Roles that grant
only what the stages use; and the environment list and production in the settings."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shipyard.domain.environment_access import (
    DEPLOYABLE_KINDS,
    EnvironmentAccess,
    InvalidEnvironment,
    deploy_rules,
)
from shipyard.settings import Settings

ACCESS = EnvironmentAccess("shipyard-", ("staging", "prod"))


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in ACCESS.manifests() if o["kind"] == kind]


def test_each_environment_is_a_namespace_that_enforces_the_restricted_standard():
    namespaces = {n["metadata"]["name"]: n["metadata"]["labels"] for n in of_kind("Namespace")}
    assert set(namespaces) == {"shipyard-system", "shipyard-staging", "shipyard-prod"}
    for labels in namespaces.values():
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert namespaces["shipyard-prod"]["shipyard.dev/environment"] == "prod"
    assert "shipyard.dev/environment" not in namespaces["shipyard-system"]


def test_namespaces_come_first_so_the_list_can_be_applied_in_order():
    kinds = [o["kind"] for o in ACCESS.manifests()]
    assert kinds[:3] == ["Namespace"] * 3 and "Namespace" not in kinds[3:]


def test_the_accounts_live_outside_the_environments_and_mount_nothing():
    accounts = of_kind("ServiceAccount")
    assert sorted(a["metadata"]["name"] for a in accounts) == [
        "deploy-prod", "deploy-staging", "viewer"]
    assert {a["metadata"]["namespace"] for a in accounts} == {"shipyard-system"}
    assert all(a["automountServiceAccountToken"] is False for a in accounts)


def test_each_deploy_account_is_bound_in_its_own_environment_only():
    bindings = [(b["metadata"]["namespace"], b["roleRef"]["name"], b["subjects"])
                for b in of_kind("RoleBinding")]
    deploy = [(ns, s[0]["name"]) for ns, role, s in bindings if role == "shipyard-deploy"]
    assert sorted(deploy) == [("shipyard-prod", "deploy-prod"),
                              ("shipyard-staging", "deploy-staging")]
    viewer = sorted(ns for ns, role, s in bindings if role == "shipyard-view")
    assert viewer == ["shipyard-prod", "shipyard-staging"]
    assert all(s == [{"kind": "ServiceAccount", "name": s[0]["name"],
                      "namespace": "shipyard-system"}] for _, _, s in bindings)
    assert all(b["roleRef"]["kind"] == "Role" for b in of_kind("RoleBinding"))


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_the_deploy_role_grants_exactly_what_the_stages_use():
    rules = deploy_rules("shipyard-prod")
    granted = grants(rules)
    for group, resource in DEPLOYABLE_KINDS.values():
        for verb in ("get", "list", "create", "patch", "delete"):
            assert (group, resource, verb) in granted
    assert {g for g in granted if g[1] not in {r for _, r in DEPLOYABLE_KINDS.values()}} == {
        ("apps", "deployments/scale", "patch"), ("", "pods", "list"), ("", "pods", "delete"),
        ("", "events", "list"), ("", "pods/proxy", "get"), ("", "namespaces", "get")}
    [namespace_rule] = [r for r in rules if r["resources"] == ["namespaces"]]
    assert namespace_rule["resourceNames"] == ["shipyard-prod"]
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in rules)
    assert not {r for _, r, _ in granted} & {"secrets", "roles", "rolebindings",
                                              "serviceaccounts", "pods/exec"}


def test_the_view_role_only_reads():
    [role] = [r for r in of_kind("Role") if r["metadata"]["name"] == "shipyard-view"
              and r["metadata"]["namespace"] == "shipyard-prod"]
    assert {verb for _, _, verb in grants(role["rules"])} == {"get", "list", "watch"}
    assert {resource for _, resource, _ in grants(role["rules"])} == {"deployments",
                                                                       "services"}


@pytest.mark.parametrize(("environments", "problem"), [
    ((), "at least one environment"),
    (("staging", "Prod"), "'Prod' is not a valid environment name"),
    (("system",), "Shipyard's own identities"),
    (("staging", "staging"), "listed twice"),
    (("x" * 60,), "longer than 63 characters"),
])
def test_an_environment_list_that_cannot_be_namespaces_is_refused(environments, problem):
    with pytest.raises(InvalidEnvironment, match=problem):
        EnvironmentAccess("shipyard-", environments)


def test_the_settings_read_the_environments_comma_separated_or_as_json(monkeypatch):
    assert Settings().environments == ["staging", "prod"]
    monkeypatch.setenv("SHIPYARD_ENVIRONMENTS", "dev, qa,prod")
    assert Settings().environments == ["dev", "qa", "prod"]
    monkeypatch.setenv("SHIPYARD_ENVIRONMENTS", '["qa"]')
    assert Settings().environments == ["qa"]


def test_a_bad_environment_setting_names_the_variable_and_the_fix(monkeypatch):
    monkeypatch.setenv("SHIPYARD_ENVIRONMENTS", "staging,system")
    with pytest.raises(ValidationError, match="SHIPYARD_ENVIRONMENTS: 'system' is the "
                                              "namespace of Shipyard's own identities"):
        Settings()


@pytest.fixture
def delivery_environment(monkeypatch):
    """Neither environment variable of the developer's leaks in."""
    monkeypatch.delenv("SHIPYARD_ENVIRONMENTS", raising=False)
    monkeypatch.delenv("SHIPYARD_PRODUCTION_ENVIRONMENT", raising=False)
    return monkeypatch


def test_production_is_the_last_environment_by_default(delivery_environment):
    assert Settings().production_environment == "prod"
    delivery_environment.setenv("SHIPYARD_ENVIRONMENTS", "dev,qa,live")
    assert Settings().production_environment == "live"
    delivery_environment.setenv("SHIPYARD_PRODUCTION_ENVIRONMENT", "")
    assert Settings().production_environment == "live"


def test_the_production_environment_may_be_named(delivery_environment):
    delivery_environment.setenv("SHIPYARD_ENVIRONMENTS", "staging,live,sandbox")
    delivery_environment.setenv("SHIPYARD_PRODUCTION_ENVIRONMENT", "live")
    settings = Settings()
    assert settings.production_environment == "live"
    assert settings.pre_production_environment == "staging"


def test_a_production_environment_that_is_not_an_environment_is_refused(delivery_environment):
    delivery_environment.setenv("SHIPYARD_PRODUCTION_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match=r"SHIPYARD_PRODUCTION_ENVIRONMENT: 'production' "
                                              r"is not one of SHIPYARD_ENVIRONMENTS \(staging, "
                                              r"prod\); name one of them, or leave it unset "
                                              r"for the last \(prod\)"):
        Settings()


def test_the_environment_before_production_is_where_a_version_proves_itself(
        delivery_environment):
    assert Settings().pre_production_environment == "staging"
    delivery_environment.setenv("SHIPYARD_ENVIRONMENTS", "dev,qa,prod")
    assert Settings().pre_production_environment == "qa"
    delivery_environment.setenv("SHIPYARD_ENVIRONMENTS", "prod")
    assert Settings().pre_production_environment is None


def test_a_promotion_starts_from_the_environment_before_its_target(delivery_environment):
    delivery_environment.setenv("SHIPYARD_ENVIRONMENTS", "dev,qa,prod")
    settings = Settings()
    assert [settings.environment_before(env) for env in ("dev", "qa", "prod")] == [
        None, "dev", "qa"]
    with pytest.raises(ValueError, match=r"'live' is not one of SHIPYARD_ENVIRONMENTS "
                                         r"\(dev, qa, prod\)"):
        settings.environment_before("live")
