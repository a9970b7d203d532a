"""Alembic environment: runs on the connection handed over by ``remotehands.db.migrate``."""

from __future__ import annotations

from alembic import context

import remotehands.audit
import remotehands.intake.tables
import remotehands.jobs.tables
import remotehands.network.ipam_tables
import remotehands.server.console.tables
import remotehands.ssh.tables
import remotehands.status.tables
import remotehands.tickets.tables  # noqa: F401  (registers the tables on Base.metadata)
from remotehands.db import Base

target_metadata = Base.metadata

connection = context.config.attributes.get("connection")
if connection is None:
    from sqlalchemy import create_engine

    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///autogen.db"
    with create_engine(url).connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
