"""Alembic migrations (identical for SQLite and PostgreSQL)."""
