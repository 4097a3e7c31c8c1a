"""A running MailMax with the admin API on, and an HTTPS client for it (the standard library's)."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.server import MailMaxServer, default_sections


@dataclass
class Answer:
    """One HTTP answer: status, headers and the parsed JSON body (None when empty)."""

    status: int
    headers: Any
    body: Any
    raw: bytes


class ApiClient:
    """Calls the admin API of ``server`` over HTTPS, verifying its certificate."""

    def __init__(self, server: MailMaxServer) -> None:
        self.server = server
        self.base = f"https://localhost:{server.ports['admin']}"
        self.context = ssl.create_default_context(cafile=str(server.cert_path))

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Send one request; any status comes back as an :class:`Answer`."""
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                raw = response.read()
                status, got = response.status, response.headers
        except urllib.error.HTTPError as error:
            raw, status, got = error.read(), error.code, error.headers
        parsed = json.loads(raw) if raw and "json" in (got.get("content-type") or "") else None
        return Answer(status, got, parsed, raw)


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``predicate()`` until it is true; its value."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.1)
    return value


def admin_cli(server: MailMaxServer, *args: str, code: int = 0) -> str:
    """Run ``mailmax --config <server's config> ARGS`` in-process; its stdout (stderr when it
    must fail with ``code``)."""
    from click.testing import CliRunner

    from mailmax.core.cli.main import cli

    result = CliRunner().invoke(cli, ["--config", str(server.config_path), *args])
    assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
    return result.stdout if code == 0 else result.stderr


def start_api_server(data_dir: Path, **overrides: Any) -> MailMaxServer:
    """A MailMax server (see tests.fixtures.server) with the admin API on a free port."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sections = default_sections(data_dir)
    sections["admin"] = {"enabled": True, "port": 0, **overrides.pop("admin", {})}
    sections.update(overrides)
    server = MailMaxServer(data_dir, sections)
    server.prepare()
    server.start()
    return server


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailMaxServer]:
    """One server for a test module; tests change what they need and put it back."""
    server = start_api_server(
        tmp_path_factory.mktemp("api") / "data", auth={"failure_delay": 0.2, "block_after": 3}
    )
    yield server
    try:
        server.stop(timeout=15)
    except Exception:
        server.kill()
