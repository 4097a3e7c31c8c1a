"""Live trace, event logs, activity counters, login records and Prometheus metrics of a
running server, over real SMTP and the real ``mailmax`` command."""

from __future__ import annotations

import base64
import imaplib
import json
import os
import poplib
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from mailmax.core.cli.main import cli
from tests.fixtures.dns import dns_server
from tests.fixtures.server import DOMAIN, MailMaxServer, default_sections

CATEGORIES = ["connections", "commands", "conversation", "errors", "logins", "deliveries"]
#: A local plugin that refuses one sender (for the policy category and verdict metrics).
REFUSER = """
from mailmax.plugin import hookimpl, reject

@hookimpl
def mailmax_mail_from(sender):
    if sender == "spammer@bad.example":
        return reject("Sender refused by policy", 550, "5.7.1")
    return None
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailMaxServer]:
    """One server for the module: per-service event logs, AUTH allowed without TLS, a test
    DNS server with a domain that takes no mail."""
    zones = {"nullmx.test": {"nullmx.test": [("MX", 0, "")]}}
    with dns_server(zones) as (host, port):
        yield from _server(tmp_path_factory, f"{host}:{port}")


def _server(factory: pytest.TempPathFactory, dns: str) -> Iterator[MailMaxServer]:
    data_dir = factory.mktemp("observe")
    sections = default_sections(data_dir)
    sections["queue"] = {**sections["queue"], "dns_servers": [dns]}
    sections["smtp"] = {"allow_plaintext_auth": True}
    sections["pop3"] = {"allow_plaintext_auth": True}
    sections["imap"] = {"allow_plaintext_auth": True}
    sections["log"] = {"files": "per-service", "rotate": "daily", "categories": CATEGORIES}
    sections["log.services.pop3"] = {"categories": []}
    sections["plugins"] = {"enabled": ["refuser"]}
    server = MailMaxServer(data_dir, sections)
    server.prepare()
    (data_dir / "plugins").mkdir(exist_ok=True)
    (data_dir / "plugins" / "refuser.py").write_text(REFUSER)
    server.start()
    yield server
    try:
        server.stop(timeout=15)
    except Exception:
        server.kill()


class TraceProcess:
    """``mailmax trace ARGS`` running, its output lines collected by a thread."""

    def __init__(self, server: MailMaxServer, *args: str) -> None:
        exe = shutil.which("mailmax") or os.path.join(os.path.dirname(sys.executable), "mailmax")
        self.proc = subprocess.Popen(
            [exe, "--config", str(server.config_path), "trace", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.started: queue.Queue[str] = queue.Queue()
        threading.Thread(
            target=self._read, args=(self.proc.stdout, self.lines), daemon=True
        ).start()
        threading.Thread(
            target=self._read, args=(self.proc.stderr, self.started), daemon=True
        ).start()
        first = self.started.get(timeout=20)
        assert first.startswith("tracing"), first

    @staticmethod
    def _read(stream: Any, into: queue.Queue[str]) -> None:
        for line in stream:
            into.put(line.rstrip("\n"))

    def until(self, needle: str, timeout: float = 15.0) -> list[str]:
        """The lines up to and including the first containing ``needle``."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            seen.append(line)
            if needle in line:
                return seen

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Ran:
    """What an in-process ``mailmax`` run printed and returned."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run(server: MailMaxServer, *args: str, check: bool = True) -> Ran:
    """``mailmax --config ... ARGS`` in process (faster than a subprocess)."""
    result = CliRunner().invoke(cli, ["--config", str(server.config_path), *args])
    if check:
        assert result.exit_code == 0, (result.output, result.exception)
    return Ran(result.exit_code, result.stdout, result.stderr)


def stats(server: MailMaxServer) -> dict[str, Any]:
    return json.loads(run(server, "stats", "--json").stdout)


def counted(summary: dict[str, Any], service: str, kind: str, window: str = "hour") -> int:
    return summary.get(service, {}).get(kind, {}).get(window, 0)


def message(number: int) -> bytes:
    return f"From: alice@{DOMAIN}\r\nSubject: {number}\r\n\r\nbody {number}\r\n".encode()


def test_trace_shows_the_smtp_commands_and_never_the_auth_payload(server):
    """L3: `mailmax trace --service smtp` shows a session live; secrets are ***."""
    trace = TraceProcess(server, "--service", "smtp", "--category", "commands",
                         "--category", "logins", "--category", "connections")  # fmt: skip
    plain = base64.b64encode(f"\0alice@{DOMAIN}\0wrongsecret".encode()).decode()
    try:
        with server.smtp() as client:
            client.ehlo("client.example.net")
            code, _ = client.docmd("AUTH", f"PLAIN {plain}")
            assert code == 535
            client.user, client.password = f"alice@{DOMAIN}", "alicesecret"
            client.auth("LOGIN", client.auth_login, initial_response_ok=False)
            client.sendmail(f"alice@{DOMAIN}", [f"bob@{DOMAIN}"], message(0))
        lines = trace.until("QUIT")
    finally:
        trace.stop()
    text = "\n".join(lines)
    assert " smtp connections " in text and "connection from 127.0.0.1" in text
    assert "ehlo client.example.net" in text  # smtplib's spelling
    assert "AUTH PLAIN ***" in text
    assert "AUTH LOGIN" in text
    assert f"login alice@{DOMAIN} failed" in text
    assert f"login alice@{DOMAIN} ok" in text
    assert f"mail FROM:<alice@{DOMAIN}>" in text and f"rcpt TO:<bob@{DOMAIN}>" in text
    for secret in (plain, "alicesecret", "wrongsecret", base64.b64encode(b"alicesecret").decode()):
        assert secret not in text
    # the "conversation" log category has the replies, and no secret either
    log = (server.data_dir / "log" / "smtp.log").read_text()
    assert "C: AUTH PLAIN ***" in log and "S: 235 2.7.0 Authentication successful" in log
    for secret in (plain, "alicesecret", base64.b64encode(f"alice@{DOMAIN}".encode()).decode()):
        assert secret not in log
    # pop3 writes no category: no file; and only the services that saw events have one
    assert not (server.data_dir / "log" / "pop3.log").exists()


def test_trace_hides_pop3_and_imap_passwords(server):
    """L3: POP3 PASS and IMAP LOGIN show the login name, never the password."""
    trace = TraceProcess(server, "--service", "imap", "--service", "pop3",
                         "--category", "commands", "--category", "logins")  # fmt: skip
    try:
        pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
        pop.user(f"bob@{DOMAIN}")
        pop.pass_("bobsecret")
        pop.quit()
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
        imap.login(f"alice@{DOMAIN}", "alicesecret")
        imap.logout()
        lines = trace.until("LOGOUT")
    finally:
        trace.stop()
    text = "\n".join(lines)
    assert "PASS ***" in text and f"login bob@{DOMAIN} ok" in text
    assert f"LOGIN alice@{DOMAIN} ***" in text and f"login alice@{DOMAIN} ok" in text
    assert "bobsecret" not in text and "alicesecret" not in text


def test_policy_decisions_are_traced_and_counted(server):
    """L2: which plugin refused what; plugin verdicts by plugin in the metrics."""
    trace = TraceProcess(server, "--service", "smtp", "--category", "policy")
    try:
        with server.smtp() as client:
            client.ehlo("client.example.net")
            code, _ = client.mail("spammer@bad.example")
            assert code == 550
        line = trace.until("refuser")[-1]
    finally:
        trace.stop()
    assert "refuser reject in mailmax_mail_from: 550 Sender refused by policy" in line
    text = run(server, "metrics", "--prometheus").stdout
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    key = ("mailmax_plugin_verdicts_total", (("plugin", "refuser"), ("verdict", "reject")))
    assert samples[key] == 1


def test_trace_shows_dns_look_ups_and_deliveries_of_the_queue(server):
    """L2, L3: the dns and deliveries categories of the queue."""
    trace = TraceProcess(server, "--service", "queue", "--category", "dns",
                         "--category", "deliveries", "--json")  # fmt: skip
    try:
        with server.smtp() as client:
            client.user, client.password = f"alice@{DOMAIN}", "alicesecret"
            client.ehlo("client.example.net")
            client.auth("PLAIN", client.auth_plain)
            client.sendmail(f"alice@{DOMAIN}", ["someone@nullmx.test"], message(9))
        events = [json.loads(line) for line in trace.until("to someone@nullmx.test")]
    finally:
        trace.stop()
    dns = [event for event in events if event["category"] == "dns"]
    assert dns and dns[0]["text"].startswith("MX nullmx.test: 0")
    assert dns[0]["domains"] == ["nullmx.test"]
    assert "failed" in events[-1]["text"] and "null MX" in events[-1]["text"]


def test_activity_counts_match_the_messages_sent(server):
    """L4: connections, failed logins, messages and bytes per service."""
    before = stats(server)
    sizes = 0
    with server.smtp() as client:
        client.ehlo("counter.example.net")
        code, _ = client.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0bob\0nope").decode())
        assert code == 535
        for number in range(1, 4):
            client.sendmail("carol@elsewhere.example", [f"bob@{DOMAIN}"], message(number))
            sizes += len(message(number))
    with server.smtp("submission") as client:
        client.ehlo("x")
    after = stats(server)
    assert counted(after, "smtp", "messages") - counted(before, "smtp", "messages") == 3
    assert counted(after, "smtp", "connections") - counted(before, "smtp", "connections") == 1
    assert counted(after, "smtp", "failed_logins") - counted(before, "smtp", "failed_logins") == 1
    grown = counted(after, "smtp", "bytes") - counted(before, "smtp", "bytes")
    assert sizes <= grown < sizes + 3 * 400  # each with its Received header
    assert counted(after, "submission", "connections") == 1
    for window in ("12h", "24h", "week"):
        assert counted(after, "smtp", "messages", window) == counted(after, "smtp", "messages")
    table = run(server, "stats").stdout
    assert table.splitlines()[0].split() == ["SERVICE", "WHAT", "HOUR", "12H", "24H", "WEEK"]
    assert "failed logins" in table


def test_prometheus_text_parses_and_agrees(server):
    """L4: `mailmax metrics --prometheus` parses with prometheus_client's parser."""
    server.wait_for_mail(f"bob@{DOMAIN}", count=4)
    text = run(server, "metrics", "--prometheus").stdout
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    summary = stats(server)
    assert samples[("mailmax_messages_total", (("service", "smtp"),))] == counted(
        summary, "smtp", "messages"
    )
    assert samples[("mailmax_connections_total", (("service", "smtp"),))] >= 2
    assert samples[("mailmax_failed_logins_total", (("service", "smtp"),))] == 2
    assert samples[("mailmax_spool_commit_seconds_count", ())] == counted(
        summary, "smtp", "messages"
    )
    assert samples[("mailmax_deliveries_total", (("result", "delivered"),))] >= 4
    assert samples[("mailmax_deliveries_total", (("result", "failed"),))] == 1
    assert ("mailmax_queue_messages", (("state", "deferred"),)) in samples
    assert ("mailmax_sessions_open", (("service", "smtp"),)) in samples
    refused = run(server, "metrics", "mailmax", "--prometheus", check=False)
    assert refused.returncode == 1 and "leave out PREFIX" in refused.stderr


