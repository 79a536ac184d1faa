"""Identity kubeconfigs as files: written mode 0600 in a 0700 directory, standing alone
(the admin's CA inlined), their token's expiry read back; opening a missing or expired one,
from a stage or the board, says to run `shipyard up` and never falls back to admin. (The
identities against the real API server: tests/integration/test_least_privilege.py.)"""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
import yaml

from shipyard.adapters.kube_identity import (
    IdentityUnavailable,
    cluster_of,
    deploy_kubeconfig,
    open_identity,
    token_expiry,
    write_identity,
)
from shipyard.settings import Settings
from shipyard.store import Store
from stages.cluster import open_kube
from stages.runtime import StageContext, StageFailure

CLUSTER = {"server": "https://10.200.0.1:6443",
           "certificate-authority-data": base64.b64encode(b"CA").decode()}


def token_expiring(at: datetime) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return ".".join([part({"alg": "RS256"}), part({"exp": int(at.timestamp())}), "sig"])


def test_an_identity_is_written_readable_by_its_owner_only(tmp_path: Path):
    path = deploy_kubeconfig(tmp_path, "shipyard-prod")
    write_identity(path, CLUSTER, "system:serviceaccount:shipyard-system:deploy-prod",
                   "a-token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    config = yaml.safe_load(path.read_text())
    assert config["clusters"][0]["cluster"] == CLUSTER
    assert config["users"][0]["user"] == {"token": "a-token"}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_the_tokens_expiry_is_read_from_its_claims(tmp_path: Path):
    path = tmp_path / "id.kubeconfig"
    at = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    write_identity(path, CLUSTER, "u", token_expiring(at))
    assert token_expiry(path) == at
    write_identity(path, CLUSTER, "u", "not-a-jwt")
    assert token_expiry(path) is None


def test_the_admins_cluster_is_copied_with_its_ca_file_inlined(tmp_path: Path):
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    admin = tmp_path / "admin.kubeconfig"
    admin.write_text(yaml.safe_dump({
        "current-context": "b",
        "clusters": [{"name": "other", "cluster": {"server": "https://elsewhere"}},
                     {"name": "local", "cluster": {"server": "https://10.200.0.1:6443",
                                                   "certificate-authority": "pki/ca.crt"}}],
        "contexts": [{"name": "a", "context": {"cluster": "other", "user": "x"}},
                     {"name": "b", "context": {"cluster": "local", "user": "admin"}}],
        "users": [{"name": "admin", "user": {"client-key": "admin.key"}}]}))
    assert cluster_of(admin) == {
        "server": "https://10.200.0.1:6443",
        "certificate-authority-data": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n")
        .decode()}


def test_a_missing_identity_says_to_run_shipyard_up(tmp_path: Path):
    with pytest.raises(IdentityUnavailable, match=r"the deploy identity of staging is not "
                       r"set up \(.*deploy-x-staging.kubeconfig does not exist\); `shipyard "
                       r"up` creates it"):
        open_identity(deploy_kubeconfig(tmp_path, "x-staging"),
                      what="the deploy identity of staging")


def test_an_expired_identity_says_to_run_shipyard_up(tmp_path: Path):
    path = tmp_path / "id.kubeconfig"
    now = datetime(2030, 1, 2, tzinfo=UTC)
    write_identity(path, CLUSTER, "u", token_expiring(now - timedelta(minutes=1)))
    with pytest.raises(IdentityUnavailable, match="expired at 2030-01-01 23:59 UTC; "
                                                  "`shipyard up` renews it"):
        open_identity(path, what="the read-only identity", now=now)
    write_identity(path, CLUSTER, "u", token_expiring(now + timedelta(days=1)))
    assert open_identity(path, what="the read-only identity", now=now) is not None


def test_a_stage_without_its_environments_identity_fails_and_never_uses_admin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    admin = tmp_path / "admin.kubeconfig"
    admin.write_text("this admin kubeconfig must never be read\n")
    monkeypatch.setenv("KUBECONFIG", str(admin))
    settings = Settings(home=tmp_path / "home", kubeconfig=admin)
    ctx = StageContext("r" * 32, "prod:gateway", 1, settings, cast(Store, None))
    with pytest.raises(StageFailure) as failed:
        asyncio.run(open_kube(ctx, "shipyard-prod"))
    assert failed.value.reason == "NoDeployIdentity"
    assert "the deploy identity of namespace shipyard-prod is not set up" in str(failed.value)
    assert "`shipyard up` creates it" in str(failed.value)
