"""Alembic migrations of the server database (a package, so wheels carry the scripts)."""