def test_user_logins_shows_the_recorded_logins(server):
    """L3: login tracking."""
    found = json.loads(run(server, "user", "logins", f"alice@{DOMAIN}", "--json").stdout)
    # the trace tests logged in over SMTP twice and over IMAP once
    assert sorted(row["service"] for row in found) == ["imap", "smtp", "smtp"]
    assert {row["ip"] for row in found} == {"127.0.0.1"}
    assert [row["timestamp"] for row in found] == sorted(
        (row["timestamp"] for row in found), reverse=True
    )
    table = run(server, "user", "logins", f"bob@{DOMAIN}").stdout.splitlines()
    assert table[0].split() == ["TIME", "SERVICE", "IP"] and table[1].split()[-2:] == [
        "pop3",
        "127.0.0.1",
    ]
    none = run(server, "user", "logins", f"postmaster@{DOMAIN}").stdout
    assert none.strip() == f"no logins recorded for postmaster@{DOMAIN}"
    missing = run(server, "user", "logins", "nobody@example.test", check=False)
    assert missing.returncode == 1 and "'nobody@example.test'" in missing.stderr
    assert "mailmax user list" in missing.stderr


def test_a_bad_trace_request_is_refused(server):
    result = run(server, "trace", "--service", "gopher", check=False)
    assert result.returncode == 2 and "gopher" in result.stderr
    from mailmax.core.admin import AdminError, request

    with pytest.raises(AdminError, match="unknown trace option"):
        request(server.data_dir, 'trace {"colour": "blue"}')


def test_reload_reopens_the_event_logs_after_an_outside_rotation(server):
    """L1: a log rotated by another tool (renamed) is begun anew on reload."""
    folder = server.data_dir / "log"
    (folder / "smtp.log").rename(folder / "smtp.log.rotated")
    run(server, "reload")
    with server.smtp() as client:
        client.ehlo("after.example.net")
    deadline = time.monotonic() + 10
    while "after.example.net" not in _read(folder / "smtp.log"):
        assert time.monotonic() < deadline, _read(folder / "smtp.log")
        time.sleep(0.05)
    assert "after.example.net" not in (folder / "smtp.log.rotated").read_text()


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_activity_survives_a_restart(server):
    """L4: the counters are saved at shutdown and read back."""
    before = stats(server)
    server.restart()
    after = stats(server)
    for kind in ("messages", "bytes", "failed_logins"):
        assert counted(after, "smtp", kind) == counted(before, "smtp", kind)
    assert json.loads(Path(server.data_dir / "activity.json").read_text())["bucket_seconds"] == 300
