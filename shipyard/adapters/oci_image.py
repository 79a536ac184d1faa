"""Writing a single-layer OCI image layout tarball without an engine, for images no
registry serves (the pod sandbox's pause image). Deterministic: the same files give the
same digest."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["write_oci_image"]


def _blob(out: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    _add(out, f"blobs/sha256/{digest}", data)
    return f"sha256:{digest}", len(data)


def _add(out: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    out.addfile(info, io.BytesIO(data))


def write_oci_image(destination: Path, reference: str, files: Mapping[str, Path],
                    entrypoint: list[str]) -> str:
    """Write an OCI layout tarball holding one layer with ``files`` (path in the image →
    file on the host, made executable) under the name ``reference``; returns the
    manifest digest."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for inside, source in sorted(files.items()):
            _add(tar, inside.lstrip("/"), source.read_bytes(), mode=0o755)
    layer_bytes = layer.getvalue()
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(destination, mode="w", format=tarfile.PAX_FORMAT) as out:
        layer_digest, layer_size = _blob(out, layer_bytes)
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": entrypoint, "Env": ["PATH=/"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }, sort_keys=True).encode()
        config_digest, config_size = _blob(out, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer_size}],
        }, sort_keys=True).encode()
        manifest_digest, manifest_size = _blob(out, manifest)
        index = json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": reference,
                            "org.opencontainers.image.ref.name": reference.rsplit(":", 1)[-1]},
        }]}, sort_keys=True).encode()
        _add(out, "index.json", index)
        _add(out, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    return manifest_digest
