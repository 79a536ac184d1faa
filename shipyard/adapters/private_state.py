"""Which of Shipyard's own files are secrets and which directories hold them: the inventory
the start-time check (``shipyard up``, ``shipyard ui``, ``shipyard status``) walks.

Every file Shipyard writes that holds a key, a password, a token or a URL carrying one
belongs here; a part that adds such a file adds its path to :func:`private_state` (and
writes it with :func:`shipyard.adapters.secret_files.write_secret`). Only files Shipyard
makes itself are listed: a kubeconfig named by ``KUBECONFIG`` is its owner's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shipyard.adapters.kube_identity import identity_dir
from shipyard.adapters.secret_files import check_private, tighten
from shipyard.domain.file_modes import TooOpen
from shipyard.settings import Settings

__all__ = ["PrivateState", "check_private_state", "private_state", "tighten_private_state"]


@dataclass(frozen=True, slots=True)
class PrivateState:
    """State directories (0700) and secret files (0600) as paths; some may not exist."""

    dirs: tuple[Path, ...]
    files: tuple[Path, ...]


def private_state(settings: Settings) -> PrivateState:
    """Shipyard's state directories and the secret files found in them now."""
    stack = settings.stack_dir
    cluster = stack / "cluster"
    postgres = settings.stack_database_file.parent
    dirs = (
        settings.home,       # the SQLite store (password hashes), the UI's key, workspaces
        settings.stage_logs_dir,  # stages' full logs: whatever a build or a test printed
        stack,
        cluster,
        cluster / "pki",     # the CA's and every identity's private key
        cluster / "etcd",    # every object of the cluster, Secrets included, unencrypted
        postgres,
        settings.prefect_home,
        identity_dir(settings.home),  # the deploy and viewer identities' tokens
    )
    files = (
        settings.home / "ui-secret-key",            # signs the UI's session cookies
        settings.judgment_key_path,                 # signs judgment answers
        settings.prefect_home / "api-auth-string",  # Prefect's API
        *_glob(cluster / "pki", "*.key"),           # private keys (the CA's: cluster-admin)
        *_glob(cluster, "*.kubeconfig"),            # client identities, admin's included
        *_glob(postgres, "*.password"),             # PostgreSQL's roles
        *_glob(identity_dir(settings.home), "*.kubeconfig"),  # ServiceAccount tokens
        settings.stack_database_file,               # the store's URL, with its password
    )
    return PrivateState(dirs, files)


def check_private_state(settings: Settings) -> list[TooOpen]:
    """What of :func:`private_state` is too open now."""
    state = private_state(settings)
    return check_private(state.files, state.dirs)


def tighten_private_state(settings: Settings) -> list[TooOpen]:
    """Take group and others' access off whatever of :func:`private_state` has it; returns
    what was too open (empty when all was private)."""
    problems = check_private_state(settings)
    tighten(problems)
    return problems


def _glob(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern)) if directory.is_dir() else []
