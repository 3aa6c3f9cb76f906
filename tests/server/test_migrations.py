"""Migrations: from empty to head, idempotent, reversible, and equal to the metadata."""

from __future__ import annotations

import threading

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect

from kenshin.server.db import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    migrate,
)
from kenshin.server.metering.partitions import include_object, is_partition
from kenshin.server.schema import metadata


def _diff(url: str, target: MetaData) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            options = {"compare_type": True, "include_object": include_object}
            context = MigrationContext.configure(conn, opts=options)
            return compare_metadata(context, target)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    """The database's tables, less the monthly partitions made at run time."""
    engine = make_engine(url)
    try:
        return {t for t in inspect(engine).get_table_names() if not is_partition(t)}
    finally:
        engine.dispose()


def test_migrate_from_empty_then_again_is_a_no_op(empty_database_url: str) -> None:
    assert current_revision(empty_database_url) is None
    assert migrate(empty_database_url) == head_revision()
    assert _tables(empty_database_url) == set(metadata.tables) | {"alembic_version"}
    assert migrate(empty_database_url) == head_revision()
    assert current_revision(empty_database_url) == head_revision()


def test_migrated_schema_equals_the_metadata(empty_database_url: str) -> None:
    migrate(empty_database_url)
    assert _diff(empty_database_url, metadata) == []


def test_the_comparison_would_see_a_difference(empty_database_url: str) -> None:
    migrate(empty_database_url)
    drifted = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["tenants"].append_column(Column("extra", Integer()))
    assert any(
        d[0] == "add_column" and d[2] == "tenants" for d in _diff(empty_database_url, drifted)
    )


def test_downgrade_to_nothing_and_up_again(empty_database_url: str) -> None:
    migrate(empty_database_url)
    engine = make_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert _tables(empty_database_url) <= {"alembic_version"}
        assert migrate(engine) == head_revision()
    finally:
        engine.dispose()
    assert _diff(empty_database_url, metadata) == []


def test_scripts_are_found_beside_the_package_without_an_ini_file() -> None:
    config = alembic_config()
    assert config.config_file_name is None
    assert MIGRATIONS_DIR.parent.name == "server"
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "__init__.py").is_file()  # packaged into wheels
    assert (MIGRATIONS_DIR / "versions" / "__init__.py").is_file()
    newest = max(p.name[:4] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))
    assert head_revision()[:4] == newest


def test_servers_starting_at_once_migrate_once(backend: str, empty_database_url: str) -> None:
    if backend != "postgresql":
        pytest.skip("one process owns an embedded SQLite database")
    errors: list[BaseException] = []

    def start() -> None:
        try:
            migrate(empty_database_url)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert current_revision(empty_database_url) == head_revision()


def test_two_databases_migrated_at_once_in_one_process(tmp_path):
    # Two apps starting in threads of one process (the browser tests' panels, the demo)
    # each migrate their database: Alembic's module-global context must not cross.
    from concurrent.futures import ThreadPoolExecutor

    from kenshin.server.db import migrate as migrate_one

    urls = [f"sqlite:///{tmp_path / f'db{n}.sqlite'}" for n in range(4)]
    with ThreadPoolExecutor(4) as pool:
        revisions = list(pool.map(migrate_one, urls))
    assert len(set(revisions)) == 1 and revisions[0] is not None
