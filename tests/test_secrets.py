"""Secrets: references resolve, literals are refused, and a known secret appears nowhere we write."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import MetaData, select

from remotehands import redaction, secrets
from remotehands.errors import DeviceUnreachable, SecretError
from tests.conftest import open_ticket, run_ticket


def test_env_and_file_references_resolve(monkeypatch, tmp_path):
    monkeypatch.setenv("RH_TEST_SECRET", "s3cret-from-env")
    assert secrets.resolve("env:RH_TEST_SECRET") == "s3cret-from-env"
    f = tmp_path / "pw"
    f.write_text("s3cret-from-file\n")
    assert secrets.resolve(f"file:{f}") == "s3cret-from-file"
    assert redaction.redact("x s3cret-from-file y") == "x *** y"


@pytest.mark.parametrize(
    ("ref", "needle"),
    [
        ("hunter22", "not a credential reference"),
        ("env:", "needs a variable name"),
        ("env:RH_NOT_SET_ANYWHERE", "RH_NOT_SET_ANYWHERE is not set"),
        ("file:relative/path", "absolute path"),
        ("file:/nonexistent/rh-secret", "cannot read secret file"),
        ("vault:secret/bmc", "vault:path#key"),
    ],
)
def test_bad_references_name_the_problem(ref, needle):
    with pytest.raises(SecretError) as err:
        secrets.resolve(ref, field="power.credentials.password")
    assert needle in str(err.value)
    assert "power.credentials.password" in str(err.value)
    assert "Fix:" in str(err.value)


def test_secret_sentinel_appears_in_no_log_comment_attachment_or_db_row(rt, lab, tmp_path, caplog):
    sentinel = lab.password_file.read_text().strip()
    caplog.set_level(logging.DEBUG)
    root = logging.getLogger()
    handler = logging.FileHandler(tmp_path / "all.log")
    handler.addFilter(redaction.RedactingFilter())
    root.addHandler(handler)
    try:
        ticket_id = open_ticket(rt, "esx-01")
        run_ticket(rt, ticket_id)
        # Try hard to leak it: a log line, an error message, a comment and an attachment that contain it.
        logging.getLogger("remotehands.test").warning("connecting with password %s", sentinel)
        err = DeviceUnreachable(f"login failed with {sentinel}")
        rt.tickets.comment(ticket_id, f"debug: {sentinel}")
        rt.tickets.attach(ticket_id, "session.log", f"PASS {sentinel}\n".encode())
    finally:
        root.removeHandler(handler)
        handler.close()
    assert sentinel not in str(err)
    assert sentinel not in (tmp_path / "all.log").read_text()
    assert all(sentinel not in r.getMessage() for r in caplog.records)
    assert all(sentinel not in c.body for c in rt.tickets.comments(ticket_id))
    assert sentinel.encode() not in rt.tickets.attachment_content(ticket_id, "session.log")
    meta = MetaData()
    meta.reflect(rt.db.engine)
    with rt.db.engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                assert sentinel not in repr(tuple(row)), table.name
    rt.db.dispose()
    for path in tmp_path.glob("rh.db*"):
        assert sentinel.encode() not in path.read_bytes(), path
    if rt.settings.log_file and rt.settings.log_file.exists():
        assert sentinel not in rt.settings.log_file.read_text()


@pytest.fixture
def vault(monkeypatch):
    """A minimal Vault KV v2 endpoint on 127.0.0.1 (what hvac's read_secret_version asks for), token-checked."""
    import json as _json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    store = {"secret/bmc": {"password": "vault-s3cret-1"}}
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.headers.get("X-Vault-Token") != "t0ken":
                self.send_response(403)
                self.end_headers()
                self.wfile.write(b'{"errors": ["permission denied"]}')
                return
            # /v1/<mount>/data/<path>
            parts = self.path.split("?")[0].strip("/").split("/")
            key = f"{parts[1]}/{'/'.join(parts[3:])}"
            if key not in store:
                self.send_response(404)
                self.end_headers()
                self.wfile.write(b'{"errors": []}')
                return
            body = {"data": {"data": store[key], "metadata": {"version": 1, "deletion_time": ""}}}
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(_json.dumps(body).encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("VAULT_TOKEN", "t0ken")
    yield seen
    server.shutdown()


def test_vault_reference_is_read_over_the_kv2_api(vault):
    assert secrets.resolve("vault:secret/bmc#password") == "vault-s3cret-1"
    assert vault == ["/v1/secret/data/bmc"]
    assert redaction.redact("pw vault-s3cret-1") == "pw ***"


def test_vault_errors_name_the_path_and_never_a_value(vault, monkeypatch):
    with pytest.raises(SecretError, match="has no key nokey"):
        secrets.resolve("vault:secret/bmc#nokey")
    with pytest.raises(SecretError, match="cannot read vault secret secret/missing"):
        secrets.resolve("vault:secret/missing#password")
    monkeypatch.setenv("VAULT_TOKEN", "wrong")
    with pytest.raises(SecretError) as err:
        secrets.resolve("vault:secret/bmc#password")
    assert "token" in str(err.value) and "vault-s3cret-1" not in str(err.value)
