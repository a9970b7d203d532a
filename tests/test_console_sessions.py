"""Console logins over HTTP: an API token becomes a server-side session; revoking the token, idling or the
session's lifetime end it; forms need the session's CSRF token and the console's own origin; /api never
takes the cookie."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from remotehands.errors import NotAuthenticated
from remotehands.runtime import Runtime
from remotehands.server import tokens
from remotehands.server.console import sessions


@pytest.fixture
def url(app_url: str) -> str:
    return app_url


def test_console_login_cookie_revocation_and_api_stays_bearer_only(rt: Runtime, url: str) -> None:
    token = tokens.create(rt.db, "tina", "technician", created_by="test")
    with httpx.Client(base_url=url, timeout=10) as client:
        refused = client.post("/console/login", data={"token": "rht_not-a-token"})
        assert refused.status_code == 200 and "unknown or revoked" in refused.text
        assert sessions.COOKIE not in client.cookies and "rht_not-a-token" not in refused.text
        made = client.post("/console/login", data={"token": token})
        assert made.status_code == 303 and made.headers["location"] == "/console/"
        cookie = made.headers["set-cookie"]
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/console"):
            assert attribute.lower() in cookie.lower()
        assert token not in cookie  # the cookie holds a session id, never the token
        queue = client.get("/console/")
        assert queue.status_code == 200 and "tina (technician)" in queue.text
        assert queue.headers["cache-control"] == "no-store"
        assert "default-src 'self'" in queue.headers["content-security-policy"]
        # The JSON API does not take the console's cookie: no CSRF exposure there.
        assert client.get("/api/tickets").status_code == 401
        tokens.revoke(rt.db, "tina", actor="test")
        ended = client.get("/console/")
        assert ended.status_code == 303 and ended.headers["location"] == "/console/login"


def test_console_forms_need_the_csrf_token_and_the_same_origin(rt: Runtime, url: str) -> None:
    token = tokens.create(rt.db, "ada", "admin", created_by="test")
    with httpx.Client(base_url=url, timeout=10) as client:
        client.post("/console/login", data={"token": token})
        sid = client.cookies[sessions.COOKIE]
        csrf = sessions.lookup(rt.db, sid).csrf
        assert client.post("/console/logout", data={"csrf": "wrong"}).status_code == 401
        foreign = client.post(
            "/console/logout", data={"csrf": csrf}, headers={"Origin": "http://evil.example"}
        )
        assert foreign.status_code == 401 and "another site" in foreign.text
        sessions.lookup(rt.db, sid)  # still logged in
        assert client.post("/console/logout", data={"csrf": csrf}).status_code == 303
    with pytest.raises(NotAuthenticated, match="ended"):
        sessions.lookup(rt.db, sid)


def test_console_sessions_end_when_idle_or_too_old(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tokens.create(rt.db, "tina", "technician", created_by="test")
    sid = sessions.start(rt.db, token)
    start = sessions.now()
    monkeypatch.setattr(sessions, "now", lambda: start + sessions.IDLE - timedelta(minutes=1))
    assert sessions.lookup(rt.db, sid).caller.name == "tina"  # used: the idle clock starts again
    monkeypatch.setattr(sessions, "now", lambda: start + 2 * sessions.IDLE - timedelta(minutes=3))
    assert sessions.lookup(rt.db, sid).caller.role == "technician"
    monkeypatch.setattr(sessions, "now", lambda: start + 4 * sessions.IDLE)
    with pytest.raises(NotAuthenticated, match="ended"):
        sessions.lookup(rt.db, sid)
    other = sessions.start(rt.db, token)
    later = sessions.now()
    steps = int(sessions.LIFETIME / (sessions.IDLE / 2)) + 1
    with pytest.raises(NotAuthenticated, match="ended"):  # used every half hour, still ends at the lifetime
        for n in range(1, steps + 1):
            monkeypatch.setattr(sessions, "now", lambda n=n: later + n * sessions.IDLE / 2)
            sessions.lookup(rt.db, other)


def test_console_job_events_stream_the_steps_then_done_and_refuse_an_unknown_job(
    rt: Runtime, url: str
) -> None:
    from tests.conftest import open_ticket, run_ticket

    [job_id] = run_ticket(rt, open_ticket(rt, "esx-06", action="power.status"))
    token = tokens.create(rt.db, "tina", "technician", created_by="test")
    with httpx.Client(base_url=url, timeout=10) as client:
        client.post("/console/login", data={"token": token})
        stream = client.get(f"/console/jobs/{job_id}/events")
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        events = [
            line.split(":", 1)[1].strip() for line in stream.text.splitlines() if line.startswith("event:")
        ]
        assert events == ["steps", "done"]
        assert 'data-state="succeeded"' in stream.text and "data: succeeded" in stream.text
        unknown = client.get("/console/jobs/999999/events")
        assert unknown.status_code == 400 and "no job 999999" in unknown.text
