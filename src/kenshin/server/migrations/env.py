"""Alembic environment for Kenshin.

Run through `kenshin.server.db.migrate`, which hands over an open connection in
``config.attributes["connection"]``. Run by the `alembic` command (development only), it
takes the database URL from the ``sqlalchemy.url`` option or ``KENSHIN_DATABASE_URL``.
"""

from __future__ import annotations

import os

from alembic import context

from kenshin.server.db import make_engine, normalize_url
from kenshin.server.metering.partitions import include_object
from kenshin.server.schema import metadata

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("KENSHIN_DATABASE_URL")
    if not url:
        raise RuntimeError("no database: set sqlalchemy.url or KENSHIN_DATABASE_URL")
    return normalize_url(url).render_as_string(hide_password=False)


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
