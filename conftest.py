"""Fixtures every test folder can use: the tests' own (tests/) and each plugin's (mailmax/plugins/*/tests/)."""

pytest_plugins = [
    "tests.fixtures.clamd",
    "tests.fixtures.postgres",
    "tests.fixtures.server",
]
