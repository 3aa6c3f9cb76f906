"""Helpers for tests and benches that are not part of the server or the gateway."""
