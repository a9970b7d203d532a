"""Which host key a host must present: the one pinned in the database, else the inventory's
``ssh_host_key``. A new key is accepted only by a reimage job for its own host (the OS was just
reinstalled, so the key changed by design) or by a technician who checked the fingerprint; either way the
pin is recorded with who made it."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import paramiko
from sqlalchemy import select

from remotehands import audit
from remotehands.db import Database
from remotehands.errors import InvalidRequest
from remotehands.ssh.tables import HostKey


@dataclass(frozen=True)
class PinnedKey:
    key_type: str
    key_base64: str
    source: str  # "database" or "inventory"

    def as_paramiko(self) -> paramiko.PKey:
        return paramiko.PKey.from_type_string(self.key_type, base64.b64decode(self.key_base64))

    @property
    def fingerprint(self) -> str:
        return fingerprint(base64.b64decode(self.key_base64))


def fingerprint(blob: bytes) -> str:
    """``SHA256:...`` of a public key blob, as ``ssh-keygen -l`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_public_key(text: str) -> tuple[str, str]:
    """``"ssh-ed25519 AAAA... [comment]"`` -> (type, base64); raises ``InvalidRequest``."""
    parts = text.split()
    if len(parts) < 2:
        raise InvalidRequest(
            "ssh_host_key is not an OpenSSH public key line", fix="copy it from /etc/ssh/ssh_host_*_key.pub"
        )
    try:
        paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1], validate=True))
    except Exception:
        raise InvalidRequest(
            f"ssh_host_key of type {parts[0]!r} does not parse",
            fix="copy it from /etc/ssh/ssh_host_*_key.pub",
        ) from None
    return parts[0], parts[1]


def pinned(db: Database, host: str, inventory_key: str | None) -> PinnedKey | None:
    """The key ``host`` must present, or None when nothing is pinned."""
    with db.session() as s:
        row = s.execute(select(HostKey).where(HostKey.host == host)).scalar_one_or_none()
        if row is not None:
            return PinnedKey(row.key_type, row.key_base64, "database")
    if inventory_key:
        key_type, blob = parse_public_key(inventory_key)
        return PinnedKey(key_type, blob, "inventory")
    return None


def pin(db: Database, host: str, key: paramiko.PKey, *, by: str) -> str:
    """Pin ``key`` for ``host`` (replacing any earlier pin); returns its fingerprint. Audited."""
    blob = key.asbytes()
    stamp = datetime.now(UTC)
    printed = fingerprint(blob)
    with db.session() as s:
        row = s.execute(select(HostKey).where(HostKey.host == host)).scalar_one_or_none()
        previous = row.fingerprint if row is not None else None
        if row is None:
            row = HostKey(host=host)
            s.add(row)
        row.key_type, row.key_base64 = key.get_name(), base64.b64encode(blob).decode()
        row.fingerprint, row.pinned_by, row.pinned_at = printed, by, stamp
        audit.append(s, by, "ssh.pin", host, {"fingerprint": printed, "replaced": previous})
    return printed
