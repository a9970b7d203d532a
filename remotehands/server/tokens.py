"""API tokens bound to a role. A token is shown once, when made; the database keeps only its SHA-256.

Roles and what they may do (a permission table, not a hierarchy: an approver does not run jobs):

    technician   read, run, cancel, confirm
    approver     read, approve
    admin        everything, reveal sensitive tickets, manage tokens
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from remotehands import audit
from remotehands.db import Database
from remotehands.errors import BadInput, NotAuthenticated, NotPermitted
from remotehands.intake.tables import ApiToken

PERMISSIONS: dict[str, frozenset[str]] = {
    "technician": frozenset({"read", "run", "cancel", "confirm"}),
    "approver": frozenset({"read", "approve"}),
    "admin": frozenset({"read", "run", "cancel", "confirm", "approve", "reveal", "admin"}),
}
PREFIX = "rht_"


@dataclass(frozen=True)
class Caller:
    name: str
    role: str

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())

    def require(self, permission: str) -> None:
        """Raise ``NotPermitted`` unless this caller's role grants ``permission``."""
        if permission not in PERMISSIONS.get(self.role, frozenset()):
            allowed = sorted(r for r, p in PERMISSIONS.items() if permission in p)
            raise NotPermitted(
                f"{self.name} ({self.role}) may not {permission}",
                fix="use a token with role " + " or ".join(allowed),
            )


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(db: Database, name: str, role: str, *, created_by: str) -> str:
    """Make a token for ``name`` with ``role``; returns the token (the only time it is visible)."""
    if role not in PERMISSIONS:
        raise BadInput(f"role {role!r} is unknown", fix="one of " + ", ".join(PERMISSIONS))
    if not name.strip():
        raise BadInput("the token's name is empty", fix="name it after the person or system using it")
    token = PREFIX + secrets.token_urlsafe(32)
    with db.session() as s:
        s.add(
            ApiToken(
                name=name.strip(),
                role=role,
                token_sha256=digest(token),
                created_by=created_by,
                created_at=datetime.now(UTC),
            )
        )
        audit.append(s, created_by, "token.create", name.strip(), {"role": role})
    return token


def revoke(db: Database, name: str, *, actor: str) -> int:
    """Revoke every live token of ``name``; returns how many."""
    with db.session() as s:
        rows = list(
            s.execute(select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))).scalars()
        )
        for row in rows:
            row.revoked_at = datetime.now(UTC)
        if rows:
            audit.append(s, actor, "token.revoke", name, {"count": len(rows)})
    return len(rows)


def listing(db: Database) -> list[dict[str, object]]:
    with db.session() as s:
        return [
            {
                "name": r.name,
                "role": r.role,
                "created_by": r.created_by,
                "created_at": r.created_at.isoformat(),
                "revoked": r.revoked_at is not None,
            }
            for r in s.execute(select(ApiToken).order_by(ApiToken.id)).scalars()
        ]


def authenticate(db: Database, authorization: str | None) -> Caller:
    """The caller behind an ``Authorization: Bearer <token>`` header. Raises ``NotAuthenticated``."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise NotAuthenticated(
            "no API token", fix="send 'Authorization: Bearer <token>' (remotehands tokens create)"
        )
    token = authorization[7:].strip()
    wanted = digest(token)
    with db.session() as s:
        row = s.execute(select(ApiToken).where(ApiToken.token_sha256 == wanted)).scalar_one_or_none()
        if row is None or not hmac.compare_digest(row.token_sha256, wanted) or row.revoked_at is not None:
            raise NotAuthenticated("the API token is unknown or revoked", fix="ask an admin for a token")
        return Caller(row.name, row.role)
