"""Real POP3 clients against MailMax: fetchmail with APOP over TLS (S2, A6)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pop3_support import PASSWORDS, POP3Process

MESSAGES = [
    b"From: a@example.test\r\nSubject: one\r\n\r\nfirst\r\n",
    b"From: b@example.test\r\nSubject: two\r\n\r\n.dot line\r\nsecond\r\n",
]

MDA = """
import os, socket, sys, time
md = sys.argv[1]
for d in ("tmp", "new", "cur"):
    os.makedirs(os.path.join(md, d), exist_ok=True)
name = "%d.P%dQ%d.%s" % (time.time(), os.getpid(), time.monotonic_ns(), socket.gethostname())
with open(os.path.join(md, "tmp", name), "wb") as f:
    f.write(sys.stdin.buffer.read())
os.rename(os.path.join(md, "tmp", name), os.path.join(md, "new", name))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[POP3Process]:
    process = POP3Process(tmp_path_factory.mktemp("pop3clients"))
    process.prepare()
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _fetchmail(
    server: POP3Process, work: Path, port: int, tls: str, keep: bool, protocol: str = "APOP"
) -> tuple[int, str, Path]:
    fetchmail = shutil.which("fetchmail")
    assert fetchmail, "fetchmail is not installed: apt-get install -y fetchmail"
    home = work / "fmhome"
    home.mkdir(mode=0o700, parents=True)
    (work / "mda.py").write_text(MDA)
    out_dir = work / "fetched"
    rc = work / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        'set postmaster "root"\n'
        f"poll localhost service {port} protocol {protocol} timeout 10\n"
        f'   user "alice" there with password "{PASSWORDS["alice"]}" is "root" here\n'
        f"   {'keep' if keep else 'no keep'} {tls}\n"
        f'   sslcertck sslcertfile "{server.cert}"\n'
        f'   mda "{sys.executable} {work / "mda.py"} {out_dir}"\n'
    )
    rc.chmod(0o600)
    result = subprocess.run(
        [fetchmail, "-f", str(rc), "-v", "--nodetach"],
        env={**os.environ, "FETCHMAILHOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout + result.stderr, out_dir


def _fetched(out_dir: Path) -> list[bytes]:
    files = sorted((out_dir / "new").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    return [p.read_bytes() for p in files]


def test_fetchmail_apop_over_implicit_tls(server: POP3Process, tmp_path: Path) -> None:
    """S2: fetchmail logs in with APOP on pop3s (certificate checked) and gets every message."""
    server.deliver("alice", *MESSAGES)
    port = server.ports["pop3s"]
    code, log, out_dir = _fetchmail(server, tmp_path, port, "ssl", keep=True)
    assert code == 0, log
    fetched = _fetched(out_dir)
    assert len(fetched) == 2, log
    for original, got in zip(MESSAGES, fetched, strict=True):
        assert got.endswith(original.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n"))


def test_fetchmail_stls_user_pass_deletes(server: POP3Process, tmp_path: Path) -> None:
    """S2: fetchmail upgrades the plain port with STLS (certificate checked), logs in with
    USER/PASS, fetches and deletes. (fetchmail never combines APOP with STLS.)"""
    port = server.ports["pop3"]
    server.deliver("alice", *MESSAGES)
    code, log, out_dir = _fetchmail(
        server, tmp_path, port, "sslproto TLS1.2+", keep=False, protocol="POP3"
    )
    assert code == 0, log
    assert "POP3> STLS" in log and "POP3> PASS" in log
    assert len(_fetched(out_dir)) >= 2, log
    code, log, _ = _fetchmail(
        server, tmp_path / "again", port, "sslproto TLS1.2+", keep=False, protocol="POP3"
    )
    assert code == 1, log  # 1: no mail left
