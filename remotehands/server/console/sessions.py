"""Console logins: an API token (``remotehands tokens create``) is exchanged once for a server-side session.

The browser keeps only a random session id in an HttpOnly, SameSite=Strict cookie scoped to ``/console``;
the database keeps its SHA-256, the token row it came from and a CSRF token that every form posts back.
The role is read from the token row on every request, so revoking the token ends its sessions at once and
a role change applies at once. Sessions end after ``IDLE`` without use or ``LIFETIME`` in all, and at
logout. ``/api`` never accepts the cookie: it stays bearer-only and so free of CSRF.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from remotehands import audit
from remotehands.db import Database
from remotehands.errors import NotAuthenticated
from remotehands.intake.tables import ApiToken
from remotehands.server import tokens
from remotehands.server.console.tables import ConsoleSession

COOKIE = "rh_console"
LIFETIME = timedelta(hours=12)
IDLE = timedelta(hours=1)
TOUCH_EVERY = timedelta(minutes=1)  # last_seen is written at most this often


@dataclass(frozen=True)
class Login:
    """Who is logged in on a session, and the CSRF token its forms must carry."""

    caller: tokens.Caller
    csrf: str

    def check_csrf(self, given: str | None) -> None:
        """Raise ``NotAuthenticated`` unless ``given`` is this session's CSRF token."""
        if not given or not hmac.compare_digest(given, self.csrf):
            raise NotAuthenticated(
                "the form's CSRF token does not match this login", fix="reload the page and try again"
            )


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def now() -> datetime:
    return datetime.now(UTC)


def start(db: Database, token: str) -> str:
    """Log in with an API token; returns the new session id (for the cookie). Raises ``NotAuthenticated``
    for an unknown or revoked token, naming no part of it."""
    caller = tokens.authenticate(db, "Bearer " + token.strip())
    sid = secrets.token_urlsafe(32)
    at = now()
    with db.session() as s:
        row = s.execute(
            select(ApiToken).where(ApiToken.token_sha256 == tokens.digest(token.strip()))
        ).scalar_one()
        s.add(
            ConsoleSession(
                sid_sha256=_digest(sid),
                token_id=row.id,
                csrf=secrets.token_urlsafe(32),
                created_at=at,
                last_seen=at,
                expires_at=at + LIFETIME,
            )
        )
        audit.append(s, caller.name, "console.login", caller.name, {"role": caller.role})
    return sid


def lookup(db: Database, sid: str | None) -> Login:
    """The login behind session id ``sid``; raises ``NotAuthenticated`` when there is none, it ended, or its
    token was revoked."""
    if not sid:
        raise NotAuthenticated("not logged in", fix="log in at /console/login with your API token")
    at = now()
    with db.session() as s:
        found = s.execute(
            select(ConsoleSession, ApiToken)
            .join(ApiToken, ApiToken.id == ConsoleSession.token_id)
            .where(ConsoleSession.sid_sha256 == _digest(sid))
        ).one_or_none()
        if found is None:
            raise NotAuthenticated("this login is unknown", fix="log in again at /console/login")
        session, token = found
        ended = (
            session.revoked_at is not None
            or token.revoked_at is not None
            or _aware(session.expires_at) <= at
            or _aware(session.last_seen) + IDLE <= at
        )
        if ended:
            raise NotAuthenticated("this login has ended", fix="log in again at /console/login")
        if _aware(session.last_seen) + TOUCH_EVERY <= at:
            session.last_seen = at
        return Login(tokens.Caller(token.name, token.role), session.csrf)


def end(db: Database, sid: str | None) -> None:
    """Log out (the session can no longer be used); nothing happens for an unknown id."""
    if not sid:
        return
    with db.session() as s:
        session = s.execute(
            select(ConsoleSession).where(ConsoleSession.sid_sha256 == _digest(sid))
        ).scalar_one_or_none()
        if session is not None and session.revoked_at is None:
            session.revoked_at = now()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
