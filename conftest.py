"""Fixtures every test folder can use: tests/ and each plugin's own tests/ folder."""

pytest_plugins = [
    "tests.fixtures.clamd",
    "tests.fixtures.outbound",
    "tests.fixtures.postgres",
    "tests.fixtures.server",
    "tests.fixtures.slapd",
]
