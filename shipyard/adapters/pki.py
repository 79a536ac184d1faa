"""The local cluster's certificates, keys and kubeconfigs, made with ``cryptography``.

One CA signs every certificate; client certificates carry the user in CN and the groups in
O, as Kubernetes' x509 authenticator reads them. Files are written once and kept: running
``ensure`` again changes nothing, so restarting the cluster keeps its identities (and the
kubeconfigs users copied stay valid).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shipyard.adapters.secret_files import write_secret

__all__ = ["ClientIdentity", "ClusterPKI"]

VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """A client certificate to make: file stem, user (CN), groups (O)."""

    name: str
    user: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterPKI:
    directory: Path

    def path(self, name: str, suffix: str) -> Path:
        return self.directory / f"{name}.{suffix}"

    def ensure(self, *, server_names: Sequence[str], server_ips: Sequence[str],
               clients: Sequence[ClientIdentity]) -> None:
        """Create what is missing: the CA, the service-account key, the apiserver's
        serving certificate and the client certificates."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path("ca", "crt").exists():
            key = _new_key()
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shipyard-local-ca")])
            now = dt.datetime.now(dt.UTC)
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - dt.timedelta(minutes=5))
                    .not_valid_after(now + VALIDITY)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                    .add_extension(x509.KeyUsage(True, False, False, False, False, True, True,
                                                 False, False), True)
                    .sign(key, hashes.SHA256()))
            self._write("ca", key, cert)
        if not self.path("sa", "key").exists():
            _write_key(self.path("sa", "key"), _new_key())
        if not self.path("apiserver", "crt").exists():
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
            self._issue("apiserver", "kube-apiserver", (), ExtendedKeyUsageOID.SERVER_AUTH,
                        sans)
        for client in clients:
            if not self.path(client.name, "crt").exists():
                self._issue(client.name, client.user, client.groups,
                            ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def ensure_serving(self, name: str, common_name: str, *, names: Sequence[str],
                       ips: Sequence[str]) -> None:
        """A serving certificate (e.g. the kubelet's) unless it exists."""
        if not self.path(name, "crt").exists():
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            self._issue(name, common_name, (), ExtendedKeyUsageOID.SERVER_AUTH, sans)

    def kubeconfig(self, client: str, server: str, destination: Path) -> Path:
        """Write a kubeconfig for ``client`` (a client certificate made by ``ensure``), mode
        0600 from the start."""
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "shipyard", "cluster": {
                "server": server, "certificate-authority": str(self.path("ca", "crt"))}}],
            "users": [{"name": client, "user": {
                "client-certificate": str(self.path(client, "crt")),
                "client-key": str(self.path(client, "key"))}}],
            "contexts": [{"name": "shipyard", "context": {"cluster": "shipyard",
                                                          "user": client}}],
            "current-context": "shipyard",
        }
        write_secret(destination, yaml.safe_dump(config, sort_keys=False))
        return destination

    def _issue(self, name: str, common_name: str, groups: Sequence[str],
               usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> None:
        ca_key = serialization.load_pem_private_key(self.path("ca", "key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.path("ca", "crt").read_bytes())
        assert isinstance(ca_key, rsa.RSAPrivateKey)
        key = _new_key()
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateBuilder().subject_name(x509.Name(attributes))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + VALIDITY)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
        self._write(name, key, builder.sign(ca_key, hashes.SHA256()))

    def _write(self, name: str, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> None:
        _write_key(self.path(name, "key"), key)
        self.path(name, "crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()))
