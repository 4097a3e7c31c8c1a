"""Shared pytest fixtures: each lives in tests/fixtures/ and is registered here."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.server",
]
